"""``drctl repo copy``: restore points moved between repositories as objects, as an operator seeds a
NAS into the cloud and back: restorable byte for byte from the copy, deduplicated, resumable after
an interruption, a tampered source object refused, a foreign destination refused; between a
directory, SeaweedFS (Object Lock enforced) and Swift's S3 API."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from drctl.repo.copy import copy_points, open_destination
from drctl.repo.manifest import chunk_key
from drctl.repo.repository import open_repository
from drctl.storage import open_storage
from drctl.storage.base import StorageUnavailable
from tests.repo.fakes import MiB, make_image
from tests.support.events import read_events, result_of

PASSWORD = "copy-test-Secret-pw"


def drctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("DRCTL_", "AWS_"))}
    full["DRCTL_PASSWORD"] = PASSWORD
    full.update(env or {})
    p = subprocess.run(
        [sys.executable, "-m", "drctl.cli", *args], capture_output=True, text=True, env=full, timeout=300
    )
    assert "Traceback" not in p.stderr and PASSWORD not in p.stdout + p.stderr, p.stderr
    return p


def backed_up(repo: str, tmp_path: Path, env: dict[str, str] | None = None) -> dict[str, Path]:
    """A repository with two servers' points (the second shares half its chunks with the first)."""
    assert drctl("repo", "init", repo, "--chunk-size", "1", env=env).returncode == 0
    web = make_image(tmp_path / "web.img", 6 * MiB + 123, seed=1)
    db = tmp_path / "db.img"
    db.write_bytes(web.read_bytes()[: 3 * MiB] + make_image(tmp_path / "x.img", 3 * MiB, seed=2).read_bytes())
    for server, img in (("web", web), ("db", db)):
        b = drctl("backup", repo, "--server", server, "--disk", "vda", str(img), env=env)
        assert b.returncode == 0, b.stderr
    return {"web": web, "db": db}


def restores_identical(repo: str, images: dict[str, Path], tmp_path: Path, env=None) -> None:
    for server, img in images.items():
        out = tmp_path / f"restored-{server}-{os.urandom(3).hex()}.img"
        r = drctl("restore", repo, "--server", server, "--out", str(out), env=env)
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == img.read_bytes()


def test_copy_into_an_empty_directory_restores_identical_and_a_second_run_moves_nothing(tmp_path):
    src, dst = str(tmp_path / "nas"), str(tmp_path / "copy")
    images = backed_up(src, tmp_path)
    first = drctl("repo", "copy", src, dst, "--json")
    assert first.returncode == 0, first.stderr
    events = read_events(first.stdout)
    assert {e["event"] for e in events[:-1]} == {"progress"}
    summary = result_of(first.stdout)
    assert summary["initialised"] is True and len(summary["copied_points"]) == 2
    stored = sum(f.stat().st_size for f in (tmp_path / "nas" / "data").rglob("*") if f.is_file())
    assert summary["copied_bytes"] == stored == events[-2]["bytes_total"]  # the shared chunks moved once
    restores_identical(dst, images, tmp_path)
    assert drctl("check", dst, "--read-data").returncode == 0
    again = result_of(drctl("repo", "copy", src, dst, "--json").stdout)
    assert again["copied_points"] == [] and len(again["present_points"]) == 2 and again["copied_bytes"] == 0


def test_points_selects_and_a_later_copy_only_uploads_new_chunks(tmp_path):
    src, dst = str(tmp_path / "nas"), str(tmp_path / "copy")
    images = backed_up(src, tmp_path)
    snaps = result_of(drctl("snapshots", src, "--json").stdout)["snapshots"]
    web = next(p["id"] for p in snaps if p["server"] == "web")
    one = result_of(drctl("repo", "copy", src, dst, "--points", web[:8], "--json").stdout)
    web_chunks, db_chunks = _chunks_of(src, "web"), _chunks_of(src, "db")
    assert one["copied_points"] == [web] and one["copied_chunks"] == len(web_chunks)
    rest = result_of(drctl("repo", "copy", src, dst, "--json").stdout)
    shared = web_chunks & db_chunks
    assert shared and rest["present_chunks"] == len(shared)  # db's first 3 MiB are web's: not sent again
    assert rest["copied_chunks"] == len(db_chunks - web_chunks)
    restores_identical(dst, images, tmp_path)
    bad = drctl("repo", "copy", src, dst, "--points", "ffffffff")
    assert bad.returncode == 1 and "matches 0 restore points" in bad.stderr


class FailingPuts:
    """The destination store becomes unreachable after ``n`` chunk uploads (a network cut)."""

    def __init__(self, inner, n: int) -> None:
        self.inner, self.n, self.puts, self._lock = inner, n, 0, threading.Lock()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def put(self, key, data, *, retain_until=None):
        if key.startswith("data/"):
            with self._lock:
                self.puts += 1
                if self.puts > self.n:
                    raise StorageUnavailable(f"simulated outage writing {key}")
        return self.inner.put(key, data, retain_until=retain_until)


def test_an_interrupted_copy_leaves_no_point_and_the_rerun_copies_only_what_is_missing(tmp_path):
    src_url, dst_url = str(tmp_path / "nas"), str(tmp_path / "copy")
    images = backed_up(src_url, tmp_path)
    web_chunks = _chunks_of(src_url, "web")
    web_point = next(p.id for p in _points(src_url) if p.server == "web")
    src = open_repository(open_storage(src_url), PASSWORD.encode())
    cut = len(web_chunks) + 1  # the network goes down in the middle of db's chunks (web is older)
    dst, _ = open_destination(src, FailingPuts(open_storage(dst_url), cut), PASSWORD.encode())
    with pytest.raises(StorageUnavailable):
        copy_points(src, dst, parallel=1)
    # web's point is there with all its data; db's, half uploaded, is not a point.
    assert [f.name for f in (tmp_path / "copy" / "snapshots").iterdir()] == [web_point]
    arrived = len([f for f in (tmp_path / "copy" / "data").rglob("*") if f.is_file()])
    assert arrived == cut
    resumed = drctl("repo", "copy", src_url, dst_url, "--json")
    assert resumed.returncode == 0, resumed.stderr
    summary = result_of(resumed.stdout)
    total = len(_chunks_of(src_url, "web") | _chunks_of(src_url, "db"))
    assert summary["initialised"] is False and summary["copied_chunks"] == total - arrived
    restores_identical(dst_url, images, tmp_path)


def test_a_tampered_source_chunk_is_refused_and_not_copied_the_other_point_is(tmp_path):
    src, dst = str(tmp_path / "nas"), str(tmp_path / "copy")
    images = backed_up(src, tmp_path)
    snaps = result_of(drctl("snapshots", src, "--json").stdout)["snapshots"]
    db = next(p["id"] for p in snaps if p["server"] == "db")
    # A chunk only db uses (db's second half is its own data): flip one byte in its middle.
    db_only = sorted(_chunks_of(src, "db") - _chunks_of(src, "web"))[0]
    victim = tmp_path / "nas" / chunk_key(bytes.fromhex(db_only))
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    victim.write_bytes(bytes(raw))
    p = drctl("repo", "copy", src, dst, "--json")
    assert p.returncode == 13, p.stderr
    summary = result_of(p.stdout)
    assert [f["point"] for f in summary["failed_points"]] == [db]
    assert db_only in summary["failed_points"][0]["error"] and f"point {db} not copied" in p.stderr
    assert not (tmp_path / "copy" / chunk_key(bytes.fromhex(db_only))).exists()
    assert [f.name for f in (tmp_path / "copy" / "snapshots").iterdir()] == summary["copied_points"]
    restores_identical(dst, {"web": images["web"]}, tmp_path)


def _points(repo: str):
    return open_repository(open_storage(repo), PASSWORD.encode()).load_points()


def _chunks_of(repo: str, server: str) -> set[str]:
    return {c.hex() for p in _points(repo) if p.server == server for c in p.chunk_ids()}


def test_a_destination_with_other_key_material_or_format_is_refused_and_left_untouched(tmp_path):
    src, other = str(tmp_path / "nas"), str(tmp_path / "other")
    backed_up(src, tmp_path)
    assert drctl("repo", "init", other).returncode == 0
    before = sorted(p.relative_to(other) for p in Path(other).rglob("*"))
    p = drctl("repo", "copy", src, other)
    assert p.returncode == 1 and "key material differs" in p.stderr and other in p.stderr
    assert sorted(p.relative_to(other) for p in Path(other).rglob("*")) == before
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("not a repository")
    s = drctl("repo", "copy", src, str(stray))
    assert s.returncode == 1 and "holds objects but no repository config" in s.stderr


def test_a_format_1_copy_restores_identical_and_formats_that_differ_are_refused(tmp_path):
    from tests.repo.test_format_v2 import V1_FIXTURE, V1_PASSWORD, v1_image

    src, dst = tmp_path / "v1", tmp_path / "copy"
    shutil.copytree(V1_FIXTURE, src)
    env = {"DRCTL_PASSWORD": V1_PASSWORD}
    first = drctl("repo", "copy", str(src), str(dst), env=env)
    assert first.returncode == 0, first.stderr
    out = tmp_path / "web-1.img"
    assert drctl("restore", str(dst), "--server", "web-1", "--out", str(out), env=env).returncode == 0
    assert out.read_bytes() == v1_image()
    assert drctl("repo", "upgrade", str(dst), env=env).returncode == 0
    again = drctl("repo", "copy", str(src), str(dst), env=env)
    assert again.returncode == 1 and f"drctl repo upgrade {src}" in again.stderr


@pytest.mark.integration
def test_directory_to_seaweedfs_with_object_lock_and_back_to_a_directory(seaweed_s3, tmp_path):
    src = str(tmp_path / "nas")
    images = backed_up(src, tmp_path)
    cloud = seaweed_s3.url("clients/acme")
    up = drctl("repo", "copy", src, cloud, "--retain", "2", "--json", env=seaweed_s3.env)
    assert up.returncode == 0, up.stderr
    assert result_of(up.stdout)["retention_enforced"] is True
    s3 = seaweed_s3.client()
    for prefix in ("clients/acme/data/", "clients/acme/snapshots/"):
        listed = s3.list_objects_v2(Bucket=seaweed_s3.bucket, Prefix=prefix)["Contents"]
        head = s3.head_object(Bucket=seaweed_s3.bucket, Key=listed[0]["Key"])
        assert head["ObjectLockMode"] == "COMPLIANCE", prefix
    restores_identical(cloud, images, tmp_path, env=seaweed_s3.env)
    home = str(tmp_path / "home")
    down = drctl("repo", "copy", cloud, home, "--json", env=seaweed_s3.env)
    assert down.returncode == 0, down.stderr
    assert len(result_of(down.stdout)["copied_points"]) == 2
    restores_identical(home, images, tmp_path)


@pytest.mark.integration
def test_directory_to_swift_s3_api(swift_s3, tmp_path):
    src = str(tmp_path / "nas")
    images = backed_up(src, tmp_path)
    cloud = swift_s3.url("clients/acme")
    up = drctl("repo", "copy", src, cloud, "--json", env=swift_s3.env)
    assert up.returncode == 0, up.stderr
    restores_identical(cloud, images, tmp_path, env=swift_s3.env)
