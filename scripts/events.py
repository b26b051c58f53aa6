"""The machine-readable output of every ``drctl`` command run with ``--json``: JSON lines.

With ``--json`` a command writes nothing but events on stdout, one JSON object per line (UTF-8,
compact, flushed line by line, so a pipe sees each one as it happens). Every event has:

- ``event``: its name (kebab-case, one of :data:`EVENTS`);
- ``time``: when it was written, ISO-8601 UTC with milliseconds (``2026-11-30T10:00:00.123Z``);
- the event's own fields, never named ``event`` or ``time``.

The last line is exactly one terminal event:

- ``result``: the command ran to its end; its fields are the command's summary. The exit code
  still says whether that summary is a success (a drill with a failed server ends with its
  ``result`` and exit 20; ``check`` that finds damage ends with its ``result`` and exit 13);
- ``error``: a :class:`~drctl.errors.DrctlError` or an interruption stopped the command before a
  result: ``exit_code``, ``error`` (the error's class name) and ``message`` (the same message as
  the ``drctl: ...`` line on stderr).

Human-readable messages (warnings, notes, the ``drctl: ...`` error line) stay on stderr. Usage
errors (exit 2) are reported by argparse on stderr before any event. The README section
"Machine-readable output" lists every event with its fields.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any, TextIO

EVENTS: dict[str, str] = {
    "progress": "bytes done of a long phase (backup, restore, check --read-data)",
    "note": "something the user should know that is not an error (preview, policy)",
    "prepare-step": "a step of `demo prepare` (an image built or reused, a disk backed up)",
    "preflight": "a cloud activation's or drill's preflight of the project (before anything is restored)",
    "run-started": "an activation or drill started (after its guards passed)",
    "restore-started": "a server's disk started restoring",
    "restore-finished": "a server's disk is restored and verified",
    "log-staged": "a database server's archived WAL is staged into its restored disk for replay",
    "boot-started": "a server's boot started (its disks restored, its upstream servers available)",
    "server-finished": "a server's verdict",
    "reconnection-started": "the sites' reconnection test started (drills)",
    "report": "the signed report was stored",
    "failback-started": "a failback started (its checks passed): the servers it brings home",
    "sync-finished": "failback: a server's last backup is taken (its data cut-over)",
    "guest-stopped": "failback: a server's recovery guest is stopped (nothing more is written there)",
    "site-restore-finished": "failback: a disk is restored and verified on its site target",
    "servers-released": "failback: the servers proven on site are released from the recovery space",
    "job-started": "an agent job started (its job lock held)",
    "disk-started": "the agent started backing up one disk (its snapshot taken)",
    "disk-finished": "the agent backed up one disk: its restore point",
    "export-image": "`drctl export` wrote one verified disk image",
    "result": "terminal: the command's summary",
    "error": "terminal: the command stopped on an error",
}
"""Every event name, with what it means; the README documents each one's fields."""

TERMINAL = frozenset({"result", "error"})
RESERVED = frozenset({"event", "time"})


def utc_timestamp(moment: datetime | None = None) -> str:
    """``2026-11-30T10:00:00.123Z``: ISO-8601, UTC, milliseconds."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _json_default(value: object) -> object:
    """Paths and times that slip into event fields are written as text, never a crash mid-run."""
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, datetime):
        return utc_timestamp(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"event field of type {type(value).__name__} is not JSON")


class EventStream:
    """The JSON-lines events of one command. Thread-safe: activation and progress events come
    from worker threads."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out
        self._lock = threading.Lock()
        self.finished = False
        """True once a terminal event (``result`` or ``error``) was written."""

    def emit(self, event: str, fields: Mapping[str, Any] | None = None) -> None:
        """Write one event. ``emit(name, fields)`` is also the activation engine's ``on_event``.

        A field named ``event`` or ``time`` would break the schema: that is a programming error.
        (Names missing from :data:`EVENTS` are written all the same; a test keeps them documented.)
        """
        fields = dict(fields or {})
        clash = RESERVED & fields.keys()
        if clash:
            raise ValueError(f"event {event!r}: field(s) {sorted(clash)} are reserved by the schema")
        line = json.dumps(
            {"event": event, "time": utc_timestamp(), **fields}, ensure_ascii=False, default=_json_default
        )
        with self._lock:
            if self.finished:
                raise RuntimeError(f"event {event!r} after the command's terminal event")
            out = self._out if self._out is not None else sys.stdout
            out.write(line + "\n")
            out.flush()
            if event in TERMINAL:
                self.finished = True

    def result(self, fields: Mapping[str, Any]) -> None:
        """The command's summary: the last line."""
        self.emit("result", fields)

    def error(self, exit_code: int, error: str, message: str) -> None:
        """The error that stopped the command, unless a result was already written (then the
        exit code and the stderr message tell the rest)."""
        if not self.finished:
            self.emit("error", {"exit_code": exit_code, "error": error, "message": message})
