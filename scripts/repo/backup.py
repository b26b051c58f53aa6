"""``drctl backup``: one disk image -> deduplicated encrypted chunks + one manifest
(write order: docs/repository-format.md §3)."""

from __future__ import annotations

import logging
import queue
import re
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from drctl.errors import DrctlError, InvalidInput
from drctl.repo.chunker import DiskSource
from drctl.repo.crypto import image_digest_v2, stored_chunk_fits
from drctl.repo.errors import ChunkVanished, LockLost, RepoNeedsUpgrade
from drctl.repo.locks import RepoLock
from drctl.repo.manifest import (
    BACKUP_TYPES,
    Manifest,
    chunk_key,
    chunk_length,
    encode_chunks,
    new_point_id,
    point_key,
)
from drctl.repo.points import load_readable_points, warn_damaged
from drctl.repo.progress import NullProgress, ProgressSink
from drctl.repo.repository import FORMAT_VERSION, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, Repository

log = logging.getLogger(__name__)

# The plan schema's name pattern: a point's server and disk are the plan's names.
PLAN_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")


@dataclass(frozen=True)
class BackupResult:
    point: Manifest
    chunks: int
    new_chunks: int
    uploaded_bytes: int
    duration_s: float
    retention_enforced: bool | None
    retention_detail: str = ""
    extended_chunks: int = 0  # reused chunks whose retention was extended to this point's
    repaired_chunks: int = 0  # chunks in the store that could not be valid, uploaded again

    def summary(self) -> dict[str, Any]:
        """The ``--json`` final line (never anything secret)."""
        return {
            "point": self.point.id,
            "server": self.point.server,
            "disk": self.point.disk,
            "size": self.point.size,
            "chunks": self.chunks,
            "new_chunks": self.new_chunks,
            "uploaded_bytes": self.uploaded_bytes,
            "duration_s": round(self.duration_s, 3),
            "backup_type": self.point.type,
            "parent": self.point.parent,
            "sha256": self.point.sha256 or None,  # format-1 points only
            "repo_format": self.point.version,
            "image_digest": self.point.digest_label,
            "retain_until": self.point.retain_until.isoformat() if self.point.retain_until else None,
            "retention_enforced": self.retention_enforced,
            "extended_chunks": self.extended_chunks,
            "repaired_chunks": self.repaired_chunks,
        }


def _parent(points: list[Manifest], server: str, disk: str, backup_type: str) -> tuple[str, str | None]:
    mine = sorted((p for p in points if p.server == server and p.disk == disk), key=lambda p: p.created)
    if backup_type == "auto":
        backup_type = "incremental" if mine else "full"
    if backup_type not in BACKUP_TYPES:
        raise InvalidInput(f"backup type {backup_type!r} is not one of auto, {', '.join(BACKUP_TYPES)}")
    if backup_type == "full" or not mine:
        return "full", None
    if backup_type == "incremental":
        return "incremental", mine[-1].id
    fulls = [p for p in mine if p.type == "full"]
    return ("differential", fulls[-1].id) if fulls else ("full", None)


class _Uploader:
    """Chunk id, dedup claim, compress+encrypt+upload: all on the pool's threads.

    A chunk already in ``data/`` is reused only if its object's size (from the run's one listing)
    is the size this plaintext is stored with; otherwise it is uploaded again (a truncated or empty
    object would make the new point unrestorable too). That size is the one an earlier point
    recorded for the chunk (``recorded``) or, for a chunk no point recorded, computed by packing it
    again (a compression). With enforced retention, a reused chunk gets
    its retention extended to this point's (format §8): otherwise deleting it once the older,
    shorter retention expired would break the newer point that still references it."""

    def __init__(
        self,
        repo: Repository,
        known: dict[bytes, int],
        recorded: dict[bytes, int],
        retain_until: datetime | None,
        extend_reused: bool,
    ) -> None:
        self.repo = repo
        self.known = known  # chunk id -> size of its object in the store
        self.recorded = recorded  # chunk id -> size its object had when a point referenced it
        self.sizes: dict[bytes, int] = {}  # chunk id -> size its object must have (for step 5)
        self.claimed: set[bytes] = set()
        self.extend_reused = bool(extend_reused and retain_until)
        self.claim_lock = threading.Lock()
        self.retain_until = retain_until
        self.extended = 0
        self.repaired = 0
        self.failed = threading.Event()

    def process(self, data: bytes | bytearray) -> tuple[bytes, int]:
        cid = self.repo.chunk_id(data)  # keyed BLAKE3, on this worker thread
        with self.claim_lock:
            if cid in self.claimed:  # met earlier in this run: handled (or in flight) there
                return cid, 0
            self.claimed.add(cid)
        if self.failed.is_set():  # another upload failed: do no more work
            return cid, 0
        try:
            stored = self.known.get(cid)
            expected = self.recorded.get(cid)
            if stored is not None and (
                stored == expected if expected is not None else stored_chunk_fits(stored, data)
            ):
                if self.extend_reused and self.retain_until is not None:
                    self.repo.extend_chunk_retention(cid, self.retain_until)
                    with self.claim_lock:
                        self.extended += 1
                with self.claim_lock:
                    self.sizes[cid] = stored
                return cid, 0
            if stored is not None:
                log.warning(
                    "chunk %s (object %r) holds %d bytes, which cannot be the stored chunk of these "
                    "%d bytes (truncated or damaged): uploading it again",
                    cid.hex(),
                    chunk_key(cid),
                    stored,
                    len(data),
                )
            size = self.repo.put_chunk(cid, data, self.retain_until)
            with self.claim_lock:
                self.sizes[cid] = size
                self.repaired += stored is not None
            return cid, size
        except BaseException:
            self.failed.set()
            raise


def _verify_chunks(repo: Repository, sizes: dict[bytes, int]) -> None:
    """Every chunk the new manifest references is in ``data/`` (one listing) with its size."""
    stored = repo.chunk_objects()
    for cid, size in sizes.items():
        got = stored.get(cid)
        if got is None:
            raise ChunkVanished(cid.hex(), chunk_key(cid), repo.describe(), "is missing")
        if got != size:
            raise ChunkVanished(
                cid.hex(), chunk_key(cid), repo.describe(), f"holds {got} bytes instead of {size}"
            )


def _write_point(repo: Repository, lock: RepoLock, manifest: Manifest, sizes: dict[bytes, int]) -> None:
    """Write the manifest only if our lock was continuously live and every chunk it references is
    in the store (docs/repository-format.md §3, step 5)."""
    consequence = (
        "a prune may have deleted chunks this backup counted on, so no restore point was written "
        "(the repository is consistent); run the backup again"
    )
    try:
        lock.ensure_live()
        _verify_chunks(repo, sizes)
        lock.ensure_live()  # the listing may have taken long
    except LockLost as e:
        raise LockLost(f"{e.message}; {consequence}") from e
    repo.save_point(manifest)
    try:
        lock.ensure_live()  # a pause during the write itself
    except LockLost as e:
        key = point_key(manifest.id)
        try:
            repo.storage.delete(key)
        except DrctlError as gone:
            raise LockLost(
                f"{e.message} while its restore point was written, and its manifest {key!r} could not "
                f"be removed again ({gone.message}): it may reference pruned chunks; remove it with "
                f"`drctl forget` or check it with `drctl check REPO`"
            ) from e
        raise LockLost(f"{e.message} while its restore point was written; {consequence}") from e


def backup_disk(
    repo: Repository,
    source: str | Path,
    *,
    server: str,
    disk: str,
    chunk_size: int | None = None,
    backup_type: str = "auto",
    retain_days: int | None = None,
    parallel: int = 8,
    progress: ProgressSink | None = None,
    check_source: Callable[[], None] | None = None,
) -> BackupResult:
    """Back up one disk image; returns the new restore point. No manifest is written unless every
    chunk was stored and the source kept its size. ``check_source``, when given, runs after the
    whole source was read and before the manifest is written: it raises to say the copy just read
    cannot be trusted (an overflowed snapshot), and then no point is written either."""
    for what, name in (("server", server), ("disk", disk)):
        if not PLAN_NAME.fullmatch(name):
            raise InvalidInput(
                f"{what} name {name!r}: use the plan's name (lower-case letters, digits and '-', "
                "starting with a letter, at most 63 characters)"
            )
    progress = progress or NullProgress()
    chunk_size = chunk_size or repo.config.chunk_size
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise InvalidInput(f"chunk size {chunk_size} out of range [{MIN_CHUNK_SIZE}, {MAX_CHUNK_SIZE}]")
    if repo.config.version < FORMAT_VERSION:
        raise RepoNeedsUpgrade(
            f"repository {repo.describe()} has format version {repo.config.version}; this drctl writes "
            f"format {FORMAT_VERSION} backups. Run `drctl repo upgrade {repo.describe()}` once (its "
            f"existing restore points stay restorable), then back up again"
        )
    if retain_days is None and repo.config.object_lock:
        retain_days = repo.config.object_lock.get("retain_days")
    t0 = time.monotonic()
    with repo.lock(exclusive=False, operation="backup") as lock, DiskSource(source) as src:
        listing = load_readable_points(repo)  # a damaged manifest only loses its say in the parent
        warn_damaged(listing.damaged)
        btype, parent = _parent(listing.points, server, disk, backup_type)
        retain_until = enforced = None
        detail = ""
        if retain_days:
            retain_until = datetime.now(UTC) + timedelta(days=int(retain_days))
            support = repo.storage.lock_support()
            enforced, detail = support.enforced, support.detail
            if not enforced:
                log.warning("retention requested but not enforced by %s: %s", repo.describe(), detail)
        known = repo.chunk_objects()
        recorded = {
            c: n for p in sorted(listing.points, key=lambda p: p.created) for c, n in p.stored_sizes.items()
        }
        up = _Uploader(repo, known, recorded, retain_until, extend_reused=bool(enforced))
        zero = bytes(chunk_size)
        slots = threading.BoundedSemaphore(max(2, parallel * 2))
        # Read buffers, reused: one per chunk in flight (a slot) and the one being read.
        free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()

        def read_buffer() -> bytearray:
            try:
                return free.get_nowait()
            except queue.Empty:
                return bytearray(chunk_size)

        entries: list[Future[tuple[bytes, int]] | None] = []
        progress.start("backup", src.size)
        pool = ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="backup")
        try:
            for i, data in src.chunks(chunk_size, read_buffer):
                if data is None or data == zero[: len(data)]:  # None: a hole, never read
                    if isinstance(data, bytearray):
                        free.put(data)
                    entries.append(None)
                    progress.advance(chunk_length(i, src.size, chunk_size))
                    continue
                slots.acquire()
                fut = pool.submit(up.process, data)

                def chunk_done(_: Future[tuple[bytes, int]], chunk: bytes | bytearray = data) -> None:
                    if isinstance(chunk, bytearray):  # sealed and uploaded (or failed): reusable
                        free.put(chunk)
                    slots.release()
                    progress.advance(len(chunk))

                fut.add_done_callback(chunk_done)
                entries.append(fut)
                if up.failed.is_set():
                    break  # the error is raised below from its future
            ids: list[bytes | None] = []
            new_chunks = uploaded = 0
            for entry in entries:
                if entry is None:
                    ids.append(None)
                    continue
                cid, nbytes = entry.result()
                ids.append(cid)
                if nbytes:
                    new_chunks += 1
                    uploaded += nbytes
        finally:
            up.failed.set()  # on success every future is done; on error, stop the rest
            pool.shutdown(wait=True, cancel_futures=True)
        src.check_unchanged()
        if check_source is not None:
            check_source()
        progress.finish()
        manifest = Manifest(
            id=new_point_id(),
            repo=repo.config.id,
            server=server,
            disk=disk,
            size=src.size,
            chunk_size=chunk_size,
            sha256="",
            created=datetime.now(UTC),
            type=btype,
            parent=parent,
            chunks=encode_chunks(ids),
            retain_until=retain_until,
            host=socket.gethostname(),
            stored_sizes={c: up.sizes[c] for c in ids if c is not None},
            version=FORMAT_VERSION,
            image_digest=image_digest_v2(src.size, chunk_size, ids),
        )
        _write_point(repo, lock, manifest, up.sizes)
    result = BackupResult(
        manifest,
        len(ids),
        new_chunks,
        uploaded,
        time.monotonic() - t0,
        enforced,
        detail,
        up.extended,
        up.repaired,
    )
    log.info("backup of %s/%s: point %s, %d chunks, %d new", server, disk, manifest.id, len(ids), new_chunks)
    return result
