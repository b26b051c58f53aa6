"""Progress of long work: a callback the library calls, and the two renderings the CLI uses (a bar
on a terminal, ``progress`` events with ``--json``). Library code only ever calls a
:class:`ProgressSink`."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Protocol, TextIO

from drctl.events import EventStream


class ProgressSink(Protocol):
    def start(self, phase: str, total_bytes: int) -> None: ...

    def advance(self, nbytes: int) -> None:
        """``nbytes`` more are done. Called from any thread."""

    def finish(self) -> None: ...


class NullProgress:
    def start(self, phase: str, total_bytes: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def finish(self) -> None:
        pass


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class _Rated:
    """Shared bookkeeping: bytes done, rate, ETA, throttled emission."""

    interval_s = 0.5

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.phase = ""
        self.total = 0
        self.done = 0
        self.t0 = time.monotonic()
        self._last = 0.0

    def start(self, phase: str, total_bytes: int) -> None:
        with self._lock:
            self.phase, self.total, self.done = phase, total_bytes, 0
            self.t0 = time.monotonic()
            self._last = 0.0
        self._emit(final=False)

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self.done += nbytes
            now = time.monotonic()
            due = now - self._last >= self.interval_s
            if due:
                self._last = now
        if due:
            self._emit(final=False)

    def finish(self) -> None:
        self._emit(final=True)

    def stats(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.t0, 1e-6)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 and self.total else None
        return {
            "phase": self.phase,
            "bytes_done": self.done,
            "bytes_total": self.total,
            "rate_bytes_s": round(rate),
            "eta_s": round(eta, 1) if eta is not None else None,
            "elapsed_s": round(elapsed, 2),
        }

    def _emit(self, final: bool) -> None:
        raise NotImplementedError


class JsonLinesProgress(_Rated):
    """A ``progress`` event (:mod:`drctl.events`) per update: phase, bytes, rate, ETA."""

    def __init__(self, events: EventStream) -> None:
        super().__init__()
        self.events = events

    def _emit(self, final: bool) -> None:
        self.events.emit("progress", self.stats())


class TerminalProgress(_Rated):
    """A one-line bar redrawn on stderr: bytes, rate, ETA."""

    width = 30

    def __init__(self, out: TextIO = sys.stderr) -> None:
        super().__init__()
        self.out = out

    def _emit(self, final: bool) -> None:
        s = self.stats()
        frac = min(s["bytes_done"] / s["bytes_total"], 1.0) if s["bytes_total"] else 1.0
        bar = "#" * int(frac * self.width)
        eta = f"ETA {s['eta_s']:.0f}s" if s["eta_s"] is not None and not final else f"{s['elapsed_s']:.1f}s"
        line = (
            f"\r{s['phase']:<8} [{bar:<{self.width}}] {frac * 100:5.1f}% "
            f"{human_bytes(s['bytes_done'])}/{human_bytes(s['bytes_total'])} "
            f"{human_bytes(s['rate_bytes_s'])}/s {eta}   "
        )
        self.out.write(line + ("\n" if final else ""))
        self.out.flush()


def progress_for(events: EventStream | None, quiet: bool = False) -> ProgressSink:
    """The rendering the CLI should use: events with ``--json``, a bar on a terminal, or nothing."""
    if events is not None:
        return JsonLinesProgress(events)
    if not quiet and sys.stderr.isatty():
        return TerminalProgress()
    return NullProgress()
