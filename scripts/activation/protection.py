"""Disaster mode keeps protecting (``drctl protect``): the recovered servers of a stack's active
disaster activation are backed up into the same repository, as new restore points deduplicated
against the ones they were restored from (only the changed chunks are uploaded).

One job per server, through the agent's job (:func:`drctl.agent.job.run_job`): per-server job lock,
one signed status record in ``status/<server>/`` beside the repository, so
``drctl status`` counts these points like any other. Where the disks come from depends on the run's
target, behind one small interface (:class:`ProtectionSource`):

- ``local``: the running sandbox guests (:func:`~drctl.activation.targets.sandbox.running_guest_disks`),
  read with the agent's ``qemu`` method: freeze through the guest agent, external snapshot, thaw,
  back up the quiet image, commit back. The guest never stops.
- ``cloud``: each attached volume's snapshot, downloaded and backed up, then removed
  (:class:`~drctl.activation.targets.cloud_snapshot.CloudSnapshots`).

Signing key: the job acts for the server (it is the hypervisor-side agent of the recovered server),
so its record is signed with that server's agent key, ``<key dir>/<server>.agent-key``: the key
``drctl agent config --out DIR`` created, whose public key the stack records as
``agent_keys.<server>``. A server with no recorded key gets a new one, recorded in the stack. A key
that does not match the recorded one is refused (its records would read as forged).

After the jobs, the run's report is signed again with the points taken (``protection``).

No retention runs during a disaster: the plan's keep_* rules would ``forget`` the points taken
before the disaster (a keep-daily of 7 drops them after a week of disaster backups), and those are
the last known-good state should the recovered servers turn out damaged, and what the failback
compares with. The agent on the site applies the plan's retention again after the return to
nominal.
"""

from __future__ import annotations

import logging
import secrets
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from drctl.agent import records
from drctl.agent.config import AgentConfig, DiskConfig, ScheduleEntry
from drctl.agent.consistency import ConsistentSource, consistent_source
from drctl.agent.job import BACKUP_TYPES, JobOutcome, run_job
from drctl.errors import EXIT_RUN_FAILED, Cancelled, DrctlError, InvalidInput
from drctl.events import EventStream
from drctl.paths import PROJECT
from drctl.plan.model import Server
from drctl.repo.errors import RepoMissing, WrongPassword
from drctl.repo.progress import ProgressSink
from drctl.repo.repository import Repository
from drctl.runs.model import ProtectionPoint, RunSummary
from drctl.runs.store import ReportUploadFailed, RunStore
from drctl.stack.config import StackConfig, load_stack, set_value
from drctl.storage import open_storage
from drctl.storage.base import Storage

log = logging.getLogger(__name__)


class NotInDisaster(InvalidInput):
    """The stack's active run is not a disaster activation: there is nothing in production to protect."""


class GuestNotRunning(DrctlError):
    """A recovered server of the active run is not running (its disks cannot be read live)."""

    exit_code = EXIT_RUN_FAILED


class AgentKeyMismatch(InvalidInput):
    """The agent key given for a server is not the one the stack records for it."""


class ProtectionSource(Protocol):
    """Where a recovered server's disks are read from, for one job."""

    def disks(self, server: Server) -> list[DiskConfig]:
        """The server's disks, plan names, as the job's ``source_for`` reads them."""
        ...

    def consistent_source(self, disk: DiskConfig) -> AbstractContextManager[ConsistentSource]:
        """Make one disk readable and consistent; undone when the ``with`` block ends."""
        ...


class SandboxGuests:
    """The local target: the running guests of the run, read with the agent's ``qemu`` method."""

    def __init__(self, state_dir: Path, stack: str) -> None:
        from drctl.activation.targets.sandbox import running_guest_disks

        self.guests = running_guest_disks(state_dir, stack)

    def disks(self, server: Server) -> list[DiskConfig]:
        found = self.guests.get(server.name)
        if not found:
            raise GuestNotRunning(
                f"server {server.name} of the active run is not running in the sandbox (its QEMU monitor "
                "does not answer): nothing to back up; its last point is the one it was restored from"
            )
        wanted = [server.boot_disk.name, *(d.name for d in server.data_disks)]
        if sorted(d.disk for d in found) != sorted(wanted):
            raise GuestNotRunning(
                f"server {server.name} runs with disk(s) {', '.join(d.disk for d in found)}, its plan "
                f"has {', '.join(wanted)}: the plan changed since the activation"
            )
        return [
            DiskConfig(
                name=d.disk,
                path=str(d.image),
                method="qemu",
                qmp_socket=str(d.qmp_socket),
                guest_agent_socket=str(d.qga_socket),
                device=d.drive,
            )
            for d in found
        ]

    def consistent_source(self, disk: DiskConfig) -> AbstractContextManager[ConsistentSource]:
        return consistent_source(disk)


@dataclass
class ServerProtection:
    """The outcome of one server's job: its record (also when it failed) or the error."""

    server: str
    outcome: JobOutcome | None = None
    error: DrctlError | None = None

    def summary(self) -> dict[str, Any]:
        if self.outcome is not None:
            return self.outcome.summary()
        assert self.error is not None
        return {
            "server": self.server,
            "result": "failed",
            "error_class": type(self.error).__name__,
            "error": self.error.message,
            "exit_code": self.error.exit_code,
        }


@dataclass
class ProtectionResult:
    stack: str
    run_id: str
    target: str
    servers: list[ServerProtection] = field(default_factory=list)
    report: Path | None = None

    @property
    def exit_code(self) -> int:
        """0 when every job succeeded, else the first failed server's exit code."""
        return next((s.error.exit_code for s in self.servers if s.error is not None), 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "run_id": self.run_id,
            "target": self.target,
            "jobs": [s.summary() for s in self.servers],
            "report": str(self.report) if self.report else None,
        }


# Errors after which no other server is tried (each would fail the same way, or the operator stopped it).
STOPS_ALL: tuple[type[DrctlError], ...] = (Cancelled, WrongPassword, RepoMissing)

SourceFactory = Callable[[dict[str, Any], StackConfig, Path], ProtectionSource]


def default_source(active: dict[str, Any], cfg: StackConfig, state_dir: Path) -> ProtectionSource:
    """The run's target: the sandbox guests, or the cloud of ``OS_CLOUD``/clouds.yaml."""
    if active["target"] == "local":
        return SandboxGuests(state_dir, cfg.stack)
    from drctl.activation.targets.cloud import connect_cloud
    from drctl.activation.targets.cloud_snapshot import CloudSnapshots

    work = state_dir / "protect" / cfg.stack / "downloads"
    work.mkdir(mode=0o700, parents=True, exist_ok=True)
    return CloudSnapshots(connect_cloud(None), cfg.stack, work)


def server_key(cfg: StackConfig, server: str, key_dir: Path) -> Path:
    """The path of ``server``'s agent key in ``key_dir``, checked against the stack's record (see the
    module docstring); a server without a recorded key gets a new one, recorded."""
    path = key_dir / f"{server}.agent-key"
    recorded = (cfg.values.get("agent_keys") or {}).get(server)
    if not path.exists():
        if recorded:
            raise AgentKeyMismatch(
                f"server {server}: the stack records its agent key (agent_keys.{server}) but {path} does not "
                "exist: pass --agent-keys DIR, the directory where `drctl agent config --out DIR` wrote "
                f"{server}.agent-key (or copy it there, 0600)"
            )
        key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = records.generate_agent_key(path)
        set_value(
            cfg.stack,
            f"{PROJECT}:agent_keys.{server}",
            records.public_key_text(key.public_key()),
            cfg.project_dir,
        )
        log.info("server %s: new agent key %s, its public key recorded in stack %s", server, path, cfg.stack)
        return path
    public = records.public_key_text(records.load_agent_key(path).public_key())
    if recorded and recorded != public:
        raise AgentKeyMismatch(
            f"server {server}: {path} is not the agent key the stack records (agent_keys.{server}): its "
            "status records would read as forged; pass the directory holding that server's own key"
        )
    if not recorded:
        set_value(cfg.stack, f"{PROJECT}:agent_keys.{server}", public, cfg.project_dir)
    return path


def agent_config(
    cfg: StackConfig, server: Server, disks: list[DiskConfig], state_dir: Path, key: Path
) -> AgentConfig:
    """The agent config of one protection job: the plan's schedule, the repository, and no
    retention (see the module docstring: nothing is forgotten during a disaster)."""
    return AgentConfig(
        client=cfg.plan.client.id,
        stack=cfg.stack,
        server=server.name,
        repository=cfg.settings.repository_url(cfg.plan),
        state_dir=state_dir / "protect" / cfg.stack / server.name,
        key=key,
        disks=tuple(disks),
        schedule=tuple(ScheduleEntry(b.type, b.every_s) for b in server.backup),
        retention={},
    )


def run_of(state_dir: Path, stack: str) -> tuple[dict[str, Any], RunSummary]:
    from drctl.activation.targets.sandbox import active_run_record

    active = active_run_record(state_dir, stack)
    summary = RunStore(state_dir).find(str(active["run_id"])).summary
    mode = active.get("mode", summary.mode)
    if mode != "disaster" or active.get("kind", summary.kind) != "activation":
        raise NotInDisaster(
            f"stack {stack}'s active run {active['run_id']} is a {mode} {active.get('kind', summary.kind)}, "
            "not a disaster activation: its servers hold no production data to protect (their backups "
            "would mix test data into the client's restore points)"
        )
    return active, summary


def protect(
    stack: str,
    state_dir: Path,
    open_repo: Callable[[Storage], Repository],
    *,
    servers: tuple[str, ...] | None = None,
    job_type: str = "incremental",
    key_dir: Path | None = None,
    project_dir: Path | None = None,
    events: EventStream | None = None,
    progress: ProgressSink | None = None,
    source_factory: SourceFactory = default_source,
) -> ProtectionResult:
    """One backup of each recovered server (or of ``servers``) of ``stack``'s active disaster run."""
    if job_type not in BACKUP_TYPES:
        raise InvalidInput(f"--type {job_type}: one of {', '.join(BACKUP_TYPES)}")
    state_dir = Path(state_dir)
    cfg = load_stack(stack, project_dir)
    active, summary = run_of(state_dir, stack)
    scope = scope_of(summary, servers)
    source = source_factory(active, cfg, state_dir)
    storage = open_storage(cfg.settings.repository_url(cfg.plan))
    key_dir = key_dir or state_dir / "protect" / stack / "keys"
    result = ProtectionResult(stack, summary.run_id, summary.target)
    try:
        for name in scope:
            done = ServerProtection(name)
            result.servers.append(done)
            try:
                done.outcome = _protect_server(
                    cfg,
                    cfg.plan.server(name),
                    source,
                    key_dir,
                    state_dir,
                    job_type,
                    open_repo,
                    storage,
                    events,
                    progress,
                )
            except STOPS_ALL:
                raise  # Ctrl-C, or a repository no server can use: the other servers are not tried
            except DrctlError as e:
                log.error("server %s: %s", name, e.message)
                done.error = e
    finally:
        taken = tuple(
            ProtectionPoint(
                server=s.server,
                at=s.outcome.record.ended,
                job_id=s.outcome.record.job_id,
                type=s.outcome.record.type,
                points=dict(s.outcome.record.points),
                bytes_uploaded=s.outcome.record.bytes_uploaded,
            )
            for s in result.servers
            if s.outcome is not None
        )
        if taken:  # also when interrupted: the points taken are in the repository
            result.report = amend_report(state_dir, cfg, summary.run_id, taken)
    return result


def _protect_server(
    cfg: StackConfig,
    server: Server,
    source: ProtectionSource,
    key_dir: Path,
    state_dir: Path,
    job_type: str,
    open_repo: Callable[[Storage], Repository],
    storage: Storage,
    events: EventStream | None,
    progress: ProgressSink | None,
) -> JobOutcome:
    key = server_key(cfg, server.name, key_dir)
    try:
        disks = source.disks(server)
    except DrctlError as e:
        _record_failure(agent_config(cfg, server, [], state_dir, key), job_type, e, storage)
        raise
    return run_job(
        agent_config(cfg, server, disks, state_dir, key),
        job_type,
        open_repo,
        storage=storage,
        events=events,
        progress=progress,
        source_for=source.consistent_source,
    )


def scope_of(summary: RunSummary, servers: tuple[str, ...] | None) -> list[str]:
    """The run's recovered servers (available ones), or the requested ones, which must be in it."""
    recovered = [s.name for s in summary.servers if s.status in ("ok", "warning")]
    if not servers:
        if not recovered:
            raise NotInDisaster(f"run {summary.run_id} of {summary.stack} has no recovered server running")
        return recovered
    unknown = [s for s in servers if s not in recovered]
    if unknown:
        raise InvalidInput(
            f"--servers: {', '.join(unknown)} not recovered by run {summary.run_id} of {summary.stack}; its "
            f"recovered servers are {', '.join(recovered) or 'none'}"
        )
    return list(servers)


def _record_failure(cfg: AgentConfig, job_type: str, error: DrctlError, storage: Storage) -> None:
    """A job that could not even find its disks still leaves its signed record (as the agent's do)."""
    now = datetime.now(UTC)
    record = records.JobRecord(
        client=cfg.client,
        server=cfg.server,
        job_id=f"{now:%Y%m%d%H%M%S}-{secrets.token_hex(4)}",
        type=job_type,
        started=now,
        ended=now,
        result="failed",
        error_class=type(error).__name__,
        error=error.message[:2000],
        host=socket.gethostname(),
    )
    try:
        records.publish(storage, record, records.load_agent_key(cfg.key), cfg.spool_dir)
    except (DrctlError, OSError) as e:
        log.error("server %s: the failed job's record could not be written: %s", cfg.server, e)


def amend_report(state_dir: Path, cfg: StackConfig, run_id: str, taken: tuple[ProtectionPoint, ...]) -> Path:
    """Add the points to the run's report, signed again (locally, and in the report container)."""
    store = RunStore(state_dir, open_storage(cfg.settings.reports_url(cfg.plan)))
    stored = store.find(run_id)
    summary = replace(stored.summary, protection=stored.summary.protection + taken)
    try:
        return store.amend(summary).html_path
    except ReportUploadFailed as e:  # the signed report is safe locally; the backups are done
        log.warning("%s", e.message)
        return store.find(run_id).html_path
