"""The WAL archive without a database: sealing, idempotence, holes, pruning, the key cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from drctl.errors import InvalidInput, LocalIOError
from drctl.repo.crypto import KdfParams
from drctl.repo.repository import Repository, init_repository
from drctl.storage.local import LocalDirStorage
from drctl.wal import archive, history
from drctl.wal.archive import WalGap, WalSegmentConflict, WalSegmentCorrupt, WalSegmentMissing
from drctl.wal.keycache import open_with_cache

PASSWORD = b"correct horse battery staple wal"
SEG = 16 << 20


def _segment(n: int, fill: int = 0x5A) -> bytes:
    return bytes([fill]) * 1000 + os.urandom(64) + bytes(SEG - 1064)


def _name(seg: int, tli: int = 1, logid: int = 0) -> str:
    return f"{tli:08X}{logid:08X}{seg:08X}"


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    storage = LocalDirStorage(tmp_path / "repo")
    storage.create()
    return init_repository(storage, PASSWORD, kdf=KdfParams(n=2**10, r=8, p=1))


def _push(repo: Repository, tmp_path: Path, name: str, data: bytes, server: str = "db01"):
    src = tmp_path / name
    src.write_bytes(data)
    return archive.push(repo, server, src, name)


def test_a_segment_round_trips_compressed_and_a_retry_is_idempotent(repo: Repository, tmp_path: Path) -> None:
    data = _segment(1)
    first = _push(repo, tmp_path, _name(1), data)
    assert not first.already_archived and first.stored < SEG // 100  # mostly zeros: compressed
    again = _push(repo, tmp_path, _name(1), data)
    assert again.already_archived and again.stored == 0
    out = tmp_path / "out"
    assert archive.fetch(repo, "db01", _name(1), out) == SEG
    assert out.read_bytes() == data


def test_the_same_name_with_other_content_is_refused_and_nothing_overwritten(
    repo: Repository, tmp_path: Path
) -> None:
    data = _segment(1)
    _push(repo, tmp_path, _name(1), data)
    with pytest.raises(WalSegmentConflict, match="already archived .* different content"):
        _push(repo, tmp_path, _name(1), _segment(1, fill=0x33))
    archive.fetch(repo, "db01", _name(1), tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data


def test_a_flipped_renamed_or_foreign_segment_never_reaches_postgresql(
    repo: Repository, tmp_path: Path
) -> None:
    _push(repo, tmp_path, _name(1), _segment(1))
    key = archive.object_key("db01", _name(1))
    blob = bytearray(repo.storage.get(key))
    out = tmp_path / "out"
    for i in (0, 1, 5, 20, len(blob) // 2, len(blob) - 1):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        repo.storage.put(key, bytes(bad))
        with pytest.raises(WalSegmentCorrupt, match=_name(1)):
            archive.fetch(repo, "db01", _name(1), out)
        assert not out.exists()
    # the right object under another segment's name, or under another server's archive
    repo.storage.put(archive.object_key("db01", _name(2)), bytes(blob))
    repo.storage.put(archive.object_key("web01", _name(1)), bytes(blob))
    for server, name in (("db01", _name(2)), ("web01", _name(1))):
        with pytest.raises(WalSegmentCorrupt, match="fails authentication"):
            archive.fetch(repo, server, name, out)
    assert not out.exists()


def test_a_missing_segment_is_the_end_of_the_archive_unless_later_ones_exist(
    repo: Repository, tmp_path: Path
) -> None:
    for n in (1, 2, 4):
        _push(repo, tmp_path, _name(n), _segment(n))
    with pytest.raises(WalSegmentMissing):
        archive.fetch(repo, "db01", _name(5), tmp_path / "out")
    with pytest.raises(WalSegmentMissing):
        archive.fetch(repo, "db01", "00000002.history", tmp_path / "out")
    with pytest.raises(WalGap, match=f"{_name(3)} of db01 is missing .* \\(first {_name(4)}\\)"):
        archive.fetch(repo, "db01", _name(3), tmp_path / "out")


def test_bad_names_are_refused_before_anything_is_stored(repo: Repository, tmp_path: Path) -> None:
    for name in ("../config", "00000001000000000000000", "pg_wal/000000010000000000000001", "x.history"):
        with pytest.raises(InvalidInput, match="not a WAL file name"):
            archive.object_key("db01", name)
    assert archive.object_key("db01", "00000002.history") == "wal/db01/00000002.history"
    assert archive.object_key("db01", _name(3) + ".00000028.backup").endswith(".backup")


def test_holes_are_reported_with_their_time_range_and_segment_numbers_wrap(
    repo: Repository, tmp_path: Path
) -> None:
    assert history.next_segment(_name(0xFF)) == _name(0, logid=1)
    for n in (0xFD, 0xFE, 0xFF):
        _push(repo, tmp_path, _name(n), _segment(n))
    _push(repo, tmp_path, _name(0, logid=1), _segment(0))
    _push(repo, tmp_path, _name(3, logid=1), _segment(3))
    report = history.check_wal(repo, "db01", read_data=True)
    assert [(g.after, g.before, g.missing) for g in report.gaps] == [
        (_name(0, logid=1), _name(3, logid=1), 2)
    ]
    gap = report.gaps[0]
    assert gap.from_time is not None and gap.to_time is not None and gap.from_time <= gap.to_time
    assert report.read == 5
    assert any("no base backup" in p for p in report.problems)
    assert not report.ok


def test_prune_keeps_nothing_back_without_a_base(repo: Repository, tmp_path: Path) -> None:
    _push(repo, tmp_path, _name(1), _segment(1))
    assert history.prune_wal(repo, "db01") == []
    assert archive.archived_names(repo, "db01") == [_name(1)]


def test_the_key_cache_skips_the_password_and_is_refused_when_others_can_read_it(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pw = tmp_path / "pw"
    pw.write_bytes(PASSWORD + b"\n")
    pw.chmod(0o600)
    cache = tmp_path / "cache" / "wal.key"
    first = open_with_cache(repo.storage, password_file=str(pw), password_command=None, cache=cache)
    assert cache.stat().st_mode & 0o777 == 0o600 and PASSWORD not in cache.read_bytes()
    pw.unlink()  # from now on only the cache can open it
    again = open_with_cache(repo.storage, password_file=str(pw), password_command=None, cache=cache)
    assert again.keys.to_bytes() == first.keys.to_bytes()
    cache.chmod(0o640)
    with pytest.raises(LocalIOError, match="readable by others"):
        open_with_cache(repo.storage, password_file=str(pw), password_command=None, cache=cache)
    # a cache of another repository is not used: the password is needed again
    cache.chmod(0o600)
    other = LocalDirStorage(tmp_path / "other")
    other.create()
    init_repository(other, PASSWORD + b"2", kdf=KdfParams(n=2**10, r=8, p=1))
    with pytest.raises(InvalidInput, match="cannot read the password file"):
        open_with_cache(other, password_file=str(pw), password_command=None, cache=cache)
