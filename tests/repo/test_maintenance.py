"""check, forget, prune, locks and key slots against the in-memory store."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from drctl.errors import InvalidInput
from drctl.repo.backup import backup_disk
from drctl.repo.errors import KeyFileCorrupt, ManifestCorrupt, RepoLocked, WrongPassword
from drctl.repo.locks import RepoLock, remove_locks
from drctl.repo.maintenance import KeepPolicy, check, forget, prune
from drctl.repo.manifest import chunk_key, point_key
from drctl.repo.repository import CONFIG_KEY, init_repository, open_repository
from drctl.repo.restore import restore_disk
from drctl.storage.memory import MemoryStorage
from tests.repo.fakes import MiB, make_image, mutate


@pytest.fixture
def repo():
    return init_repository(MemoryStorage(), b"client-password-1", chunk_size=MiB)


def test_forget_then_prune_frees_only_unreferenced_chunks(repo, tmp_path):
    img = make_image(tmp_path / "a.img", 12 * MiB + 5, seed=11)
    first = backup_disk(repo, img, server="web", disk="vda")
    mutate(img, 0.3)
    second = backup_disk(repo, img, server="web", disk="vda")
    only_first = first.point.chunk_ids() - second.point.chunk_ids()
    assert only_first  # the change replaced some chunks
    kept, removed = forget(repo, KeepPolicy(last=1), dry_run=True)
    assert [p.id for p in removed] == [first.point.id] and repo.storage.exists(point_key(first.point.id))
    forget(repo, KeepPolicy(last=1))
    assert not repo.storage.exists(point_key(first.point.id))
    dry = prune(repo, dry_run=True)
    assert dry.deleted_chunks == len(only_first) and all(
        repo.storage.exists(chunk_key(c)) for c in only_first
    )
    done = prune(repo)
    assert done.deleted_chunks == len(only_first)
    assert not any(repo.storage.exists(chunk_key(c)) for c in only_first)
    assert all(repo.storage.exists(chunk_key(c)) for c in second.point.chunk_ids())
    out = tmp_path / "out.img"
    restore_disk(repo, server="web", out=out)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(img.read_bytes()).hexdigest()


def test_prune_deletes_nothing_when_a_manifest_is_unreadable(repo, tmp_path):
    img = make_image(tmp_path / "a.img", 6 * MiB, seed=2)
    res = backup_disk(repo, img, server="web", disk="vda")
    repo.storage.put("data/ff/" + "f" * 64, b"orphan")
    blob = bytearray(repo.storage.get(point_key(res.point.id)))
    blob[-1] ^= 1
    repo.storage.put(point_key(res.point.id), bytes(blob))
    before = set(repo.storage.objects)
    with pytest.raises(ManifestCorrupt):
        prune(repo)
    assert set(repo.storage.objects) == before


def test_check_finds_missing_and_tampered_chunks_naming_the_point(repo, tmp_path):
    img = make_image(tmp_path / "a.img", 8 * MiB + 1, seed=5)
    res = backup_disk(repo, img, server="web", disk="vda")
    assert check(repo, read_data=True).ok
    ids = sorted(res.point.chunk_ids())
    repo.storage.delete(chunk_key(ids[0]))
    blob = bytearray(repo.storage.get(chunk_key(ids[1])))
    blob[20] ^= 1
    repo.storage.put(chunk_key(ids[1]), bytes(blob))
    structural = check(repo)
    assert len(structural.problems) == 1 and ids[0].hex() in structural.problems[0]
    assert res.point.id in structural.problems[0]
    full = check(repo, read_data=True)
    assert len(full.problems) == 2 and ids[1].hex() in full.problems[1]


def test_shared_locks_coexist_and_exclusive_is_refused_with_exit_11(repo, tmp_path):
    img = make_image(tmp_path / "a.img", 2 * MiB, seed=1)
    with RepoLock(repo.storage, exclusive=False, operation="restore"):
        backup_disk(repo, img, server="web", disk="vda")  # shared + shared
        with pytest.raises(RepoLocked) as e:
            prune(repo)
        assert e.value.exit_code == 11 and "restore" in e.value.message
    with RepoLock(repo.storage, exclusive=True, operation="prune"), pytest.raises(RepoLocked, match="prune"):
        backup_disk(repo, img, server="web", disk="vda")
    assert list(repo.storage.list("locks/")) == []


def test_stale_lock_is_ignored_removed_by_the_prune_that_overrides_it_and_by_unlock(repo):
    old = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    dead = json.dumps(
        {
            "exclusive": True,
            "operation": "prune",
            "hostname": "h",
            "pid": 1,
            "created": old,
            "refreshed": old,
        }
    ).encode()
    repo.storage.put("locks/dead", dead)
    assert prune(repo).deleted_chunks == 0  # not blocked by the stale lock
    assert list(repo.storage.list("locks/")) == []  # and it removed what it overrode
    repo.storage.put("locks/dead", dead)
    with RepoLock(repo.storage, exclusive=False, operation="restore"):  # ignored, and left, by a shared lock
        assert repo.storage.exists("locks/dead")
    assert [lk.key for lk in remove_locks(repo.storage)] == ["locks/dead"]


def test_key_slots_add_passwd_remove(repo):
    storage = repo.storage
    escrow = repo.add_key(b"escrow-password-1", "escrow")
    assert open_repository(storage, b"escrow-password-1").keys == repo.keys
    new_id = repo.change_password(b"client-password-2")
    with pytest.raises(WrongPassword):
        open_repository(storage, b"client-password-1")
    assert open_repository(storage, b"client-password-2").key_id == new_id
    assert sorted(k.label for k in repo.list_keys()) == ["client", "escrow"]
    with pytest.raises(InvalidInput, match="the one this password opened"):
        repo.remove_key(new_id)
    repo.remove_key(escrow[:8])
    with pytest.raises(WrongPassword):
        open_repository(storage, b"escrow-password-1")
    with pytest.raises(InvalidInput, match="last key"):
        repo.remove_key(new_id)


def test_tampered_config_is_refused(repo):
    doc = json.loads(repo.storage.get(CONFIG_KEY))
    doc["chunk_size"] = 2 * MiB
    repo.storage.put(CONFIG_KEY, json.dumps(doc).encode())
    with pytest.raises(KeyFileCorrupt, match="fails its MAC"):
        open_repository(repo.storage, b"client-password-1")
