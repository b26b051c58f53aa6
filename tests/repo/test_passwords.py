"""New repository passwords have at least 12 characters (key slots can be attacked offline by
anyone who can read the bucket), and a password file others can read is warned about."""

from __future__ import annotations

import pytest

from drctl.errors import InvalidInput
from drctl.repo.repository import init_repository, open_repository
from drctl.storage.memory import MemoryStorage
from tests.repo.test_cli import PASSWORD, drctl, no_traceback
from tests.support.events import result_of

WHY = "readable by anyone who can read the bucket"


def key_ids(repo_dir, password: str = PASSWORD) -> list[str]:
    listed = drctl("key", "list", str(repo_dir), "--json", password=password)
    return [k["id"] for k in result_of(listed.stdout)["keys"]]


def test_library_refuses_short_new_passwords_and_writes_nothing():
    storage = MemoryStorage()
    with pytest.raises(InvalidInput, match=WHY) as e:
        init_repository(storage, b"eleven-char")
    assert "11 characters" in e.value.message and "eleven-char" not in e.value.message
    assert storage.objects == {}
    repo = init_repository(storage, b"twelve-chars")  # 12 is enough
    for short in (b"short", ("é" * 11).encode()):  # characters, not bytes
        with pytest.raises(InvalidInput, match=WHY):
            repo.add_key(short, "escrow")
        with pytest.raises(InvalidInput, match=WHY):
            repo.change_password(short)
    assert len(repo.list_keys()) == 1 and open_repository(storage, b"twelve-chars").keys == repo.keys


def test_repo_init_refuses_a_short_password_before_creating_anything(tmp_path):
    where = tmp_path / "repo"
    r = drctl("repo", "init", str(where), password="0123456789a")
    no_traceback(r)
    assert r.returncode == 1 and "12" in r.stderr and WHY in r.stderr
    assert "0123456789a" not in r.stderr + r.stdout
    assert not where.exists()


def test_key_add_and_passwd_refuse_a_short_new_password(tmp_path):
    repo_dir = tmp_path / "repo"
    assert drctl("repo", "init", str(repo_dir), "--chunk-size", "1").returncode == 0
    before = key_ids(repo_dir)
    add = drctl("key", "add", str(repo_dir), env={"DRCTL_NEW_PASSWORD": "too-short"})
    passwd = drctl("key", "passwd", str(repo_dir), env={"DRCTL_NEW_PASSWORD": "too-short"})
    for p in (add, passwd):
        no_traceback(p)
        assert p.returncode == 1 and WHY in p.stderr and "too-short" not in p.stderr + p.stdout
    assert key_ids(repo_dir) == before  # nothing added, the old password still opens


def test_password_file_readable_by_others_is_warned_about(tmp_path):
    repo_dir = tmp_path / "repo"
    assert drctl("repo", "init", str(repo_dir), "--chunk-size", "1").returncode == 0
    pw_file = tmp_path / "pw"
    pw_file.write_text(PASSWORD + "\n")
    pw_file.chmod(0o644)
    loose = drctl("snapshots", str(repo_dir), "--password-file", str(pw_file), password=None)
    assert loose.returncode == 0, loose.stderr
    assert str(pw_file) in loose.stderr and "readable by other users" in loose.stderr
    assert "chmod 600" in loose.stderr and PASSWORD not in loose.stderr
    pw_file.chmod(0o600)
    tight = drctl("snapshots", str(repo_dir), "--password-file", str(pw_file), password=None)
    assert tight.returncode == 0 and "readable by other users" not in tight.stderr


@pytest.mark.parametrize("server, disk", [("../x", "vda"), ("web", "a/b"), ("Web", "vda"), ("", "vda")])
def test_a_backup_takes_only_the_plans_names(tmp_path, server, disk):
    """A point's server and disk are the plan's names: a path, upper case or nothing is refused
    before anything is written."""
    from drctl.repo.backup import backup_disk
    from drctl.repo.crypto import KdfParams

    storage = MemoryStorage()
    repo = init_repository(storage, b"a-good-long-password", kdf=KdfParams(n=2**10, r=8, p=1))
    image = tmp_path / "disk.img"
    image.write_bytes(b"x" * 4096)
    with pytest.raises(InvalidInput, match="use the plan's name"):
        backup_disk(repo, image, server=server, disk=disk)
    assert [o.key for o in storage.list("snapshots/")] == [] and [o.key for o in storage.list("data/")] == []
