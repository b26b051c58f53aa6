"""Malformed locks (not JSON, a field missing or mistyped, a time without zone or in the future)
are reported naming their key, count as held, and are removed by ``drctl unlock``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from drctl.repo.errors import RepoLocked
from drctl.repo.locks import RepoLock, remove_locks
from drctl.repo.repository import init_repository
from drctl.storage.memory import MemoryStorage
from tests.repo.fakes import MiB
from tests.repo.test_cli import drctl, no_traceback

PASSWORD = b"lock-safety-password"

NOW = datetime.now(UTC)
GOOD = {"exclusive": False, "operation": "backup", "hostname": "h", "pid": 7, "created": NOW.isoformat()}
MALFORMED = {
    "not-json": b"\x00\xff this is no lock",
    "json-array": b"[1, 2]",
    "naive-time": json.dumps(dict(GOOD, refreshed="2026-01-01T10:00:00")).encode(),
    "future-time": json.dumps(dict(GOOD, refreshed="9999-12-31T23:59:59+00:00")).encode(),
    "exclusive-as-text": json.dumps(dict(GOOD, exclusive="no", refreshed=NOW.isoformat())).encode(),
    "time-as-number": json.dumps(dict(GOOD, refreshed=12)).encode(),
    "no-pid": json.dumps(
        {k: v for k, v in dict(GOOD, refreshed=NOW.isoformat()).items() if k != "pid"}
    ).encode(),
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_lock_blocks_with_its_name_and_unlock_removes_it(body, tmp_path):
    repo = init_repository(MemoryStorage(), PASSWORD, chunk_size=MiB)
    repo.storage.put("locks/odd", body)
    with pytest.raises(RepoLocked) as e, RepoLock(repo.storage, exclusive=False, operation="restore"):
        pass
    assert e.value.exit_code == 11 and "'locks/odd' is malformed" in e.value.message
    assert "drctl unlock" in e.value.message
    assert [lk.key for lk in remove_locks(repo.storage)] == ["locks/odd"]
    with RepoLock(repo.storage, exclusive=True, operation="prune"):
        pass


def test_malformed_locks_from_the_cli(tmp_path):
    repo = tmp_path / "repo"
    assert drctl("repo", "init", str(repo), "--chunk-size", "1").returncode == 0
    (repo / "locks").mkdir(exist_ok=True)
    (repo / "locks" / "garbage").write_bytes(MALFORMED["not-json"])
    (repo / "locks" / "naive").write_bytes(MALFORMED["naive-time"])
    blocked = drctl("snapshots", str(repo))
    assert blocked.returncode == 11 and "malformed" in blocked.stderr and "drctl unlock" in blocked.stderr
    unlock = drctl("unlock", str(repo))
    assert unlock.returncode == 0, unlock.stderr
    assert "locks/garbage" in unlock.stdout and "locks/naive" in unlock.stdout
    assert "removed 2 lock(s)" in unlock.stdout
    free = drctl("snapshots", str(repo))
    assert free.returncode == 0, free.stderr
    for p in (blocked, unlock, free):
        no_traceback(p)
