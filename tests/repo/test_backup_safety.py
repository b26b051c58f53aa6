"""A backup writes its restore point only while its lock was continuously live and every chunk it
references is in the store with the right size, and dedup never reuses a chunk object that cannot
be valid. On the in-memory store, a local directory and a real SeaweedFS (the listing and its sizes
are the object store's)."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from datetime import timedelta

import pytest

from drctl.repo.backup import backup_disk
from drctl.repo.errors import IntegrityError, RepoLocked
from drctl.repo.locks import LockTiming
from drctl.repo.maintenance import KeepPolicy, check, forget, prune
from drctl.repo.manifest import chunk_key
from drctl.repo.repository import init_repository, open_repository
from drctl.repo.restore import restore_disk
from tests.repo.fakes import AtFinish, LocksUnreachable, MiB, PausableStorage, make_image

PASSWORD = b"backup-safety-password"
STALE = timedelta(seconds=3)
TIMING = LockTiming(stale_after=STALE, refresh_every=timedelta(milliseconds=250))
BACKENDS = pytest.mark.parametrize("storage", ["memory", "local", "seaweed"], indirect=True)


def sha256(path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()


def open_with(storage):
    repo = open_repository(storage, PASSWORD)
    repo.lock_timing = TIMING
    return repo


def in_thread(fn, *args, **kwargs) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        try:
            out["result"] = fn(*args, **kwargs)
        except BaseException as e:
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def first_chunk_id(repo, img) -> bytes:
    with open(img, "rb") as f:
        while block := f.read(MiB):
            if block.strip(b"\0"):
                return repo.chunk_id(block)
    raise AssertionError("the image has no data")


def points(storage) -> list[str]:
    return [o.key for o in storage.list("snapshots/")]


@pytest.fixture
def scene(storage, tmp_path):
    """A repository whose only point (of ``img2``) does not reference the chunks of ``img``, which
    are still in ``data/`` (a forgotten point's): a backup of ``img`` reuses them, a prune deletes
    them."""
    admin = init_repository(storage, PASSWORD, chunk_size=MiB)
    admin.lock_timing = TIMING
    img = make_image(tmp_path / "a.img", 6 * MiB + 1, seed=31)
    img2 = make_image(tmp_path / "b.img", 3 * MiB, seed=32)
    backup_disk(admin, img, server="web", disk="vda")
    backup_disk(admin, img2, server="web", disk="vda")
    forget(admin, KeepPolicy(last=1))
    return admin, img


def assert_consistent_and_usable(admin, img, tmp_path, kept: list[str]) -> None:
    assert points(admin.storage) == kept  # no new point
    assert check(admin, read_data=True).ok
    assert list(admin.storage.list("locks/")) == []
    again = backup_disk(admin, img, server="web", disk="vda")  # the operator's re-run works
    out = tmp_path / "again.img"
    restore_disk(admin, server="web", point=again.point.id, out=out)
    assert sha256(out) == sha256(img)


@BACKENDS
def test_backup_paused_until_its_lock_is_stale_writes_no_point_after_a_prune(scene, storage, tmp_path):
    admin, img = scene
    kept = points(storage)
    frozen = PausableStorage(storage)
    t, out = in_thread(
        backup_disk, open_with(frozen), img, server="web", disk="vda", progress=AtFinish(frozen.pause)
    )
    assert frozen.paused.wait(120)  # every chunk counted as stored; the process stops here
    time.sleep(STALE.total_seconds() + 0.5)
    pruned = prune(admin)  # the backup's lock looks stale: the prune overrides and removes it
    assert pruned.deleted_chunks > 0 and list(storage.list("locks/")) == []
    frozen.resume()
    t.join(120)
    err = out.get("error")
    assert isinstance(err, RepoLocked), out
    assert err.exit_code == 11 and "was lost" in err.message and "no restore point was written" in err.message
    assert_consistent_and_usable(admin, img, tmp_path, kept)


@BACKENDS
def test_backup_paused_while_writing_its_manifest_removes_it_again(scene, storage, tmp_path):
    admin, img = scene
    kept = points(storage)
    frozen = PausableStorage(storage, pause_at=lambda op, key: op == "put" and key.startswith("snapshots/"))
    t, out = in_thread(backup_disk, open_with(frozen), img, server="web", disk="vda")
    assert frozen.paused.wait(120)  # stopped with the manifest write on its way
    time.sleep(STALE.total_seconds() + 0.5)
    assert prune(admin).deleted_chunks > 0
    frozen.resume()  # the manifest lands after the prune deleted its chunks
    t.join(120)
    err = out.get("error")
    assert isinstance(err, RepoLocked) and "while its restore point was written" in err.message, out
    assert_consistent_and_usable(admin, img, tmp_path, kept)


@pytest.mark.parametrize("storage", ["memory", "local"], indirect=True)
def test_lock_not_refreshed_for_the_staleness_window_is_lost_even_if_its_object_stayed(scene, storage):
    admin, img = scene
    kept = points(storage)
    flaky = LocksUnreachable(storage)

    def outage() -> None:
        flaky.down.set()
        time.sleep(STALE.total_seconds() + 0.5)  # refreshes fail; nobody removes the lock
        flaky.down.clear()

    with pytest.raises(RepoLocked, match="not refreshed for") as e:
        backup_disk(open_with(flaky), img, server="web", disk="vda", progress=AtFinish(outage))
    assert e.value.exit_code == 11 and "no restore point was written" in e.value.message
    assert points(storage) == kept and list(storage.list("locks/")) == []


@BACKENDS
@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_chunk_removed_under_a_live_backup_is_found_before_the_manifest(scene, storage, damage, tmp_path):
    admin, img = scene
    kept = points(storage)
    repo = open_with(storage)
    victim = {}

    def remove_a_reused_chunk() -> None:  # another writer, while the backup's lock stays live
        key = chunk_key(first_chunk_id(repo, img))
        victim["key"] = key
        if damage == "deleted":
            storage.delete(key)
        else:
            storage.put(key, storage.get(key)[:20])

    with pytest.raises(IntegrityError) as e:
        backup_disk(repo, img, server="web", disk="vda", progress=AtFinish(remove_a_reused_chunk))
    assert e.value.exit_code == 13 and victim["key"] in e.value.message
    assert "No restore point was written" in e.value.message
    assert points(storage) == kept and list(storage.list("locks/")) == []


# -- dedup checks what it reuses --------------------------------------------------------


@pytest.mark.parametrize("storage", ["memory", "local", "seaweed"], indirect=True)
def test_truncated_and_empty_chunk_objects_are_uploaded_again_not_reused(storage, tmp_path, caplog):
    repo = init_repository(storage, PASSWORD, chunk_size=MiB)
    img = make_image(tmp_path / "d.img", 10 * MiB + 7, seed=41)
    first = backup_disk(repo, img, server="web", disk="vda")
    truncated, empty = sorted(first.point.chunk_ids())[:2]
    blob = storage.get(chunk_key(truncated))
    storage.put(chunk_key(truncated), blob[: len(blob) // 2])
    storage.put(chunk_key(empty), b"")
    with caplog.at_level(logging.WARNING, logger="drctl.repo.backup"):
        second = backup_disk(repo, img, server="web", disk="vda")
    assert second.new_chunks == 2 and second.summary()["repaired_chunks"] == 2
    assert chunk_key(truncated) in caplog.text and chunk_key(empty) in caplog.text
    out = tmp_path / "second.img"
    restore_disk(repo, server="web", point=second.point.id, out=out)
    assert sha256(out) == sha256(img)
    assert check(repo, read_data=True).ok  # the first point, sharing those chunks, is whole again


def test_a_point_records_its_chunks_stored_sizes_and_a_reuse_checks_them_without_repacking(
    storage, tmp_path, monkeypatch
):
    """An unchanged disk's next backup checks each reused chunk against the size the previous point
    recorded (no compression again); a point written without recorded sizes still gets the check
    by packing, so old repositories keep the protection."""
    import drctl.repo.backup as backup_mod

    repo = init_repository(storage, PASSWORD, chunk_size=MiB)
    img = make_image(tmp_path / "d.img", 6 * MiB, seed=43)  # compressible chunks among them
    first = backup_disk(repo, img, server="web", disk="vda")
    listed = {o.key: o.size for o in storage.list("data/")}
    assert first.point.stored_sizes == {c: listed[chunk_key(c)] for c in first.point.chunk_ids()}
    reread = open_with(storage).load_point(first.point.id)
    assert reread.stored_sizes == first.point.stored_sizes  # in the authenticated manifest

    packed: list[int] = []
    real = backup_mod.stored_chunk_fits
    monkeypatch.setattr(
        backup_mod, "stored_chunk_fits", lambda size, data: packed.append(1) or real(size, data)
    )
    second = backup_disk(repo, img, server="db", disk="vda")  # same chunks, another server
    assert second.new_chunks == 0 and packed == []

    victim = sorted(first.point.chunk_ids())[0]
    blob = storage.get(chunk_key(victim))
    storage.put(chunk_key(victim), blob[:-1])  # one byte short: a size no point recorded
    third = backup_disk(repo, img, server="web", disk="vda")
    assert third.new_chunks == 1 and third.summary()["repaired_chunks"] == 1 and packed == []
    assert check(repo, read_data=True).ok
