"""The agent reading real block devices (loop devices, root only): size by seek, read-only open, and
a device that shrinks, or loses all its capacity, while it is read fails the job cleanly with no
restore point. (A loop device cannot be removed while open: `losetup -d` is deferred to the last
close, so "vanished" is its capacity dropping to zero, which is what a reader sees.)"""

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
from drctl.repo.errors import SourceChanged
from drctl.repo.repository import open_repository, read_config
from drctl.storage import open_storage
from tests.agent.agents import make_agent

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
    assert result.point.sha256 == hashlib.sha256(backing.read_bytes()).hexdigest()
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
