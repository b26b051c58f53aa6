"""The demo database's WAL archive: what db01's PostgreSQL archives after its nightly disk point.

A demo image is built once and never runs before the drill, so nothing would ever archive WAL.
:func:`archive_demo_wal` plays the database server's day after its disk point, with this host's
PostgreSQL 15 (the guest's version) on a copy of the cluster in the disk image (read with
``debugfs``, the image is not changed), exactly as the server would archive:

- ``archive_command`` and ``restore_command`` are ``drctl wal push`` and ``drctl wal fetch`` of the
  agent bundle (:mod:`drctl.demo.images.agent_bundle`), run by PostgreSQL as ``postgres``, with the
  repository's password in a 0600 file and the unlocked-key cache beside it, in a 0700 directory
  of the ``postgres`` user; the store's credentials reach them through the server's environment
  (never argv);
- the copy starts as a point-in-time recovery of the disk point (``recovery.signal``): it replays
  what earlier prepares archived and promotes to a new timeline, as a server restored from that
  disk and brought back into service would. Every prepare therefore continues the history instead
  of re-archiving the same segment names with other content (which the archive refuses);
- it commits the demo's post-disk-point item (:data:`LATE_ITEM`, which no disk point holds), switches
  to a new segment and waits until PostgreSQL reports it archived, then stops.

``drctl drill`` then restores db01's disk point and replays this archive (:mod:`drctl.wal.stage`);
db01's plan check reads the item. :func:`record_disk_base` records that disk point as the base the
archive replays onto (a base of kind ``disk``: the image's cluster was shut down cleanly, so it
needs no WAL before the first archived segment), so that ``drctl wal check`` and ``wal prune`` know
which WAL it needs.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from drctl.demo.images.roles import DB_MAX_CONNECTIONS
from drctl.errors import EXIT_RUN_FAILED, DrctlError, ToolMissing
from drctl.processes import run
from drctl.repo.points import load_readable_points
from drctl.repo.repository import Repository
from drctl.wal.archive import archived_names, is_segment
from drctl.wal.base import BaseInfo, record_base
from drctl.wal.disk_files import Ext4Disk
from drctl.wal.stage import find_cluster

log = logging.getLogger(__name__)

PG_BIN = Path("/usr/lib/postgresql/15/bin")
LATE_ITEM = ("A-400", "Bureau")  # committed after the disk point: only the WAL holds it
ARCHIVE_TIMEOUT_S = 120.0
PG_TIMEOUT_S = 180.0


class DemoWalFailed(DrctlError):
    """The demo database's WAL could not be archived (its PostgreSQL failed or did not archive)."""

    exit_code = EXIT_RUN_FAILED


@dataclass(frozen=True)
class ArchivedWal:
    server: str
    segment: str  # the segment archived last
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return {"server": self.server, "last_segment": self.segment, "seconds": round(self.seconds, 1)}


def record_disk_base(repo: Repository, server: str, point_id: str) -> BaseInfo:
    """Record ``server``'s disk point ``point_id`` as the base its archived WAL replays onto, from the
    first archived segment on (every prepare's WAL continues from the image's clean shutdown)."""
    segments = [n for n in archived_names(repo, server) if is_segment(n)]
    if not segments:
        raise DemoWalFailed(f"no WAL of {server} is archived: nothing replays onto its disk point")
    (point,) = load_readable_points(repo, [point_id]).points
    info = BaseInfo(point_id, segments[0], point.created, point.created, kind="disk")
    record_base(repo, server, info)
    return info


def _launcher(bundle: Path) -> str:
    # -S: only the bundle's packages, never the host's dist-packages
    return f'#!/bin/sh\nPYTHONPATH={bundle} exec /usr/bin/python3 -S -m drctl.cli "$@"\n'


def server_conf(root: Path, drctl: Path, repo_url: str, server: str) -> str:
    """postgresql.conf of the copy: archiving and restoring through drctl, a socket in ``root`` only."""
    common = [
        "--repo",
        repo_url,
        "--server",
        server,
        "--password-file",
        str(root / "password"),
        "--key-cache",
        str(root / "wal.key"),
    ]
    push = shlex.join([str(drctl), "wal", "push", *common]) + " %p %f"
    fetch = shlex.join([str(drctl), "wal", "fetch", "--recovery", *common]) + " %f %p"
    lines = {
        "listen_addresses": "''",
        "unix_socket_directories": f"'{root}'",
        "shared_buffers": "'16MB'",
        "max_connections": str(DB_MAX_CONNECTIONS),  # the guest's: the WAL records it for the replay
        "max_wal_size": "'64MB'",
        "jit": "off",
        "log_timezone": "'UTC'",
        "timezone": "'UTC'",
        "archive_mode": "on",
        "archive_command": "'" + push.replace("'", "''") + "'",
        "restore_command": "'" + fetch.replace("'", "''") + "'",
        "recovery_target_action": "'promote'",
    }
    return "".join(f"{k} = {v}\n" for k, v in lines.items())


class _Copy:
    """The cluster copy under ``root`` and the commands run on it as ``postgres``."""

    def __init__(self, root: Path, env: Mapping[str, str]) -> None:
        self.root, self.data, self.env = root, root / "main", dict(env)

    def as_postgres(self, argv: list[str], what: str, check: bool = True):
        return run(
            ["runuser", "-u", "postgres", "--", *argv],
            what=what,
            env=self.env,
            timeout=PG_TIMEOUT_S,
            check=check,
            error=DemoWalFailed,
        )

    def pg_ctl(self, *args: str, check: bool = True):
        argv = [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "postgresql.log"), *args]
        return self.as_postgres(argv, f"pg_ctl {args[-1]} of the demo database copy", check=check)

    def sql(self, query: str, database: str = "postgres") -> str:
        argv = [
            str(PG_BIN / "psql"),
            "-h",
            str(self.root),
            "-d",
            database,
            "-X",
            "-Atq",
            "-v",
            "ON_ERROR_STOP=1",
        ]
        return self.as_postgres([*argv, "-c", query], "a query on the demo database copy").stdout.strip()

    def log_tail(self) -> str:
        try:
            return (self.root / "postgresql.log").read_text(errors="replace")[-1500:]
        except OSError:
            return "(no server log)"

    def wait(self, query: str, expect: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + ARCHIVE_TIMEOUT_S
        value = ""
        while time.monotonic() < deadline:
            value = self.sql(query)
            if expect(value):
                return value
            time.sleep(0.3)
        raise DemoWalFailed(
            f"the demo database copy: {what} within {ARCHIVE_TIMEOUT_S:.0f} s ({value}); log: {self.log_tail()}"
        )


def archive_demo_wal(
    raw: Path,
    *,
    server: str,
    repo_url: str,
    password: bytes,
    images_dir: Path,
    env: Mapping[str, str] | None = None,
) -> ArchivedWal:
    """Run ``server``'s PostgreSQL after its disk point (the disk ``raw``): replay, promote, commit
    :data:`LATE_ITEM`, archive; returns the last segment archived."""
    from drctl.demo.images.agent_bundle import build_agent_bundle

    if not (PG_BIN / "pg_ctl").exists():
        raise ToolMissing(f"PostgreSQL 15 is not installed ({PG_BIN}): apt-get install postgresql-15")
    t0 = time.monotonic()
    bundle = build_agent_bundle(images_dir)
    source = env if env is not None else os.environ
    pg_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TZ": "UTC", "LANG": "C.UTF-8"}
    pg_env.update({k: v for k, v in source.items() if k.startswith(("AWS_", "DRCTL_S3_"))})
    root = Path(tempfile.mkdtemp(prefix=f"drctl-demo-wal-{server}-", dir="/var/tmp"))  # 0700
    copy = _Copy(root, pg_env)
    try:
        shutil.copytree(bundle / "opt-drctl", root / "opt-drctl", symlinks=True)
        drctl = root / "drctl"
        drctl.write_text(_launcher(root / "opt-drctl"))
        drctl.chmod(0o755)
        fd = os.open(root / "password", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(password + b"\n")
        cluster, _, _ = find_cluster(Ext4Disk(raw))
        disk = Ext4Disk(raw)
        run(
            ["debugfs", "-R", f"rdump {cluster} {root}", disk.device],
            what=f"copying the PostgreSQL cluster {cluster} out of {raw}",
            timeout=PG_TIMEOUT_S,
            error=DemoWalFailed,
        )
        extracted = root / cluster.rsplit("/", 1)[1]
        if extracted != copy.data:
            extracted.rename(copy.data)
        (copy.data / "postgresql.conf").write_text(server_conf(root, drctl, repo_url, server))
        (copy.data / "pg_hba.conf").write_text("local all postgres peer\n")
        (copy.data / "pg_ident.conf").write_text("")
        (copy.data / "recovery.signal").write_text("")
        run(["chown", "-R", "postgres:postgres", str(root)], what="handing the copy to postgres", timeout=60)
        copy.pg_ctl("-w", "-t", str(int(PG_TIMEOUT_S)), "start")
        copy.wait("select pg_is_in_recovery()", lambda v: v == "f", "recovery did not end (promotion)")
        sku, label = LATE_ITEM
        copy.sql(
            f"INSERT INTO item VALUES ('{sku}', '{label}') ON CONFLICT (sku) DO UPDATE SET label = EXCLUDED.label",
            "catalogue",
        )
        segment = copy.sql("select pg_walfile_name(pg_current_wal_lsn())")
        copy.sql("select pg_switch_wal()")
        copy.wait(
            "select coalesce(last_archived_wal, '') || ' ' || failed_count::text from pg_stat_archiver",
            lambda v: v.split(" ")[0] >= segment,
            f"segment {segment} was not archived",
        )
        copy.pg_ctl("-m", "fast", "-w", "stop")
    except BaseException:
        try:
            copy.pg_ctl("-m", "immediate", "-w", "stop", check=False)
        except DrctlError as e:  # the first failure is the one to report
            log.warning("stopping the demo database copy: %s", e.message)
        log.error("the demo database copy failed; its log ends: %s", copy.log_tail())
        raise
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return ArchivedWal(server, segment, time.monotonic() - t0)
