"""One agent job (``drctl agent run``): back up every disk of the server, or prune, and report it.

Order, for a backup job (full, incremental, differential)::

    per-server job lock (flock, state dir)  -- held: a "skipped" record, JobRunning (exit 11)
    publish the records a store outage left in the spool
    open the repository                     -- store or password trouble fails the job here
    pre-hook                                -- failing: the job fails, nothing is read
    each disk: consistency step (snapshot), backup_disk (with the method's check)
    snapshot clean-up                       -- on every path
    post-hook                               -- on every path (after a failing pre-hook too)
    retention (the plan's keep_*, forget)   -- after a successful job only
    one signed status record                -- on every path; kept in the spool if the store is away

A ``full`` job of a server with a ``database`` section also takes a PostgreSQL base backup
(``drctl wal base``, restore point of pseudo-disk ``pgbase``) after its disks. A ``log`` job
reports the WAL archiving (:mod:`drctl.agent.log_job`) without opening the repository. A ``prune``
job takes the repository's exclusive lock and deletes unreferenced chunks and the WAL no kept base
needs; it has no hooks and no snapshot. Every job, whatever its end, leaves exactly one status record.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from drctl.agent import records
from drctl.agent.config import AgentConfig, DiskConfig
from drctl.agent.consistency import ConsistentSource, consistent_source
from drctl.agent.hooks import run_hook
from drctl.errors import EXIT_LOCKED, Cancelled, DrctlError, LocalIOError
from drctl.events import EventStream
from drctl.repo.backup import BackupResult, backup_disk
from drctl.repo.errors import RepoLocked
from drctl.repo.progress import ProgressSink
from drctl.repo.repository import Repository
from drctl.storage.base import Storage, StorageError

log = logging.getLogger(__name__)

BACKUP_TYPES = ("full", "incremental", "differential")
JOB_TYPES = (*BACKUP_TYPES, "log", "prune")
# What makes one disk readable and consistent for the backup, undone when the ``with`` block ends.
SourceFor = Callable[[DiskConfig], AbstractContextManager[ConsistentSource]]


class JobRunning(DrctlError):
    """The previous job of this server still runs; this one was skipped (and recorded so)."""

    exit_code = EXIT_LOCKED


@dataclass
class JobOutcome:
    """What a job did: its signed record, whether it reached the store, and the backups' results."""

    record: records.JobRecord
    published: bool
    backups: list[BackupResult] = field(default_factory=list)
    retention: str = ""

    def summary(self) -> dict[str, Any]:
        r = self.record
        return {
            "job_id": r.job_id,
            "server": r.server,
            "type": r.type,
            "result": r.result,
            "started": r.started.isoformat(),
            "ended": r.ended.isoformat(),
            "points": dict(r.points),
            "bytes_read": r.bytes_read,
            "bytes_new": r.bytes_new,
            "bytes_uploaded": r.bytes_uploaded,
            "error_class": r.error_class,
            "record_published": self.published,
            "retention": self.retention,
        }


@contextlib.contextmanager
def job_lock(cfg: AgentConfig) -> Iterator[bool]:
    """The per-server job lock (``flock`` on ``<state_dir>/job.lock``): yields False if another job
    holds it. The kernel releases it when the process ends, however it ends."""
    try:
        cfg.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(cfg.state_dir / "job.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise LocalIOError(
            f"agent state directory {cfg.state_dir}: {e.strerror}; check state_dir in {cfg.path}"
        ) from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _new_job_id(started: datetime) -> str:
    return f"{started:%Y%m%d%H%M%S}-{secrets.token_hex(4)}"


def _error_text(e: BaseException) -> str:
    if isinstance(e, DrctlError):
        return e.message
    if isinstance(e, KeyboardInterrupt):
        return "interrupted (Ctrl-C or SIGTERM)"
    return f"internal error: {type(e).__name__}: {e}"


class _Job:
    """The state of one running job, turned into its record at the end."""

    def __init__(self, cfg: AgentConfig, job_type: str, events: EventStream | None) -> None:
        self.cfg = cfg
        self.type = job_type
        self.events = events
        self.started = datetime.now(UTC)
        self.job_id = _new_job_id(self.started)
        self.backups: list[BackupResult] = []
        self.retention = ""
        self.extra_points: dict[str, str] = {}
        self.detail: dict[str, str | int | float | bool | None] = {}

    def emit(self, event: str, fields: dict[str, Any]) -> None:
        if self.events is not None:
            self.events.emit(event, {**fields, "job_id": self.job_id, "server": self.cfg.server})

    def record(self, result: str, error: BaseException | None) -> records.JobRecord:
        points = {**{b.point.disk: b.point.id for b in self.backups}, **self.extra_points}
        new_bytes = sum(min(b.new_chunks * b.point.chunk_size, b.point.size) for b in self.backups)
        if self.retention:
            self.detail["retention"] = self.retention
        return records.JobRecord(
            client=self.cfg.client,
            server=self.cfg.server,
            job_id=self.job_id,
            type=self.type,
            started=self.started,
            ended=datetime.now(UTC),
            result=result,
            disks=tuple(d.name for d in self.cfg.disks) if self.type in BACKUP_TYPES else (),
            points=points,
            bytes_read=sum(b.point.size for b in self.backups),
            bytes_new=new_bytes,
            bytes_uploaded=sum(b.uploaded_bytes for b in self.backups),
            error_class=None
            if error is None
            else ("Cancelled" if isinstance(error, KeyboardInterrupt) else type(error).__name__),
            error=None if error is None else _error_text(error)[:2000],
            host=socket.gethostname(),
            detail=self.detail,
        )


def run_job(
    cfg: AgentConfig,
    job_type: str,
    open_repo: Callable[[Storage], Repository],
    *,
    storage: Storage,
    events: EventStream | None = None,
    progress: ProgressSink | None = None,
    source_for: SourceFor = consistent_source,
) -> JobOutcome:
    """Run one job; returns its outcome when it succeeded, raises its error (after its record was
    published or spooled) when it did not. ``open_repo`` opens the repository on ``storage`` (it
    reads the password: only once the job lock is held). ``source_for`` makes a disk readable and
    consistent (default: the disk's consistency method); ``drctl protect`` passes the cloud's
    snapshot-and-download step there."""
    key = records.load_agent_key(cfg.key)  # before anything: no record can be signed without it
    job = _Job(cfg, job_type, events)
    with job_lock(cfg) as mine:
        if not mine:
            skipped = JobRunning(
                f"server {cfg.server}: another agent job still runs (lock {cfg.state_dir / 'job.lock'}); "
                f"this {job_type} job was skipped and recorded as such"
            )
            _publish(storage, job.record("skipped", skipped), key, cfg)
            raise skipped
        job.emit("job-started", {"type": job_type, "disks": [d.name for d in cfg.disks]})
        try:
            _flush(storage, cfg)
            if job_type == "log":
                from drctl.agent.log_job import run_log

                run_log(cfg, job.detail)
            else:
                repo = open_repo(storage)
                if job_type == "prune":
                    _prune(job, repo)
                else:
                    _backup(job, repo, progress, source_for)
                    if job_type == "full" and cfg.database is not None:
                        _base(job, repo)
                    _retention(job, repo)
        except BaseException as e:  # every end of a job leaves its record
            record = job.record("failed", e)
            _publish(storage, record, key, cfg)
            if isinstance(e, KeyboardInterrupt):
                raise Cancelled(
                    f"server {cfg.server}: job {job.job_id} interrupted; recorded as failed"
                ) from e
            raise
        record = job.record("ok", None)
        published = _publish(storage, record, key, cfg)
    return JobOutcome(record, published, job.backups, job.retention)


def _flush(storage: Storage, cfg: AgentConfig) -> None:
    try:
        n = records.flush_spool(storage, cfg.spool_dir)
    except StorageError as e:
        log.warning("status records stay in the spool %s: %s", cfg.spool_dir, e.message)
        return
    if n:
        log.info("published %d status record(s) kept in the spool", n)


def _publish(storage: Storage, record: records.JobRecord, key: Any, cfg: AgentConfig) -> bool:
    published = records.publish(storage, record, key, cfg.spool_dir)
    if not published:
        log.warning(
            "the status record of job %s could not reach the store; it is kept in %s and the next "
            "job publishes it",
            record.job_id,
            cfg.spool_dir,
        )
    return published


def _backup(job: _Job, repo: Repository, progress: ProgressSink | None, source_for: SourceFor) -> None:
    cfg = job.cfg
    hooks = cfg.hooks
    failure: BaseException | None = None
    try:
        if hooks.pre:
            run_hook("pre", hooks.pre, hooks.timeout_s, server=cfg.server)
        with contextlib.ExitStack() as snapshots:
            sources = [(d, snapshots.enter_context(source_for(d))) for d in cfg.disks]
            for disk, src in sources:
                job.emit("disk-started", {"disk": disk.name, "method": disk.method})
                result = backup_disk(
                    repo,
                    src.path,
                    server=cfg.server,
                    disk=disk.name,
                    backup_type=job.type,
                    progress=progress,
                    check_source=src.check,
                )
                job.backups.append(result)
                job.emit("disk-finished", result.summary())
    except BaseException as e:
        failure = e
        raise
    finally:
        if hooks.post:
            try:
                run_hook("post", hooks.post, hooks.timeout_s, server=cfg.server)
            except DrctlError as e:
                if failure is None:
                    raise
                log.error("%s", e.message)  # the job's first error is the one reported


def _base(job: _Job, repo: Repository) -> None:
    from drctl.wal.base import BASE_DISK, base_backup, workdir_default

    db = job.cfg.database
    assert db is not None
    job.emit("disk-started", {"disk": BASE_DISK, "method": "pg_basebackup"})
    info = base_backup(repo, job.cfg.server, conninfo=db.conninfo, workdir=db.workdir or workdir_default())
    job.extra_points[BASE_DISK] = info.point
    job.detail["base_start_segment"] = info.start_segment
    job.emit("disk-finished", {"disk": BASE_DISK, **info.as_dict()})


def _retention(job: _Job, repo: Repository) -> None:
    """The plan's keep_* policy, applied to this server's points after a successful backup. A
    repository busy with another server's backup defers it to the next job (recorded)."""
    from drctl.repo.maintenance import KeepPolicy, forget

    keep = job.cfg.retention
    if not keep:
        return
    policy = KeepPolicy(
        daily=keep.get("keep_daily", 0),
        weekly=keep.get("keep_weekly", 0),
        monthly=keep.get("keep_monthly", 0),
    )
    if policy.empty():
        return
    try:
        _, removed = forget(repo, policy, server=job.cfg.server)
    except RepoLocked as e:
        job.retention = "deferred: repository locked"
        log.warning("retention deferred to the next job: %s", e.message)
        return
    job.retention = f"{len(removed)} point(s) forgotten"
    job.detail["forgotten"] = len(removed)


def _prune(job: _Job, repo: Repository) -> None:
    from drctl.repo.maintenance import prune

    result = prune(repo)
    job.detail.update({"deleted_chunks": result.deleted_chunks, "deleted_bytes": result.deleted_bytes})
    job.detail["deleted_wal_objects"] = result.wal_deleted
