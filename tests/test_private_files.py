"""Private outputs: whatever another local user plants at or around an output path (a symbolic
link, a file or directory of their own, a world-writable directory), drctl either refuses or
replaces it with its own 0600 file / 0700 directory, and never writes through it.

Runs as root like the rest of the suite (``os.chown`` plants another user's files)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from drctl.errors import EXIT_LOCAL_IO
from drctl.private_files import (
    UnsafeOutput,
    create_private_file,
    open_private_file,
    private_temp_dir,
    publish,
    write_private_file,
    write_private_tree,
)

OTHER_UID = 65534  # nobody
BUNDLE = {"swanctl.conf": "secret = 0sUFNL\n", "nca.env": "PSK=...\n"}


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file a planted link points at: it must never change."""
    v = tmp_path / "victim"
    v.write_text("root's file\n")
    return v


def assert_untouched(victim: Path) -> None:
    assert victim.read_text() == "root's file\n"


# ---- one file (report export, policy config) ------------------------------------------------


def test_file_is_new_0600_and_replaces_an_own_file(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "r.html"
    write_private_file(out, "v1")
    assert out.read_text() == "v1" and mode(out) == 0o600 and mode(out.parent) == 0o700
    out.chmod(0o644)
    write_private_file(out, b"v2")
    assert out.read_text() == "v2" and mode(out) == 0o600
    assert sorted(p.name for p in out.parent.iterdir()) == ["r.html"], "no temporary file left"


def test_file_refuses_a_planted_symlink(tmp_path: Path, victim: Path) -> None:
    out = tmp_path / "r.html"
    out.symlink_to(victim)
    with pytest.raises(UnsafeOutput, match="is a symbolic link") as e:
        write_private_file(out, "page")
    assert e.value.exit_code == EXIT_LOCAL_IO
    assert_untouched(victim)
    assert out.is_symlink()


def test_file_refuses_another_users_file(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    out.write_text("planted")
    os.chown(out, OTHER_UID, OTHER_UID)
    with pytest.raises(UnsafeOutput, match=f"belongs to uid {OTHER_UID}, not to you"):
        write_private_file(out, "page")
    assert out.read_text() == "planted"


def test_file_refuses_a_world_writable_directory_unless_sticky(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(UnsafeOutput, match="writable by every user and not sticky"):
        write_private_file(shared / "r.html", "page")
    assert list(shared.iterdir()) == []
    shared.chmod(0o1777)  # like /tmp: others cannot rename what is not theirs
    write_private_file(shared / "r.html", "page")
    assert mode(shared / "r.html") == 0o600


# ---- a directory of files (the NCA bundle) ----------------------------------------------------


def test_tree_is_0700_with_0600_files_and_replaces_an_empty_own_directory(tmp_path: Path) -> None:
    out = tmp_path / "out" / "nca-paris"
    written = write_private_tree(out, BUNDLE)
    assert written == [out / "swanctl.conf", out / "nca.env"]
    assert mode(out) == 0o700 and all(mode(p) == 0o600 for p in written)
    assert (out / "swanctl.conf").read_text() == BUNDLE["swanctl.conf"]
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o755)
    write_private_tree(empty, BUNDLE)
    assert mode(empty) == 0o700


def test_tree_refuses_a_planted_symlink(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "nca"
    out.symlink_to(elsewhere)
    for force in (False, True):
        with pytest.raises(UnsafeOutput, match="is a symbolic link"):
            write_private_tree(out, BUNDLE, force=force)
    assert list(elsewhere.iterdir()) == []


def test_tree_refuses_another_users_directory_even_with_force(tmp_path: Path) -> None:
    out = tmp_path / "nca"
    out.mkdir(mode=0o700)
    os.chown(out, OTHER_UID, OTHER_UID)
    with pytest.raises(UnsafeOutput, match=f"belongs to uid {OTHER_UID}"):
        write_private_tree(out, BUNDLE, force=True)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("bits", [0o777, 0o770, 0o1777])
def test_tree_refuses_a_directory_others_can_write(tmp_path: Path, bits: int) -> None:
    out = tmp_path / "nca"
    out.mkdir()
    out.chmod(bits)
    with pytest.raises(UnsafeOutput, match="writable by other users"):
        write_private_tree(out, BUNDLE, force=True)
    assert list(out.iterdir()) == []


def test_tree_replaces_a_non_empty_directory_only_with_force(tmp_path: Path) -> None:
    out = tmp_path / "nca"
    out.mkdir(mode=0o700)
    planted = out / "swanctl.conf"
    planted.write_text("planted by a process of this user")
    os.chown(planted, OTHER_UID, OTHER_UID)
    (out / "frr.conf").write_text("from an earlier bundle")
    with pytest.raises(UnsafeOutput, match="is not empty.*--force"):
        write_private_tree(out, BUNDLE, replaceable=["frr.conf"])
    assert planted.read_text() == "planted by a process of this user"
    write_private_tree(out, BUNDLE, force=True, replaceable=["frr.conf"])
    assert sorted(p.name for p in out.iterdir()) == ["nca.env", "swanctl.conf"]
    st = os.stat(out / "swanctl.conf")
    assert st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o600, "a new file, not the planted one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nca"], "nothing left beside it"


@pytest.mark.parametrize("other", ["notes.txt", "sub/"])
def test_force_never_replaces_a_directory_that_is_not_an_earlier_output(tmp_path: Path, other: str) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "swanctl.conf").write_text("old")
    if other.endswith("/"):
        (home / other).mkdir()
    else:
        (home / other).write_text("the user's own file")
    with pytest.raises(UnsafeOutput, match=f"holds {other.rstrip('/')}, which drctl did not write"):
        write_private_tree(home, BUNDLE, force=True)
    assert sorted(p.name for p in home.iterdir()) == sorted(["swanctl.conf", other.rstrip("/")])


@pytest.mark.parametrize("path", ["/", "/..", "."])
def test_the_root_or_the_current_directory_is_never_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").write_text("x")
    with pytest.raises(UnsafeOutput):
        write_private_tree(path, BUNDLE, force=True)
    with pytest.raises(UnsafeOutput):
        write_private_file(path, "page")
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]
    assert not [p for p in Path("/").iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


def test_tree_refuses_a_file_where_the_directory_goes(tmp_path: Path) -> None:
    out = tmp_path / "nca"
    out.write_text("a file")
    with pytest.raises(UnsafeOutput, match="exists and is not a directory"):
        write_private_tree(out, BUNDLE, force=True)


def test_tree_in_a_world_writable_non_sticky_parent_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(UnsafeOutput, match="writable by every user and not sticky"):
        write_private_tree(shared / "nca", BUNDLE)
    assert list(shared.iterdir()) == []


# ---- restore outputs: created in place, published without replacing -----------------------------


def test_create_never_follows_nor_reuses(tmp_path: Path, victim: Path) -> None:
    link = tmp_path / "img.partial"
    link.symlink_to(victim)
    with pytest.raises(UnsafeOutput, match="appeared meanwhile"):
        create_private_file(link)
    assert_untouched(victim)
    fd = create_private_file(tmp_path / "new.partial")
    os.close(fd)
    assert mode(tmp_path / "new.partial") == 0o600


def test_open_to_resume_refuses_links_and_foreign_files(tmp_path: Path, victim: Path) -> None:
    link = tmp_path / "a.partial"
    link.symlink_to(victim)
    with pytest.raises(UnsafeOutput, match="is a symbolic link"):
        open_private_file(link)
    foreign = tmp_path / "b.partial"
    foreign.write_bytes(b"x")
    os.chown(foreign, OTHER_UID, OTHER_UID)
    with pytest.raises(UnsafeOutput, match=f"belongs to uid {OTHER_UID}"):
        open_private_file(foreign)
    hard = tmp_path / "c.partial"
    os.link(victim, hard)
    with pytest.raises(UnsafeOutput, match="has 2 names"):
        open_private_file(hard)
    assert_untouched(victim)


def test_publish_never_replaces_nor_follows(tmp_path: Path, victim: Path) -> None:
    src = tmp_path / "img.partial"
    src.write_text("image")
    dst = tmp_path / "img"
    dst.symlink_to(victim)
    with pytest.raises(FileExistsError):
        publish(src, dst)
    assert_untouched(victim)
    assert src.read_text() == "image" and dst.is_symlink()
    dst.unlink()
    publish(src, dst)
    assert dst.read_text() == "image" and not src.exists()


def test_private_temp_dir_is_0700(tmp_path: Path) -> None:
    d = private_temp_dir(tmp_path, "img.qcow2")
    assert d.parent == tmp_path and mode(d) == 0o700 and d.name.startswith(".img.qcow2.")
