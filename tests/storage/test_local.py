"""What is particular to the local-directory backend and to ``open_storage`` locations."""

from __future__ import annotations

import pytest

from drctl.cli import main
from drctl.errors import EXIT_REPO_MISSING, InvalidInput
from drctl.storage import BucketMissing, StorageError, open_storage
from drctl.storage.local import LocalDirStorage
from drctl.storage.retry import RetryingStorage
from drctl.storage.s3 import S3Storage


def test_missing_directory_is_repository_missing_with_the_next_step(tmp_path):
    store = LocalDirStorage(tmp_path / "nope")
    for op in (lambda: store.get("config"), lambda: store.put("config", b"x"), lambda: list(store.list())):
        with pytest.raises(BucketMissing) as exc:
            op()
        assert exc.value.exit_code == EXIT_REPO_MISSING == 10
        assert str(tmp_path / "nope") in exc.value.message
        assert "drctl repo init" in exc.value.message
    assert not (tmp_path / "nope").exists()  # put did not create it behind the user's back


def test_put_leaves_no_temporary_files_and_keys_map_to_files(tmp_path):
    store = LocalDirStorage(tmp_path)
    store.put("data/ab/abcdef", b"chunk")
    store.put("data/ab/abcdef", b"chunk2")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == [
        "data/ab/abcdef"
    ]
    assert (tmp_path / "data/ab/abcdef").read_bytes() == b"chunk2"


def test_a_crashed_writers_temporary_file_is_invisible(tmp_path):
    store = LocalDirStorage(tmp_path)
    store.put("keys/k1", b"key")
    (tmp_path / "keys" / ".tmp-abc123").write_bytes(b"half")
    assert [o.key for o in store.list()] == ["keys/k1"]


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "/abs", "", "a//b", ".tmp-x"])
def test_keys_cannot_escape_the_directory(tmp_path, key):
    store = LocalDirStorage(tmp_path / "repo")
    store.create()
    with pytest.raises(ValueError):
        store.put(key, b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]


def test_a_key_colliding_with_a_directory_is_a_clear_error(tmp_path):
    store = LocalDirStorage(tmp_path)
    store.put("a/b", b"1")
    with pytest.raises(StorageError, match="collides"):
        store.put("a", b"2")


def test_lock_support_says_not_enforced(tmp_path):
    support = LocalDirStorage(tmp_path).lock_support()
    assert support.enforced is False
    assert "not enforced" in support.detail


def test_open_storage_locations(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert isinstance(open_storage(str(tmp_path)), LocalDirStorage)
    assert open_storage(f"file://{tmp_path}/r").describe() == f"{tmp_path}/r"
    assert open_storage("relative/repo").describe() == "relative/repo"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert open_storage("~/r").describe() == f"{tmp_path}/r"
    s3 = open_storage("s3://bucket/some/prefix/")
    assert isinstance(s3, RetryingStorage) and isinstance(s3.inner, S3Storage)
    assert s3.describe() == "s3://bucket/some/prefix"
    for bad in ("s3://", "ftp://host/x", "file://otherhost/x", ""):
        with pytest.raises(InvalidInput):
            open_storage(bad)


def test_local_status_cli_reports_not_running_with_storage_exit_code(tmp_path, capsys):
    assert main(["local", "status", "--state-dir", str(tmp_path / "st")]) == 14
    assert "drctl local up" in capsys.readouterr().err
