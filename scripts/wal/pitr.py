"""Point-in-time restore of a PostgreSQL server: a base backup plus the recovery configuration.

:func:`restore_database` picks the newest base backup finished at or before the target time,
restores it (sha256-verified like every restore) into an empty data directory and writes
``recovery.signal`` and, appended to ``postgresql.auto.conf``::

    restore_command = '<drctl> wal fetch --recovery ... %f %p'
    recovery_target_time = '<target>'          # absent for "latest": replay every archived segment
    recovery_target_action = 'promote'
    archive_mode = 'off'                       # unless keep_archiving (a disaster, not a drill)

Starting PostgreSQL on that directory replays the archive to the target and promotes. With a target
time, PostgreSQL itself refuses to start if the archive ends before it (``recovery ended before
configured recovery target was reached``); ``wal fetch --recovery`` turns a hole or an
unauthenticated segment into an exit status PostgreSQL treats as fatal, so no replay ends silently
early.
"""

from __future__ import annotations

import logging
import os
import tarfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from drctl.errors import InvalidInput
from drctl.private_files import private_temp_dir
from drctl.repo.repository import Repository
from drctl.repo.restore import restore_disk
from drctl.wal.base import BASE_DISK, BaseInfo, list_bases

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PitrResult:
    base: BaseInfo
    datadir: Path
    target: datetime | None

    def summary(self) -> dict[str, object]:
        return {
            "base_point": self.base.point,
            "base_start_time": self.base.start_time.isoformat(),
            "datadir": str(self.datadir),
            "target": self.target.isoformat() if self.target else "latest",
        }


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def choose_base(bases: list[BaseInfo], target: datetime | None, server: str) -> BaseInfo:
    usable = [b for b in bases if target is None or b.created <= target]
    if not usable:
        first = f" (the first finished {bases[0].created.isoformat()})" if bases else ""
        raise InvalidInput(
            f"no base backup of {server} finished at or before {target.isoformat() if target else 'now'}"
            f"{first}: choose a later time, or take one with `drctl wal base`"
        )
    return usable[-1]


def restore_database(
    repo: Repository,
    server: str,
    *,
    target: datetime | None,
    datadir: str | os.PathLike[str],
    restore_command: str,
    keep_archiving: bool = False,
    parallel: int = 8,
) -> PitrResult:
    datadir = Path(datadir)
    if datadir.exists() and any(datadir.iterdir()):
        raise InvalidInput(f"data directory {datadir} is not empty: restore into a new or empty directory")
    if target is not None and target.tzinfo is None:
        raise InvalidInput("the target time has no time zone: write it like 2026-11-30T10:15:00+00:00")
    bases = list_bases(repo, server)
    streams = [b for b in bases if b.kind == "pgbase"]
    if bases and not streams:
        raise InvalidInput(
            f"the bases of {server} are disk points ({', '.join(b.point for b in bases)}): restore the "
            f"server's disk with `drctl drill`/`drctl activate --point <time>`, which replays the WAL onto it, "
            f"or take a stream base with `drctl wal base` for `drctl wal restore`"
        )
    base = choose_base(streams, target, server)
    work = private_temp_dir(datadir.parent, f".drctl-pitr-{server}")
    try:
        tar = work / "base.tar"
        restore_disk(repo, server=server, disk=BASE_DISK, point=base.point, out=tar, parallel=parallel)
        datadir.mkdir(mode=0o700, exist_ok=True)
        with tarfile.open(tar) as t:
            t.extractall(datadir, filter="data")
        tar.unlink()
    finally:
        for leftover in work.iterdir():
            leftover.unlink()
        work.rmdir()
    os.chmod(datadir, 0o700)
    (datadir / "pg_wal" / "archive_status").mkdir(parents=True, exist_ok=True)
    settings = [f"restore_command = {_quote(restore_command)}", "recovery_target_action = 'promote'"]
    if target is not None:
        settings.append(f"recovery_target_time = {_quote(target.isoformat())}")
    if not keep_archiving:
        settings.append("archive_mode = 'off'")
    with open(datadir / "postgresql.auto.conf", "a", encoding="utf-8") as f:
        f.write("\n# drctl wal restore: point-in-time recovery\n" + "\n".join(settings) + "\n")
    (datadir / "recovery.signal").touch(mode=0o600)
    log.info(
        "restored base %s of %s into %s for recovery to %s", base.point, server, datadir, target or "latest"
    )
    return PitrResult(base, datadir, target)
