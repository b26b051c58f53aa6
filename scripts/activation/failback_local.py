"""The real steps of ``drctl failback`` for a disaster run on the local target (the QEMU sandbox
kept by ``drctl activate --target local``), and the command's entry, :func:`failback`.

- sync: the guest's disks come from :func:`~drctl.activation.targets.sandbox.running_guest_disks`;
  the guest is quiesced by the agent's qemu method (:func:`drctl.agent.qemu.paused_for_cutover`:
  freeze, pause) or shut down (``--shutdown``), and each disk's whole chain (overlay over the
  restored disk) is backed up with :func:`drctl.repo.backup.backup_disk`;
- restore: :func:`drctl.repo.restore.restore_disk` of the synced point, into a hidden file beside
  an image target (renamed into place), or into the state directory for a block device (then
  copied onto it and read back);
- verify: a new sandbox, the activation engine with the local target, overlays on the site images
  (the proof writes nothing to them);
- release/deactivate: the server's overlays and restored files removed; the last one back
  deactivates the run (:func:`drctl.activation.deactivation.deactivate`).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from drctl.activation.engine import RestoredDisk, ServerRun, run_servers
from drctl.activation.failback import (
    EventFn,
    FailbackOutcome,
    FailbackRefused,
    SyncResult,
    run_failback,
)
from drctl.activation.failback_report import failback_summary
from drctl.activation.failback_sites import SiteTarget, SiteTargetsInvalid, load_site_targets, write_to_device
from drctl.activation.failback_state import FailbackState
from drctl.activation.guards import ActivationLock, authorised_contact
from drctl.activation.targets.sandbox import GuestDisk, NoActiveRun, active_run_record, running_guest_disks
from drctl.paths import check_stack_name
from drctl.plan.model import Server
from drctl.runs.model import new_run_id, utc_now
from drctl.runs.store import RunNotFound, RunStore
from drctl.stack.config import StackConfig, load_stack
from drctl.storage import open_storage

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 300.0
SYNC_EXCLUDED_EVENTS = frozenset({"restore-started", "restore-finished"})  # the engine's, for no restore


@dataclass(frozen=True)
class FailbackRequest:
    stack: str
    requested_by: str
    site_targets: Path
    servers: tuple[str, ...] | None = None
    shutdown: bool = False
    max_wait_s: int | None = None
    ram_cap_mb: int | None = None
    vcpu_cap: int | None = None
    chunk_parallel: int = 16


def _active_run(state_dir: Path, stack: str) -> dict[str, Any]:
    try:
        active = active_run_record(state_dir, check_stack_name(stack))
    except NoActiveRun as e:
        raise FailbackRefused(
            f"{e.message}: nothing to fail back; `drctl runs {stack}` lists its runs"
        ) from e
    if active.get("mode") != "disaster":
        raise FailbackRefused(
            f"run {active['run_id']} of stack {stack} is a {active.get('mode', 'unrecorded')}-mode activation: "
            f"production never moved, there is nothing to bring home; `drctl deactivate {stack}` ends it"
        )
    if active.get("target") != "local":
        raise FailbackRefused(
            f"run {active['run_id']} of stack {stack} runs on the {active.get('target')} target: drctl fails "
            "back from the local target only; copy the servers' volumes home by the cloud's means"
        )
    return active


class LocalSteps:
    """The side effects of a failback from the local sandbox (see the module docstring)."""

    def __init__(
        self,
        cfg: StackConfig,
        req: FailbackRequest,
        repo: Any,
        state_dir: Path,
        active: dict[str, Any],
        guests: dict[str, list[GuestDisk]],
        emit: EventFn,
        failback_id: str,
    ) -> None:
        self.cfg, self.req, self.repo, self.state_dir = cfg, req, repo, Path(state_dir)
        self.active, self.guests, self.emit, self.failback_id = active, guests, emit, failback_id
        self.run_id = str(active["run_id"])

    # -- 1. final synchronisation ------------------------------------------------------------------

    def _disks(self, server: Server) -> list[GuestDisk]:
        disks = self.guests.get(server.name)
        if not disks:
            raise FailbackRefused(
                f"server {server.name}: its recovery guest of run {self.run_id} is not running (no answer on "
                "its QMP socket) and it has no final backup yet; its changes cannot be collected by drctl"
            )
        return disks

    def _backup(self, server: Server, disks: list[GuestDisk]) -> tuple[dict[str, dict[str, Any]], int]:
        from drctl.agent.qemu import raw_view
        from drctl.repo.backup import backup_disk

        points, moved = {}, 0
        for d in disks:
            with raw_view(d.image, d.image_format, d.image.parent) as source:
                r = backup_disk(self.repo, source, server=server.name, disk=d.disk)
            points[d.disk] = {"id": r.point.id, "created": r.point.created.isoformat(), "size": r.point.size}
            moved += r.uploaded_bytes
            log.info(
                "%s/%s: last point %s, %d bytes uploaded", server.name, d.disk, r.point.id, r.uploaded_bytes
            )
        return points, moved

    def sync(self, server: Server) -> SyncResult:
        from drctl.agent.qemu import paused_for_cutover, quit_vm, vm_status

        disks = self._disks(server)
        qmp, qga = disks[0].qmp_socket, disks[0].qga_socket
        if self.req.shutdown:
            from drctl.agent.qmp import Qmp

            with Qmp(qmp) as q:
                q.command("system_powerdown")
            end = time.monotonic() + SHUTDOWN_TIMEOUT_S
            while vm_status(qmp) is not None:
                if time.monotonic() > end:
                    quit_vm(qmp)  # the guest ignored the power button: its disks are written as they are
                    log.warning("%s did not shut down in %.0f s: stopped", server.name, SHUTDOWN_TIMEOUT_S)
                time.sleep(1)
            cut_over = utc_now()
            points, moved = self._backup(server, disks)
            return SyncResult(cut_over, "shutdown", points, moved)
        with paused_for_cutover(qmp, qga) as cut_over:
            points, moved = self._backup(server, disks)
        return SyncResult(cut_over, "freeze", points, moved)

    def quiet(self, server: Server) -> bool:
        from drctl.agent.qemu import vm_status

        disks = self.guests.get(server.name)
        return not disks or vm_status(disks[0].qmp_socket) in (None, "paused")

    def stop(self, server: Server) -> None:
        from drctl.agent.qemu import quit_vm

        disks = self.guests.get(server.name)
        if disks:
            quit_vm(disks[0].qmp_socket)

    # -- 2. restore on site ------------------------------------------------------------------------

    def restore(self, server: Server, target: SiteTarget, point_id: str) -> None:
        from drctl.private_files import publish
        from drctl.repo.restore import restore_disk

        if target.kind == "device":
            staging = (
                self.state_dir
                / "failback"
                / self.cfg.stack
                / f"{self.run_id}-{server.name}-{target.disk}.raw"
            )
            staging.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        else:
            out = target.image_path
            staging = out.with_name(f".{out.name}.drctl-failback")
            if out.exists() and not staging.exists():
                raise SiteTargetsInvalid(
                    f"{self.req.site_targets}: servers.{server.name}.{target.disk}: {out} already exists; "
                    "remove it or give another target"
                )
        if not staging.exists():  # else restored and verified by an interrupted attempt
            restore_disk(
                self.repo,
                server=server.name,
                disk=target.disk,
                point=point_id,
                out=staging,
                parallel=self.req.chunk_parallel,
            )
        if target.kind == "device":
            write_to_device(staging, target.path)
            staging.unlink()
        else:
            publish(staging, target.image_path)

    # -- 3. the site proven ------------------------------------------------------------------------

    def verify(self, servers: Sequence[Server], images: dict[str, dict[str, Path]]) -> dict[str, ServerRun]:
        from drctl.activation.targets.local import LocalTarget
        from drctl.activation.targets.sandbox import Sandbox

        started = utc_now()

        def deadline_for(server: Server) -> datetime:
            wait = server.rto_s if self.req.max_wait_s is None else min(server.rto_s, self.req.max_wait_s)
            return started + timedelta(seconds=wait)

        def restored(server: Server, disk: str) -> RestoredDisk:
            path = images[server.name][disk]
            return RestoredDisk(server.name, disk, str(path), "site", started)

        def emit(kind: str, data: dict) -> None:
            if kind not in SYNC_EXCLUDED_EVENTS:
                self.emit(kind, data)

        with Sandbox(
            f"fb{secrets.token_hex(5)}",
            self.cfg.plan,
            state_dir=self.state_dir,
            ram_cap_mb=self.req.ram_cap_mb,
            vcpu_cap=self.req.vcpu_cap,
        ) as sandbox:
            target = LocalTarget(sandbox, deadline_for)
            return run_servers(
                servers, restore=restored, start=target.start_server, verify=target.verify, on_event=emit
            )

    # -- 4. release, deactivate, report ------------------------------------------------------------

    def release(self, server: Server) -> None:
        overlays = self.state_dir / "sandbox" / self.run_id
        restores = Path(self.active.get("restore_dir", ""))
        for pattern, where in ((f"{server.name}*.qcow2", overlays), (f"{server.name}-*.raw", restores)):
            for f in where.glob(pattern) if where.is_dir() else ():
                if f.name.startswith((f"{server.name}.", f"{server.name}-")):
                    f.unlink(missing_ok=True)

    def deactivate(self) -> None:
        from drctl.activation.deactivation import deactivate

        if (self.state_dir / "active" / f"{self.cfg.stack}.json").exists():
            deactivate(self.cfg.stack, self.state_dir, project_dir=self.cfg.project_dir)

    def report(self, state: FailbackState, servers: Sequence[Server]) -> str:
        store = RunStore(self.state_dir, open_storage(self.cfg.settings.reports_url(self.cfg.plan)))
        try:
            return str(store.find(self.failback_id).path)  # stored by an interrupted attempt
        except RunNotFound:
            pass
        summary = failback_summary(self.cfg, self.req.requested_by, state, servers, self.failback_id)
        return str(store.record(summary).path)


def _check_targets_free(
    req: FailbackRequest, targets: dict[str, list[SiteTarget]], state: FailbackState
) -> None:
    """Before any guest is stopped: no image target may already exist, unless this failback wrote
    it (restored, or verified and waiting for its rename)."""
    taken = []
    for server, ts in targets.items():
        done = state.server(server).get("restored") or {}
        for t in ts:
            out = t.image_path
            staged = out.with_name(f".{out.name}.drctl-failback")
            if t.kind != "device" and t.disk not in done and out.exists() and not staged.exists():
                taken.append(f"servers.{server}.{t.disk}: {out} already exists")
    if taken:
        raise SiteTargetsInvalid(
            f"{req.site_targets}: {'; '.join(taken)}: remove it or give another target (nothing was done)"
        )


def _holding_changes(state_dir: Path, run_id: str) -> set[str]:
    """The run's servers that came up in disaster mode (so hold changes)."""
    try:
        summary = RunStore(state_dir).find(run_id).summary
    except RunNotFound as e:
        raise FailbackRefused(
            f"run {run_id} is not stored under {state_dir}/runs: drctl cannot tell which servers hold changes"
        ) from e
    return {s.name for s in summary.servers if s.available}


def failback(
    req: FailbackRequest,
    *,
    password: bytes,
    state_dir: Path,
    project_dir: Path | None = None,
    on_event: EventFn | None = None,
) -> FailbackOutcome:
    """``drctl failback``: check the request, then :func:`run_failback` with the local steps."""
    from drctl.repo.repository import open_repository

    emit = on_event or (lambda kind, data: None)
    state_dir = Path(state_dir)
    active = _active_run(state_dir, req.stack)
    run_id = str(active["run_id"])
    cfg = load_stack(req.stack, project_dir) if project_dir else load_stack(req.stack)
    authorised_contact(cfg.plan, req.requested_by)
    state = FailbackState(state_dir, req.stack, run_id)
    holding = _holding_changes(state_dir, run_id)
    pending = holding - state.servers_done("released")
    unfinished = state.doc.get("current")
    if unfinished and not req.servers:  # an interrupted failback: the same servers, resumed
        req = replace(req, servers=tuple(unfinished["servers"]))
        pending |= set(unfinished["servers"])
    if req.servers:
        unknown = [s for s in req.servers if s not in pending]
        if unknown:
            raise FailbackRefused(
                f"--servers: {', '.join(unknown)} not to fail back in run {run_id} of {req.stack}; "
                f"still in the recovery space: {', '.join(sorted(pending)) or 'none'}"
            )
    wanted = set(req.servers or pending)
    if not wanted:
        raise FailbackRefused(f"every server of run {run_id} of {req.stack} is already failed back")
    scope = [s for s in cfg.plan.servers if s.name in wanted]
    targets = load_site_targets(req.site_targets, {s.name: [d.name for d in s.disks] for s in scope})
    _check_targets_free(req, targets, state)
    if not unfinished or set(unfinished["servers"]) != wanted:
        state.doc["current"] = {"id": new_run_id(), "servers": sorted(wanted)}
        state.doc.pop("report", None)
        state.save()
    failback_id = state.doc["current"]["id"]
    repo = open_repository(open_storage(cfg.settings.repository_url(cfg.plan)), password)
    reports = open_storage(cfg.settings.reports_url(cfg.plan))
    with ActivationLock(reports, req.stack, failback_id):
        guests = running_guest_disks(state_dir, req.stack)
        steps = LocalSteps(cfg, req, repo, state_dir, active, guests, emit, failback_id)
        outcome = run_failback(scope, targets, state, steps, remaining_after=pending - wanted, emit=emit)
    state.doc.setdefault("reports", []).append(state.doc.pop("report"))
    del state.doc["current"]
    state.save()
    return outcome
