"""``drctl repo copy``: restore points copied between two repositories of the same key material,
object by object, never re-encrypted (docs/repository-format.md §10).

Order per point (what makes it resumable and crash safe): verify the source manifest; for each
chunk it references that the destination does not already hold with the right size (one listing
of each ``data/``), download it, verify it the way ``check --read-data`` does (tag, length, chunk
id), upload the very same bytes; then list the destination's ``data/`` again and write the
manifest object last. A point exists in the destination only when all its chunks do."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from drctl.errors import InvalidInput
from drctl.repo import crypto
from drctl.repo.errors import (
    ChunkMissing,
    ChunkVanished,
    IntegrityError,
    LockLost,
    RepoKeyMismatch,
    RepoMissing,
    RepoNeedsUpgrade,
)
from drctl.repo.keys import KEYS_PREFIX
from drctl.repo.locks import RepoLock
from drctl.repo.manifest import (
    SNAPSHOTS_PREFIX,
    Manifest,
    chunk_key,
    chunk_length,
    manifest_from_doc,
    point_key,
)
from drctl.repo.progress import NullProgress, ProgressSink
from drctl.repo.repository import CONFIG_KEY, Repository, open_repository, read_config
from drctl.storage.base import BucketMissing, ObjectMissing, Storage

log = logging.getLogger(__name__)


@dataclass
class CopyResult:
    src: str
    dst: str
    initialised: bool = False
    copied_points: list[str] = field(default_factory=list)
    present_points: list[str] = field(default_factory=list)  # already in the destination
    failed_points: list[dict[str, str]] = field(default_factory=list)  # {"point", "error"}
    copied_chunks: int = 0
    present_chunks: int = 0  # deduplicated: already in the destination
    repaired_chunks: int = 0  # in the destination with another size: copied again
    copied_bytes: int = 0
    extended_chunks: int = 0
    retention_enforced: bool | None = None
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed_points

    def summary(self) -> dict[str, Any]:
        return {
            "src": self.src,
            "dst": self.dst,
            "initialised": self.initialised,
            "copied_points": self.copied_points,
            "present_points": self.present_points,
            "failed_points": self.failed_points,
            "copied_chunks": self.copied_chunks,
            "present_chunks": self.present_chunks,
            "repaired_chunks": self.repaired_chunks,
            "copied_bytes": self.copied_bytes,
            "extended_chunks": self.extended_chunks,
            "retention_enforced": self.retention_enforced,
            "duration_s": round(self.duration_s, 2),
        }


def open_destination(src: Repository, dst_storage: Storage, password: bytes) -> tuple[Repository, bool]:
    """The destination opened with the same password, and whether it was initialised now.

    Without the password: the destination's ``config`` must carry the source's repository id
    (key slots and every object's associated data bind it) and its format version. With it: the
    key slot the password opens must give the very master keys of the source. An empty location is
    initialised with copies of the source's key slots and then its ``config`` (written last: its
    existence is the repository)."""
    try:
        cfg, _ = read_config(dst_storage)
    except RepoMissing:
        if any(True for _ in _list_or_empty(dst_storage)):
            raise InvalidInput(
                f"destination {dst_storage.describe()} holds objects but no repository config: give an "
                f"empty location or a copy of {src.describe()}"
            ) from None
        _initialise(src, dst_storage)
        return open_repository(dst_storage, password), True
    if cfg.id != src.config.id:
        raise RepoKeyMismatch(
            f"destination {dst_storage.describe()} is repository {cfg.id[:16]}..., not a copy of "
            f"{src.describe()} ({src.config.id[:16]}...): its key material differs, so its objects could "
            f"never be read with the source's keys; give an empty location (it becomes a copy) or a copy "
            f"made by `drctl repo copy`"
        )
    if cfg.version != src.config.version:
        older, newer = (
            (dst_storage.describe(), src.describe())
            if cfg.version < src.config.version
            else (src.describe(), dst_storage.describe())
        )
        raise RepoNeedsUpgrade(
            f"{older} has format {min(cfg.version, src.config.version)} and {newer} format "
            f"{max(cfg.version, src.config.version)}: run `drctl repo upgrade {older}` first, then copy again"
        )
    dst = open_repository(dst_storage, password)
    if dst.keys != src.keys:
        raise RepoKeyMismatch(
            f"destination {dst.describe()} has the source's repository id but other master keys: it is "
            f"not a copy of {src.describe()}; refusing to mix their objects"
        )
    return dst, False


def _list_or_empty(storage: Storage):
    try:
        yield from storage.list("")
    except BucketMissing:  # created by the initialisation
        return


def _initialise(src: Repository, dst_storage: Storage) -> None:
    dst_storage.create(object_lock=bool(src.config.object_lock))
    for obj in src.storage.list(KEYS_PREFIX):
        try:
            dst_storage.put(obj.key, bytes(src.storage.get(obj.key)))
        except ObjectMissing:
            continue  # a slot removed while we listed
    dst_storage.put(CONFIG_KEY, bytes(src.storage.get(CONFIG_KEY)))
    log.info("initialised %s as a copy of %s", dst_storage.describe(), src.describe())


def select_points(all_ids: Sequence[str], wanted: Sequence[str] | None) -> list[str]:
    """Every point id, or the ones ``wanted`` names (each a unique prefix)."""
    if not wanted:
        return sorted(all_ids)
    out = []
    for w in wanted:
        matches = [p for p in all_ids if p.startswith(w.lower())] if w else []
        if len(matches) != 1:
            raise InvalidInput(
                f"--points: {w!r} matches {len(matches)} restore points of the source; give a unique id "
                f"prefix from `drctl snapshots SRC`"
            )
        if matches[0] not in out:
            out.append(matches[0])
    return out


class _PointCopy:
    """Copies one point's chunks (parallel), then its manifest."""

    def __init__(self, run: _Run, point: Manifest, blob: bytes, retain_until: datetime | None) -> None:
        self.run, self.point, self.blob, self.retain_until = run, point, blob, retain_until

    def copy_chunk(self, item: tuple[bytes, int]) -> tuple[str, int]:
        cid, length = item
        r = self.run
        key = chunk_key(cid)
        want = r.src_sizes.get(cid)
        if want is None:
            raise ChunkMissing(cid.hex(), key)
        have = r.dst_sizes.get(cid)
        if have == want:
            if self.retain_until is not None and r.enforced:
                r.dst.extend_chunk_retention(cid, self.retain_until)
                return "extended", 0
            return "present", 0
        if have is not None:
            log.warning(
                "chunk %s in %s holds %d bytes instead of %d: copied again", key, r.dst.describe(), have, want
            )
        blob = bytes(r.src.fetch_chunk(cid))
        # The check --read-data makes: length, header, GCM tag with id and repo id, decompressed
        # length, chunk id of the plaintext. A tampered object raises ChunkCorrupt and is not copied.
        r.src.open_chunk(cid, blob, length, version=self.point.version)
        r.dst.storage.put(key, blob, retain_until=self.retain_until)
        r.dst_sizes[cid] = len(blob)
        r.progress.advance(len(blob))
        return ("repaired" if have is not None else "copied"), len(blob)

    def run_copy(self, pool: ThreadPoolExecutor) -> None:
        lengths: dict[bytes, int] = {}
        for i, cid in self.point.iter_chunks():
            if cid is not None:
                lengths.setdefault(cid, chunk_length(i, self.point.size, self.point.chunk_size))
        r = self.run
        for outcome, nbytes in pool.map(self.copy_chunk, lengths.items()):
            if outcome == "present":
                r.result.present_chunks += 1
            elif outcome == "extended":
                r.result.present_chunks += 1
                r.result.extended_chunks += 1
            else:
                r.result.copied_chunks += 1
                r.result.copied_bytes += nbytes
                r.result.repaired_chunks += outcome == "repaired"
        self._write_manifest({cid: r.dst_sizes[cid] for cid in lengths})

    def _write_manifest(self, sizes: dict[bytes, int]) -> None:
        r = self.run
        r.dst_lock.ensure_live()
        listed = r.dst.chunk_objects()  # what arrived, as the destination itself reports it
        for cid, size in sizes.items():
            if listed.get(cid) != size:
                why = "is missing" if cid not in listed else f"holds {listed[cid]} bytes instead of {size}"
                raise ChunkVanished(cid.hex(), chunk_key(cid), r.dst.describe(), why)
        r.dst_lock.ensure_live()
        key = point_key(self.point.id)
        r.dst.storage.put(key, self.blob, retain_until=self.retain_until)
        try:
            r.dst_lock.ensure_live()
        except LockLost as e:
            r.dst.storage.delete(key)
            raise LockLost(f"{e.message} while point {self.point.id} was written; copy again") from e


@dataclass
class _Run:
    src: Repository
    dst: Repository
    dst_lock: RepoLock
    src_sizes: dict[bytes, int]
    dst_sizes: dict[bytes, int]
    enforced: bool
    progress: ProgressSink
    result: CopyResult


def copy_points(
    src: Repository,
    dst: Repository,
    *,
    points: Sequence[str] | None = None,
    retain_days: int | None = None,
    parallel: int = 8,
    progress: ProgressSink | None = None,
    initialised: bool = False,
) -> CopyResult:
    """Copy the selected restore points (all by default) of ``src`` into ``dst``. A point whose
    manifest or one of whose chunks fails verification is not copied (listed in
    ``failed_points``); the others are."""
    t0 = time.monotonic()
    progress = progress or NullProgress()
    result = CopyResult(src=src.describe(), dst=dst.describe(), initialised=initialised)
    if retain_days is None and dst.config.object_lock:
        retain_days = dst.config.object_lock.get("retain_days")
    with (
        src.lock(exclusive=False, operation="copy (source)"),
        dst.lock(exclusive=False, operation="copy") as dst_lock,
    ):
        selected = select_points(src.point_ids(), points)
        in_dst = {o.key[len(SNAPSHOTS_PREFIX) :] for o in dst.storage.list(SNAPSHOTS_PREFIX)}
        enforced = False
        if retain_days:
            support = dst.storage.lock_support()
            enforced, result.retention_enforced = support.enforced, support.enforced
            if not enforced:
                log.warning("retention requested but not enforced by %s: %s", dst.describe(), support.detail)
        src_sizes, dst_sizes = src.chunk_objects(), dst.chunk_objects()
        run = _Run(src, dst, dst_lock, src_sizes, dst_sizes, enforced, progress, result)
        todo: list[_PointCopy] = []
        for pid in selected:
            if pid in in_dst:
                result.present_points.append(pid)
                continue
            try:
                blob = bytes(src.storage.get(point_key(pid)))
                doc = crypto.open_manifest(src.keys, src.repo_id, pid, blob, point_key(pid))
                point = manifest_from_doc(doc, point_key(pid), pid, src.config.id)
            except IntegrityError as e:
                result.failed_points.append({"point": pid, "error": e.message})
                continue
            todo.append(_PointCopy(run, point, blob, _retention(point, retain_days)))
        missing = {
            cid: src_sizes.get(cid, 0)
            for pc in todo
            for cid in pc.point.chunk_ids()
            if dst_sizes.get(cid) != src_sizes.get(cid)
        }
        progress.start("copy", sum(missing.values()))
        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            for pc in sorted(todo, key=lambda pc: pc.point.created):
                try:
                    pc.run_copy(pool)
                except IntegrityError as e:  # this point only; an outage or a lost lock stops the copy
                    result.failed_points.append({"point": pc.point.id, "error": e.message})
                    continue
                result.copied_points.append(pc.point.id)
        progress.finish()
    result.duration_s = time.monotonic() - t0
    return result


def _retention(point: Manifest, retain_days: int | None) -> datetime | None:
    """How long the point's objects are kept in the destination: as long as the source promised
    (its manifest's ``retain_until``) and at least the destination's retention from now."""
    candidates = [t for t in (point.retain_until,) if t is not None and t > datetime.now(UTC)]
    if retain_days:
        candidates.append(datetime.now(UTC) + timedelta(days=int(retain_days)))
    return max(candidates) if candidates else None
