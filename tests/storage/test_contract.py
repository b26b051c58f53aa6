"""One contract for every storage backend: local directory, SeaweedFS and Swift (s3api).

Every test here runs three times through the ``storage`` fixture (tests/conftest.py). The
S3 servers are real processes on 127.0.0.1; a missing server fails the test (see conftest).
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from drctl.storage import ObjectMissing

pytestmark = pytest.mark.integration


def test_put_then_get_returns_the_same_bytes(storage):
    payload = bytes(range(256)) * 3
    storage.put("config", payload)
    assert storage.get("config") == payload
    assert storage.exists("config")


def test_ranged_get_returns_exactly_the_half_open_range(storage):
    payload = bytes(random.Random(1).getrandbits(8) for _ in range(10_000))
    storage.put("data/00/chunk", payload)
    for start, end in [(0, 1), (0, 10_000), (4096, 8192), (9_999, 10_000), (1234, 1234)]:
        assert storage.get("data/00/chunk", (start, end)) == payload[start:end], (start, end)


def test_missing_object_raises_object_missing_naming_the_key(storage):
    assert not storage.exists("data/ff/nothing")
    with pytest.raises(ObjectMissing) as exc:
        storage.get("data/ff/nothing")
    assert exc.value.key == "data/ff/nothing"
    assert "data/ff/nothing" in exc.value.message


def test_put_takes_a_view_of_a_buffer_the_caller_then_reuses(storage):
    buf = bytearray(os.urandom(70_000))
    first = bytes(buf[:50_000])
    storage.put("data/00/first", memoryview(buf)[:50_000])
    buf[:] = b"\x00" * len(buf)  # the backup seals its next chunk into the same buffer
    assert storage.get("data/00/first") == first


def test_get_into_reads_into_the_callers_buffer_when_the_object_fits(storage):
    payload = os.urandom(300_001)
    storage.put("data/00/chunk", payload)
    buf = memoryview(bytearray(b"\xaa" * 400_000))  # what an earlier object left there
    got = storage.get_into("data/00/chunk", buf)
    assert bytes(got) == payload
    buf[:8] = b"reused!!"  # the object is in the caller's buffer, not in a copy of its own
    assert bytes(got[:8]) == b"reused!!"
    small = memoryview(bytearray(1000))  # too small: the whole object anyway, in a buffer of its own
    assert bytes(storage.get_into("data/00/chunk", small)) == payload
    storage.put("data/00/empty", b"")
    assert bytes(storage.get_into("data/00/empty", buf)) == b""
    with pytest.raises(ObjectMissing) as exc:
        storage.get_into("data/ff/nothing", buf)
    assert exc.value.key == "data/ff/nothing"


def test_list_is_in_key_order_and_filters_by_prefix(storage):
    # Inserted shuffled; S3 orders keys by their UTF-8 bytes: "." (0x2e) < "/" (0x2f) < "0" (0x30).
    # (No key is also a "directory" of another: a local directory cannot hold "a" and "a/b".)
    keys = ["a.b", "a/b", "a/c/d", "a0", "b", "data/ab/1", "data/ab/2", "data/ac/1", "keys/x"]
    shuffled = keys[:]
    random.Random(7).shuffle(shuffled)
    for i, k in enumerate(shuffled):
        storage.put(k, b"x" * (i + 1))
    listed = list(storage.list())
    assert [o.key for o in listed] == keys
    assert {o.key: o.size for o in listed} == {k: shuffled.index(k) + 1 for k in keys}
    assert [o.key for o in storage.list("data/ab")] == ["data/ab/1", "data/ab/2"]
    assert [o.key for o in storage.list("data/")] == ["data/ab/1", "data/ab/2", "data/ac/1"]
    assert [o.key for o in storage.list("a/")] == ["a/b", "a/c/d"]
    assert list(storage.list("zzz/")) == []


def test_delete_removes_and_deleting_a_missing_object_is_fine(storage):
    storage.put("snapshots/1", b"one")
    storage.put("snapshots/2", b"two")
    storage.delete("snapshots/1")
    storage.delete("snapshots/1")
    storage.delete("never/existed")
    assert not storage.exists("snapshots/1")
    with pytest.raises(ObjectMissing):
        storage.get("snapshots/1")
    assert [o.key for o in storage.list("snapshots/")] == ["snapshots/2"]


def test_delete_many_removes_every_key_given(storage):
    for i in range(30):
        storage.put(f"data/{i:02d}", b"d")
    storage.delete_many([f"data/{i:02d}" for i in range(0, 30, 2)] + ["data/missing"])
    assert [o.key for o in storage.list("data/")] == [f"data/{i:02d}" for i in range(1, 30, 2)]


def test_overwrite_is_atomic_for_concurrent_readers(storage):
    """Readers see the whole old object or the whole new one, never a mix or a prefix."""
    old, new = b"A" * (1 << 20), b"B" * (3 << 19)
    storage.put("index/latest", old)
    stop = threading.Event()
    seen: list[tuple[int, set[int]]] = []

    def read_loop() -> None:
        while not stop.is_set():
            data = storage.get("index/latest")
            seen.append((len(data), set(data)))

    readers = [threading.Thread(target=read_loop) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        for i in range(6):
            storage.put("index/latest", new if i % 2 == 0 else old)
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert seen, "readers never completed a read"
    for length, byteset in seen:
        assert (length, byteset) in ((len(old), {ord("A")}), (len(new), {ord("B")})), (length, byteset)
    assert storage.get("index/latest") == old  # last write (i == 5) wins


def test_large_object_round_trips_and_ranges(storage):
    payload = os.urandom(20 * 1024 * 1024 + 123)  # 20 MiB and not a round size
    storage.put("data/big", payload)
    got = storage.get("data/big")
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    mid = 11 * 1024 * 1024
    assert storage.get("data/big", (mid, mid + 4 * 1024 * 1024)) == payload[mid : mid + 4 * 1024 * 1024]
    assert [(o.key, o.size) for o in storage.list("data/")] == [("data/big", len(payload))]


def test_concurrent_puts_all_land(storage):
    blobs = {f"data/{i:02x}/{i}": os.urandom(1000 + i) for i in range(48)}
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda kv: storage.put(*kv), blobs.items()))
    assert {o.key: o.size for o in storage.list("data/")} == {k: len(v) for k, v in blobs.items()}
    with ThreadPoolExecutor(max_workers=16) as pool:
        got = dict(zip(blobs, pool.map(storage.get, blobs), strict=False))
    assert got == blobs


def test_lock_support_is_read_back_not_assumed(storage, storage_kind):
    """SeaweedFS with an Object Lock bucket enforces retention; Swift's s3api returns 200 and
    ignores it; a local directory has no lock at all."""
    support = storage.lock_support()
    assert support.enforced is (storage_kind == "seaweed"), support.detail
    assert support.detail
    if not support.enforced:
        assert "not" in support.detail.lower()
    # The probe leaves nothing visible behind in the repository's listing.
    assert list(storage.list()) == []


def test_put_if_absent_creates_once_and_never_overwrites(storage):
    assert storage.put_if_absent("locks/activation.json", b"first") is True
    assert storage.put_if_absent("locks/activation.json", b"second") is False
    assert storage.get("locks/activation.json") == b"first"
    storage.delete("locks/activation.json")
    assert storage.put_if_absent("locks/activation.json", b"third") is True
    assert storage.get("locks/activation.json") == b"third"
    # No probe, claim or temporary object is left in the listing.
    assert [o.key for o in storage.list()] == ["locks/activation.json"]


def test_put_if_absent_has_exactly_one_winner_among_concurrent_writers(storage):
    writers = 6
    for round_ in range(3):
        key = f"locks/race-{round_}"
        gate = threading.Barrier(writers)

        def write(i: int, key: str = key, gate: threading.Barrier = gate) -> bool:
            gate.wait()
            return storage.put_if_absent(key, f"writer {i}".encode())

        with ThreadPoolExecutor(max_workers=writers) as pool:
            won = list(pool.map(write, range(writers)))
        assert won.count(True) == 1, won
        assert storage.get(key) == f"writer {won.index(True)}".encode()
    assert [o.key for o in storage.list("locks/")] == [f"locks/race-{i}" for i in range(3)]
