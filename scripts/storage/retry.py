"""Retry with exponential backoff and jitter, stacked over any Storage (restic's RetryBackend).

Only :class:`StorageUnavailable` is retried (network, timeouts, 5xx, throttling). Access denied,
missing objects and buckets are answers, not blips: they pass through at once. Integrity is
checked above the storage layer, so it never reaches here.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import TypeVar

from drctl.storage.base import LockSupport, ObjectInfo, Storage, StorageUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_ATTEMPTS = 6
DEFAULT_BUDGET_SECONDS = 30.0
DEFAULT_BASE_DELAY = 0.25
DEFAULT_MAX_DELAY = 8.0


class RetryingStorage:
    """Wraps ``inner``; retries a call that raised StorageUnavailable.

    ``attempts`` is the total number of tries per call; ``budget_seconds`` caps the time spent
    sleeping between them (whichever is reached first ends the retries, and the last error is
    raised with a note of how many tries were made). ``sleep`` and ``rng`` are test seams.
    """

    def __init__(
        self,
        inner: Storage,
        *,
        attempts: int = DEFAULT_ATTEMPTS,
        budget_seconds: float = DEFAULT_BUDGET_SECONDS,
        base_delay: float = DEFAULT_BASE_DELAY,
        max_delay: float = DEFAULT_MAX_DELAY,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        self.inner = inner
        self.attempts = attempts
        self.budget_seconds = budget_seconds
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self._rng = rng or random.Random()

    def describe(self) -> str:
        return self.inner.describe()

    def _delay(self, attempt: int) -> float:
        """Equal jitter: uniform in [cap/2, cap], cap = min(max_delay, base_delay * 2**attempt)."""
        cap = min(self.max_delay, self.base_delay * (2**attempt))
        return self._rng.uniform(cap / 2, cap)

    def _call(self, what: str, key: str, fn: Callable[[], T]) -> T:
        slept = 0.0
        for attempt in range(self.attempts):
            try:
                return fn()
            except StorageUnavailable as e:
                tries = attempt + 1
                delay = self._delay(attempt)
                if tries >= self.attempts or slept + delay > self.budget_seconds:
                    raise StorageUnavailable(
                        f"{e.message} (gave up after {tries} tries in {slept:.1f}s)"
                    ) from e
                log.info(
                    "%s %s on %s failed (%s); retry %d/%d in %.2fs",
                    what,
                    key,
                    self.inner.describe(),
                    e.message,
                    tries,
                    self.attempts - 1,
                    delay,
                )
                self._sleep(delay)
                slept += delay
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, key: str, byte_range: tuple[int, int] | None = None) -> bytes | bytearray:
        return self._call("get", key, lambda: self.inner.get(key, byte_range))

    def get_into(self, key: str, buf: memoryview) -> memoryview:
        return self._call("get", key, lambda: self.inner.get_into(key, buf))

    def put(
        self, key: str, data: bytes | bytearray | memoryview, *, retain_until: datetime | None = None
    ) -> None:
        self._call("put", key, lambda: self.inner.put(key, data, retain_until=retain_until))

    def put_if_absent(self, key: str, data: bytes) -> bool:
        return self._call("create", key, lambda: self.inner.put_if_absent(key, data))

    def exists(self, key: str) -> bool:
        return self._call("exists", key, lambda: self.inner.exists(key))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Materialised so a failure half-way through a listing is retried as a whole.
        items = self._call("list", prefix or "(all)", lambda: list(self.inner.list(prefix)))
        return iter(items)

    def delete(self, key: str) -> None:
        self._call("delete", key, lambda: self.inner.delete(key))

    def delete_many(self, keys: Sequence[str]) -> None:
        """Bulk delete where the backend has it (S3 DeleteObjects), else one by one."""
        bulk = getattr(self.inner, "delete_many", None)
        if bulk is None:
            for key in keys:
                self.delete(key)
            return
        self._call("delete", f"{len(keys)} objects", lambda: bulk(keys))

    def create(self, *, object_lock: bool = False) -> None:
        """Create the bucket / directory (``drctl repo init``)."""
        self._call("create", self.inner.describe(), lambda: self.inner.create(object_lock=object_lock))

    def lock_support(self) -> LockSupport:
        return self._call("lock probe", "", self.inner.lock_support)

    def extend_retention(self, key: str, until: datetime) -> None:
        self._call("extend retention of", key, lambda: self.inner.extend_retention(key, until))
