"""Activation and drill of a client's stack (service description 8 and 9): guards, parallel
restore from the encrypted repository, dependency-ordered start on a target, verification,
a signed report. ``drctl activate`` and ``drctl drill`` call into here.

What a run leaves behind: a signed report (local and in the client's report container) and,
for an activation that is not torn down (``activate``, or ``drill --keep``), a record under
``<state>/active/<stack>.json`` that ``deactivate`` (:mod:`drctl.activation.deactivation`) uses to
return to nominal.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from drctl.activation.engine import RestoredDisk, ServerRun, run_servers
from drctl.activation.guards import (
    ActivationLock,
    ask_on_terminal,
    authorised_contact,
    check_not_active,
    check_window,
    confirm_disaster,
)
from drctl.activation.targets.base import DeadlineFn, Target
from drctl.errors import DrctlError, InvalidInput
from drctl.plan.model import Plan, Server
from drctl.runs.model import (
    RunSummary,
    ServerResult,
    ServerStatus,
    SiteReconnection,
    new_run_id,
    seconds_between,
    utc_now,
)
from drctl.runs.store import RunStore
from drctl.stack.config import StackConfig, load_stack
from drctl.stack.preflight import PreflightBlocked, PreflightReport
from drctl.storage import open_storage

log = logging.getLogger(__name__)

EventFn = Callable[[str, dict], None]
# Builds the run's target and returns it with its teardown (see drctl.activation.targets.base).
TargetFactory = Callable[["Activation", DeadlineFn], tuple[Target, Callable[[], None]]]
# The cloud preflight of the run's stack and scope (drctl.stack.preflight).
PreflightFn = Callable[["Activation"], PreflightReport]


@dataclass(frozen=True)
class ActivationRequest:
    stack: str
    mode: str  # test | disaster
    target: str  # local | cloud
    requested_by: str
    servers: tuple[str, ...] | None = None  # None: the stack's scope (dr + backup-tested by default)
    point: str = "latest"  # latest | point id | ISO time (newest at or before)
    override_window: bool = False
    reason: str | None = None
    yes: bool = False
    kind: str = "activation"  # activation | drill
    keep: bool = False  # drill: leave the servers running
    max_wait_s: int | None = None  # cap on each server's RTO budget (small machines, drills)
    ram_cap_mb: int | None = None
    vcpu_cap: int | None = None
    restore_parallel: int = 4
    chunk_parallel: int = 16
    override_preflight: str | None = None  # cloud: run despite blocking preflight findings (recorded)


def resolve_scope(cfg: StackConfig, servers: Sequence[str] | None) -> tuple[Server, ...]:
    plan = cfg.plan
    if servers:
        names = {s.name for s in plan.servers}
        unknown = [s for s in servers if s not in names]
        if unknown:
            raise InvalidInput(
                f"--servers: {', '.join(unknown)} not in {cfg.stack}'s plan; "
                f"its servers are {', '.join(sorted(names))}"
            )
        wanted = set(servers)
    else:
        wanted = set(cfg.scope())
    return tuple(s for s in plan.servers if s.name in wanted)


def check_guards(req: ActivationRequest, plan: Plan, now: datetime, *, ask=ask_on_terminal) -> str | None:
    """The contact, window and confirmation rules; returns the override reason to record.
    A drill is an agreed, scheduled test (service description 11.2): the window does not apply."""
    authorised_contact(plan, req.requested_by)
    override = None
    if req.kind != "drill":
        override = check_window(plan, now, override=req.override_window, reason=req.reason)
    elif req.override_window and req.reason:
        override = req.reason
    if req.mode == "disaster":
        confirm_disaster(plan.client.id, yes=req.yes, ask=ask)
    return override


def _server_result(run: ServerRun, started_at: datetime) -> ServerResult:
    s = run.server
    point = run.disks[0] if run.disks else None
    logged = next((d for d in run.disks if d.log_recovered_to is not None), None)
    disk_age = seconds_between(point.point_time, started_at) if point else None
    reason = run.reason or None
    assert run.status is not None, f"server {s.name} left pending by the engine"
    if run.status == ServerStatus.NOT_STARTED and reason:
        reason = f"not started: {reason}"
    return ServerResult(
        name=s.name,
        os=f"{s.os_family}-{s.os_version}" if s.os_version else s.os_family,
        status=run.status,
        os_family=s.os_family,
        depends_on=s.depends_on,
        restore_started_at=run.restore_started_at,
        restore_ended_at=run.restore_ended_at,
        boot_started_at=run.boot_started_at,
        verified_at=run.verified_at,
        restore_point=point.point_id if point else None,
        restore_point_at=point.point_time if point else None,
        # With the WAL replayed, the data lost is what came after its newest archived segment.
        rpo_achieved_s=seconds_between(logged.log_recovered_to, started_at) if logged else disk_age,
        disk_point_age_s=disk_age,
        log_segment=logged.log_segment if logged else None,
        log_recovered_to=logged.log_recovered_to if logged else None,
        rpo_target_s=s.rpo_s,
        rto_target_s=s.rto_s,
        rto_achieved_s=seconds_between(started_at, run.verified_at) if run.verified_at else None,
        checks=tuple(run.checks),
        reason=reason,
        error=type(run.error).__name__ if run.error else None,
        exit_code=run.error.exit_code if run.error else None,
        restored_bytes=(
            sum(d.size for d in run.disks if d.size is not None)
            if run.disks and all(d.size is not None for d in run.disks)
            else None
        ),
    )


class Activation:
    """One run. ``execute`` does it all; the target is built by ``target_factory`` so tests and
    the CLI choose local (sandbox) or cloud."""

    def __init__(
        self,
        req: ActivationRequest,
        *,
        password: bytes,
        state_dir: Path,
        on_event: EventFn | None = None,
        project_dir: Path | None = None,
        target_factory: TargetFactory | None = None,
        preflight: PreflightFn | None = None,
    ) -> None:
        self.req, self.password, self.state_dir = req, password, Path(state_dir)
        self.emit = on_event or (lambda kind, data: None)
        self.cfg = load_stack(req.stack, project_dir) if project_dir else load_stack(req.stack)
        self.plan = self.cfg.plan
        self.scope = resolve_scope(self.cfg, req.servers)
        self.project_dir = project_dir
        self.target_factory: TargetFactory = target_factory or default_target_factory
        self.preflight: PreflightFn = preflight or default_preflight
        self.run_id = new_run_id()
        self.cancel = threading.Event()  # set on Ctrl-C: the running restores stop

    def execute(self) -> RunSummary:
        from drctl.repo.repository import open_repository

        req, plan = self.req, self.plan
        started = utc_now()
        override = check_guards(req, plan, started)
        preflight_notes = self._preflight()
        repo = open_repository(open_storage(self.cfg.settings.repository_url(plan)), self.password)
        reports = open_storage(self.cfg.settings.reports_url(plan))
        restore_dir = self.state_dir / "restores" / self.run_id
        self.emit(
            "run-started",
            {
                "run_id": self.run_id,
                "stack": req.stack,
                "mode": req.mode,
                "target": req.target,
                "servers": [s.name for s in self.scope],
            },
        )

        def deadline_for(server: Server) -> datetime:
            budget = server.rto_s if req.max_wait_s is None else min(server.rto_s, req.max_wait_s)
            return started + timedelta(seconds=budget)

        forecast = self._forecast()
        keep_running = req.kind == "activation" or req.keep
        with ActivationLock(reports, req.stack, self.run_id):
            check_not_active(self.state_dir, req.stack)
            restore_dir.mkdir(parents=True, exist_ok=True)
            teardown = _nothing
            try:
                target, teardown = self.target_factory(self, deadline_for)
                runs = run_servers(
                    self.scope,
                    restore=lambda s, d: self._restore(repo, target, restore_dir, s, d),
                    start=target.start_server,
                    verify=target.verify,
                    restore_parallel=req.restore_parallel,
                    on_event=self.emit,
                    cancel=self.cancel,
                )
                reconnection = self._reconnection(target, runs)
            except BaseException:
                teardown()
                shutil.rmtree(restore_dir, ignore_errors=True)
                raise
            if keep_running:
                self._record_active(restore_dir, target)
            else:
                teardown()
                shutil.rmtree(restore_dir, ignore_errors=True)
        summary = RunSummary(
            run_id=self.run_id,
            stack=req.stack,
            mode=req.mode,
            target=req.target,
            started_at=started,
            ended_at=utc_now(),
            servers=tuple(_server_result(runs[s.name], started) for s in self.scope),
            client_id=plan.client.id,
            client_name=plan.client.name,
            client_timezone=plan.client.timezone,
            requested_by=req.requested_by,
            override_reason=override,
            kind=req.kind,
            reconnection=reconnection,
            forecast=forecast,
            notes=(f"restore point selector: {req.point}",)
            + ((f"each server's wait was capped at {req.max_wait_s} s",) if req.max_wait_s else ())
            + preflight_notes,
        ).with_availability()
        stored = RunStore(self.state_dir, reports).record(summary)
        self.emit("report", {"path": str(stored.path)})
        return summary

    def _preflight(self) -> tuple[str, ...]:
        """A cloud run checks the project before restoring anything: a blocking finding stops it
        (exit 21) unless ``override_preflight`` gives the reason, which the report records."""
        if self.req.target != "cloud":
            return ()
        report = self.preflight(self)
        self.emit("preflight", report.to_dict())
        warnings = [f"preflight warning: {f.resource}: {f.fix}" for f in report.warnings]
        if report.ok:
            return tuple(warnings)
        if not self.req.override_preflight:
            raise PreflightBlocked(
                f"preflight of stack {self.req.stack} in project {report.project_id}: {report.summary()}; "
                f"nothing was restored. `drctl preflight {self.req.stack}` shows each fix; to activate "
                "anyway, --override-preflight REASON (recorded in the report)"
            )
        log.warning("preflight of %s overridden: %s", self.req.stack, self.req.override_preflight)
        return (
            f"preflight overridden by {self.req.requested_by}: {self.req.override_preflight} "
            f"(blocking: {report.summary()})",
            *warnings,
        )

    def _forecast(self) -> dict | None:
        """The predicted times (from this client's previous drill) and cost, before anything runs."""
        from drctl.runs.forecast import make_forecast

        try:
            previous = [r.summary for r in RunStore(self.state_dir).list_runs(self.req.stack)]
            storage = open_storage(self.cfg.settings.repository_url(self.plan))
            return make_forecast(self.cfg, [s.name for s in self.scope], previous, storage)
        except DrctlError as e:  # a forecast informs the report; it never stops a run
            log.warning("no forecast for this run: %s", e.message)
            return None

    def _reconnection(self, target: Target, runs: dict[str, ServerRun]) -> tuple[SiteReconnection, ...]:
        """Service description 8.1: a drill also proves the users' reconnection (NCA tunnel,
        DHCP, DNS, a recovered server reached through the tunnel), per site, in the sandbox."""
        namespace = target.namespace
        if namespace is None or self.req.kind != "drill":
            return ()
        from drctl.activation.reconnection import check_sites

        available = {name for name, r in runs.items() if r.available}
        self.emit("reconnection-started", {"sites": [site.name for site in self.plan.sites]})
        return check_sites(self.cfg, namespace, available)

    def _restore(self, repo, target: Target, restore_dir: Path, server: Server, disk: str) -> RestoredDisk:
        from drctl.repo.restore import restore_disk
        from drctl.wal.stage import stage_wal, wants_replay

        result = restore_disk(
            repo,
            server=server.name,
            disk=disk,
            point=self.req.point,
            out=restore_dir / f"{server.name}-{disk}.raw",
            parallel=self.req.chunk_parallel,
            cancel=self.cancel,
        )
        restored = RestoredDisk(
            server.name, disk, str(result.path), result.point.id, result.point.created, result.point.size
        )
        if disk == server.boot_disk.name and wants_replay(server, self.req.point):
            # Before the disk is uploaded or booted: the database replays its archived WAL at start.
            staged = stage_wal(
                repo,
                server.name,
                str(result.path),
                selector=self.req.point,
                keep_archiving=self.req.mode == "disaster",
            )
            if staged is not None:
                self.emit(
                    "log-staged",
                    {
                        "server": server.name,
                        "wal_files": staged.files,
                        "last_segment": staged.last_segment,
                        "recovered_to": staged.recovered_to.isoformat(),
                    },
                )
                restored = dataclasses.replace(
                    restored, log_segment=staged.last_segment, log_recovered_to=staged.recovered_to
                )
        target.stage_disk(server, restored)
        return restored

    def _record_active(self, restore_dir: Path, target: Target) -> None:
        path = self.state_dir / "active" / f"{self.req.stack}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {
                    "run_id": self.run_id,
                    "target": self.req.target,
                    "mode": self.req.mode,
                    "kind": self.req.kind,
                    "requested_by": self.req.requested_by,
                    "restore_dir": str(restore_dir),
                    "images": dict(target.image_ids),
                    "since": datetime.now(UTC).isoformat(),
                }
            )
        )


def _nothing() -> None:
    pass


def default_preflight(act: Activation) -> PreflightReport:
    """The preflight against the cloud of clouds.yaml / OS_CLOUD, as the cloud target connects."""
    from drctl.stack.cloud_inventory import run_preflight

    return run_preflight(act.req.stack, project_dir=act.project_dir, servers=[s.name for s in act.scope])


def default_target_factory(act: Activation, deadline_for: DeadlineFn) -> tuple[Target, Callable[[], None]]:
    """(target, teardown) for the request's target."""
    if act.req.target == "local":
        from drctl.activation.targets.local import LocalTarget
        from drctl.activation.targets.sandbox import Sandbox

        sandbox = Sandbox(
            act.run_id,
            act.plan,
            state_dir=act.state_dir,
            ram_cap_mb=act.req.ram_cap_mb,
            vcpu_cap=act.req.vcpu_cap,
        )
        try:
            sandbox.setup()
        except BaseException:
            sandbox.teardown()  # a half-made namespace is removed too
            raise
        return LocalTarget(sandbox, deadline_for), sandbox.teardown
    from drctl.activation.targets.cloud import CloudTarget, GlanceImages, NovaServers, PulumiAutomationStack

    engine = PulumiAutomationStack(act.req.stack, act.cfg.project_dir)
    target = CloudTarget(
        act.req.stack,
        GlanceImages(),
        engine,
        NovaServers(),
        restore_point=act.req.point,
        deadline_for=deadline_for,
    )
    return target, target.deactivate
