"""The repository on the real object stores: SeaweedFS (Object Lock enforced) and Swift with s3api
(a container made through the Swift API, as the stack declares it; Object Lock ignored)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from drctl.repo.backup import backup_disk
from drctl.repo.errors import ChunkCorrupt
from drctl.repo.manifest import chunk_key
from drctl.repo.repository import init_repository
from drctl.repo.restore import restore_disk
from drctl.storage import open_storage
from tests.repo.fakes import MiB, make_image

pytestmark = pytest.mark.integration
PASSWORD = "s3-repo-secret-Pw"


def drctl(target, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("DRCTL_", "AWS_"))}
    full.update(target.env if target else {})
    full["DRCTL_PASSWORD"] = PASSWORD
    full.update(env or {})
    p = subprocess.run(
        [sys.executable, "-m", "drctl.cli", *args], capture_output=True, text=True, env=full, timeout=300
    )
    assert "Traceback" not in p.stderr and PASSWORD not in p.stdout + p.stderr, p.stderr
    return p


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _round_trip(target, tmp_path: Path, retain_expected: bool) -> tuple[str, dict]:
    url = target.url("clients/acme")
    init = drctl(target, "repo", "init", url, "--chunk-size", "1", "--retain", "1")
    assert init.returncode == 0, init.stderr
    assert ("does not enforce" in init.stderr) is (not retain_expected)
    img = make_image(tmp_path / "disk.img", 20 * MiB + 4097, seed=21)
    b = drctl(target, "backup", url, "--server", "web-1", "--disk", "vda", str(img), "--json")
    assert b.returncode == 0, b.stderr
    summary = json.loads(b.stdout.splitlines()[-1])
    assert summary["retention_enforced"] is retain_expected
    assert ("does not enforce" in b.stderr) is (not retain_expected)
    out = tmp_path / "web-1.img"
    r = drctl(target, "restore", url, "--server", "web-1", "--out", str(out), "--parallel", "8")
    assert r.returncode == 0, r.stderr
    assert sha(out) == sha(img)
    chk = drctl(target, "check", url, "--read-data")
    assert chk.returncode == 0 and "no problems" in chk.stdout, chk.stdout + chk.stderr
    return url, summary


def test_seaweedfs_round_trip_with_enforced_object_lock(seaweed_s3, tmp_path):
    url, summary = _round_trip(seaweed_s3, tmp_path, retain_expected=True)
    s3 = seaweed_s3.client()
    listed = s3.list_objects_v2(Bucket=seaweed_s3.bucket, Prefix="clients/acme/data/")["Contents"]
    head = s3.head_object(Bucket=seaweed_s3.bucket, Key=listed[0]["Key"])
    assert head["ObjectLockMode"] == "COMPLIANCE" and head.get("ObjectLockRetainUntilDate") is not None
    assert len(listed) == summary["new_chunks"]


def test_reused_chunks_get_the_retention_of_the_newer_point_on_seaweedfs(seaweed_s3, tmp_path):
    """Dedup must not weaken immutability: a chunk first written with 1 day of retention and reused
    by a backup retained 3 days is locked for 3 days, else it could be deleted under the new point."""
    url = seaweed_s3.url("clients/lock")
    assert drctl(seaweed_s3, "repo", "init", url, "--chunk-size", "1", "--retain", "1").returncode == 0
    img = make_image(tmp_path / "disk.img", 8 * MiB + 11, seed=5)
    first = drctl(seaweed_s3, "backup", url, "--server", "s", "--disk", "vda", str(img), "--json")
    assert first.returncode == 0, first.stderr
    second = drctl(
        seaweed_s3, "backup", url, "--server", "s", "--disk", "vda", str(img), "--json", "--retain", "3"
    )
    assert second.returncode == 0, second.stderr
    s1, s2 = (json.loads(p.stdout.splitlines()[-1]) for p in (first, second))
    assert s2["new_chunks"] == 0 and s2["extended_chunks"] == s1["new_chunks"] > 0
    s3 = seaweed_s3.client()
    until2 = datetime.fromisoformat(s2["retain_until"])
    for obj in s3.list_objects_v2(Bucket=seaweed_s3.bucket, Prefix="clients/lock/data/")["Contents"]:
        head = s3.head_object(Bucket=seaweed_s3.bucket, Key=obj["Key"])
        assert abs((head["ObjectLockRetainUntilDate"] - until2).total_seconds()) <= 1, obj["Key"]
    # A later backup with a shorter retention leaves the longer one in place (stores refuse to
    # shorten; that refusal is not an error).
    third = drctl(
        seaweed_s3, "backup", url, "--server", "s", "--disk", "vda", str(img), "--json", "--retain", "1"
    )
    assert third.returncode == 0, third.stderr
    key = s3.list_objects_v2(Bucket=seaweed_s3.bucket, Prefix="clients/lock/data/")["Contents"][0]["Key"]
    kept = s3.head_object(Bucket=seaweed_s3.bucket, Key=key)["ObjectLockRetainUntilDate"]
    assert abs((kept - until2).total_seconds()) <= 1


def test_swift_container_as_bucket_round_trip_reports_ignored_lock(swift_container, tmp_path):
    _round_trip(swift_container, tmp_path, retain_expected=False)


def test_unreachable_store_is_exit_14(tmp_path):
    env = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    p = drctl(None, "snapshots", "s3://nobucket/x", env=env)
    assert p.returncode == 14, p.stderr
    assert "127.0.0.1:9" in p.stderr or "nobucket" in p.stderr


def test_tampered_chunk_on_s3_is_refused(seaweed_s3_plain, tmp_path, monkeypatch):
    seaweed_s3_plain.apply_env(monkeypatch)
    storage = open_storage(seaweed_s3_plain.url("r"))
    repo = init_repository(storage, b"client-password-1", chunk_size=MiB)
    img = make_image(tmp_path / "d.img", 6 * MiB + 1, seed=8)
    res = backup_disk(repo, img, server="db", disk="vda")
    cid = sorted(res.point.chunk_ids())[0]
    blob = bytearray(storage.get(chunk_key(cid)))
    blob[len(blob) // 2] ^= 1  # (the 1-byte tail chunk is a 31-byte object)
    storage.put(chunk_key(cid), bytes(blob))
    with pytest.raises(ChunkCorrupt, match=cid.hex()):
        restore_disk(repo, server="db", out=tmp_path / "o.img")
    assert not (tmp_path / "o.img").exists()
