"""The restore's parallel pipeline for one disk image: downloads, authentication, positioned
writes, the image digest and the resume journal (read order: docs/repository-format.md §4).

Downloads run on one pool; authentication + decompression + the chunk's own digest + positioned
writes on another (:func:`decoder_count`: two threads per CPU); a journal thread records written
chunks. Format 2: each decoder proves its chunk's keyed BLAKE3 equal to the chunk id, and the image
digest is combined from those per-chunk digests at the end (zero chunks are a constant). Format 1:
a hasher thread takes the verified plaintext in image order into SHA-256 (zero runs from a zero
block). A chunk holds a slot of the window (:func:`window_size`) and a download buffer from its
download until it is decoded, the slot until it is written (format 2) or hashed (format 1), so at
most that many chunks are in memory at once.
:mod:`drctl.repo.restore` prepares the output, runs :func:`fetch_all` and moves the verified image
into place."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import logging
import mmap
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from drctl.errors import Cancelled
from drctl.repo.crypto import CHUNK_OVERHEAD, image_digest_v2
from drctl.repo.errors import DiskFull, ImageMismatch, OutputError
from drctl.repo.journal import RestoreJournal
from drctl.repo.manifest import Manifest, chunk_count, chunk_length
from drctl.repo.progress import ProgressSink
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
DIRECT_ALIGN = 4096  # O_DIRECT: buffer address, file offset and length multiples of this


def output_error(e: OSError, path: Path, what: str) -> Exception:
    """A local I/O failure on the restore output as the error a user can act on (disk full or not)."""
    if e.errno == errno.ENOSPC:
        return DiskFull(
            f"local disk full while {what} {path}: free space (or choose another --out) "
            f"and run the same restore again: it resumes from the verified chunks"
        )
    return OutputError(f"cannot {what} {path}: {e.strerror}; check the path and its permissions")


def _page_aligned(size: int) -> memoryview:
    """A reusable buffer: an anonymous mapping, page-aligned as direct I/O needs. (Populating it
    at once with ``MAP_POPULATE``, or asking for huge pages, measured no better or worse.)"""
    return memoryview(mmap.mmap(-1, size))


class RestoreWriter:
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
        # Format 2: the digest proven for each index (None: not yet; zero chunks stay None).
        self.digests: list[bytes | None] | None = [None] * self.n if m.version == 2 else None
        self.direct_fd = -1  # the same file opened O_DIRECT (format 2, where the filesystem allows)
        self.direct_ok = False
        self._buffers = threading.local()
        self._downloads: queue.SimpleQueue[memoryview] = queue.SimpleQueue()  # free download buffers

    def open_direct(self) -> None:
        """Also open the output with O_DIRECT, for the whole chunks of format 2: they are written
        from page-aligned buffers straight to the disk, without the copy into the page cache that
        was the largest CPU cost of a restore (~30 % of its data phase, measured with perf). The
        file is reopened through its descriptor (``/proc/self/fd``), never by name. Where the
        filesystem or the chunk size does not allow it, every write stays buffered."""
        if self.m.chunk_size % DIRECT_ALIGN or not hasattr(os, "O_DIRECT"):
            return
        try:
            self.direct_fd = os.open(f"/proc/self/fd/{self.fd}", os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
            self.direct_ok = True
        except OSError as e:
            log.debug("restore output %s: no direct I/O (%s), writes are buffered", self.path, e.strerror)

    def close_direct(self) -> None:
        """Once no decoder writes any more."""
        self.direct_ok = False
        if self.direct_fd >= 0:
            os.close(self.direct_fd)
            self.direct_fd = -1

    def buffers(self) -> tuple[memoryview, memoryview]:
        """This decoder thread's plaintext and ciphertext buffers, reused for every chunk it decodes
        (format 2: a chunk's plaintext is written and forgotten before the next one). Anonymous
        mappings, so page-aligned for direct writes."""
        pair = getattr(self._buffers, "pair", None)
        if pair is None:
            cs = self.m.chunk_size
            pair = self._buffers.pair = (_page_aligned(cs), _page_aligned(cs + CHUNK_OVERHEAD))
        return pair

    def download_buffer(self) -> memoryview:
        """A buffer a stored chunk fits in, reused across downloads: the pages of a fresh 4 MiB
        body cost a page fault each (with the memset of a new ``bytearray``, ~7 % of a restore's
        CPU, measured with perf). One per chunk in flight at most: a download holds it, and its
        window slot, until the chunk is decoded, then :meth:`return_download_buffer`."""
        try:
            return self._downloads.get_nowait()
        except queue.Empty:
            return _page_aligned(self.m.chunk_size + CHUNK_OVERHEAD)

    def return_download_buffer(self, buf: memoryview) -> None:
        self._downloads.put(buf)

    def mark(self, idxs: list[int], digests: list[bytes] | None = None) -> None:
        """Zero and resumed chunks: already right in the file, never journaled again. ``digests``:
        the proven digests of resumed chunks (format 2)."""
        with self.cond:
            for k, i in enumerate(idxs):
                self.done[i] = 1
                if digests is not None and self.digests is not None:
                    self.digests[i] = digests[k]
            self.cond.notify_all()
        self.progress.advance(sum(chunk_length(i, self.m.size, self.m.chunk_size) for i in idxs))

    def publish(self, plain: bytes | memoryview, idxs: list[int], digest: bytes | None = None) -> None:
        """``plain`` (authenticated) was written at every index of ``idxs``. Format 1: hand it to
        the hasher (which frees its window slot). Format 2: record ``digest``, the keyed BLAKE3 of
        ``plain`` proven equal to its chunk id, for every index, and free the slot now."""
        self.to_journal.put(idxs)
        with self.cond:
            if self.digests is None:
                assert isinstance(plain, bytes)
                self.ready[idxs[0]] = plain
            for i in idxs:
                self.done[i] = 1
                if self.digests is not None:
                    self.digests[i] = digest
            self.cond.notify_all()
        if self.digests is not None:
            self.window.release()
        self.progress.advance(len(plain) * len(idxs))

    def list_digest(self) -> str:
        """Format 2: the image digest of what was proven and written, index by index (a zero chunk
        is the constant). ImageMismatch naming the first non-zero index never proven."""
        assert self.digests is not None
        for i, d in enumerate(self.digests):
            if d is None and not self.zero[i]:
                raise ImageMismatch(
                    f"chunk {i} of {self.m.server}/{self.m.disk} point {self.m.id} was never verified; "
                    f"the partial file {self.path} cannot be trusted"
                )
        return image_digest_v2(self.m.size, self.m.chunk_size, self.digests)

    def journal_loop(self) -> None:
        """Journal thread body: record written chunks (the journal fdatasyncs the data first)."""
        broken = False
        while (idxs := self.to_journal.get()) is not None:
            if not broken:  # chunks written before a failure still count for the resume
                try:
                    self.journal.add(idxs)
                except OSError as e:
                    broken = True
                    self.fail(output_error(e, self.path, "journaling"))

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

    def write(self, plain: bytes | memoryview, idxs: list[int], aligned: bool = False) -> None:
        """``plain`` at every index of ``idxs``; direct when ``plain`` is a page-aligned buffer of
        whole blocks (every chunk but a short last one) and the output allows it."""
        direct = aligned and self.direct_ok and len(plain) % DIRECT_ALIGN == 0
        for i in idxs:
            off = i * self.m.chunk_size
            try:
                view = memoryview(plain)
                while view:
                    if direct:
                        try:
                            written = os.pwrite(self.direct_fd, view, off)
                        except OSError as e:
                            if e.errno != errno.EINVAL:
                                raise
                            # Alignment this device does not accept: buffered from now on (the
                            # descriptor is closed only once every decoder has stopped).
                            log.debug(
                                "restore output %s: direct write refused, writes are buffered", self.path
                            )
                            direct = self.direct_ok = False
                            continue
                        if written % DIRECT_ALIGN:
                            direct = False  # a short direct write: finish this chunk buffered
                    else:
                        written = os.pwrite(self.fd, view, off)
                    view, off = view[written:], off + written
            except OSError as e:
                raise output_error(e, self.path, "writing") from e

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


def decoder_count() -> int:
    """Two decoders per CPU: a decoder waits for each of its direct writes to reach the disk, and
    meanwhile the other one decodes (measured on the 2-CPU benchmark machine: data phase 1.26 s with
    4 decoders, 1.45 s with 2, 1.33 s with 3, 1.37-1.42 s with 6 or 8, medians of 6 runs)."""
    return 2 * max(1, os.cpu_count() or 1)


def window_size(parallel: int, chunk_size: int) -> int:
    """Chunks held at once (downloading, decoding, or waiting for the hasher): enough to keep every
    download thread and every decoder busy, capped by ``INFLIGHT_BUDGET``."""
    want = parallel + decoder_count() + 4
    return max(2, min(want, INFLIGHT_BUDGET // chunk_size))


def fetch_all(
    repo: Repository,
    m: Manifest,
    w: RestoreWriter,
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
    v2 = m.version == 2
    hasher = threading.Thread(
        target=lambda: result.__setitem__(0, w.hash_in_order()), name="restore-hash", daemon=True
    )
    if not v2:  # format 2 needs no in-order pass: the decoders prove each chunk
        hasher.start()
    journaler = threading.Thread(target=w.journal_loop, name="restore-journal", daemon=True)
    journaler.start()
    if v2:
        w.open_direct()
    downloads = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="restore-get")
    decoders = ThreadPoolExecutor(max_workers=decoder_count(), thread_name_prefix="restore-dec")

    def decode(cid: bytes, idxs: list[int], buf: memoryview, blob: memoryview) -> None:
        try:
            if w.error is not None:
                w.return_download_buffer(buf)
                w.window.release()
                return
            # Format 1: the tag binds the chunk id; the final image sha256 covers the rest. Format 2:
            # the plaintext's keyed BLAKE3 must equal the chunk id, here, in parallel (format §4),
            # decrypted into this thread's reused buffer. A memoryview: the ciphertext is never
            # copied before decryption.
            length = chunk_length(idxs[0], m.size, m.chunk_size)
            plain: bytes | memoryview
            try:
                if v2:
                    out, scratch = w.buffers()
                    plain = repo.open_chunk_into(cid, blob, length, out, scratch, version=2)
                else:
                    plain = repo.open_chunk(cid, blob, length, verify_id=False, version=1)
                stored = len(blob)
            finally:  # the plaintext never points into the download buffer: it can serve the next
                del blob
                w.return_download_buffer(buf)
            w.write(plain, idxs, aligned=v2)
            with count_lock:
                counters["chunks"] += 1
                counters["bytes"] += stored
            w.publish(plain, idxs, cid if v2 else None)  # format 1: the hasher frees the slot
        except BaseException as e:
            w.fail(e)
            w.window.release()

    def fetch(cid: bytes, idxs: list[int]) -> None:
        buf = w.download_buffer()
        try:
            if w.error is None:
                decoders.submit(decode, cid, idxs, buf, repo.fetch_chunk_into(cid, buf))
                return
        except BaseException as e:
            w.fail(e)
        w.return_download_buffer(buf)
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
        w.close_direct()
        w.to_journal.put(None)
        journaler.join()
        if not v2:
            hasher.join()
    if w.error is not None:
        raise w.error
    if v2:
        result[0] = w.list_digest()
    return counters["chunks"], counters["bytes"], result[0]
