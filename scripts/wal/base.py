"""Database base backups (``drctl wal base``) and the record of where each one's WAL starts.

A base backup is PostgreSQL's own ``pg_basebackup`` stream (tar format, WAL left to the archive),
stored as a restore point of the server's pseudo-disk ``pgbase``. Why this and not a disk-level
point taken between ``pg_backup_start`` and ``pg_backup_stop`` hooks: the stream is consistent
whatever the server's storage (no snapshot support needed), PostgreSQL hands over the
``backup_label`` itself (a non-exclusive disk-level backup must capture it from ``pg_backup_stop``
and put it back at restore time: one more thing to lose), and PostgreSQL waits until the WAL the
base needs is archived before ``pg_basebackup`` returns. Cost: the stream is written to a private
temporary file first (its size must be known to chunk it), so the server needs free space the size
of the database, and a tar's fixed-size chunks deduplicate poorly between bases (files shift):
each base backup uploads roughly the database's compressed size.

Next to each base, ``wal/<server>/bases/<point id>`` (sealed like a WAL file) records the base's
first WAL segment, timeline and start time: what ``prune`` keeps and ``check`` walks from.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from drctl.errors import DrctlError, InvalidInput, ToolMissing
from drctl.private_files import private_temp_dir
from drctl.repo.backup import backup_disk
from drctl.repo.repository import Repository
from drctl.storage.base import ObjectMissing
from drctl.wal.archive import PREFIX, WalSegmentCorrupt, seal, unseal

log = logging.getLogger(__name__)

BASE_DISK = "pgbase"
_LABEL_START = re.compile(r"^START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)$", re.M)
_LABEL_TIME = re.compile(r"^START TIME: (.+)$", re.M)


class BaseBackupFailed(DrctlError):
    """pg_basebackup failed: nothing was stored."""

    exit_code = 20


BASE_KINDS = ("pgbase", "disk")


@dataclass(frozen=True)
class BaseInfo:
    """A restore point the archived WAL replays onto, from ``start_segment`` on. ``pgbase``: a
    ``pg_basebackup`` stream (``drctl wal base``; what ``drctl wal restore`` restores). ``disk``: a
    disk-level point of the server whose cluster needs no WAL before ``start_segment`` (shut down
    cleanly, or taken between ``pg_backup_start``/``pg_backup_stop``); the drill and activation
    replay onto it (``drctl.wal.stage``)."""

    point: str
    start_segment: str
    start_time: datetime
    created: datetime
    kind: str = "pgbase"

    @property
    def timeline(self) -> str:
        return self.start_segment[:8]

    def as_dict(self) -> dict[str, str]:
        return {
            "point": self.point,
            "start_segment": self.start_segment,
            "start_time": self.start_time.isoformat(),
            "created": self.created.isoformat(),
            "kind": self.kind,
        }


def _base_name(point: str) -> str:
    return f"bases/{point}"


def _base_key(server: str, point: str) -> str:
    return f"{PREFIX}{server}/{_base_name(point)}"


def parse_label(text: str) -> tuple[str, datetime]:
    """(first WAL segment, start time) from a ``backup_label``."""
    seg, when = _LABEL_START.search(text), _LABEL_TIME.search(text)
    if not seg or not when:
        raise InvalidInput("backup_label has no START WAL LOCATION or START TIME line")
    raw = when.group(1).strip()
    stamp, _, zone = raw.rpartition(" ")
    start = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S")
    if zone not in ("UTC", "GMT"):
        raise InvalidInput(f"backup_label START TIME {raw!r}: run the server with log_timezone = UTC")
    return seg.group(1), start.replace(tzinfo=UTC)


def base_backup(
    repo: Repository,
    server: str,
    *,
    conninfo: str,
    workdir: str | os.PathLike[str],
    parallel: int = 8,
    timeout: float = 3600,
) -> BaseInfo:
    """Stream a base backup of the cluster at ``conninfo`` into a restore point of ``server``."""
    if re.search(r"(^|\s)password\s*=", conninfo) or re.search(r"://[^/@]*:[^/@]*@", conninfo):
        raise InvalidInput(
            "the connection string holds a password: put it in the PostgreSQL password file (~/.pgpass "
            "or PGPASSFILE) or use peer/certificate authentication; passwords never go in argv"
        )
    tmp = private_temp_dir(workdir, "drctl-pgbase")
    tar = tmp / "base.tar"
    argv = [
        "pg_basebackup",
        "-d",
        conninfo,
        "-D",
        "-",
        "-F",
        "t",
        "-X",
        "none",
        "-c",
        "fast",
        "--no-manifest",
    ]
    argv += ["-l", f"drctl base of {server}"]
    try:
        with open(tar, "wb") as out:
            try:
                proc = subprocess.run(
                    argv, stdout=out, stderr=subprocess.PIPE, text=True, check=False, timeout=timeout
                )
            except FileNotFoundError as e:
                raise ToolMissing("pg_basebackup is not installed (Debian: postgresql-client-15)") from e
            except subprocess.TimeoutExpired as e:
                raise BaseBackupFailed(
                    f"pg_basebackup of {server} did not finish in {timeout:.0f} s: it waits until the WAL the "
                    "base needs is archived, so check that archive_command works (pg_stat_archiver, the "
                    "server log); no restore point was written"
                ) from e
        if proc.returncode != 0:
            raise BaseBackupFailed(
                f"pg_basebackup of {server} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}; "
                "no restore point was written"
            )
        with tarfile.open(tar) as t:
            member = t.extractfile("backup_label")
            if member is None:
                raise BaseBackupFailed(f"the base backup of {server} has no backup_label")
            start_segment, start_time = parse_label(member.read(64 * 1024).decode())
        result = backup_disk(repo, tar, server=server, disk=BASE_DISK, backup_type="full", parallel=parallel)
    finally:
        tar.unlink(missing_ok=True)
        tmp.rmdir()
    info = BaseInfo(result.point.id, start_segment, start_time, result.point.created)
    record_base(repo, server, info)
    log.info("base backup of %s: point %s, WAL from %s", server, info.point, start_segment)
    return info


def record_base(repo: Repository, server: str, info: BaseInfo) -> None:
    """Store the sealed record of a base backup: where its WAL starts (what prune keeps)."""
    repo.storage.put(
        _base_key(server, info.point),
        seal(repo, server, _base_name(info.point), json.dumps(info.as_dict()).encode()),
    )


def list_bases(repo: Repository, server: str) -> list[BaseInfo]:
    """The base backups of ``server`` whose restore point still exists, oldest first."""
    points = set(repo.point_ids())
    prefix = f"{PREFIX}{server}/bases/"
    bases = []
    for o in repo.storage.list(prefix):
        point = o.key[len(prefix) :]
        if point not in points:
            continue  # forgotten: its record goes at the next wal prune
        try:
            _, body = unseal(repo, server, _base_name(point), repo.storage.get(o.key))
            doc = json.loads(body)
            info = BaseInfo(
                doc["point"],
                doc["start_segment"],
                datetime.fromisoformat(doc["start_time"]),
                datetime.fromisoformat(doc["created"]),
                doc.get("kind", "pgbase"),  # records written before disk bases existed
            )
            if info.kind not in BASE_KINDS:
                raise ValueError(f"unknown kind {info.kind!r}")
        except ObjectMissing:
            continue
        except (ValueError, KeyError, TypeError) as e:
            raise WalSegmentCorrupt(f"base backup record {o.key} is unreadable: {e}") from e
        if info.point != point:
            raise WalSegmentCorrupt(f"base backup record {o.key} names another point ({info.point})")
        bases.append(info)
    return sorted(bases, key=lambda b: b.created)


def stale_base_records(repo: Repository, server: str) -> list[str]:
    points = set(repo.point_ids())
    prefix = f"{PREFIX}{server}/bases/"
    return [o.key for o in repo.storage.list(prefix) if o.key[len(prefix) :] not in points]


def workdir_default() -> Path:
    return Path(os.environ.get("TMPDIR", "/var/tmp"))
