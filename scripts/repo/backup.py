"""``drctl backup``: one disk image -> deduplicated encrypted chunks + one manifest
(write order: docs/repository-format.md §3)."""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from drctl.errors import InvalidInput
from drctl.repo.chunker import DiskSource
from drctl.repo.crypto import chunk_id
from drctl.repo.errors import RepoLocked
from drctl.repo.manifest import BACKUP_TYPES, Manifest, encode_chunks, new_point_id
from drctl.repo.points import load_readable_points, warn_damaged
from drctl.repo.progress import NullProgress, ProgressSink
from drctl.repo.repository import MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, Repository

log = logging.getLogger(__name__)


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

    def summary(self) -> dict[str, Any]:
        """The ``--json`` final line (never anything secret)."""
        return {
            "type": "summary",
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
            "sha256": self.point.sha256,
            "retain_until": self.point.retain_until.isoformat() if self.point.retain_until else None,
            "retention_enforced": self.retention_enforced,
            "extended_chunks": self.extended_chunks,
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

    With enforced retention, a chunk reused from an earlier backup gets its retention extended to
    this point's (format §8): otherwise deleting it once the older, shorter retention expired
    would break the newer point that still references it."""

    def __init__(
        self, repo: Repository, known: set[bytes], retain_until: datetime | None, extend_reused: bool
    ) -> None:
        self.repo = repo
        self.claimed = set(known)
        self.reused = set(known) if extend_reused and retain_until else set()  # still to extend
        self.claim_lock = threading.Lock()
        self.retain_until = retain_until
        self.extended = 0
        self.failed = threading.Event()

    def process(self, data: bytes) -> tuple[bytes, int]:
        cid = chunk_id(self.repo.keys, data)
        with self.claim_lock:
            extend = cid in self.reused  # an earlier backup's chunk, first met in this one
            if extend:
                self.reused.discard(cid)
            elif cid in self.claimed:
                return cid, 0
            else:
                self.claimed.add(cid)
        if self.failed.is_set():  # another upload failed: do no more work
            return cid, 0
        try:
            if extend:
                self.repo.extend_chunk_retention(cid, self.retain_until)
                with self.claim_lock:
                    self.extended += 1
                return cid, 0
            return cid, self.repo.put_chunk(cid, data, self.retain_until)
        except BaseException:
            self.failed.set()
            raise


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
) -> BackupResult:
    """Back up one disk image; returns the new restore point. No manifest is written unless every
    chunk was stored and the source kept its size."""
    if not server or not disk:
        raise InvalidInput("--server and --disk must be non-empty names")
    progress = progress or NullProgress()
    chunk_size = chunk_size or repo.config.chunk_size
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise InvalidInput(f"chunk size {chunk_size} out of range [{MIN_CHUNK_SIZE}, {MAX_CHUNK_SIZE}]")
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
        known = repo.known_chunks()
        up = _Uploader(repo, known, retain_until, extend_reused=bool(enforced))
        zero = bytes(chunk_size)
        image_hash = hashlib.sha256()
        slots = threading.BoundedSemaphore(max(2, parallel * 2))
        entries: list[Future[tuple[bytes, int]] | None] = []
        progress.start("backup", src.size)
        pool = ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="backup")
        try:
            for _, data in src.chunks(chunk_size):
                image_hash.update(data)
                if data == zero[: len(data)]:
                    entries.append(None)
                    progress.advance(len(data))
                    continue
                slots.acquire()
                fut = pool.submit(up.process, data)
                n = len(data)
                fut.add_done_callback(lambda f, n=n: (slots.release(), progress.advance(n)))
                entries.append(fut)
                if up.failed.is_set():
                    break  # the error is raised below from its future
            ids: list[bytes | None] = []
            new_chunks = uploaded = 0
            for fut in entries:
                if fut is None:
                    ids.append(None)
                    continue
                cid, nbytes = fut.result()
                ids.append(cid)
                if nbytes:
                    new_chunks += 1
                    uploaded += nbytes
        finally:
            up.failed.set()  # on success every future is done; on error, stop the rest
            pool.shutdown(wait=True, cancel_futures=True)
        src.check_unchanged()
        progress.finish()
        manifest = Manifest(
            id=new_point_id(),
            repo=repo.config.id,
            server=server,
            disk=disk,
            size=src.size,
            chunk_size=chunk_size,
            sha256=image_hash.hexdigest(),
            created=datetime.now(UTC),
            type=btype,
            parent=parent,
            chunks=encode_chunks(ids),
            retain_until=retain_until,
            host=socket.gethostname(),
        )
        if not lock.still_held():
            raise RepoLocked(
                f"the lock of this backup on {repo.describe()} disappeared (stale or "
                f"removed by `drctl unlock`), so a prune may have run: no restore point "
                f"was written; run the backup again"
            )
        repo.save_point(manifest)
    result = BackupResult(
        manifest, len(ids), new_chunks, uploaded, time.monotonic() - t0, enforced, detail, up.extended
    )
    log.info("backup of %s/%s: point %s, %d chunks, %d new", server, disk, manifest.id, len(ids), new_chunks)
    return result
