"""``drctl check``, ``forget`` and ``prune`` (docs/repository-format.md §3, §5).

Safety rule: prune reads every manifest first and aborts if any cannot be read, then deletes only
chunks that no manifest references, under an exclusive lock (no backup can be running)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from drctl.errors import DrctlError, InvalidInput
from drctl.repo.errors import ChunkMissing
from drctl.repo.manifest import DATA_PREFIX, Manifest, chunk_key, chunk_length, point_key
from drctl.repo.progress import NullProgress, ProgressSink
from drctl.repo.repository import Repository

if TYPE_CHECKING:
    from drctl.wal.history import WalReport

log = logging.getLogger(__name__)


# -- check ---------------------------------------------------------------------------------------


@dataclass
class CheckReport:
    points: int = 0
    chunks_present: int = 0
    chunks_read: int = 0
    unreferenced: int = 0
    problems: list[str] = field(default_factory=list)
    wal: list[WalReport] = field(default_factory=list)  # one per server with a WAL archive

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "points": self.points,
            "chunks_present": self.chunks_present,
            "chunks_read": self.chunks_read,
            "unreferenced_chunks": self.unreferenced,
            "problems": self.problems,
            "wal": [w.as_dict() for w in self.wal],
        }


def check(
    repo: Repository, *, read_data: bool = False, parallel: int = 8, progress: ProgressSink | None = None
) -> CheckReport:
    """Every key slot parses, every manifest authenticates, every referenced chunk exists; with
    ``read_data`` every referenced chunk is downloaded, authenticated and re-identified."""
    progress = progress or NullProgress()
    report = CheckReport()
    with repo.lock(exclusive=False, operation="check"):
        report.problems += [k.problem for k in repo.list_keys() if k.problem is not None]
        points: list[Manifest] = []
        for pid in repo.point_ids():
            try:
                points.append(repo.load_point(pid))
            except DrctlError as e:
                report.problems.append(e.message)
        report.points = len(points)
        present = repo.known_chunks()
        report.chunks_present = len(present)
        lengths: dict[bytes, int] = {}
        for p in points:
            for i, cid in p.iter_chunks():
                if cid is None:
                    continue
                lengths.setdefault(cid, chunk_length(i, p.size, p.chunk_size))
                if cid not in present:
                    report.problems.append(
                        f"restore point {p.id} ({p.server}/{p.disk}, {p.created.isoformat()}) needs "
                        f"chunk {cid.hex()} (object {chunk_key(cid)!r}), which is missing"
                    )
        report.unreferenced = len(present - lengths.keys())
        if read_data:
            todo = [(cid, n) for cid, n in lengths.items() if cid in present]
            progress.start("check", sum(n for _, n in todo))

            def verify(item: tuple[bytes, int]) -> str | None:
                cid, n = item
                try:
                    repo.open_chunk(cid, repo.fetch_chunk(cid), n)
                    return None
                except DrctlError as e:
                    return e.message
                finally:
                    progress.advance(n)

            with ThreadPoolExecutor(max_workers=max(1, parallel)) as ex:
                for msg in ex.map(verify, todo):
                    report.chunks_read += 1
                    if msg:
                        report.problems.append(msg)
            progress.finish()
    _check_wal(repo, report, read_data=read_data, parallel=parallel)
    return report


def _check_wal(repo: Repository, report: CheckReport, *, read_data: bool, parallel: int) -> None:
    """Every server's WAL archive: holes after its oldest kept base (with the time range they make
    unrecoverable) and, with ``read_data``, every kept WAL file authenticated."""
    from drctl.wal.history import check_wal, wal_servers

    for server in wal_servers(repo):
        wal = check_wal(repo, server, read_data=read_data, parallel=parallel)
        report.wal.append(wal)
        for g in wal.gaps:
            report.problems.append(
                f"WAL of {server}: {g.missing} segment(s) missing after {g.after} (next archived: {g.before}): "
                f"no point in time can be restored from {_when(g.from_time)} to {_when(g.to_time)}"
            )
        report.problems += [f"WAL of {server}: {p}" for p in wal.problems]


def _when(t: datetime | None) -> str:
    return t.isoformat() if t else "(unknown: the segment next to the hole is unreadable)"


# -- forget --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeepPolicy:
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0

    def empty(self) -> bool:
        return not (self.last or self.hourly or self.daily or self.weekly or self.monthly)


def _rules(policy: KeepPolicy) -> list[tuple[int, Callable[[datetime], object]]]:
    return [
        (policy.last, lambda t: t),  # every point is its own bucket
        (policy.hourly, lambda t: (t.year, t.month, t.day, t.hour)),
        (policy.daily, lambda t: (t.year, t.month, t.day)),
        (policy.weekly, lambda t: t.isocalendar()[:2]),
        (policy.monthly, lambda t: (t.year, t.month)),
    ]


@dataclass
class _RuleWalk:
    """One keep rule while walking a group newest to oldest: how many points it may still keep,
    its bucket function and the bucket of the last point it kept."""

    left: int
    bucket: Callable[[datetime], object]
    last: object = None


def plan_forget(
    points: Sequence[Manifest], policy: KeepPolicy, server: str | None = None
) -> tuple[list[Manifest], list[Manifest]]:
    """(kept, removed), per (server, disk) group, restic-style: walking newest to oldest, a rule
    keeps a point whose bucket differs from the last one it kept, up to its count. The newest point
    of each group is always kept. Points of other servers (when ``server`` is given) are kept."""
    if policy.empty():
        raise InvalidInput(
            "forget needs at least one --keep-* option (it would otherwise remove every restore point)"
        )
    kept: list[Manifest] = []
    removed: list[Manifest] = []
    groups: dict[tuple[str, str], list[Manifest]] = {}
    for p in points:
        if server is not None and p.server != server:
            kept.append(p)
        else:
            groups.setdefault((p.server, p.disk), []).append(p)
    for group in groups.values():
        group.sort(key=lambda p: p.created, reverse=True)
        rules = [_RuleWalk(n, bucket) for n, bucket in _rules(policy) if n > 0]
        for i, p in enumerate(group):
            keep = i == 0
            for rule in rules:
                b = rule.bucket(p.created)
                if rule.left > 0 and b != rule.last:
                    rule.left, rule.last = rule.left - 1, b
                    keep = True
            (kept if keep else removed).append(p)
    return kept, removed


def forget(
    repo: Repository, policy: KeepPolicy, *, server: str | None = None, dry_run: bool = False
) -> tuple[list[Manifest], list[Manifest]]:
    """Delete the manifests the policy does not keep (chunks stay until ``prune``)."""
    with repo.lock(exclusive=True, operation="forget"):
        kept, removed = plan_forget(repo.load_points(), policy, server)
        if not dry_run:
            for p in removed:
                repo.storage.delete(point_key(p.id))
                log.info("forgot point %s (%s/%s %s)", p.id, p.server, p.disk, p.created)
    return kept, removed


# -- prune ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneResult:
    points: int
    referenced_chunks: int
    deleted_chunks: int
    deleted_bytes: int
    dry_run: bool
    wal_deleted: int = 0  # WAL files and base records no kept base backup needs

    def as_dict(self) -> dict[str, object]:
        return {
            "wal_deleted": self.wal_deleted,
            "points": self.points,
            "referenced_chunks": self.referenced_chunks,
            "deleted_chunks": self.deleted_chunks,
            "deleted_bytes": self.deleted_bytes,
            "dry_run": self.dry_run,
        }


def prune(repo: Repository, *, dry_run: bool = False, parallel: int = 8) -> PruneResult:
    """Delete every chunk that no restore point references. Aborts (deleting nothing) if any
    manifest cannot be read or any referenced chunk is missing."""
    with repo.lock(exclusive=True, operation="prune"):
        points = repo.load_points()  # raises on the first unreadable manifest: nothing deleted
        referenced: set[bytes] = set()
        for p in points:
            referenced |= p.chunk_ids()
        objects = list(repo.storage.list(DATA_PREFIX))
        present = {o.key: o.size for o in objects}
        for cid in referenced:
            if chunk_key(cid) not in present:
                raise ChunkMissing(cid.hex(), chunk_key(cid))
        keep_keys = {chunk_key(c) for c in referenced}
        doomed = [o for o in objects if o.key not in keep_keys]
        if not dry_run:
            with ThreadPoolExecutor(max_workers=max(1, parallel)) as ex:
                list(ex.map(lambda o: repo.storage.delete(o.key), doomed))
    wal_deleted = _prune_wal(repo, dry_run=dry_run)
    return PruneResult(
        len(points), len(referenced), len(doomed), sum(o.size for o in doomed), dry_run, wal_deleted
    )


def _prune_wal(repo: Repository, *, dry_run: bool) -> int:
    """WAL older than each server's oldest kept base backup (a server without a base keeps all)."""
    from drctl.wal.history import prune_wal, wal_servers

    return sum(len(prune_wal(repo, server, dry_run=dry_run)) for server in wal_servers(repo))
