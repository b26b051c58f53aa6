"""Point-in-time recovery of a database server's restored disk in a drill or an activation: the WAL
archived since its disk point, authenticated, staged into the disk with the recovery configuration.

For a server whose plan has a ``log`` schedule and whose repository holds WAL (``wal/<server>/``),
:func:`stage_wal` runs on the restored boot disk before it boots:

- the PostgreSQL cluster is found on the disk (Debian's layout: ``/var/lib/postgresql/<version>/
  <cluster>/PG_VERSION``, exactly one);
- every archived WAL file (segments and timeline histories; not ``.partial`` files, which a replay
  never asks for) is fetched and authenticated like ``drctl wal fetch`` does (a tampered, foreign or
  renamed one fails the server with exit 13, a hole after a later segment too: never a silently
  shorter history), then written into ``<cluster dir>/../drctl-wal-<cluster>/`` (0700, the
  cluster's owner);
- the cluster gets ``recovery.signal`` and, appended to its ``postgresql.auto.conf``,
  ``restore_command`` copying from that directory, ``recovery_target_action = 'promote'``, ``hot_standby = 'off'`` (no read-only phase that
  would pause on WAL from a primary with larger limits), the
  target time for an ISO ``--point`` (absent: replay to the last archived segment), and, unless a
  disaster activation keeps the server's own archiving, ``archive_mode = 'off'`` (a drill's or
  test's copy never archives into the production history).

When PostgreSQL starts it replays to the target and promotes. Why staged rather than a
``restore_command`` running ``drctl wal fetch`` in the guest: the repository's key never enters the
recovered server (a drill guest is a throw-away copy; the password would otherwise sit in its disk
or environment), and a drill's sandbox has no route to the object store. The cost: the segments
are written to the disk before it boots (a few per hour of activity, mostly compressible).

The server's achieved RPO is then the archive time of the newest WAL segment (or the target time,
when earlier), no longer the age of the disk point.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from drctl.errors import EXIT_RUN_FAILED, DrctlError
from drctl.plan.model import Server
from drctl.private_files import private_temp_dir
from drctl.repo.manifest import is_point_id, parse_time
from drctl.repo.repository import Repository
from drctl.wal.archive import PREFIX, WalGap, is_segment, unseal
from drctl.wal.disk_files import Ext4Disk
from drctl.wal.history import next_segment

log = logging.getLogger(__name__)

PG_ROOT = "/var/lib/postgresql"
_VERSION_DIR = re.compile(r"\d+")
_STAGED = re.compile(r"[0-9A-F]{24}|[0-9A-F]{8}\.history")


class WalStagingFailed(DrctlError):
    """The archived WAL could not be staged into a restored disk (no PostgreSQL cluster found)."""

    exit_code = EXIT_RUN_FAILED


@dataclass(frozen=True)
class StagedWal:
    """What a restored database server will replay."""

    cluster: str  # its data directory inside the disk
    files: int  # WAL files staged
    last_segment: str  # the newest archived segment
    last_archived_at: datetime  # its archive time
    target: datetime | None  # recovery_target_time; None: every archived segment

    @property
    def recovered_to(self) -> datetime:
        """The newest moment the database is restored to: its achieved RPO's reference."""
        if self.target is not None and self.target < self.last_archived_at:
            return self.target
        return self.last_archived_at


def has_log_schedule(server: Server) -> bool:
    return any(step.type == "log" for step in server.backup)


def replay_target(selector: str, last_archived_at: datetime) -> datetime | None:
    """The ``recovery_target_time`` for a run's point selector: none for ``latest`` (replay
    everything), the time for an ISO time before the newest segment (PostgreSQL stops there), none
    when the archive ends before it (asking for a later target would make PostgreSQL refuse to
    start: the replay then goes to the end, which is at or before the time asked)."""
    if selector == "latest" or is_point_id(selector):
        return None
    when = parse_time(selector)
    return when if when < last_archived_at else None


def wants_replay(server: Server, selector: str) -> bool:
    """A server with a log schedule is replayed for ``latest`` or an ISO time; an explicit point id
    asks for exactly that disk point."""
    return has_log_schedule(server) and not is_point_id(selector)


def find_cluster(disk: Ext4Disk) -> tuple[str, int, int]:
    """(data directory, uid, gid) of the one PostgreSQL cluster on the disk."""
    found = []
    for version in disk.list(PG_ROOT):
        if not (version.is_dir and _VERSION_DIR.fullmatch(version.name)):
            continue
        for cluster in disk.list(f"{PG_ROOT}/{version.name}"):
            path = f"{PG_ROOT}/{version.name}/{cluster.name}"
            if cluster.is_dir and any(e.name == "PG_VERSION" for e in disk.list(path)):
                found.append((path, cluster.uid, cluster.gid))
    if len(found) != 1:
        what = (
            "no PostgreSQL cluster"
            if not found
            else f"{len(found)} clusters ({', '.join(f[0] for f in found)})"
        )
        raise WalStagingFailed(
            f"{disk.raw}: {what} under {PG_ROOT}/<version>/<cluster>/ (Debian's layout): the archived WAL "
            "cannot be replayed on this disk; restore without WAL with --point <disk point id>"
        )
    return found[0]


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def recovery_settings(staging: str, target: datetime | None, *, keep_archiving: bool) -> str:
    settings = [
        f"restore_command = {_quote(f'cp {staging}/%f %p')}",
        "recovery_target_action = 'promote'",
        # No read-only service during the replay: a hot standby pauses when the archived WAL records
        # larger limits (max_connections...) than this server's (e.g. a primary since retuned).
        "hot_standby = 'off'",
    ]
    if target is not None:
        settings.append(f"recovery_target_time = {_quote(target.isoformat())}")
    if not keep_archiving:
        settings.append("archive_mode = 'off'")
    return "\n# drctl: point-in-time recovery from the staged WAL\n" + "\n".join(settings) + "\n"


def stage_wal(
    repo: Repository, server: str, raw: str, *, selector: str, keep_archiving: bool = False
) -> StagedWal | None:
    """Stage ``server``'s archived WAL into its restored disk ``raw``; None when nothing is archived."""
    prefix = f"{PREFIX}{server}/"
    names = sorted(
        o.key[len(prefix) :] for o in repo.storage.list(prefix) if _STAGED.fullmatch(o.key[len(prefix) :])
    )
    segments = [n for n in names if is_segment(n)]
    if not segments:
        return None
    for a, b in zip(segments, segments[1:], strict=False):
        if a[:8] == b[:8] and b != next_segment(a):
            raise WalGap(
                f"the WAL archive of {server} has a hole after segment {a} (the next archived is {b}): the "
                "history after it cannot be replayed; `drctl wal check` shows the time range it makes "
                "unrecoverable"
            )
    disk = Ext4Disk(raw)
    cluster, uid, gid = find_cluster(disk)
    parent, _, cluster_name = cluster.rpartition("/")
    staging = f"{parent}/drctl-wal-{cluster_name}"
    auto_conf = f"{cluster}/postgresql.auto.conf"
    # Authenticated one at a time into a private directory beside the restored disk (never all in
    # memory: a day of WAL is many segments); nothing reaches the disk before every file passed.
    work = private_temp_dir(Path(raw).parent, ".drctl-wal-stage")
    try:
        files: dict[str, Path] = {}
        times: dict[str, datetime] = {}
        for name in names:
            times[name], data = unseal(repo, server, name, repo.storage.get(prefix + name))
            files[f"{staging}/{name}"] = work / name
            (work / name).write_bytes(data)
        last = segments[-1]
        target = replay_target(selector, times[last])
        current = (
            disk.read_text(auto_conf)
            if any(e.name == "postgresql.auto.conf" for e in disk.list(cluster))
            else ""
        )
        (work / "auto.conf").write_text(
            current + recovery_settings(staging, target, keep_archiving=keep_archiving)
        )
        (work / "recovery.signal").write_bytes(b"")
        files[auto_conf] = work / "auto.conf"
        files[f"{cluster}/recovery.signal"] = work / "recovery.signal"
        disk.write(files, dirs=(staging,), uid=uid, gid=gid)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n_files = len(names)
    staged = StagedWal(cluster, n_files, last, times[last], target)
    log.info(
        "%s: %d WAL file(s) staged into %s for %s (last segment %s archived %s)",
        server,
        n_files,
        cluster,
        f"recovery to {target.isoformat()}" if target else "recovery to the last archived segment",
        last,
        times[last].isoformat(),
    )
    return staged
