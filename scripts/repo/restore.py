"""``drctl restore``: parallel, authenticated, resumable restore of one disk image
(read order: docs/repository-format.md §4).

This module chooses the restore point, prepares the output (``OUT.partial`` and its journal, the
chunks a previous attempt already verified), runs the pipeline (:mod:`drctl.repo.restore_pipeline`)
and moves the image into place only once its digest equals the manifest's (format 1: sha256 of the
image; format 2: BLAKE3 over the per-chunk digests), converting it to qcow2 if asked."""

from __future__ import annotations

import hmac
import logging
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from drctl.errors import InvalidInput, ToolMissing
from drctl.private_files import create_private_file, open_private_file, private_temp_dir, publish
from drctl.processes import CommandFailed, run
from drctl.repo.crypto import chunk_id_for
from drctl.repo.errors import ImageMismatch, OutputError
from drctl.repo.journal import RestoreJournal
from drctl.repo.manifest import Manifest, chunk_length
from drctl.repo.points import find_point
from drctl.repo.progress import NullProgress, ProgressSink
from drctl.repo.repository import Repository
from drctl.repo.restore_pipeline import RestoreWriter, fetch_all, output_error, window_size

log = logging.getLogger(__name__)

FORMATS = ("raw", "qcow2")


@dataclass(frozen=True)
class RestoreResult:
    point: Manifest
    path: Path
    format: str
    fetched_chunks: int
    fetched_bytes: int
    resumed_chunks: int
    duration_s: float

    def summary(self) -> dict[str, object]:
        return {
            "point": self.point.id,
            "server": self.point.server,
            "disk": self.point.disk,
            "size": self.point.size,
            "path": str(self.path),
            "format": self.format,
            "sha256": self.point.sha256 or None,  # format-1 points only
            "repo_format": self.point.version,
            "image_digest": self.point.digest_label,
            "fetched_chunks": self.fetched_chunks,
            "fetched_bytes": self.fetched_bytes,
            "resumed_chunks": self.resumed_chunks,
            "duration_s": round(self.duration_s, 3),
        }


def restore_disk(
    repo: Repository,
    *,
    server: str,
    out: str | os.PathLike[str],
    disk: str | None = None,
    point: str = "latest",
    fmt: str = "raw",
    parallel: int = 16,
    progress: ProgressSink | None = None,
    cancel: threading.Event | None = None,
) -> RestoreResult:
    """Restore one disk of ``server`` to ``out``; the public entry the activation calls.

    ``point`` is ``latest``, a point id (prefix) or an ISO time (newest at or before it). A file
    appears at ``out`` only once its digest equals the manifest's; on failure ``out.partial`` and
    its journal stay for a resume (the same call again). Setting ``cancel`` (from another thread)
    stops the restore within one chunk download: it raises :class:`Cancelled`."""
    with repo.lock(exclusive=False, operation="restore"):
        manifest = find_point(repo, server, disk, point)
        return restore_point(
            repo, manifest, Path(out), fmt=fmt, parallel=parallel, progress=progress, cancel=cancel
        )


def _verify_resumed(repo: Repository, fd: int, m: Manifest, candidates: set[int]) -> list[int]:
    """Indexes whose bytes already on disk hash to their chunk id (never trusted blindly)."""
    ids = dict(m.iter_chunks())

    def ok(i: int) -> bool:
        cid = ids.get(i)
        if cid is None:
            return False
        data = os.pread(fd, chunk_length(i, m.size, m.chunk_size), i * m.chunk_size)
        return hmac.compare_digest(chunk_id_for(m.version, repo.keys, data), cid)

    todo = sorted(i for i in candidates if 0 <= i < len(ids))
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as ex:
        return [i for i, good in zip(todo, ex.map(ok, todo), strict=False) if good]


def _prepare_output(out: Path, fmt: str) -> tuple[Path, Path]:
    if fmt not in FORMATS:
        raise InvalidInput(f"output format {fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt == "qcow2" and shutil.which("qemu-img") is None:
        raise ToolMissing(
            "--format qcow2 needs `qemu-img` (Debian package qemu-utils); install it "
            "or restore with --format raw"
        )
    if os.path.lexists(out):  # a dangling symbolic link too: the output is never written through one
        raise InvalidInput(f"output {out} already exists: remove it or choose another --out")
    if not out.parent.is_dir():
        raise OutputError(f"output directory {out.parent} does not exist; create it first")
    partial = out.with_name(out.name + ".partial")
    return partial, partial.with_name(partial.name + ".done")


def restore_point(
    repo: Repository,
    m: Manifest,
    out: Path,
    *,
    fmt: str = "raw",
    parallel: int = 16,
    progress: ProgressSink | None = None,
    cancel: threading.Event | None = None,
) -> RestoreResult:
    """Restore the given point to ``out`` (the caller holds a shared lock)."""
    t0 = time.monotonic()
    progress = progress or NullProgress()
    partial, jpath = _prepare_output(out, fmt)
    journal = RestoreJournal(jpath)
    fd, candidates = _open_partial(partial, journal.load(m.id), m.size)
    try:
        os.ftruncate(fd, m.size)
        resumed = _verify_resumed(repo, fd, m, candidates) if candidates else []
        journal.start(m.id, fd, resumed)
        progress.start("restore", m.size)
        parallel = max(1, parallel)
        w = RestoreWriter(fd, m, journal, progress, partial, window_size(parallel, m.chunk_size))
        w.mark([i for i, cid in m.iter_chunks() if cid is None])
        ids = dict(m.iter_chunks())
        w.mark(resumed, [ids[i] or b"" for i in resumed])  # proven equal to their ids
        fetched, fetched_bytes, digest = fetch_all(repo, m, w, set(resumed), parallel, cancel)
        journal.flush()
        expected = m.image_digest if m.version == 2 else m.sha256
        if digest != expected:
            os.close(fd)
            fd = -1
            partial.unlink(missing_ok=True)
            journal.remove()
            raise ImageMismatch(
                f"restored image of {m.server}/{m.disk} point {m.id} has digest {digest}, the manifest "
                f"says {m.digest_label}: the partial file was deleted; run `drctl check REPO --read-data`"
            )
        os.fsync(fd)
    except OSError as e:
        raise output_error(e, partial, "writing") from e
    finally:
        journal.close()
        if fd >= 0:
            os.close(fd)
        progress.finish()
    _finish(partial, out, fmt)
    journal.remove()
    return RestoreResult(m, out, fmt, fetched, fetched_bytes, len(resumed), time.monotonic() - t0)


def _open_partial(partial: Path, candidates: set[int] | None, size: int) -> tuple[int, set[int]]:
    """The partial file to write: the one of an interrupted restore of this point when it is the
    caller's own file of the right size (its chunks are re-verified), else a new private one
    (``O_EXCL | O_NOFOLLOW``, 0600) in place of whatever was there (a planted link is removed,
    never followed)."""
    if candidates is not None and os.path.lexists(partial):
        fd = open_private_file(partial)
        if os.fstat(fd).st_size == size:
            return fd, candidates
        os.close(fd)
    try:
        partial.unlink(missing_ok=True)
    except OSError as e:
        raise output_error(e, partial, "removing the stale") from e
    return create_private_file(partial), set()


def _finish(partial: Path, out: Path, fmt: str) -> None:
    """Move the verified raw image into place (converting it first for qcow2). The final name is
    taken only if nothing exists there (a link planted meanwhile is neither followed nor replaced);
    qemu-img writes inside a private directory, so it has no name to follow either."""
    try:
        if fmt == "qcow2":
            work = private_temp_dir(out.parent, out.name)
            tmp = work / "image.qcow2"
            try:
                try:
                    run(
                        ["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(partial), str(tmp)],
                        what=f"qemu-img convert to {out}",
                        timeout=None,  # as long as writing the whole image takes
                    )
                except CommandFailed as e:
                    raise OutputError(f"{e.message}; the verified raw image is kept at {partial}") from e
                os.chmod(tmp, 0o600)
                _publish(tmp, out, kept=partial)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            partial.unlink()
        else:
            _publish(partial, out, kept=partial)
        dfd = os.open(out.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as e:
        raise output_error(e, out, "finishing") from e


def _publish(src: Path, out: Path, *, kept: Path) -> None:
    try:
        publish(src, out)
    except FileExistsError as e:
        raise InvalidInput(
            f"output {out} appeared while restoring; the verified image is kept at {kept}: move it "
            "yourself or remove the new file and run the same restore again"
        ) from e
