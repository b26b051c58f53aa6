"""The WAL history of a server: what its base backups need, where it has holes, what can go.

Segment names are ``TTTTTTTT LLLLLLLL SSSSSSSS`` (timeline, log id, segment); with PostgreSQL's
default 16 MiB segments the segment number runs 00-FF then the log id advances. A hole in the
sequence after the oldest kept base backup's first segment makes every moment after it
unrecoverable from the bases before it: :func:`check_wal` reports each hole with the archive times
around it. ``prune`` keeps every segment from the oldest kept base's first segment on.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from drctl.errors import DrctlError
from drctl.repo.repository import Repository
from drctl.wal.archive import PREFIX, archived_names, is_segment, unseal
from drctl.wal.base import BaseInfo, list_bases, stale_base_records

log = logging.getLogger(__name__)

SEGMENTS_PER_LOG = 0x100  # 16 MiB segments (PostgreSQL's default wal_segment_size)


def next_segment(name: str) -> str:
    tli, logid, seg = int(name[:8], 16), int(name[8:16], 16), int(name[16:], 16)
    seg += 1
    if seg >= SEGMENTS_PER_LOG:
        logid, seg = logid + 1, 0
    return f"{tli:08X}{logid:08X}{seg:08X}"


@dataclass(frozen=True)
class Gap:
    after: str  # last segment before the hole
    before: str  # first segment after it
    missing: int
    from_time: datetime | None
    to_time: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "after": self.after,
            "before": self.before,
            "missing_segments": self.missing,
            "unrecoverable_from": self.from_time.isoformat() if self.from_time else None,
            "unrecoverable_to": self.to_time.isoformat() if self.to_time else None,
        }


@dataclass
class WalReport:
    server: str
    bases: list[BaseInfo]
    segments: int = 0
    first: str | None = None
    last: str | None = None
    last_archived_at: datetime | None = None
    gaps: list[Gap] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    read: int = 0

    @property
    def ok(self) -> bool:
        return not self.gaps and not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "bases": [b.as_dict() for b in self.bases],
            "segments": self.segments,
            "first": self.first,
            "last": self.last,
            "last_archived_at": self.last_archived_at.isoformat() if self.last_archived_at else None,
            "gaps": [g.as_dict() for g in self.gaps],
            "problems": self.problems,
            "segments_read": self.read,
        }


def _archived_at(repo: Repository, server: str, name: str) -> datetime | None:
    try:
        return unseal(repo, server, name, repo.storage.get(f"{PREFIX}{server}/{name}"))[0]
    except DrctlError as e:
        log.warning("cannot read the archive time of %s: %s", name, e.message)
        return None


def _count_between(a: str, b: str) -> int:
    n, cur = 0, next_segment(a)
    while cur < b and n < 1_000_000:
        n, cur = n + 1, next_segment(cur)
    return n


def wal_servers(repo: Repository) -> list[str]:
    """Every server with a ``wal/<server>/`` prefix in the repository (one listing)."""
    return sorted(
        {
            o.key[len(PREFIX) :].split("/", 1)[0]
            for o in repo.storage.list(PREFIX)
            if "/" in o.key[len(PREFIX) :]
        }
    )


def check_wal(repo: Repository, server: str, *, read_data: bool = False, parallel: int = 8) -> WalReport:
    """Holes after the oldest kept base's start; with ``read_data`` every kept segment is
    downloaded and authenticated."""
    bases = list_bases(repo, server)
    report = WalReport(server, bases)
    names = archived_names(repo, server)
    start = min((b.start_segment for b in bases), default=None)
    segments = [n for n in names if is_segment(n) and (start is None or n >= start)]
    report.segments = len(segments)
    if segments:
        report.first, report.last = segments[0], segments[-1]
        report.last_archived_at = _archived_at(repo, server, segments[-1])
    if start is None:
        report.problems.append(
            f"{server} has no base backup: its WAL cannot be replayed (run `drctl wal base`)"
        )
    elif segments and segments[0] != start:
        report.problems.append(f"the first WAL segment of the oldest base backup, {start}, is not archived")
    for a, b in zip(segments, segments[1:], strict=False):
        if a[:8] == b[:8] and b != next_segment(a):
            report.gaps.append(
                Gap(a, b, _count_between(a, b), _archived_at(repo, server, a), _archived_at(repo, server, b))
            )
    if read_data:

        def one(name: str) -> str | None:
            try:
                unseal(repo, server, name, repo.storage.get(f"{PREFIX}{server}/{name}"))
                return None
            except DrctlError as e:
                return e.message

        kept = [n for n in names if not is_segment(n) or start is None or n >= start]
        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            report.problems += [p for p in pool.map(one, kept) if p]
        report.read = len(kept)
    return report


def prune_wal(repo: Repository, server: str, *, dry_run: bool = False) -> list[str]:
    """Delete the WAL segments older than the oldest kept base's first segment (of every timeline
    up to it) and the records of forgotten bases; under the exclusive lock. With no base, nothing
    is deleted."""
    with repo.lock(exclusive=True, operation="wal prune"):
        bases = list_bases(repo, server)
        if not bases:
            return []
        start = min(b.start_segment for b in bases)
        doomed = [
            f"{PREFIX}{server}/{n}"
            for n in archived_names(repo, server)
            if (is_segment(n) and n < start) or (n.endswith(".backup") and n[:24] < start)
        ]
        doomed += stale_base_records(repo, server)
        if not dry_run and doomed:
            repo.storage.delete_many(doomed)
    return doomed
