"""RetryingStorage against a boundary fake that fails N times before answering."""

from __future__ import annotations

import logging
import random

import pytest

from drctl.storage import (
    BucketMissing,
    ObjectInfo,
    ObjectMissing,
    StorageAccessDenied,
    StorageUnavailable,
)
from drctl.storage.base import LockSupport
from drctl.storage.retry import RetryingStorage


class FlakyStore:
    """In-memory store whose next ``failures`` calls raise ``error`` (the network boundary)."""

    def __init__(self, failures: int = 0, error: Exception | None = None) -> None:
        self.objects: dict[str, bytes] = {}
        self.failures = failures
        self.error = error or StorageUnavailable("connection refused by 127.0.0.1:1")
        self.calls = 0

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise self.error

    def describe(self) -> str:
        return "s3://fake"

    def get(self, key, byte_range=None):
        self._maybe_fail()
        if key not in self.objects:
            raise ObjectMissing(key, "s3://fake")
        data = self.objects[key]
        return data if byte_range is None else data[byte_range[0] : byte_range[1]]

    def put(self, key, data, *, retain_until=None):
        self._maybe_fail()
        self.objects[key] = data

    def exists(self, key):
        self._maybe_fail()
        return key in self.objects

    def list(self, prefix=""):
        self._maybe_fail()
        return iter([ObjectInfo(k, len(v)) for k, v in sorted(self.objects.items()) if k.startswith(prefix)])

    def delete(self, key):
        self._maybe_fail()
        self.objects.pop(key, None)

    def lock_support(self):
        self._maybe_fail()
        return LockSupport(False, "fake")


def retrying(inner, sleeps, **kw):
    return RetryingStorage(inner, sleep=sleeps.append, rng=random.Random(0), **kw)


def test_transient_failures_are_retried_until_success():
    inner = FlakyStore(failures=3)
    inner.objects["config"] = b"cfg"
    sleeps: list[float] = []
    assert retrying(inner, sleeps, attempts=5).get("config") == b"cfg"
    assert inner.calls == 4
    assert len(sleeps) == 3


def test_backoff_grows_exponentially_with_jitter_inside_the_cap():
    inner = FlakyStore(failures=5)
    sleeps: list[float] = []
    retrying(inner, sleeps, attempts=6, base_delay=0.1, max_delay=0.5, budget_seconds=100).put("k", b"v")
    # Retry n waits within [cap/2, cap] with cap = min(0.5, 0.1 * 2**n): 0.1, 0.2, 0.4, 0.5, 0.5.
    caps = [0.1, 0.2, 0.4, 0.5, 0.5]
    assert len(sleeps) == 5
    for delay, cap in zip(sleeps, caps, strict=False):
        assert cap / 2 <= delay <= cap
    assert inner.objects == {"k": b"v"}


def test_gives_up_after_the_attempts_and_says_so():
    inner = FlakyStore(failures=100)
    sleeps: list[float] = []
    with pytest.raises(StorageUnavailable) as exc:
        retrying(inner, sleeps, attempts=4, budget_seconds=100).get("data/ab/cd")
    assert inner.calls == 4
    assert len(sleeps) == 3
    assert "127.0.0.1:1" in exc.value.message and "4 tries" in exc.value.message


def test_the_time_budget_stops_retries_before_the_attempts_run_out():
    inner = FlakyStore(failures=100)
    sleeps: list[float] = []
    with pytest.raises(StorageUnavailable):
        retrying(inner, sleeps, attempts=50, base_delay=1.0, max_delay=1.0, budget_seconds=2.5).exists("x")
    assert sum(sleeps) <= 2.5
    assert inner.calls == len(sleeps) + 1 < 50


@pytest.mark.parametrize(
    "error",
    [
        StorageAccessDenied("s3://fake refused access (InvalidAccessKeyId)"),
        ObjectMissing("data/00/x", "s3://fake"),
        BucketMissing("bucket 'fake' does not exist"),
    ],
    ids=["access-denied", "object-missing", "bucket-missing"],
)
def test_answers_are_never_retried(error):
    inner = FlakyStore(failures=1, error=error)
    sleeps: list[float] = []
    with pytest.raises(type(error)) as exc:
        retrying(inner, sleeps).get("data/00/x")
    assert exc.value is error
    assert inner.calls == 1 and sleeps == []


def test_each_retry_is_logged_at_info_with_the_key(caplog):
    inner = FlakyStore(failures=2)
    inner.objects["keys/abc"] = b"k"
    with caplog.at_level(logging.INFO, logger="drctl.storage.retry"):
        retrying(inner, []).get("keys/abc")
    retries = [r for r in caplog.records if r.name == "drctl.storage.retry"]
    assert len(retries) == 2
    assert all(r.levelno == logging.INFO and "keys/abc" in r.getMessage() for r in retries)


def test_a_listing_that_fails_is_retried_as_a_whole():
    inner = FlakyStore()
    for k in ("b", "a", "c"):
        inner.put(k, b"1")
    inner.failures = 1
    assert [o.key for o in retrying(inner, []).list()] == ["a", "b", "c"]


def test_delete_many_falls_back_to_single_deletes():
    inner = FlakyStore()
    for k in ("a", "b", "c"):
        inner.put(k, b"1")
    retrying(inner, []).delete_many(["a", "c", "zz"])
    assert sorted(inner.objects) == ["b"]
