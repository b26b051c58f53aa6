"""Backup -> restore round trips on the in-memory store and on LocalDirStorage: bit-identical,
sparse, deduplicated, resumable, with the corruption cases ending in integrity errors and no file
at the output path."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from drctl.errors import Cancelled, InvalidInput
from drctl.private_files import UnsafeOutput
from drctl.repo.backup import backup_disk
from drctl.repo.errors import (
    ChunkCorrupt,
    ChunkMissing,
    ForeignManifest,
    OutputError,
    SourceChanged,
    WrongPassword,
)
from drctl.repo.manifest import chunk_key, point_key
from drctl.repo.repository import init_repository, open_repository
from drctl.repo.restore import restore_disk
from drctl.storage.base import StorageUnavailable
from drctl.storage.local import LocalDirStorage
from drctl.storage.memory import MemoryStorage
from tests.repo.fakes import FailingAfter, MiB, make_image, mutate, v2_digest_of

SIZE = 24 * MiB + 54321  # not a multiple of the chunk size


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(params=["memory", "localdir"])
def storage(request, tmp_path):
    if request.param == "memory":
        return MemoryStorage()
    s = LocalDirStorage(tmp_path / "repo")
    s.create()
    return s


@pytest.fixture
def repo(storage):
    return init_repository(storage, b"client-password-1", chunk_size=MiB)


@pytest.fixture
def image(tmp_path):
    return make_image(tmp_path / "disk.img", SIZE)


def test_round_trip_is_bit_identical_and_sparse(repo, image, tmp_path):
    res = backup_disk(repo, image, server="web", disk="vda")
    assert res.point.size == SIZE and res.point.version == 2
    assert res.point.image_digest == v2_digest_of(repo, image, MiB)  # the format's definition, redone
    zero_chunks = sum(1 for _, cid in res.point.iter_chunks() if cid is None)
    assert zero_chunks >= 5  # make_image puts ~40 % zero chunks
    stored = [o.key for o in repo.storage.list("data/")]
    assert len(stored) == res.new_chunks == len(res.point.chunk_ids())

    out = tmp_path / "restored.img"
    got = restore_disk(repo, server="web", disk="vda", out=out, parallel=4)
    assert sha(out) == sha(image) and out.stat().st_size == SIZE
    assert out.stat().st_blocks * 512 <= SIZE - zero_chunks * MiB + MiB  # zero runs left as holes
    assert got.fetched_chunks == len(res.point.chunk_ids())
    assert not out.with_name("restored.img.partial").exists()
    assert not out.with_name("restored.img.partial.done").exists()
    assert list(repo.storage.list("locks/")) == []


def test_second_backup_after_one_percent_change_uploads_about_one_percent(storage, tmp_path):
    repo = init_repository(storage, b"client-password-1", chunk_size=MiB)
    big = make_image(tmp_path / "big.img", 60 * MiB + 999, seed=3)
    first = backup_disk(repo, big, server="db", disk="vdb")
    before = sha(big)
    changed = mutate(big, 0.01)  # 1 of 61 chunks
    second = backup_disk(repo, big, server="db", disk="vdb")
    assert second.point.type == "incremental" and second.point.parent == first.point.id
    assert second.new_chunks <= changed
    assert second.uploaded_bytes <= 0.02 * big.stat().st_size
    out = tmp_path / "second.img"
    restore_disk(repo, server="db", out=out)
    assert sha(out) == sha(big)
    out1 = tmp_path / "first.img"
    restore_disk(repo, server="db", out=out1, point=first.point.id[:8])
    assert sha(out1) == before != sha(big)
    assert first.point.image_digest != second.point.image_digest


def test_qcow2_output_holds_the_same_image(repo, image, tmp_path):
    backup_disk(repo, image, server="web", disk="vda")
    out = tmp_path / "web.qcow2"
    restore_disk(repo, server="web", out=out, fmt="qcow2")
    info = subprocess.run(
        ["qemu-img", "compare", "-f", "raw", "-F", "qcow2", str(image), str(out)],
        capture_output=True,
        text=True,
    )
    assert info.returncode == 0, info.stdout + info.stderr
    assert not out.with_name("web.qcow2.partial").exists()


def test_a_failed_qcow2_conversion_names_qemu_img_and_keeps_the_verified_image(
    repo, image, tmp_path, monkeypatch
):
    backup_disk(repo, image, server="web", disk="vda")
    out = tmp_path / "out" / "web.qcow2"
    out.parent.mkdir()
    # qemu-img is the boundary: one that fails the way a full or broken target makes it fail.
    tools = tmp_path / "bin"
    tools.mkdir()
    fake = tools / "qemu-img"
    fake.write_text("#!/bin/sh\necho 'qemu-img: Could not create the image: No space left' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    with pytest.raises(OutputError) as e:
        restore_disk(repo, server="web", out=out, fmt="qcow2")
    assert e.value.exit_code == 15
    assert "qemu-img convert to" in e.value.message and "No space left" in e.value.message
    kept = out.with_name("web.qcow2.partial")
    assert f"the verified raw image is kept at {kept}" in e.value.message
    assert sha(kept) == sha(image) and not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.is_dir()] == []  # no private work dir left


def _restore_fails(repo, tmp_path, exc, **kw):
    out = tmp_path / "out.img"
    with pytest.raises(exc) as e:
        restore_disk(repo, server="web", out=out, **kw)
    assert not out.exists()
    return e.value


def test_tampered_chunk_names_the_chunk_and_leaves_no_output(repo, image, tmp_path):
    res = backup_disk(repo, image, server="web", disk="vda")
    cid = next(c for _, c in res.point.iter_chunks() if c is not None)
    blob = bytearray(repo.storage.get(chunk_key(cid)))
    blob[len(blob) // 2] ^= 0x40
    repo.storage.put(chunk_key(cid), bytes(blob))
    err = _restore_fails(repo, tmp_path, ChunkCorrupt)
    assert err.exit_code == 13 and cid.hex() in err.message and chunk_key(cid) in err.message


def test_truncated_and_swapped_chunks_are_integrity_errors(repo, image, tmp_path):
    res = backup_disk(repo, image, server="web", disk="vda")
    a, b = list(res.point.chunk_ids())[:2]
    blob_a, blob_b = repo.storage.get(chunk_key(a)), repo.storage.get(chunk_key(b))
    repo.storage.put(chunk_key(a), blob_b)
    repo.storage.put(chunk_key(b), blob_a)
    err = _restore_fails(repo, tmp_path, ChunkCorrupt)
    assert "tag does not verify" in err.message
    repo.storage.put(chunk_key(a), blob_a)
    repo.storage.put(chunk_key(b), blob_b[: len(blob_b) - 5])
    err = _restore_fails(repo, tmp_path, ChunkCorrupt)
    assert b.hex() in err.message
    repo.storage.put(chunk_key(b), blob_b)
    restore_disk(repo, server="web", out=tmp_path / "ok.img")  # resumes, and now succeeds
    assert sha(tmp_path / "ok.img") == sha(image)


def test_missing_chunk_is_an_integrity_error(repo, image, tmp_path):
    res = backup_disk(repo, image, server="web", disk="vda")
    cid = sorted(res.point.chunk_ids())[0]
    repo.storage.delete(chunk_key(cid))
    err = _restore_fails(repo, tmp_path, ChunkMissing)
    assert err.exit_code == 13 and cid.hex() in err.message


def test_wrong_password_and_foreign_manifest(storage, image, tmp_path):
    repo = init_repository(storage, b"right-password-1", chunk_size=MiB)
    with pytest.raises(WrongPassword) as e:
        open_repository(storage, b"wrong")
    assert e.value.exit_code == 12
    other = init_repository(MemoryStorage("mem://other"), b"right-password-1", chunk_size=MiB)
    res = backup_disk(other, image, server="web", disk="vda")
    storage.put(point_key(res.point.id), other.storage.get(point_key(res.point.id)))
    with pytest.raises(ForeignManifest, match="belongs to repository") as e:
        restore_disk(repo, server="web", out=tmp_path / "x.img")
    assert e.value.exit_code == 13 and not (tmp_path / "x.img").exists()


def test_interrupted_restore_leaves_no_output_and_resumes_without_trusting_the_partial(repo, image, tmp_path):
    res = backup_disk(repo, image, server="web", disk="vda")
    n = len(res.point.chunk_ids())
    out = tmp_path / "r.img"
    flaky = FailingAfter(repo.storage, n // 2)
    repo.storage, real = flaky, repo.storage
    with pytest.raises(StorageUnavailable):
        restore_disk(repo, server="web", out=out, parallel=2)
    repo.storage = real
    partial, journal = tmp_path / "r.img.partial", tmp_path / "r.img.partial.done"
    assert not out.exists() and partial.exists() and journal.exists()
    done = [int(x) for x in journal.read_text().split("\n")[1:] if x]
    assert 0 < len(done) <= n // 2
    # Corrupt one journaled chunk on disk: the resume must re-fetch it, not trust the journal.
    with open(partial, "r+b") as f:
        f.seek(done[0] * MiB + 10)
        f.write(b"\xff" * 8)
    got = restore_disk(repo, server="web", out=out, parallel=2)
    assert sha(out) == sha(image)
    assert got.resumed_chunks == len(done) - 1
    assert got.fetched_chunks == n - got.resumed_chunks
    assert not partial.exists() and not journal.exists()


class CancelAfter:
    """Delegates to ``inner``; sets ``cancel`` once ``n`` chunks were read (the operator's Ctrl-C)."""

    def __init__(self, inner, n: int, cancel: threading.Event) -> None:
        self.inner, self.n, self.cancel, self.data_gets = inner, n, cancel, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _count(self, key: str) -> None:
        if key.startswith("data/"):
            self.data_gets += 1
            if self.data_gets >= self.n:
                self.cancel.set()

    def get(self, key: str, byte_range=None) -> bytes:
        self._count(key)
        return self.inner.get(key, byte_range)

    def get_into(self, key: str, buf):
        self._count(key)
        return self.inner.get_into(key, buf)


def test_cancelled_restore_stops_early_and_leaves_only_a_resumable_partial(repo, image, tmp_path):
    res = backup_disk(repo, image, server="web", disk="vda")
    n = len(res.point.chunk_ids())
    cancel = threading.Event()
    counting = CancelAfter(repo.storage, 2, cancel)
    repo.storage, real = counting, repo.storage
    out = tmp_path / "r.img"
    with pytest.raises(Cancelled) as e:
        restore_disk(repo, server="web", out=out, parallel=1, cancel=cancel)
    assert e.value.exit_code == 130 and "web/vda" in str(e.value)
    assert counting.data_gets < n  # it stopped; it did not fetch the whole image first
    assert not out.exists()
    repo.storage = real
    got = restore_disk(repo, server="web", out=out, parallel=2)
    assert sha(out) == sha(image)
    assert got.resumed_chunks >= 1


def test_source_that_grows_during_backup_writes_no_point(repo, tmp_path):
    src = make_image(tmp_path / "growing.img", 8 * MiB)

    class GrowMidway:  # a progress sink that appends to the source while it is being read
        def start(self, phase, total):
            pass

        def advance(self, n):
            if not getattr(self, "grown", False):
                self.grown = True
                with open(src, "ab") as f:
                    f.write(b"x" * 4096)

        def finish(self):
            pass

    with pytest.raises(SourceChanged, match="changed size") as e:
        backup_disk(repo, src, server="web", disk="vda", progress=GrowMidway())
    assert e.value.exit_code == 15
    assert list(repo.storage.list("snapshots/")) == []


def test_full_local_disk_is_exit_15_and_leaves_no_output(repo, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    img = tmp_path / "rand.img"
    img.write_bytes(os.urandom(12 * MiB))  # incompressible, no zeros: needs 12 MiB on disk
    backup_disk(repo, img, server="web", disk="vda")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(mnt)], check=True)
    try:
        from drctl.repo.errors import DiskFull

        with pytest.raises(DiskFull, match="disk full") as e:
            restore_disk(repo, server="web", out=mnt / "out.img")
        assert e.value.exit_code == 15 and not (mnt / "out.img").exists()
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


class LockingMemoryStorage(MemoryStorage):
    """The in-memory store, claiming to enforce Object Lock (what SeaweedFS reports)."""

    def lock_support(self):
        from drctl.storage.base import LockSupport

        return LockSupport(enforced=True, detail="test store: enforced")


@pytest.mark.parametrize("enforced", [True, False])
def test_reused_chunks_are_retained_as_long_as_the_newest_point_only_where_enforced(tmp_path, enforced):
    storage = LockingMemoryStorage() if enforced else MemoryStorage()
    repo = init_repository(storage, b"client-password-1", chunk_size=MiB)
    img = make_image(tmp_path / "d.img", 6 * MiB + 5, seed=3)
    first = backup_disk(repo, img, server="s", disk="d", retain_days=1)
    assert mutate(img, 0.01) == 1  # one chunk changes, the others are reused
    second = backup_disk(repo, img, server="s", disk="d", retain_days=5)
    reused = set(first.point.chunk_ids()) & set(second.point.chunk_ids())
    assert reused and second.new_chunks == 1
    assert second.extended_chunks == (len(reused) if enforced else 0)
    for cid in reused:
        until = storage.retention[chunk_key(cid)]
        assert until == (second.point.retain_until if enforced else first.point.retain_until)


def test_restore_never_writes_through_planted_links(repo, image, tmp_path):
    backup_disk(repo, image, server="web", disk="vda")
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    out = tmp_path / "r.img"
    # Links planted where the restore writes its partial file and its journal's temporary file.
    out.with_name("r.img.partial").symlink_to(victim)
    out.with_name("r.img.partial.done.tmp").symlink_to(victim)
    restore_disk(repo, server="web", out=out)
    assert victim.read_text() == "root's file\n"
    assert sha(out) == sha(image) and stat.S_IMODE(out.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("r.img")) == ["r.img"]
    # A link at the output itself is an existing output, even dangling.
    dangling = tmp_path / "d.img"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(InvalidInput, match="already exists"):
        restore_disk(repo, server="web", out=dangling)
    assert not (tmp_path / "nowhere").exists()


def test_restore_does_not_resume_into_another_users_partial(repo, image, tmp_path):
    res = backup_disk(repo, image, server="web", disk="vda")
    out = tmp_path / "r.img"
    partial = out.with_name("r.img.partial")
    with open(partial, "wb") as f:
        f.truncate(res.point.size)
    os.chown(partial, 65534, 65534)
    journal = out.with_name("r.img.partial.done")
    journal.write_text(f"point {res.point.id}\n0\n")
    with pytest.raises(UnsafeOutput, match="belongs to uid 65534") as e:
        restore_disk(repo, server="web", out=out)
    assert e.value.exit_code == 15 and not out.exists()
    # A journal that is not the caller's own is ignored: the planted partial is replaced.
    os.chown(journal, 65534, 65534)
    restore_disk(repo, server="web", out=out)
    assert sha(out) == sha(image) and os.stat(out).st_uid == os.geteuid()


def test_restored_image_is_not_published_over_a_file_that_appeared(repo, image, tmp_path, monkeypatch):
    import drctl.repo.restore as restore_mod

    backup_disk(repo, image, server="web", disk="vda")
    out = tmp_path / "r.img"
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    real_finish = restore_mod._finish

    def plant_then_finish(partial, dst, fmt):
        dst.symlink_to(victim)  # planted after the checks, before the image takes its name
        real_finish(partial, dst, fmt)

    monkeypatch.setattr(restore_mod, "_finish", plant_then_finish)
    with pytest.raises(InvalidInput, match="appeared while restoring; the verified image is kept"):
        restore_disk(repo, server="web", out=out)
    assert victim.read_text() == "root's file\n" and out.is_symlink()
    assert sha(tmp_path / "r.img.partial") == sha(image)
