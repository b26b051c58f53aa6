"""The console's audit log: one JSON object per line, appended to ``<state>/console/audit.log``
(mode 0600, never through a link), for every sign-in step (success or failure, and why), every
sign-out and every report download.

Each line: ``time`` (ISO-8601 UTC), ``event`` (``signin``, ``signout``, ``password-changed``, ``report-download``),
``user`` (the name typed, for a failed sign-in too), ``address`` (the client's IP), ``outcome``
(``success``/``failure``/``refused``) and the event's own fields (``step``, ``reason``, ``client``,
``run_id``). Never a password, a code or a TOTP secret.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drctl.errors import LocalIOError
from drctl.private_files import UnsafeOutput


class AuditLog:
    """Appends audit events (thread-safe: Starlette runs handlers in a thread pool)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as e:
            raise LocalIOError(f"cannot open the console audit log {self.path}: {e}") from e
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            os.close(fd)
            raise UnsafeOutput(
                f"{self.path} is not your regular file; move it away and start the console again"
            )
        os.fchmod(fd, 0o600)
        return fd

    def record(self, event: str, *, user: str | None, address: str, outcome: str, **fields: Any) -> None:
        line = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "event": event,
            "user": user,
            "address": address,
            "outcome": outcome,
            **fields,
        }
        data = (json.dumps(line, sort_keys=False) + "\n").encode("utf-8")
        with self._lock:
            fd = self._open()
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
