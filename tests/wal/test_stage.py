"""Staging a database server's archived WAL into its restored disk (drctl.wal.stage), on real ext4
disk images (mkfs.ext4 -d, read back with debugfs) and a real encrypted repository."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from drctl.demo.images.disk import mbr
from drctl.plan.model import BackupStep
from drctl.repo.crypto import KdfParams
from drctl.repo.repository import Repository, init_repository
from drctl.storage.local import LocalDirStorage
from drctl.wal import archive
from drctl.wal.archive import WalGap, WalSegmentCorrupt
from drctl.wal.disk_files import Ext4Disk, partition_offset
from drctl.wal.stage import WalStagingFailed, has_log_schedule, replay_target, stage_wal, wants_replay
from tests.support.pg_disk import AUTO_CONF, CLUSTER, PG_GID, PG_UID, STAGING, make_pg_disk

PASSWORD = b"correct horse battery staple stage"


def _name(seg: int, tli: int = 1) -> str:
    return f"{tli:08X}{0:08X}{seg:08X}"


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    storage = LocalDirStorage(tmp_path / "repo")
    storage.create()
    return init_repository(storage, PASSWORD, kdf=KdfParams(n=2**10, r=8, p=1))


def _push(repo: Repository, tmp_path: Path, name: str, data: bytes) -> None:
    src = tmp_path / f"src-{name}"
    src.write_bytes(data)
    archive.push(repo, "db01", src, name)


def _segments(repo: Repository, tmp_path: Path) -> dict[str, bytes]:
    files = {
        _name(1): b"\x01" * 70000,
        _name(2): b"\x02" * 70000,
        "00000002.history": b"1\t0/2000000\tno recovery target specified\n",
        _name(2, tli=2): b"\x22" * 70000,
    }
    for name, data in files.items():
        _push(repo, tmp_path, name, data)
    _push(repo, tmp_path, _name(2) + ".partial", b"\x09" * 100)  # never asked for by a replay
    return files


def test_the_archive_is_staged_with_the_recovery_configuration(repo, tmp_path):
    files = _segments(repo, tmp_path)
    raw = make_pg_disk(tmp_path)

    staged = stage_wal(repo, "db01", str(raw), selector="latest")

    assert staged is not None
    assert (staged.cluster, staged.files, staged.last_segment, staged.target) == (
        CLUSTER,
        4,
        _name(2, 2),
        None,
    )
    assert staged.recovered_to == staged.last_archived_at
    disk = Ext4Disk(raw)
    entries = {e.name: e for e in disk.list(STAGING)}
    assert set(entries) == set(files)  # the .partial is not staged
    for name, data in files.items():
        assert disk.read_text(f"{STAGING}/{name}").encode("latin-1") == data
        assert (entries[name].uid, entries[name].gid, entries[name].mode & 0o777) == (PG_UID, PG_GID, 0o600)
    cluster = {e.name: e for e in disk.list(CLUSTER)}
    assert cluster["recovery.signal"].size == 0 and cluster["recovery.signal"].uid == PG_UID
    conf = disk.read_text(f"{CLUSTER}/postgresql.auto.conf")
    assert conf.startswith(AUTO_CONF)  # the server's own settings are kept
    assert f"restore_command = 'cp {STAGING}/%f %p'" in conf
    assert "recovery_target_action = 'promote'" in conf and "archive_mode = 'off'" in conf
    assert "hot_standby = 'off'" in conf  # no pause on WAL from a primary with larger limits
    assert "recovery_target_time" not in conf
    assert disk.read_text("/etc/hostname") == "db01\n"  # the rest of the disk is untouched


def test_a_disaster_keeps_archiving_and_an_earlier_time_is_the_target(repo, tmp_path):
    _segments(repo, tmp_path)
    raw = make_pg_disk(tmp_path, partitioned=False)  # a whole-disk file system works too
    last = archive.unseal(repo, "db01", _name(2, 2), repo.storage.get(f"wal/db01/{_name(2, 2)}"))[0]
    when = last - timedelta(seconds=30)

    staged = stage_wal(repo, "db01", str(raw), selector=when.isoformat(), keep_archiving=True)

    assert staged is not None and staged.target == when and staged.recovered_to == when
    conf = Ext4Disk(raw).read_text(f"{CLUSTER}/postgresql.auto.conf")
    assert f"recovery_target_time = '{when.isoformat()}'" in conf and "archive_mode" not in conf


def test_a_target_after_the_archive_replays_everything():
    from datetime import UTC, datetime

    last = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    assert replay_target("latest", last) is None
    assert replay_target("2026-11-30T07:59:00Z", last) == datetime(2026, 11, 30, 7, 59, tzinfo=UTC)
    assert replay_target("2026-11-30T07:59:00", last) == datetime(
        2026, 11, 30, 7, 59, tzinfo=UTC
    )  # as restore: UTC
    assert replay_target("2026-11-30T09:00:00+00:00", last) is None  # PostgreSQL would refuse to start
    assert replay_target("5f0c1a2b", last) is None


def test_only_servers_with_a_log_schedule_and_no_explicit_point_are_replayed():
    from drctl.plan.load import load_plan

    plan = load_plan(Path(__file__).resolve().parents[2] / "recovery_plans" / "demo.yaml")
    db, dns = plan.server("db01"), plan.server("dns01")
    assert has_log_schedule(db) and not has_log_schedule(dns)
    assert BackupStep("log", 900) in db.backup
    assert wants_replay(db, "latest") and wants_replay(db, "2026-11-30T10:00:00Z")
    assert not wants_replay(db, "5f0c1a2b")  # that exact disk point, as asked
    assert not wants_replay(dns, "latest")


def test_nothing_archived_stages_nothing(repo, tmp_path):
    raw = make_pg_disk(tmp_path)
    before = raw.read_bytes()
    assert stage_wal(repo, "db01", str(raw), selector="latest") is None
    assert raw.read_bytes() == before


def test_a_tampered_segment_stops_before_anything_is_written(repo, tmp_path):
    _segments(repo, tmp_path)
    key = repo.storage.root / "wal" / "db01" / _name(2)  # type: ignore[attr-defined]
    blob = bytearray(key.read_bytes())
    blob[-20] ^= 0x01
    key.write_bytes(bytes(blob))
    raw = make_pg_disk(tmp_path)
    before = raw.read_bytes()

    with pytest.raises(WalSegmentCorrupt, match=_name(2)):
        stage_wal(repo, "db01", str(raw), selector="latest")
    assert raw.read_bytes() == before


def test_a_hole_in_the_archive_is_refused(repo, tmp_path):
    _push(repo, tmp_path, _name(1), b"\x01" * 100)
    _push(repo, tmp_path, _name(3), b"\x03" * 100)
    raw = make_pg_disk(tmp_path)
    with pytest.raises(WalGap, match=f"after segment {_name(1)}"):
        stage_wal(repo, "db01", str(raw), selector="latest")


def test_a_disk_without_a_cluster_fails_naming_it(repo, tmp_path):
    _segments(repo, tmp_path)
    raw = make_pg_disk(tmp_path, cluster=False)
    with pytest.raises(WalStagingFailed, match=rf"{raw}: no PostgreSQL cluster under /var/lib/postgresql"):
        stage_wal(repo, "db01", str(raw), selector="latest")


def test_partition_offset_reads_the_first_linux_partition():
    assert partition_offset(mbr(b"", 2048, 1000)) == 2048 * 512
    assert partition_offset(bytes(512)) == 0  # no MBR signature: the file system is the whole disk
