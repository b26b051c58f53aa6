"""A damaged or planted key slot does not stop the repository from opening: KDF parameters are
bounded before any KDF runs, bad slots are skipped with a warning, the newest slot is tried first,
and ``key list`` / ``key remove`` work with a damaged slot present."""

from __future__ import annotations

import json
import logging
import time

import pytest

from drctl.repo.crypto import KdfParams
from drctl.repo.keys import new_key_id, seal_slot, slot_key
from drctl.repo.maintenance import check
from drctl.repo.repository import init_repository, open_repository
from drctl.storage.local import LocalDirStorage
from drctl.storage.memory import MemoryStorage
from tests.repo.fakes import MiB
from tests.repo.test_cli import drctl, no_traceback
from tests.support.events import result_of

PW = b"damaged-key-slots-password"


@pytest.fixture(params=["memory", "localdir"])
def repo(request, tmp_path):
    storage = MemoryStorage() if request.param == "memory" else LocalDirStorage(tmp_path / "repo")
    if request.param == "localdir":
        storage.create()
    return init_repository(storage, PW, chunk_size=MiB)


def plant_slot(repo, kdf: dict, key_id: str | None = None) -> str:
    """A slot with the given KDF parameters (as a writer of the bucket could plant)."""
    key_id = key_id or new_key_id()
    doc = json.loads(
        seal_slot(repo.repo_id, key_id, repo.keys, b"planted-password", "planted", KdfParams(2**10, 8, 1))
    )
    doc["kdf"].update(kdf)
    repo.storage.put(slot_key(key_id), json.dumps(doc).encode())
    return key_id


@pytest.mark.parametrize(
    "kdf",
    [
        {"n": 2**20, "r": 8, "p": 8},  # 1 GiB and 64 times the default work
        {"n": 2**22, "r": 1, "p": 1},  # 512 MiB
        {"n": 2**14, "r": 8, "p": 64},  # little memory, 32 times the default work
        {"n": 1},  # scrypt refuses it (a ValueError)
        {"n": 2**15 + 1},  # not a power of two
        {"r": True},  # not an integer
    ],
    ids=["huge", "memory", "work", "n-1", "n-odd", "r-bool"],
)
def test_absurd_kdf_parameters_are_refused_before_the_kdf_runs(repo, kdf, caplog):
    bad = plant_slot(repo, kdf)
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="drctl.repo.repository"):
        opened = open_repository(repo.storage, PW)
    assert time.monotonic() - t0 < 5  # the planted parameters were never run
    assert opened.keys == repo.keys and opened.key_id == repo.key_id
    assert f"skipping key slot {bad}" in caplog.text and "scrypt" in caplog.text


def test_garbage_slot_is_skipped_with_a_warning(repo, caplog):
    repo.storage.put("keys/" + "ab" * 16, b"\x00 not json")
    repo.storage.put("keys/" + "cd" * 16, b"[" * 100_000)  # nested past the parser's recursion
    repo.storage.put("keys/notes", b"{}")
    with caplog.at_level(logging.WARNING, logger="drctl.repo.repository"):
        assert open_repository(repo.storage, PW).keys == repo.keys
    for key in ("keys/" + "ab" * 16, "keys/" + "cd" * 16, "keys/notes"):
        assert key in caplog.text


def test_newest_slot_is_tried_first(repo):
    """Slots are tried newest first (by the time they record), not in listing order."""
    older, newer = "0" * 32, "f" * 32  # newer sorts last
    for key_id, created in ((older, "2026-01-01T00:00:00Z"), (newer, "2026-06-01T00:00:00Z")):
        doc = json.loads(seal_slot(repo.repo_id, key_id, repo.keys, PW, "client", KdfParams(2**10, 8, 1)))
        doc["created"] = created  # not covered by the tag: only orders the slots
        repo.storage.put(slot_key(key_id), json.dumps(doc).encode())
    repo.storage.delete(slot_key(repo.key_id))
    assert open_repository(repo.storage, PW).key_id == newer


def test_key_list_and_remove_work_with_a_damaged_slot(tmp_path):
    repo_dir = tmp_path / "repo"
    assert drctl("repo", "init", str(repo_dir), "--chunk-size", "1").returncode == 0
    [current] = [k["id"] for k in result_of(drctl("key", "list", str(repo_dir), "--json").stdout)["keys"]]
    damaged, planted = new_key_id(), new_key_id()
    (repo_dir / "keys" / damaged).write_bytes(b'{"version": 1, "kdf": {"name": "scrypt", "n": 1')
    slot = json.loads((repo_dir / "keys" / current).read_text())
    (repo_dir / "keys" / planted).write_text(json.dumps(dict(slot, kdf=dict(slot["kdf"], n=2**24))))
    listed = drctl("key", "list", str(repo_dir))
    no_traceback(listed)
    assert listed.returncode == 0, listed.stderr
    assert f"{damaged}  DAMAGED" in listed.stdout and f"{planted}  DAMAGED: " in listed.stdout
    assert "MiB allowed" in listed.stdout  # why the planted one is refused
    js = result_of(drctl("key", "list", str(repo_dir), "--json").stdout)["keys"]
    assert sorted(k["id"] for k in js if k["damaged"]) == sorted([damaged, planted])
    assert [(k["id"], k["current"]) for k in js if not k["damaged"]] == [(current, True)]
    for key_id in (damaged, planted[:8]):
        rm = drctl("key", "remove", str(repo_dir), key_id)
        no_traceback(rm)
        assert rm.returncode == 0, rm.stderr
    assert [p.name for p in (repo_dir / "keys").iterdir()] == [current]
    assert drctl("snapshots", str(repo_dir)).returncode == 0


def test_damaged_slot_is_listed_with_its_problem_and_nothing_secret():
    storage = MemoryStorage()
    repo = init_repository(storage, PW, chunk_size=MiB)
    doc = json.loads(storage.get(slot_key(repo.key_id)))
    storage.put(slot_key("c" * 32), json.dumps(dict(doc, version=2)).encode())
    listed = {k.key_id: k for k in repo.list_keys()}
    assert listed[repo.key_id].problem is None
    problem = listed["c" * 32].problem
    assert problem and "version-1" in problem and "drctl key remove" in problem
    assert doc["data"] not in problem and doc["kdf"]["salt"] not in problem
    assert not check(repo).ok and problem in check(repo).problems  # check still reports it
