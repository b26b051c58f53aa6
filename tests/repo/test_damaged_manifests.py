"""One unreadable object under ``snapshots/`` (a damaged manifest, a stray file) blocks no restore
of another point: a point asked for by id is read alone, otherwise damaged manifests are skipped
and named; ``snapshots`` lists the readable points and names the damaged."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest

from drctl.repo.backup import backup_disk
from drctl.repo.errors import ManifestCorrupt
from drctl.repo.manifest import point_key
from drctl.repo.repository import init_repository
from drctl.repo.restore import restore_disk
from drctl.storage.local import LocalDirStorage
from drctl.storage.memory import MemoryStorage
from tests.repo.fakes import MiB, make_image
from tests.repo.test_cli import drctl, no_traceback
from tests.support.events import result_of

PW = b"damaged-manifests-password"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(params=["memory", "localdir"])
def repo(request, tmp_path):
    storage = MemoryStorage() if request.param == "memory" else LocalDirStorage(tmp_path / "repo")
    if request.param == "localdir":
        storage.create()
    return init_repository(storage, PW, chunk_size=MiB)


@pytest.fixture
def damaged_points(repo, tmp_path):
    """web: an older readable point and a newer damaged one; db: a readable point; a stray file."""
    web_old = make_image(tmp_path / "web1.img", 3 * MiB + 5, seed=51)
    web_new = make_image(tmp_path / "web2.img", 3 * MiB + 5, seed=52)
    db = make_image(tmp_path / "db.img", 2 * MiB, seed=53)
    p_old = backup_disk(repo, web_old, server="web", disk="vda").point
    p_new = backup_disk(repo, web_new, server="web", disk="vda").point
    p_db = backup_disk(repo, db, server="db", disk="vda").point
    blob = bytearray(repo.storage.get(point_key(p_new.id)))
    blob[-5] ^= 0x40
    repo.storage.put(point_key(p_new.id), bytes(blob))
    repo.storage.put("snapshots/README", b"notes someone left here\n")
    return {"web_old": (p_old, web_old), "web_new": (p_new, web_new), "db": (p_db, db)}


class RecordingGets:
    """Delegates to ``inner``, recording the key of every ``get``."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.keys: list[str] = []

    def get(self, key: str, byte_range=None) -> bytes:
        self.keys.append(key)
        return self.inner.get(key, byte_range)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_restore_by_id_reads_only_that_manifest(repo, damaged_points, tmp_path):
    for name in ("web_old", "db"):
        point, image = damaged_points[name]
        repo.storage = recorder = RecordingGets(repo.storage)
        out = tmp_path / f"{name}-by-id.img"
        restore_disk(repo, server=point.server, point=point.id[:8], out=out)
        assert sha(out) == sha(image)
        assert [k for k in recorder.keys if k.startswith("snapshots/")] == [point_key(point.id)]
        repo.storage = recorder.inner


def test_restore_latest_skips_damaged_manifests_naming_them(repo, damaged_points, tmp_path, caplog):
    point, image = damaged_points["web_old"]
    damaged = damaged_points["web_new"][0]
    out = tmp_path / "latest.img"
    with caplog.at_level(logging.WARNING, logger="drctl.repo.points"):
        got = restore_disk(repo, server="web", out=out)
    assert got.point.id == point.id and sha(out) == sha(image)
    assert point_key(damaged.id) in caplog.text and "snapshots/README" in caplog.text
    assert "--point" in caplog.text


def test_restore_of_the_damaged_point_itself_names_it(repo, damaged_points, tmp_path):
    damaged = damaged_points["web_new"][0]
    with pytest.raises(ManifestCorrupt) as e:
        restore_disk(repo, server="web", point=damaged.id, out=tmp_path / "x.img")
    assert e.value.exit_code == 13 and point_key(damaged.id) in e.value.message
    assert not (tmp_path / "x.img").exists()


def test_snapshots_lists_the_readable_points_and_names_the_damaged(tmp_path):
    repo_dir = tmp_path / "repo"
    assert drctl("repo", "init", str(repo_dir), "--chunk-size", "1").returncode == 0
    img = make_image(tmp_path / "d.img", 2 * MiB + 1, seed=61)
    ids = [
        drctl("backup", str(repo_dir), "--server", s, "--disk", "vda", str(img)).stdout.strip()
        for s in ("web", "db")
    ]
    assert all(len(i) == 32 for i in ids)
    (repo_dir / "snapshots" / ids[0]).write_bytes(b"")  # truncated to nothing
    (repo_dir / "snapshots" / "notes.txt").write_text("stray")
    listed = drctl("snapshots", str(repo_dir), "--json")
    no_traceback(listed)
    assert listed.returncode == 13
    result = result_of(listed.stdout)
    assert [p["id"] for p in result["snapshots"]] == [ids[1]]
    assert sorted(d["key"] for d in result["damaged"]) == sorted(
        [f"snapshots/{ids[0]}", "snapshots/notes.txt"]
    )
    assert f"snapshots/{ids[0]}" in listed.stderr and "snapshots/notes.txt" in listed.stderr
    assert "--point" in listed.stderr
    out = tmp_path / "db.img"
    restored = drctl("restore", str(repo_dir), "--server", "db", "--out", str(out))
    no_traceback(restored)
    assert restored.returncode == 0 and out.read_bytes() == img.read_bytes()
    assert f"snapshots/{ids[0]}" in restored.stderr  # the warning names what was skipped
