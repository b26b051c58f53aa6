"""The restore journal ``PATH.partial.done``: which chunk indexes of ``PATH.partial`` were verified
and written. Only a hint for resuming: every listed chunk is re-hashed before it is trusted."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

FLUSH_EVERY_CHUNKS = 64
FLUSH_EVERY_S = 1.0


class RestoreJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._pending: list[int] = []
        self._jfd = -1
        self._data_fd = -1
        self._last = time.monotonic()

    def load(self, point_id: str) -> set[int] | None:
        """Indexes recorded for ``point_id``, or None when the journal is absent or for another point."""
        try:
            lines = self.path.read_text().splitlines()
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        if not lines or lines[0] != f"point {point_id}":
            return None
        out = set()
        for line in lines[1:]:
            if line.isdigit():  # a torn last line from a crash is just ignored
                out.add(int(line))
        return out

    def start(self, point_id: str, data_fd: int, verified: Iterable[int]) -> None:
        """Rewrite the journal with the re-verified indexes, then append as chunks land."""
        self._data_fd = data_fd
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            f.write(f"point {point_id}\n" + "".join(f"{i}\n" for i in sorted(verified)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._jfd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def add(self, idxs: Iterable[int]) -> None:
        with self._lock:
            self._pending.extend(idxs)
            due = len(self._pending) >= FLUSH_EVERY_CHUNKS or time.monotonic() - self._last >= FLUSH_EVERY_S
            if due:
                self._flush_locked()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        self._last = time.monotonic()
        if not self._pending or self._jfd < 0:
            return
        os.fdatasync(self._data_fd)  # the data first: the journal never runs ahead of the disk
        os.write(self._jfd, "".join(f"{i}\n" for i in self._pending).encode())
        os.fsync(self._jfd)
        self._pending.clear()

    def close(self) -> None:
        """Flush what can be flushed (best effort: we may be unwinding a disk-full error)."""
        with self._lock:
            try:
                self._flush_locked()
            except OSError:
                self._pending.clear()
            if self._jfd >= 0:
                os.close(self._jfd)
                self._jfd = -1

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
