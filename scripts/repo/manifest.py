"""Restore-point manifests (docs/repository-format.md §2.4) and point selection. Pure."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from drctl.errors import InvalidInput
from drctl.repo.errors import ManifestCorrupt

SNAPSHOTS_PREFIX = "snapshots/"
DATA_PREFIX = "data/"
BACKUP_TYPES = ("full", "incremental", "differential")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
MANIFEST_VERSIONS = (1, 2)  # 1: whole-image sha256, HMAC-SHA256 ids; 2: BLAKE3 (format §2.4)

# One entry per run: a chunk id (32 bytes) or an int = that many all-zero chunks.
ChunkEntry = bytes | int


def chunk_key(cid: bytes) -> str:
    h = cid.hex()
    return f"{DATA_PREFIX}{h[:2]}/{h}"


def point_key(point_id: str) -> str:
    return SNAPSHOTS_PREFIX + point_id


def new_point_id() -> str:
    return os.urandom(16).hex()


def utc_iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; a naive one is taken as UTC."""
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise InvalidInput(f"{text!r} is not an ISO 8601 time (e.g. 2026-11-01T10:00:00Z)") from e
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def is_point_id(selector: str) -> bool:
    """Whether a ``--point`` selector is a point id (prefix) rather than ``latest`` or a time."""
    return re.fullmatch(r"[0-9a-f]{4,32}", selector) is not None


def chunk_count(size: int, chunk_size: int) -> int:
    return -(-size // chunk_size)


def chunk_length(index: int, size: int, chunk_size: int) -> int:
    return min(chunk_size, size - index * chunk_size)


def encode_chunks(ids: Iterable[bytes | None]) -> tuple[ChunkEntry, ...]:
    """Per-chunk ids (None = all-zero chunk) -> run-length entries."""
    out: list[ChunkEntry] = []
    for cid in ids:
        if cid is None:
            if out and isinstance(out[-1], int):
                out[-1] += 1
            else:
                out.append(1)
        else:
            out.append(cid)
    return tuple(out)


@dataclass(frozen=True)
class Manifest:
    """One restore point of one server disk."""

    id: str
    repo: str
    server: str
    disk: str
    size: int
    chunk_size: int
    sha256: str
    created: datetime
    type: str
    parent: str | None
    chunks: tuple[ChunkEntry, ...]
    retain_until: datetime | None = None
    host: str = ""
    # Chunk id -> size of its object in data/ when this point was written (format §3): a later
    # backup reuses a chunk whose listed size matches without compressing it again. Empty in
    # points written before it was recorded.
    stored_sizes: dict[bytes, int] = field(default_factory=dict, compare=False, hash=False)
    # Format 1: ``sha256`` of the whole image. Format 2: ``sha256`` is empty and ``image_digest``
    # is BLAKE3 over the per-chunk digests (crypto.image_digest_v2).
    version: int = 1
    image_digest: str = ""

    @property
    def digest_label(self) -> str:
        """The image digest as ``algorithm:hex`` (for summaries and messages)."""
        return f"blake3-list:{self.image_digest}" if self.version == 2 else f"sha256:{self.sha256}"

    def iter_chunks(self) -> Iterator[tuple[int, bytes | None]]:
        """(index, chunk id or None for a zero chunk) in image order."""
        i = 0
        for e in self.chunks:
            if isinstance(e, int):
                for _ in range(e):
                    yield i, None
                    i += 1
            else:
                yield i, e
                i += 1

    def chunk_ids(self) -> set[bytes]:
        return {e for e in self.chunks if isinstance(e, bytes)}

    @property
    def stored_chunks(self) -> int:
        return sum(1 for e in self.chunks if isinstance(e, bytes))

    def to_doc(self) -> dict[str, Any]:
        digest = {"digest": self.image_digest} if self.version == 2 else {"sha256": self.sha256}
        return {
            "version": self.version,
            "id": self.id,
            "repo": self.repo,
            "server": self.server,
            "disk": self.disk,
            "size": self.size,
            "chunk_size": self.chunk_size,
            **digest,
            "created": utc_iso(self.created),
            "type": self.type,
            "parent": self.parent,
            "host": self.host,
            "retain_until": utc_iso(self.retain_until) if self.retain_until else None,
            "chunks": [e if isinstance(e, int) else e.hex() for e in self.chunks],
            **(
                {"stored_sizes": {c.hex(): n for c, n in self.stored_sizes.items()}}
                if self.stored_sizes
                else {}
            ),
        }


def manifest_from_doc(doc: dict[str, Any], key: str, point_id: str, repo_hex: str) -> Manifest:
    """Validate an authenticated manifest document; ManifestCorrupt on any inconsistency."""
    try:
        version = doc.get("version")
        if version not in MANIFEST_VERSIONS or isinstance(version, bool):
            raise ValueError(f"unknown version {version!r}")
        if doc["id"] != point_id:
            raise ValueError(f"holds point {doc['id']!r}, stored under {point_id!r}")
        if doc["repo"] != repo_hex:
            raise ValueError("belongs to another repository")
        size, chunk_size = doc["size"], doc["chunk_size"]
        if not (isinstance(size, int) and isinstance(chunk_size, int) and size >= 0 and chunk_size > 0):
            raise ValueError("bad size or chunk size")
        entries: list[ChunkEntry] = []
        total = 0
        for e in doc["chunks"]:
            if isinstance(e, int) and not isinstance(e, bool) and e > 0:
                entries.append(e)
                total += e
            elif isinstance(e, str) and _HEX64.match(e):
                entries.append(bytes.fromhex(e))
                total += 1
            else:
                raise ValueError(f"bad chunk entry {e!r}")
        if total != chunk_count(size, chunk_size):
            raise ValueError(f"{total} chunks listed for {size} bytes in {chunk_size}-byte chunks")
        digest_field = "digest" if version == 2 else "sha256"
        if doc["type"] not in BACKUP_TYPES:
            raise ValueError("bad type")
        if not isinstance(doc[digest_field], str) or not _HEX64.match(doc[digest_field]):
            raise ValueError(f"bad {digest_field}")
        for name in ("server", "disk"):
            if not isinstance(doc[name], str) or not doc[name]:
                raise ValueError(f"bad {name}")
        stored_sizes = _stored_sizes(
            doc.get("stored_sizes", {}), {e for e in entries if isinstance(e, bytes)}
        )
        return Manifest(
            id=point_id,
            repo=repo_hex,
            server=doc["server"],
            disk=doc["disk"],
            size=size,
            chunk_size=chunk_size,
            sha256=doc[digest_field] if version == 1 else "",
            created=parse_time(doc["created"]),
            type=doc["type"],
            parent=doc.get("parent"),
            chunks=tuple(entries),
            retain_until=parse_time(doc["retain_until"]) if doc.get("retain_until") else None,
            host=str(doc.get("host", "")),
            stored_sizes=stored_sizes,
            version=version,
            image_digest=doc[digest_field] if version == 2 else "",
        )
    except (KeyError, TypeError, ValueError, AttributeError, InvalidInput) as e:
        raise ManifestCorrupt(key, f"authenticated but inconsistent: {e}") from e


def _stored_sizes(raw: Any, ids: set[bytes]) -> dict[bytes, int]:
    """The optional ``stored_sizes`` map: chunk ids of this point to positive object sizes."""
    if not isinstance(raw, dict):
        raise ValueError("stored_sizes is not a map")
    sizes: dict[bytes, int] = {}
    for k, n in raw.items():
        if (
            not (isinstance(k, str) and _HEX64.match(k))
            or isinstance(n, bool)
            or not isinstance(n, int)
            or n <= 0
        ):
            raise ValueError(f"bad stored size entry {k!r}: {n!r}")
        cid = bytes.fromhex(k)
        if cid not in ids:
            raise ValueError(f"stored size for chunk {k} that the point does not reference")
        sizes[cid] = n
    return sizes


def select_point(
    points: Sequence[Manifest], server: str, disk: str | None, selector: str = "latest"
) -> Manifest:
    """The point to restore: ``latest``, an id prefix, or an ISO time (newest at or before it)."""
    mine = [p for p in points if p.server == server]
    if not mine:
        known = sorted({p.server for p in points})
        raise InvalidInput(
            f"no restore point for server {server!r}; servers in this repository: "
            f"{', '.join(known) or 'none'} (see `drctl snapshots REPO`)"
        )
    if disk is not None:
        disks = sorted({p.disk for p in mine})
        mine = [p for p in mine if p.disk == disk]
        if not mine:
            raise InvalidInput(f"server {server!r} has no disk {disk!r}; its disks: {', '.join(disks)}")
    if is_point_id(selector):
        hits = [p for p in mine if p.id.startswith(selector)]
        if len(hits) != 1:
            raise InvalidInput(
                f"point {selector!r} matches {len(hits)} restore points of server "
                f"{server!r}; give more of its id (see `drctl snapshots REPO`)"
            )
        return hits[0]
    if disk is None and len({p.disk for p in mine}) > 1:
        raise InvalidInput(
            f"server {server!r} has several disks ({', '.join(sorted({p.disk for p in mine}))}); "
            f"choose one with --disk"
        )
    if selector == "latest":
        return max(mine, key=lambda p: p.created)
    at = parse_time(selector)
    before = [p for p in mine if p.created <= at]
    if not before:
        oldest = min(mine, key=lambda p: p.created)
        raise InvalidInput(
            f"no restore point of server {server!r} at or before {utc_iso(at)}; the "
            f"oldest is {utc_iso(oldest.created)}"
        )
    return max(before, key=lambda p: p.created)
