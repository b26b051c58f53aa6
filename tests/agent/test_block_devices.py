"""The agent reading real block devices (loop devices, root only): size by seek, read-only open, and
a device that shrinks, or loses all its capacity, while it is read fails the job cleanly with no
restore point. (A loop device cannot be removed while open: `losetup -d` is deferred to the last
close, so "vanished" is its capacity dropping to zero, which is what a reader sees.) A medium whose
read fails with EIO (a bad or vanished disk) is a btrfs file system on a loop device with data
damaged under it: the kernel's data checksum fails that read, the reads before it succeed."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from drctl.agent import records
from drctl.agent.config import load_config
from drctl.agent.job import run_job
from drctl.repo.errors import SourceChanged, SourceUnreadable
from drctl.repo.repository import open_repository, read_config
from drctl.storage import open_storage
from tests.agent.agents import make_agent, restored_sha256
from tests.conftest import server_missing

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("losetup") is None, reason="loop devices need root and losetup"
)

PASSWORD = "agent-loop-password-1"
MiB = 1024 * 1024


def _losetup(*args: str) -> str:
    return subprocess.run(
        ["losetup", *args], check=True, capture_output=True, text=True, timeout=30
    ).stdout.strip()


@pytest.fixture
def loop_device(tmp_path) -> Iterator[tuple[str, Path]]:
    backing = tmp_path / "backing.img"
    with open(backing, "wb") as f:
        for i in range(48):
            f.write(os.urandom(MiB) if i % 3 else bytes(MiB))
    device = _losetup("--find", "--show", "--read-only", str(backing))
    try:
        yield device, backing
    finally:
        _losetup("-d", device)


@pytest.fixture
def repo(seaweed_s3_plain, monkeypatch):
    seaweed_s3_plain.apply_env(monkeypatch)
    monkeypatch.setenv("DRCTL_PASSWORD", PASSWORD)
    from drctl.cli import main

    url = seaweed_s3_plain.url("repo")
    assert main(["repo", "init", url, "--chunk-size", "1"]) == 0
    return seaweed_s3_plain, url


def _open_repo(storage):
    read_config(storage)
    return open_repository(storage, PASSWORD.encode())


def test_a_block_device_is_backed_up_whole_by_its_seek_size(loop_device, repo, tmp_path):
    device, backing = loop_device
    target, url = repo
    cfg = load_config(make_agent(tmp_path / "agent", url, {"system": device}))
    outcome = run_job(cfg, "full", _open_repo, storage=open_storage(url))
    (result,) = outcome.backups
    assert result.point.size == 48 * MiB
    restored = restored_sha256(open_storage(url), PASSWORD.encode(), result.point, tmp_path / "out")
    assert restored == hashlib.sha256(backing.read_bytes()).hexdigest()
    assert outcome.record.bytes_read == 48 * MiB


class _ShrinkAfterFirstChunk:
    """The progress display of the job, used here as the moment to shrink the device mid-read."""

    def __init__(self, device: str, backing: Path, new_size: int) -> None:
        self.device, self.backing, self.new_size, self.done = device, backing, new_size, False

    def start(self, phase: str, total_bytes: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        if not self.done:
            self.done = True
            os.truncate(self.backing, self.new_size)
            _losetup("-c", self.device)  # the kernel sees the new, smaller capacity at once

    def finish(self) -> None:
        pass


@pytest.mark.parametrize("new_size", [2 * MiB, 0], ids=["shrinks", "loses-all-capacity"])
def test_a_device_that_shrinks_mid_read_fails_the_job_with_no_point(loop_device, repo, tmp_path, new_size):
    device, backing = loop_device
    target, url = repo
    cfg = load_config(make_agent(tmp_path / "agent", url, {"system": device}))
    storage = open_storage(url)
    with pytest.raises(SourceChanged, match=rf"backup source {device} .*no restore point was written"):
        run_job(
            cfg,
            "full",
            _open_repo,
            storage=storage,
            progress=_ShrinkAfterFirstChunk(device, backing, new_size),
        )
    assert _open_repo(storage).load_points() == []
    public = records.load_agent_key(cfg.key).public_key()
    (stored,) = records.read(storage, records.list_keys(storage, "db01"), {"db01": public})
    assert (stored.record.result, stored.record.error_class) == ("failed", "SourceChanged")


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


@pytest.fixture
def failing_medium(tmp_path) -> Iterator[Path]:
    """A 6 MiB disk image whose bytes at 3 MiB were damaged on the medium: reading them fails with
    EIO in the kernel (btrfs data checksum), as a bad or vanished disk's read does."""
    if shutil.which("mkfs.btrfs") is None:
        server_missing("mkfs.btrfs is missing: apt-get install --no-install-recommends btrfs-progs")
    fs, mnt = tmp_path / "medium.img", tmp_path / "mnt"
    mnt.mkdir()
    with open(fs, "wb") as f:
        f.truncate(128 * MiB)
    _run("mkfs.btrfs", "-q", str(fs))
    content = os.urandom(6 * MiB)
    _run("mount", "-o", "loop", str(fs), str(mnt))
    try:
        (mnt / "disk.img").write_bytes(content)
    finally:
        _run("umount", str(mnt))  # written through to the medium
    fd = os.open(fs, os.O_RDWR)
    try:
        where = os.pread(fd, 128 * MiB, 0).find(content[3 * MiB : 3 * MiB + 4096])
        assert where > 0, "the disk image's data was not found on the medium"
        os.pwrite(fd, b"\xff" * 16, where + 100)
        os.fsync(fd)  # the loop device may read the medium directly, past the page cache
    finally:
        os.close(fd)
    _run("mount", "-o", "loop,ro", str(fs), str(mnt))
    try:
        yield mnt / "disk.img"
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=60)
        if os.path.ismount(mnt):
            subprocess.run(["umount", "--lazy", str(mnt)], capture_output=True, timeout=60)


def test_a_medium_that_fails_with_eio_mid_read_fails_the_job_with_no_point(failing_medium, repo, tmp_path):
    target, url = repo
    cfg = load_config(make_agent(tmp_path / "agent", url, {"system": str(failing_medium)}))
    storage = open_storage(url)
    with pytest.raises(SourceUnreadable, match=rf"at offset {3 * MiB}: Input/output error; no restore point"):
        run_job(cfg, "full", _open_repo, storage=storage)
    assert _open_repo(storage).load_points() == []
    public = records.load_agent_key(cfg.key).public_key()
    (stored,) = records.read(storage, records.list_keys(storage, "db01"), {"db01": public})
    assert stored.trust is records.Trust.VERIFIED
    assert (stored.record.result, stored.record.error_class) == ("failed", "SourceUnreadable")
    assert stored.record.points == {}
