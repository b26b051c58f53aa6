"""Point-in-time recovery with a real PostgreSQL 15 archiving into the repository on SeaweedFS
(the cluster and its fixtures: tests/wal/pg.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from drctl.repo.repository import open_repository
from drctl.wal import archive
from drctl.wal.history import check_wal
from tests.wal.pg import PASSWORD, _base, _now, _restore_and_start, _switch_and_wait_archived, _wait_promoted

pytestmark = pytest.mark.integration


def test_restore_to_a_moment_holds_exactly_the_rows_committed_before_it(archiving, pg_root: Path) -> None:
    primary, repo, url, env, pw = archiving
    primary.sql("create table t (id int primary key, batch text)")
    primary.sql("insert into t select g, 'before-base1' from generate_series(1, 100) g")
    _base(primary, url, pw, env, pg_root)
    primary.sql("insert into t select g, 'after-base1' from generate_series(101, 150) g")
    t1 = _now(primary)
    primary.sql("insert into t select g, 'after-t1' from generate_series(151, 170) g")
    _base(primary, url, pw, env, pg_root)
    primary.sql("insert into t select g, 'after-base2' from generate_series(171, 180) g")
    t2 = _now(primary)
    primary.sql("insert into t select g, 'after-t2' from generate_series(181, 200) g")
    _switch_and_wait_archived(primary)

    # a moment between the two bases: replayed from the first one
    c1 = _restore_and_start(pg_root, "at-t1", url, t1, env, pw)
    c1.start()
    _wait_promoted(c1)
    assert c1.sql("select count(*), max(id) from t") == "150|150"
    c1.stop()
    # a moment after the second base
    c2 = _restore_and_start(pg_root, "at-t2", url, t2, env, pw)
    c2.start()
    _wait_promoted(c2)
    assert c2.sql("select count(*), max(id) from t") == "180|180"
    c2.stop()
    # the restored copies did not archive into the primary's history (a drill must not)
    report = check_wal(open_repository(repo.storage, PASSWORD), "db01", read_data=True)
    assert report.ok, report.as_dict()
    assert len(report.bases) == 2
    assert all(
        n.startswith("00000001") or n.endswith(".history") for n in archive.archived_names(repo, "db01")
    )


@pytest.mark.parametrize("damage", ["tampered", "missing", "foreign"])
def test_a_damaged_segment_stops_the_replay_naming_it(archiving, pg_root: Path, damage: str) -> None:
    primary, repo, url, env, pw = archiving
    primary.sql("create table t (id int)")
    _base(primary, url, pw, env, pg_root)
    primary.sql("insert into t values (1)")
    victim = _switch_and_wait_archived(primary)
    primary.sql("insert into t values (2)")
    target = _now(primary)
    _switch_and_wait_archived(primary)
    key = archive.object_key("db01", victim)
    if damage == "tampered":
        blob = bytearray(repo.storage.get(key))
        blob[len(blob) // 2] ^= 0x40
        repo.storage.put(key, bytes(blob))
    elif damage == "missing":
        repo.storage.delete(key)
    else:  # the same segment name, archived by another server of the client
        src = pg_root / "foreign"
        src.write_bytes(os.urandom(1 << 20))
        archive.push(repo, "web01", src, victim)
        repo.storage.put(key, bytes(repo.storage.get(archive.object_key("web01", victim))))
    c = _restore_and_start(pg_root, f"damaged-{damage}", url, target, env, pw)
    started = c.start(check=False)
    deadline = time.monotonic() + 60
    while started and time.monotonic() < deadline and "FATAL" not in c.log.read_text():
        time.sleep(0.3)
    log = c.log.read_text()
    assert victim in log and "the replay is stopped" in log, log[-3000:]
    assert "FATAL" in log
    assert "database system is ready to accept connections" not in log
    c.stop()
