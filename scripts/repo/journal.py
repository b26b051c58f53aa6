"""The restore journal ``PATH.partial.done``: which chunk indexes of ``PATH.partial`` were verified
and written. Only a hint for resuming: every listed chunk is re-hashed before it is trusted."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from drctl.private_files import create_private_file

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
        """Indexes recorded for ``point_id``, or None when the journal is absent, for another point,
        or not the caller's own regular file (a planted link or file is ignored, never followed)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                return None
            with os.fdopen(os.dup(fd), "rb") as f:
                lines = f.read().decode().splitlines()
        except (OSError, UnicodeDecodeError):
            return None
        finally:
            os.close(fd)
        if not lines or lines[0] != f"point {point_id}":
            return None
        out = set()
        for line in lines[1:]:
            if line.isascii() and line.isdigit():  # a torn last line from a crash is just ignored
                out.add(int(line))
        return out

    def start(self, point_id: str, data_fd: int, verified: Iterable[int]) -> None:
        """Rewrite the journal with the re-verified indexes, then append as chunks land."""
        self._data_fd = data_fd
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.unlink(missing_ok=True)  # a leftover (or a planted link): removed, never written through
        fd = create_private_file(tmp)
        try:
            text = f"point {point_id}\n" + "".join(f"{i}\n" for i in sorted(verified))
            view = memoryview(text.encode())
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            os.replace(tmp, self.path)  # replaces whatever is at the journal's name, never follows
        except BaseException:
            os.close(fd)
            raise
        self._jfd = fd  # appends go to the file just renamed, not to whatever the name holds later

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
