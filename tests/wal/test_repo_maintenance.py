"""`drctl check` and `drctl prune` of the repository cover every server's WAL archive."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drctl.cli import main
from drctl.repo.backup import backup_disk
from drctl.repo.crypto import KdfParams
from drctl.repo.repository import Repository, init_repository
from drctl.storage.local import LocalDirStorage
from drctl.wal import archive
from drctl.wal.base import BASE_DISK, BaseInfo, record_base
from tests.support.events import read_events

PASSWORD = "wal maintenance test password"


def _name(seg: int) -> str:
    return f"00000001{0:08X}{seg:08X}"


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repository:
    storage = LocalDirStorage(tmp_path / "repo")
    storage.create()
    monkeypatch.setenv("DRCTL_PASSWORD", PASSWORD)
    return init_repository(storage, PASSWORD.encode(), kdf=KdfParams(n=2**10, r=8, p=1))


def _push(repo: Repository, tmp_path: Path, server: str, seg: int) -> None:
    src = tmp_path / f"{server}-{seg}"
    src.write_bytes(os.urandom(4096) + bytes(1 << 16))
    archive.push(repo, server, src, _name(seg))


def _base(repo: Repository, tmp_path: Path, server: str, start: int) -> BaseInfo:
    """A base backup record as `drctl wal base` leaves it (its restore point holds a stand-in tar)."""
    tar = tmp_path / f"{server}-base.tar"
    tar.write_bytes(os.urandom(1 << 16))
    point = backup_disk(repo, tar, server=server, disk=BASE_DISK, backup_type="full").point
    info = BaseInfo(point.id, _name(start), datetime.now(UTC), point.created)
    record_base(repo, server, info)
    return info


def test_check_reports_a_wal_hole_with_the_time_range_it_makes_unrecoverable(
    repo: Repository, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _base(repo, tmp_path, "db01", 2)
    for seg in (2, 3, 4, 6, 7):  # 5 is lost
        _push(repo, tmp_path, "db01", seg)
    _base(repo, tmp_path, "pg02", 1)
    _push(repo, tmp_path, "pg02", 1)
    where = str(tmp_path / "repo")

    assert main(["check", "--read-data", where]) == 13
    out = capsys.readouterr().out
    gap = next(line for line in out.splitlines() if line.startswith("problem: WAL of db01"))
    assert f"1 segment(s) missing after {_name(4)} (next archived: {_name(6)})" in gap
    assert "no point in time can be restored from 20" in gap  # both archive times, ISO
    assert (
        f"WAL of db01: 1 base backup(s), 5 segment(s) kept ({_name(2)} .. {_name(7)}), 5 file(s) read" in out
    )
    assert "WAL of pg02: 1 base backup(s), 1 segment(s) kept" in out

    assert main(["check", "--read-data", "--json", where]) == 13
    result = read_events(capsys.readouterr().out)[-1]
    wal = {w["server"]: w for w in result["wal"]}
    assert wal["db01"]["gaps"][0]["missing_segments"] == 1 and wal["db01"]["segments_read"] == 5
    assert wal["pg02"]["gaps"] == [] and wal["pg02"]["problems"] == []


def test_check_read_data_names_a_tampered_segment(repo: Repository, tmp_path: Path, capsys) -> None:
    _base(repo, tmp_path, "db01", 1)
    for seg in (1, 2):
        _push(repo, tmp_path, "db01", seg)
    key = archive.object_key("db01", _name(2))
    blob = bytearray(repo.storage.get(key))
    blob[-3] ^= 1
    repo.storage.put(key, bytes(blob))
    where = str(tmp_path / "repo")
    assert main(["check", where]) == 0  # without --read-data the segment is only listed
    capsys.readouterr()
    assert main(["check", "--read-data", where]) == 13
    assert f"problem: WAL of db01: WAL file {_name(2)} of db01" in capsys.readouterr().out


def test_prune_keeps_the_wal_a_kept_base_needs_and_drops_the_older(
    repo: Repository, tmp_path: Path, capsys
) -> None:
    for seg in (1, 2, 3):
        _push(repo, tmp_path, "db01", seg)
    _base(repo, tmp_path, "db01", 4)
    for seg in (4, 5):
        _push(repo, tmp_path, "db01", seg)
    for seg in (1, 2):  # a server archiving without any base: nothing of it can go
        _push(repo, tmp_path, "web01", seg)
    where = str(tmp_path / "repo")

    assert main(["prune", "--dry-run", where]) == 0
    assert "3 WAL object(s) no kept base backup needs" in capsys.readouterr().out
    assert len(archive.archived_names(repo, "db01")) == 5
    assert main(["prune", where]) == 0
    assert archive.archived_names(repo, "db01") == [_name(4), _name(5)]
    assert archive.archived_names(repo, "web01") == [_name(1), _name(2)]
    assert main(["check", "--read-data", where]) == 13  # web01 has no base: reported, not hidden
    out = capsys.readouterr().out
    assert "WAL of web01: web01 has no base backup" in out and "WAL of db01" in out
    assert "problem: WAL of db01" not in out


def test_a_disk_point_recorded_as_base_completes_the_history_but_is_not_a_stream_to_restore(
    repo: Repository, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A base of kind ``disk`` (a disk point the WAL replays onto, as the demo's db01) satisfies
    `wal check`; `wal restore`, which needs a pg_basebackup stream, says what to do instead."""
    where = str(tmp_path / "repo")
    for seg in (3, 4):
        _push(repo, tmp_path, "db01", seg)
    assert main(["wal", "check", "--repo", where, "--server", "db01"]) == 13
    assert "has no base backup" in capsys.readouterr().out
    disk = tmp_path / "db01-system.raw"
    disk.write_bytes(os.urandom(1 << 16))
    point = backup_disk(repo, disk, server="db01", disk="system", backup_type="full").point
    record_base(repo, "db01", BaseInfo(point.id, _name(3), point.created, point.created, kind="disk"))
    assert main(["wal", "check", "--repo", where, "--server", "db01"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    pgdata = str(tmp_path / "pgdata")
    assert (
        main(["wal", "restore", "--repo", where, "--server", "db01", "--to", "latest", "--datadir", pgdata])
        == 1
    )
    err = capsys.readouterr().err
    assert "are disk points" in err and "drctl drill" in err and "Traceback" not in err
    assert not (tmp_path / "pgdata").exists()
