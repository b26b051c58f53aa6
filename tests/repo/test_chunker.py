"""Reading a backup source: holes of a sparse file are known without reading them, and the backup
of a sparse image still records exactly the zero chunks and restores bit-identical."""

from __future__ import annotations

import hashlib
import os

from drctl.repo.backup import backup_disk
from drctl.repo.chunker import DiskSource
from drctl.repo.repository import init_repository
from drctl.repo.restore import restore_disk
from drctl.storage.memory import MemoryStorage

CS = 64 * 1024


def sparse_image(path, size: int) -> dict[int, bytes]:
    """Data at a few places (one chunk only half written, one written with zeros), holes elsewhere."""
    writes = {0: os.urandom(CS), 3 * CS + CS // 2: os.urandom(1000), 5 * CS: bytes(CS), 9 * CS: b"tail"}
    with open(path, "wb") as f:
        f.truncate(size)
        for off, data in writes.items():
            f.seek(off)
            f.write(data)
    return writes


def test_chunks_in_holes_come_without_their_bytes_and_the_rest_is_read(tmp_path):
    img = tmp_path / "disk.img"
    size = 9 * CS + 100
    sparse_image(img, size)
    with DiskSource(img) as src:
        got = list(src.chunks(CS))
    expected = img.read_bytes()
    assert [i for i, _ in got] == list(range(10))
    for i, data in got:
        block = expected[i * CS : (i + 1) * CS]
        if data is None:  # a hole: only where the file has no data at all
            assert block == bytes(len(block)) and i in (1, 2, 4, 6, 7, 8)
        else:
            assert data == block
    holes = [i for i, data in got if data is None]
    if not holes:  # a filesystem without SEEK_DATA reports everything as data: still correct
        return
    assert {0, 3, 9} & set(holes) == set()


def test_backup_of_a_sparse_image_restores_bit_identical_with_zero_runs(tmp_path):
    img = tmp_path / "disk.img"
    sparse_image(img, 9 * CS + 100)
    repo = init_repository(MemoryStorage(), b"client-password-1", chunk_size=CS)
    res = backup_disk(repo, img, server="web", disk="vda")
    ids = [cid for _, cid in res.point.iter_chunks()]
    # chunk 5 was written with zeros: a zero chunk like the holes; 0, 3 and the tail hold data
    assert [i for i, cid in enumerate(ids) if cid is not None] == [0, 3, 9]
    out = tmp_path / "out.img"
    restore_disk(repo, server="web", out=out)
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(img.read_bytes()).digest()
