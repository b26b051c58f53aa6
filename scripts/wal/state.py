"""The local archiving state that ``drctl wal push --state FILE`` keeps for the agent's ``log`` job.

PostgreSQL retries a failed ``archive_command`` until it succeeds, so a failure leaves no trace in
the archive itself; the agent must still report it. Each push records its outcome in FILE (JSON,
mode 0600, written to a new file renamed into place, so a reader never sees half a file)::

    {"format": "drctl-wal-state-v1", "server": "db01",
     "last_archived": {"segment": "000000010000000000000042", "at": "2026-11-30T05:00:00+00:00"},
     "failure_count": 3,
     "failures": [{"segment": "...", "error_class": "StorageError", "exit_code": 14,
                   "at": "2026-11-30T04:58:00+00:00"}, ...]}

``failure_count`` only grows; ``failures`` keeps the newest :data:`MAX_FAILURES` entries. The push
is the only writer (PostgreSQL runs one archive_command at a time); the agent only reads, and
remembers in its own state directory how far it has reported (``agent/log_job.py``). A state that
cannot be written never fails the push: archiving matters more than its bookkeeping.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drctl.errors import DrctlError, LocalIOError
from drctl.input_files import loads_json
from drctl.private_files import write_private_file

log = logging.getLogger(__name__)

FORMAT = "drctl-wal-state-v1"
MAX_FAILURES = 50
MAX_STATE_BYTES = 256 * 1024


@dataclass(frozen=True)
class Failure:
    segment: str
    error_class: str
    exit_code: int
    at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "segment": self.segment,
            "error_class": self.error_class,
            "exit_code": self.exit_code,
            "at": self.at.isoformat(),
        }


@dataclass
class WalState:
    server: str
    last_segment: str | None = None
    last_archived_at: datetime | None = None
    failure_count: int = 0
    failures: list[Failure] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "server": self.server,
            "last_archived": None
            if self.last_segment is None or self.last_archived_at is None
            else {"segment": self.last_segment, "at": self.last_archived_at.isoformat()},
            "failure_count": self.failure_count,
            "failures": [f.as_dict() for f in self.failures],
        }


def _time(value: Any) -> datetime:
    t = datetime.fromisoformat(str(value))
    if t.tzinfo is None:
        raise ValueError(f"time {value!r} has no time zone")
    return t.astimezone(UTC)


def read_state(path: str | os.PathLike[str], server: str) -> WalState | None:
    """The state in ``path`` (None when there is none yet). A file of another server, or one that
    others can write, is refused: the agent would report someone else's archiving."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise LocalIOError(f"cannot open the WAL state file {p}: {e.strerror or e}") from e
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise LocalIOError(
                f"WAL state file {p} is not a regular file or is writable by others: remove it (the next "
                "`drctl wal push --state` recreates it, mode 0600)"
            )
        raw = f.read(MAX_STATE_BYTES + 1)
    try:
        if len(raw) > MAX_STATE_BYTES:
            raise ValueError(f"larger than {MAX_STATE_BYTES} bytes")
        doc = loads_json(raw)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} document")
        if doc.get("server") != server:
            raise LocalIOError(
                f"WAL state file {p} belongs to server {doc.get('server')!r}, not {server}: give each "
                "server its own --state file"
            )
        last = doc.get("last_archived")
        return WalState(
            server=server,
            last_segment=None if not last else str(last["segment"]),
            last_archived_at=None if not last else _time(last["at"]),
            failure_count=int(doc.get("failure_count", 0)),
            failures=[
                Failure(str(f["segment"]), str(f["error_class"]), int(f["exit_code"]), _time(f["at"]))
                for f in doc.get("failures", [])
            ],
        )
    except (DrctlError, ValueError, KeyError, TypeError) as e:
        if isinstance(e, LocalIOError):
            raise
        raise LocalIOError(
            f"WAL state file {p} is unreadable ({e}): remove it; the next `drctl wal push --state` "
            "starts it again"
        ) from e


def _update(path: Path, server: str, change) -> None:
    try:
        state = read_state(path, server) or WalState(server)
    except LocalIOError as e:
        log.warning("%s; starting a new one", e.message)
        state = WalState(server)
    change(state)
    try:
        write_private_file(path, _dumps(state))
    except DrctlError as e:
        log.warning("cannot write the WAL state file %s (the agent's log job will miss this): %s", path, e)


def _dumps(state: WalState) -> bytes:
    import json

    return json.dumps(state.as_dict(), indent=1).encode()


def record_success(path: str | os.PathLike[str], server: str, name: str, at: datetime | None = None) -> None:
    """A WAL file was archived. Only segments move ``last_archived`` (a history or backup-label file
    carries no new data), and never backwards (a retried old segment)."""
    from drctl.wal.archive import is_segment

    def change(state: WalState) -> None:
        if is_segment(name) and (state.last_segment is None or name >= state.last_segment):
            state.last_segment, state.last_archived_at = name, at or datetime.now(UTC)

    _update(Path(path), server, change)


def record_failure(
    path: str | os.PathLike[str], server: str, name: str, error: BaseException, at: datetime | None = None
) -> None:
    """A push failed (PostgreSQL keeps the file and retries it)."""
    code = error.exit_code if isinstance(error, DrctlError) else 1

    def change(state: WalState) -> None:
        state.failure_count += 1
        state.failures.append(Failure(name, type(error).__name__, code, at or datetime.now(UTC)))
        del state.failures[:-MAX_FAILURES]

    _update(Path(path), server, change)
