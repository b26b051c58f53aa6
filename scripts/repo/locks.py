"""Repository locks (``locks/<lock-id>``; docs/repository-format.md §2.5): shared for backup and
restore, exclusive for forget and prune; stale when not refreshed for ``stale_after``."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType

from drctl.repo.errors import RepoLocked
from drctl.storage.base import ObjectMissing, Storage

log = logging.getLogger(__name__)

LOCKS_PREFIX = "locks/"
STALE_AFTER = timedelta(minutes=30)
REFRESH_EVERY_S = 300.0


@dataclass(frozen=True)
class LockInfo:
    key: str
    exclusive: bool
    operation: str
    hostname: str
    pid: int
    refreshed: datetime

    def stale(self, now: datetime, stale_after: timedelta = STALE_AFTER) -> bool:
        return now - self.refreshed > stale_after

    def describe(self) -> str:
        kind = "exclusive" if self.exclusive else "shared"
        return (
            f"{kind} lock {self.key!r} held by {self.operation} (pid {self.pid} on "
            f"{self.hostname}, refreshed {self.refreshed.isoformat(timespec='seconds')})"
        )


def _now() -> datetime:
    return datetime.now(UTC)


def read_locks(storage: Storage) -> list[LockInfo]:
    """Every lock object; unreadable ones are treated as live exclusive locks (safe side)."""
    out = []
    for obj in storage.list(LOCKS_PREFIX):
        try:
            doc = json.loads(storage.get(obj.key))
            out.append(
                LockInfo(
                    obj.key,
                    bool(doc["exclusive"]),
                    str(doc["operation"]),
                    str(doc["hostname"]),
                    int(doc["pid"]),
                    datetime.fromisoformat(doc["refreshed"]),
                )
            )
        except ObjectMissing:
            continue  # released while we listed
        except (ValueError, KeyError, TypeError) as e:
            log.warning("lock %s is unreadable (%s); treating it as held", obj.key, e)
            out.append(LockInfo(obj.key, True, "unknown", "?", 0, _now()))
    return out


class RepoLock:
    """Context manager holding one lock object, refreshed by a daemon thread."""

    def __init__(
        self,
        storage: Storage,
        *,
        exclusive: bool,
        operation: str,
        stale_after: timedelta = STALE_AFTER,
        refresh_every_s: float = REFRESH_EVERY_S,
    ) -> None:
        self.storage = storage
        self.exclusive = exclusive
        self.operation = operation
        self.stale_after = stale_after
        self.refresh_every_s = refresh_every_s
        self.key = LOCKS_PREFIX + os.urandom(16).hex()
        self.created = _now()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self) -> None:
        doc = {
            "exclusive": self.exclusive,
            "operation": self.operation,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "created": self.created.isoformat(),
            "refreshed": _now().isoformat(),
        }
        self.storage.put(self.key, json.dumps(doc).encode())

    def _conflicts(self) -> list[LockInfo]:
        now = _now()
        return [
            lk
            for lk in read_locks(self.storage)
            if lk.key != self.key and not lk.stale(now, self.stale_after) and (self.exclusive or lk.exclusive)
        ]

    def _refused(self, conflicts: list[LockInfo]) -> RepoLocked:
        return RepoLocked(
            f"repository {self.storage.describe()} is locked: {conflicts[0].describe()}. Wait for it "
            f"to finish; if that process is gone, the lock goes stale after "
            f"{int(self.stale_after.total_seconds() // 60)} min, or remove it with `drctl unlock REPO`"
        )

    def acquire(self) -> None:
        conflicts = self._conflicts()
        if conflicts:
            raise self._refused(conflicts)
        self._write()
        conflicts = self._conflicts()  # someone may have raced us between list and write
        if conflicts:
            self.storage.delete(self.key)
            raise self._refused(conflicts)
        self._thread = threading.Thread(target=self._refresh_loop, name="repo-lock-refresh", daemon=True)
        self._thread.start()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.refresh_every_s):
            try:
                self._write()
            except Exception as e:
                log.warning("could not refresh lock %s: %s", self.key, e)

    def still_held(self) -> bool:
        return self.storage.exists(self.key)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.storage.delete(self.key)

    def __enter__(self) -> RepoLock:
        self.acquire()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.release()
        except Exception as e:
            if et is None:
                raise
            log.warning("could not remove lock %s: %s", self.key, e)


def remove_locks(
    storage: Storage, *, all_locks: bool = False, stale_after: timedelta = STALE_AFTER
) -> list[str]:
    """``drctl unlock``: remove stale locks (or every lock); the removed keys."""
    now = _now()
    removed = []
    for lk in read_locks(storage):
        if all_locks or lk.stale(now, stale_after):
            storage.delete(lk.key)
            removed.append(lk.key)
    return removed
