"""Repository locks (``locks/<lock-id>``; docs/repository-format.md §2.5): shared for backup and
restore, exclusive for forget and prune; stale when not refreshed for ``stale_after``.

A holder trusts its lock only while it was *continuously* live: the refresh thread never re-creates a
lock object that has gone, and a refresh that comes later than ``LockTiming.trusted_for`` after the
previous one (the process was stopped, the store unreachable) loses the lock for good, because
another process may have judged it stale meanwhile. Exclusive lockers delete the stale locks they
override, so a holder that wakes up finds its lock gone."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType

from drctl.errors import DrctlError
from drctl.input_files import loads_json
from drctl.repo.errors import LockLost, RepoLocked
from drctl.storage.base import ObjectMissing, Storage

log = logging.getLogger(__name__)

LOCKS_PREFIX = "locks/"
STALE_AFTER = timedelta(minutes=30)
REFRESH_EVERY = timedelta(minutes=5)


@dataclass(frozen=True)
class LockTiming:
    """How often a lock is refreshed and when others may consider it stale. Its holder trusts it
    only ``trusted_for`` (5/6 of ``stale_after``) after a refresh: the rest of the window is the
    allowance for clock skew between the hosts sharing the repository."""

    stale_after: timedelta = STALE_AFTER
    refresh_every: timedelta = REFRESH_EVERY

    @property
    def trusted_for(self) -> timedelta:
        return self.stale_after * 5 / 6


DEFAULT_LOCK_TIMING = LockTiming()


@dataclass(frozen=True)
class LockInfo:
    key: str
    exclusive: bool
    operation: str
    hostname: str
    pid: int
    refreshed: datetime
    problem: str | None = None  # why the lock object is malformed (then it counts as exclusive)

    def stale(self, now: datetime, stale_after: timedelta = STALE_AFTER) -> bool:
        return self.problem is None and now - self.refreshed > stale_after

    def describe(self) -> str:
        if self.problem is not None:
            return (
                f"lock {self.key!r} is malformed ({self.problem}), so it counts as an exclusive lock; "
                f"no drctl writes such a lock: remove it with `drctl unlock REPO`"
            )
        kind = "exclusive" if self.exclusive else "shared"
        return (
            f"{kind} lock {self.key!r} held by {self.operation} (pid {self.pid} on "
            f"{self.hostname}, refreshed {self.refreshed.isoformat(timespec='seconds')})"
        )


def _now() -> datetime:
    return datetime.now(UTC)


def parse_lock(
    key: str, raw: bytes | bytearray, now: datetime, stale_after: timedelta = STALE_AFTER
) -> LockInfo:
    """The lock in ``raw``. A body that is not a drctl lock (not JSON, a field missing or of the
    wrong type, a time without zone, refreshed further in the future than ``stale_after``) gives
    a LockInfo with a ``problem``: it counts as held, and ``drctl unlock`` removes it."""
    try:
        doc = loads_json(raw)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        exclusive, stamp = doc["exclusive"], doc["refreshed"]
        if not isinstance(exclusive, bool) or not isinstance(stamp, str):
            raise ValueError("'exclusive' or 'refreshed' has the wrong type")
        refreshed = datetime.fromisoformat(stamp)
        if refreshed.tzinfo is None:
            raise ValueError(f"time {stamp!r} has no time zone")
        if refreshed - now > stale_after:
            raise ValueError(f"refreshed {stamp!r} is in the future: the clock of its host is wrong")
        return LockInfo(
            key, exclusive, str(doc["operation"]), str(doc["hostname"]), int(doc["pid"]), refreshed
        )
    except (ValueError, KeyError, TypeError) as e:
        problem = str(e) if not isinstance(e, KeyError) else f"no field {e}"
        return LockInfo(key, True, "unknown", "?", 0, now, problem=problem)


def read_locks(storage: Storage, stale_after: timedelta = STALE_AFTER) -> list[LockInfo]:
    """Every lock object; malformed ones carry their ``problem`` and count as held."""
    out = []
    now = _now()
    for obj in storage.list(LOCKS_PREFIX):
        try:
            raw = storage.get(obj.key)
        except ObjectMissing:
            continue  # released while we listed
        out.append(parse_lock(obj.key, raw, now, stale_after))
    return out


class RepoLock:
    """Context manager holding one lock object, refreshed by a daemon thread."""

    def __init__(
        self,
        storage: Storage,
        *,
        exclusive: bool,
        operation: str,
        timing: LockTiming = DEFAULT_LOCK_TIMING,
    ) -> None:
        self.storage = storage
        self.exclusive = exclusive
        self.operation = operation
        self.timing = timing
        self.key = LOCKS_PREFIX + os.urandom(16).hex()
        self.created = _now()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()  # one refresh or liveness check at a time
        self._stamp = self.created  # the "refreshed" time of our last successful write
        self._stamp_mono = time.monotonic()
        self._lost: str | None = None

    def _write(self, stamp: datetime) -> None:
        doc = {
            "exclusive": self.exclusive,
            "operation": self.operation,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "created": self.created.isoformat(),
            "refreshed": stamp.isoformat(),
        }
        self.storage.put(self.key, json.dumps(doc).encode())

    def _survey(self) -> tuple[list[LockInfo], list[LockInfo]]:
        """(live locks that conflict with ours, stale locks of others)."""
        now = _now()
        conflicts, stale = [], []
        for lk in read_locks(self.storage, self.timing.stale_after):
            if lk.key == self.key:
                continue
            if lk.stale(now, self.timing.stale_after):
                stale.append(lk)
            elif self.exclusive or lk.exclusive:
                conflicts.append(lk)
        return conflicts, stale

    def _refused(self, conflicts: list[LockInfo]) -> RepoLocked:
        if conflicts[0].problem is not None:
            return RepoLocked(f"repository {self.storage.describe()} is locked: {conflicts[0].describe()}")
        minutes = int(self.timing.stale_after.total_seconds() // 60)
        return RepoLocked(
            f"repository {self.storage.describe()} is locked: {conflicts[0].describe()}. Wait for it "
            f"to finish; if that process is gone, the lock goes stale after {minutes} min, or remove "
            f"it with `drctl unlock REPO`"
        )

    def acquire(self) -> None:
        conflicts, _ = self._survey()
        if conflicts:
            raise self._refused(conflicts)
        self._stamp, self._stamp_mono = _now(), time.monotonic()
        self._write(self._stamp)
        conflicts, stale = self._survey()  # someone may have raced us between list and write
        if conflicts:
            self.storage.delete(self.key)
            raise self._refused(conflicts)
        if self.exclusive:
            # Overriding a stale lock means its holder must never trust it again: remove it, so
            # that a holder which was only paused finds it gone when it resumes.
            for lk in stale:
                self.storage.delete(lk.key)
                log.warning("removed stale %s", lk.describe())
        self._thread = threading.Thread(target=self._refresh_loop, name="repo-lock-refresh", daemon=True)
        self._thread.start()

    def _gap(self) -> timedelta:
        """Time since our last successful refresh, by the wall clock (what others compare with)
        and by the monotonic clock (immune to clock steps): the larger."""
        mono = timedelta(seconds=time.monotonic() - self._stamp_mono)
        return max(_now() - self._stamp, mono)

    def _lose(self, why: str) -> None:
        self._lost = why
        self._stop.set()
        log.warning("lost lock %s of %s on %s: %s", self.key, self.operation, self.storage.describe(), why)

    def refresh(self) -> bool:
        """Rewrite our lock with a new time, unless it has gone; False once the lock is lost."""
        with self._guard:
            if self._lost is not None:
                return False
            try:
                if not self.storage.exists(self.key):
                    self._lose("its lock object was removed (judged stale, or `drctl unlock`)")
                    return False
                stamp, mono = _now(), time.monotonic()
                self._write(stamp)
            except DrctlError as e:
                log.warning("could not refresh lock %s: %s", self.key, e.message)
                return True  # tried again later; the gap keeps growing meanwhile
            gap = self._gap()
            if gap > self.timing.trusted_for:
                # Another process may have judged it stale (and removed it) before this write.
                self._lose(f"it was not refreshed for {gap.total_seconds():.0f} s")
                try:
                    self.storage.delete(self.key)
                except DrctlError:
                    pass
                return False
            self._stamp, self._stamp_mono = stamp, mono
            return True

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.timing.refresh_every.total_seconds()):
            if not self.refresh():
                return

    def ensure_live(self) -> None:
        """Raise LockLost unless our lock has been continuously live up to now: never lost, its
        object still there, and the last refresh recent enough that nobody can judge it stale."""
        with self._guard:
            if self._lost is None and not self.storage.exists(self.key):
                self._lose("its lock object was removed (judged stale, or `drctl unlock`)")
            if self._lost is None and self._gap() > self.timing.trusted_for:
                self._lose(f"it was not refreshed for {self._gap().total_seconds():.0f} s")
            if self._lost is not None:
                raise LockLost(
                    f"the {self.operation} lock {self.key!r} on {self.storage.describe()} was lost: "
                    f"{self._lost}"
                )

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
) -> list[LockInfo]:
    """``drctl unlock``: remove stale and malformed locks (or every lock); the removed ones."""
    now = _now()
    removed = []
    for lk in read_locks(storage, stale_after):
        if all_locks or lk.problem is not None or lk.stale(now, stale_after):
            storage.delete(lk.key)
            removed.append(lk)
    return removed
