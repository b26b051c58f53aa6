"""``drctl restore``: parallel, authenticated, resumable restore of one disk image
(read order: docs/repository-format.md §4).

Downloads run on one pool; authentication + decompression + positioned writes on another (one thread
per CPU); a hasher thread takes the verified plaintext in image order (zero runs from a zero block);
a journal thread records written chunks. A chunk holds a slot of the window (``window_size``) from
its download until it is hashed, so at most that many chunks are in memory at once."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import hmac
import logging
import os
import queue
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from drctl.errors import Cancelled, InvalidInput, ToolMissing
from drctl.private_files import create_private_file, open_private_file, private_temp_dir, publish
from drctl.repo.crypto import chunk_id
from drctl.repo.errors import DiskFull, ImageMismatch, OutputError
from drctl.repo.journal import RestoreJournal
from drctl.repo.manifest import Manifest, chunk_count, chunk_length, select_point
from drctl.repo.progress import NullProgress, ProgressSink
from drctl.repo.repository import Repository

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc mallopt parameter


def _fewer_malloc_arenas() -> None:
    """glibc gives threads their own malloc arenas (up to 8 per CPU): the freed 4 MiB buffers of the
    16 download threads then sit in many arenas and RSS grows by fragmentation (measured ~240 MiB
    peak on the 2 GiB benchmark instead of ~185). Two arenas keep buffers reused (no fresh page
    faults either). Process-wide, set when this module is imported (the CLI imports it before
    starting any thread); harmless where it cannot apply (other libc, arenas already created)."""
    try:
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, 2)
    except (OSError, AttributeError):
        pass


_fewer_malloc_arenas()

INFLIGHT_BUDGET = 96 * 1024 * 1024  # chunk bytes held at once (downloads, decodes, reorder buffer)
ZERO_SPAN = 64 * 1024 * 1024  # zero bytes hashed per call for zero runs
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
            "type": "summary",
            "point": self.point.id,
            "server": self.point.server,
            "disk": self.point.disk,
            "size": self.point.size,
            "path": str(self.path),
            "format": self.format,
            "sha256": self.point.sha256,
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
    appears at ``out`` only once its sha256 equals the manifest's; on failure ``out.partial`` and
    its journal stay for a resume (the same call again). Setting ``cancel`` (from another thread)
    stops the restore within one chunk download: it raises :class:`Cancelled`."""
    with repo.lock(exclusive=False, operation="restore"):
        manifest = select_point(repo.load_points(), server, disk, point)
        return restore_point(
            repo, manifest, Path(out), fmt=fmt, parallel=parallel, progress=progress, cancel=cancel
        )


def _os_error(e: OSError, path: Path, what: str) -> Exception:
    if e.errno == errno.ENOSPC:
        return DiskFull(
            f"local disk full while {what} {path}: free space (or choose another --out) "
            f"and run the same restore again: it resumes from the verified chunks"
        )
    return OutputError(f"cannot {what} {path}: {e.strerror}; check the path and its permissions")


class _Writer:
    """The output file side: positioned writes, the done map and reorder buffer the hasher follows,
    the journal (fed by its own thread: its fdatasync never stalls a decoder). Every non-zero chunk
    holds one slot of ``window`` from its download until the hasher has consumed its plaintext, so
    memory is bounded by ``window`` chunks."""

    def __init__(
        self, fd: int, m: Manifest, journal: RestoreJournal, progress: ProgressSink, path: Path, window: int
    ) -> None:
        self.fd, self.m, self.journal, self.progress, self.path = fd, m, journal, progress, path
        self.n = chunk_count(m.size, m.chunk_size)
        self.done = bytearray(self.n)
        self.zero = bytearray(self.n)
        self.ready: dict[int, bytes] = {}  # first index of a chunk -> its verified plaintext
        self.cond = threading.Condition()
        self.window = threading.Semaphore(window)
        self.error: BaseException | None = None
        self.to_journal: queue.SimpleQueue[list[int] | None] = queue.SimpleQueue()

    def mark(self, idxs: list[int]) -> None:
        """Zero and resumed chunks: already right in the file, never journaled again."""
        with self.cond:
            for i in idxs:
                self.done[i] = 1
            self.cond.notify_all()
        self.progress.advance(sum(chunk_length(i, self.m.size, self.m.chunk_size) for i in idxs))

    def publish(self, plain: bytes, idxs: list[int]) -> None:
        """``plain`` (authenticated) was written at every index of ``idxs``: hand it to the hasher."""
        self.to_journal.put(idxs)
        with self.cond:
            self.ready[idxs[0]] = plain
            for i in idxs:
                self.done[i] = 1
            self.cond.notify_all()
        self.progress.advance(len(plain) * len(idxs))

    def journal_loop(self) -> None:
        """Journal thread body: record written chunks (the journal fdatasyncs the data first)."""
        broken = False
        while (idxs := self.to_journal.get()) is not None:
            if not broken:  # chunks written before a failure still count for the resume
                try:
                    self.journal.add(idxs)
                except OSError as e:
                    broken = True
                    self.fail(_os_error(e, self.path, "journaling"))

    def fail(self, e: BaseException) -> None:
        with self.cond:
            if self.error is None:
                self.error = e
            self.cond.notify_all()

    def acquire_slot(self) -> bool:
        """Wait for room in the window; False once the restore has failed."""
        while not self.window.acquire(timeout=0.25):
            if self.error is not None:
                return False
        if self.error is not None:
            self.window.release()
            return False
        return True

    def write(self, plain: bytes, idxs: list[int]) -> None:
        for i in idxs:
            off = i * self.m.chunk_size
            try:
                view = memoryview(plain)
                while view:
                    written = os.pwrite(self.fd, view, off)
                    view, off = view[written:], off + written
            except OSError as e:
                raise _os_error(e, self.path, "writing") from e

    def hash_in_order(self) -> str | None:
        """Hasher thread body: SHA-256 of the image in order. A chunk's plaintext comes from the
        reorder buffer (then its window slot is freed); zero chunks from a zero block (holes are
        never read); resumed chunks and repeated occurrences of a chunk are read back from the file."""
        h = hashlib.sha256()
        cs, size = self.m.chunk_size, self.m.size
        # calloc'd and never written: reading it maps the kernel's zero page, it costs no RSS.
        zero = memoryview(bytes(max(cs, ZERO_SPAN)))
        i = 0
        while i < self.n:
            if self.zero[i]:  # a whole zero run in few calls: fewer GIL round trips
                j = i
                while j < self.n and self.zero[j]:
                    j += 1
                left = min(j * cs, size) - i * cs
                while left:
                    step = min(left, len(zero))
                    h.update(zero[:step])
                    left -= step
                i = j
                continue
            length = chunk_length(i, size, cs)
            with self.cond:
                while not self.done[i] and self.error is None:
                    self.cond.wait()
                if self.error is not None:
                    return None
                plain = self.ready.pop(i, None)
            if plain is None:
                h.update(os.pread(self.fd, length, i * cs))
            else:
                h.update(plain)
                del plain
                self.window.release()
            i += 1
        return h.hexdigest()


def _verify_resumed(repo: Repository, fd: int, m: Manifest, candidates: set[int]) -> list[int]:
    """Indexes whose bytes already on disk hash to their chunk id (never trusted blindly)."""
    ids = dict(m.iter_chunks())

    def ok(i: int) -> bool:
        cid = ids.get(i)
        if cid is None:
            return False
        data = os.pread(fd, chunk_length(i, m.size, m.chunk_size), i * m.chunk_size)
        return hmac.compare_digest(chunk_id(repo.keys, data), cid)

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
        w = _Writer(fd, m, journal, progress, partial, window_size(parallel, m.chunk_size))
        w.mark([i for i, cid in m.iter_chunks() if cid is None])
        w.mark(resumed)
        fetched, fetched_bytes, digest = _fetch_all(repo, m, w, set(resumed), parallel, cancel)
        journal.flush()
        if digest != m.sha256:
            os.close(fd)
            fd = -1
            partial.unlink(missing_ok=True)
            journal.remove()
            raise ImageMismatch(
                f"restored image of {m.server}/{m.disk} point {m.id} has sha256 {digest}, the manifest "
                f"says {m.sha256}: the partial file was deleted; run `drctl check REPO --read-data`"
            )
        os.fsync(fd)
    except OSError as e:
        raise _os_error(e, partial, "writing") from e
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
        raise _os_error(e, partial, "removing the stale") from e
    return create_private_file(partial), set()


def window_size(parallel: int, chunk_size: int) -> int:
    """Chunks held at once (downloading, decoding, or waiting for the hasher): enough to keep every
    download thread and every decoder busy, capped by ``INFLIGHT_BUDGET``."""
    want = parallel + 2 * (os.cpu_count() or 1) + 4
    return max(2, min(want, INFLIGHT_BUDGET // chunk_size))


def _fetch_all(
    repo: Repository,
    m: Manifest,
    w: _Writer,
    skip: set[int],
    parallel: int,
    cancel: threading.Event | None = None,
) -> tuple[int, int, str | None]:
    """Download, authenticate and write every chunk not yet verified; also runs the hasher."""
    by_id: dict[bytes, list[int]] = {}
    for i, cid in m.iter_chunks():
        if cid is None:
            w.zero[i] = 1
        elif i not in skip:
            by_id.setdefault(cid, []).append(i)
    counters = {"chunks": 0, "bytes": 0}
    count_lock = threading.Lock()
    result: list[str | None] = [None]
    hasher = threading.Thread(
        target=lambda: result.__setitem__(0, w.hash_in_order()), name="restore-hash", daemon=True
    )
    hasher.start()
    journaler = threading.Thread(target=w.journal_loop, name="restore-journal", daemon=True)
    journaler.start()
    downloads = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="restore-get")
    decoders = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1), thread_name_prefix="restore-dec")

    def decode(cid: bytes, idxs: list[int], blob: bytes) -> None:
        try:
            if w.error is not None:
                w.window.release()
                return
            # The tag binds the chunk id; the final image sha256 covers the rest (format §4).
            # A memoryview: the ciphertext is never copied before decryption.
            plain = repo.open_chunk(
                cid, memoryview(blob), chunk_length(idxs[0], m.size, m.chunk_size), verify_id=False
            )
            w.write(plain, idxs)
            with count_lock:
                counters["chunks"] += 1
                counters["bytes"] += len(blob)
            del blob
            w.publish(plain, idxs)  # the hasher frees the slot once it has hashed ``plain``
        except BaseException as e:
            w.fail(e)
            w.window.release()

    def fetch(cid: bytes, idxs: list[int]) -> None:
        try:
            if w.error is not None:
                w.window.release()
                return
            blob = repo.fetch_chunk(cid)
            decoders.submit(decode, cid, idxs, blob)
        except BaseException as e:
            w.fail(e)
            w.window.release()

    try:
        for cid, idxs in by_id.items():
            if cancel is not None and cancel.is_set():
                w.fail(
                    Cancelled(
                        f"restore of {m.server}/{m.disk} cancelled; the verified chunks are kept "
                        f"in {w.path} for a resume"
                    )
                )
            if not w.acquire_slot():
                break
            downloads.submit(fetch, cid, idxs)
        downloads.shutdown(wait=True)
        decoders.shutdown(wait=True)
    except BaseException as e:
        w.fail(e)
        downloads.shutdown(wait=True, cancel_futures=True)
        decoders.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        w.to_journal.put(None)
        journaler.join()
        hasher.join()
    if w.error is not None:
        raise w.error
    return counters["chunks"], counters["bytes"], result[0]


def _finish(partial: Path, out: Path, fmt: str) -> None:
    """Move the verified raw image into place (converting it first for qcow2). The final name is
    taken only if nothing exists there (a link planted meanwhile is neither followed nor replaced);
    qemu-img writes inside a private directory, so it has no name to follow either."""
    try:
        if fmt == "qcow2":
            work = private_temp_dir(out.parent, out.name)
            tmp = work / "image.qcow2"
            try:
                proc = subprocess.run(
                    ["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(partial), str(tmp)],
                    check=False,
                    capture_output=True,
                    text=True,
                )
                if proc.returncode != 0:
                    raise OutputError(
                        f"qemu-img convert to {out} failed: {proc.stderr.strip()}; the "
                        f"verified raw image is kept at {partial}"
                    )
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
        raise _os_error(e, out, "finishing") from e


def _publish(src: Path, out: Path, *, kept: Path) -> None:
    try:
        publish(src, out)
    except FileExistsError as e:
        raise InvalidInput(
            f"output {out} appeared while restoring; the verified image is kept at {kept}: move it "
            "yourself or remove the new file and run the same restore again"
        ) from e
