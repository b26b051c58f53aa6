"""The restore pipeline under a tiny window: chunks completing out of order, a chunk repeated far
apart, zero runs, and a failure mid-way must give a bit-identical image (or a clean error) without
ever holding more than the window's chunks or hanging. No timings here (docs/benchmarks.md)."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from pathlib import Path

import pytest

import drctl.repo.restore_pipeline as pipeline
from drctl.repo.backup import backup_disk
from drctl.repo.errors import ChunkMissing
from drctl.repo.manifest import chunk_key
from drctl.repo.repository import init_repository
from drctl.repo.restore import restore_disk
from drctl.storage.memory import MemoryStorage

CS = 256 * 1024  # chunk size of these repositories


class Shuffled:
    """A store whose GETs take random time (so downloads finish out of order) and that counts
    how many chunk bodies it has handed out and the restore has not yet hashed."""

    def __init__(self, inner: MemoryStorage, seed: int = 3) -> None:
        self.inner = inner
        self.rng = random.Random(seed)
        self.lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _wait(self) -> None:
        with self.lock:
            delay = self.rng.random() * 0.01
        time.sleep(delay)

    def get(self, key: str, byte_range=None) -> bytes:
        self._wait()
        return self.inner.get(key, byte_range)

    def get_into(self, key: str, buf):
        self._wait()
        return self.inner.get_into(key, buf)


def image_with_repeats(path: Path) -> Path:
    """Blocks: unique random, zero runs, and one block repeated at far-apart places; a size that is
    not a multiple of the chunk size."""
    rng = random.Random(11)
    repeated = rng.randbytes(CS)
    blocks = []
    for i in range(40):
        if i % 9 == 4:
            blocks.append(bytes(CS))
        elif i in (1, 17, 38):
            blocks.append(repeated)
        else:
            blocks.append(rng.randbytes(CS))
    path.write_bytes(b"".join(blocks) + rng.randbytes(1234))
    return path


@pytest.fixture
def small_window(monkeypatch):
    monkeypatch.setattr(pipeline, "INFLIGHT_BUDGET", 2 * CS)  # window of 2 chunks
    assert pipeline.window_size(16, CS) == 2


def run_with_deadline(fn, seconds: float = 60):
    box: dict = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "restore hung (window never freed)"
    if "error" in box:
        raise box["error"]
    return box["result"]


def test_tiny_window_out_of_order_with_repeats_is_bit_identical(small_window, tmp_path):
    store = MemoryStorage()
    repo = init_repository(store, b"client-password-1", chunk_size=CS)
    img = image_with_repeats(tmp_path / "disk.img")
    backup_disk(repo, img, server="s", disk="vda")
    repo.storage = Shuffled(store)
    out = tmp_path / "out.img"
    got = run_with_deadline(lambda: restore_disk(repo, server="s", out=out, parallel=8))
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(img.read_bytes()).digest()
    zero_blocks = 4  # i % 9 == 4 for i in 0..39: 4, 13, 22, 31
    unique_nonzero = 40 - zero_blocks - 2  # the block at 1, 17 and 38 is fetched once
    assert got.fetched_chunks == unique_nonzero + 1  # + the short tail chunk
    # zero blocks are holes in the output, not written zeros
    assert os.stat(out).st_blocks * 512 < out.stat().st_size


def test_tiny_window_failure_midway_ends_cleanly(small_window, tmp_path):
    store = MemoryStorage()
    repo = init_repository(store, b"client-password-1", chunk_size=CS)
    img = image_with_repeats(tmp_path / "disk.img")
    res = backup_disk(repo, img, server="s", disk="vda")
    victim = sorted(res.point.chunk_ids())[5]
    store.delete(chunk_key(victim))
    repo.storage = Shuffled(store)
    out = tmp_path / "out.img"
    with pytest.raises(ChunkMissing, match=victim.hex()):
        run_with_deadline(lambda: restore_disk(repo, server="s", out=out, parallel=8))
    assert not out.exists()


@pytest.mark.parametrize("chunk_size", [CS, 64 * 1024 + 1024])
def test_direct_and_buffered_writes_give_the_same_image(tmp_path, chunk_size):
    """Whole chunks of a chunk size in 4 KiB blocks go to the disk directly (O_DIRECT), the short
    last chunk and every chunk of another chunk size through the page cache: bit-identical either
    way, zero runs still holes."""
    store = MemoryStorage()
    repo = init_repository(store, b"client-password-1", chunk_size=chunk_size)
    img = image_with_repeats(tmp_path / "disk.img")
    backup_disk(repo, img, server="s", disk="vda")
    out = tmp_path / "out.img"
    run_with_deadline(lambda: restore_disk(repo, server="s", out=out, parallel=4))
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(img.read_bytes()).digest()
    assert os.stat(out).st_blocks * 512 < out.stat().st_size


def test_the_output_is_opened_for_direct_writes_where_the_filesystem_allows(tmp_path):
    from drctl.repo.journal import RestoreJournal
    from drctl.repo.progress import NullProgress

    store = MemoryStorage()
    repo = init_repository(store, b"client-password-1", chunk_size=CS)
    img = image_with_repeats(tmp_path / "disk.img")
    point = backup_disk(repo, img, server="s", disk="vda").point
    fd = os.open(tmp_path / "out.partial", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        w = pipeline.RestoreWriter(fd, point, RestoreJournal(tmp_path / "j"), NullProgress(), tmp_path, 4)
        w.open_direct()
        if w.direct_fd < 0:
            pytest.skip(f"the filesystem of {tmp_path} does not take O_DIRECT")
        out, _ = w.buffers()
        out[:CS] = b"x" * CS
        w.write(out[:CS], [1, 3], aligned=True)
        w.close_direct()
        assert w.direct_fd == -1
        assert os.pread(fd, CS, CS) == b"x" * CS and os.pread(fd, CS, 3 * CS) == b"x" * CS
        assert os.pread(fd, CS, 0) == os.pread(fd, CS, 2 * CS) == bytes(CS)  # nothing written elsewhere
    finally:
        os.close(fd)
