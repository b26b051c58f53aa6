"""``drctl failback``: the return to nominal after a disaster activation (service description 5.2,
the fourth transition). For each recovered server of the stack's active disaster run, in order:

1. final synchronisation: the guest is quiesced (its file systems frozen through the guest agent
   and its vCPUs paused; or shut down with ``--shutdown``) and its disks get their last backup into
   the client's repository (deduplicated: only what changed since the restored point moves). The
   moment it was quiesced is the server's data cut-over; the guest is then stopped, so nothing is
   written in the recovery space after its last backup;
2. those points are restored to the original site (``--to SITE_TARGETS``, :mod:`.failback_sites`)
   by the repository's restore (verified, resumable);
3. the site images boot in a sandbox with their production addresses and pass the plan's checks,
   run by the activation engine (:func:`drctl.activation.engine.run_servers`) as in a drill. A
   failed check stops the failback there (exit 20, naming the server and check): nothing of the
   recovery space is removed;
4. only then the servers' recovery resources are released and a signed report is stored like
   the run reports; once every server of the run that held changes is back, the run is
   deactivated (``deactivation.py`` accepts a completed failback).

Every step is recorded per server (:mod:`.failback_state`): an interrupted failback, run again,
does only what is missing. The orchestration (:func:`run_failback`) takes its side effects as a
:class:`FailbackSteps` object, so its ordering is tested without QEMU; :mod:`.failback_local`
provides the real steps for the local target.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from drctl.activation.engine import ServerRun
from drctl.activation.failback_sites import SiteTarget
from drctl.activation.failback_state import FailbackState
from drctl.errors import EXIT_RUN_FAILED, DrctlError, InvalidInput
from drctl.plan.model import Server
from drctl.runs.model import format_ts, utc_now

log = logging.getLogger(__name__)

EventFn = Callable[[str, dict], None]
ALL_PRESENT = "changes made in the recovery space since activation: all present on site"


class FailbackRefused(InvalidInput):
    """The stack has no active disaster run to fail back, or not for these servers."""


class SiteCheckFailed(DrctlError):
    """A server restored on site failed its plan checks: the recovery space is kept."""

    exit_code = EXIT_RUN_FAILED


@dataclass(frozen=True)
class SyncResult:
    """The last backup of one server: its points per disk, when its data was cut over, bytes sent."""

    cut_over: datetime
    method: str  # freeze | shutdown
    points: dict[str, dict[str, Any]]  # disk -> {"id", "created", "size"}
    bytes_moved: int


class FailbackSteps(Protocol):
    """The side effects of a failback, one call per server (or disk)."""

    def sync(self, server: Server) -> SyncResult:
        """Quiesce the recovery guest and take the last backup of each of its disks."""
        ...

    def quiet(self, server: Server) -> bool:
        """Whether the guest wrote nothing since its last backup (paused or gone)."""
        ...

    def stop(self, server: Server) -> None:
        """Stop the recovery guest for good."""
        ...

    def restore(self, server: Server, target: SiteTarget, point_id: str) -> None:
        """Restore the point to its on-site target, verified."""
        ...

    def verify(self, servers: Sequence[Server], images: dict[str, dict[str, Path]]) -> dict[str, ServerRun]:
        """Boot the servers from their site images with production addresses; run their checks."""
        ...

    def release(self, server: Server) -> None:
        """Remove the server's resources from the recovery space."""
        ...

    def deactivate(self) -> None:
        """Deactivate the whole run (every server that held changes is back on site)."""
        ...

    def report(self, state: FailbackState, servers: Sequence[Server]) -> str:
        """Write the signed failback report; returns where it is stored."""
        ...


@dataclass
class FailbackOutcome:
    """What :func:`run_failback` did (the ``--json`` result)."""

    stack: str
    run_id: str
    servers: list[str]
    deactivated: bool = False
    report: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "run_id": self.run_id,
            "servers": [{"name": n, **self.details.get(n, {})} for n in self.servers],
            "deactivated": self.deactivated,
            "report": self.report,
        }


def _failed_checks(run: ServerRun) -> str:
    failed = [f"{c.check} ({c.detail})" if c.detail else c.check for c in run.checks if not c.ok]
    if failed:
        return "failed check(s): " + "; ".join(failed)
    return run.reason or f"status {run.status}"


def run_failback(
    scope: Sequence[Server],
    targets: dict[str, list[SiteTarget]],
    state: FailbackState,
    steps: FailbackSteps,
    *,
    remaining_after: set[str],
    emit: EventFn | None = None,
) -> FailbackOutcome:
    """Fail back ``scope`` (the ordering in the module docstring), skipping what ``state`` says is
    done. ``remaining_after``: the run's servers that still hold changes once ``scope`` is back
    (empty: the run is deactivated at the end)."""
    emit = emit or (lambda kind, data: None)
    stack, run_id = state.doc["stack"], state.doc["run_id"]
    emit("failback-started", {"stack": stack, "run_id": run_id, "servers": [s.name for s in scope]})

    # 1. final synchronisation, then the cut-over: the recovery guest stops.
    for s in scope:
        if state.done(s.name, "synced") and not state.done(s.name, "stopped") and not steps.quiet(s):
            log.warning(
                "%s ran on after its last backup (an interrupted failback): synchronising again", s.name
            )
            state.server(s.name).pop("synced")
        if not state.done(s.name, "synced"):
            r = steps.sync(s)
            synced = {
                "cut_over": format_ts(r.cut_over),
                "method": r.method,
                "points": r.points,
                "bytes_moved": r.bytes_moved,
            }
            state.mark(s.name, "synced", synced)
            emit("sync-finished", {"server": s.name, **synced})
        if not state.done(s.name, "stopped"):
            steps.stop(s)
            state.mark(s.name, "stopped")
            emit("guest-stopped", {"server": s.name})

    # 2. the last points restored on site, each disk verified by the restore.
    for s in scope:
        restored = state.server(s.name).get("restored") or {}
        points = state.server(s.name)["synced"]["points"]
        for t in targets[s.name]:
            if t.disk in restored:
                continue
            started = utc_now()
            steps.restore(s, t, points[t.disk]["id"])
            restored[t.disk] = {
                "target": str(t.path),
                "kind": t.kind,
                "image": str(t.image_path if t.kind != "device" else t.path),
                "point": points[t.disk]["id"],
                "started": format_ts(started),
                "ended": format_ts(utc_now()),
            }
            state.mark(s.name, "restored", restored)
            emit("site-restore-finished", {"server": s.name, "disk": t.disk, **restored[t.disk]})

    # 3. the original site proven: boot from the site images, the plan's checks.
    todo = [s for s in scope if not state.done(s.name, "verified")]
    if todo:
        images = {
            s.name: {d: Path(r["image"]) for d, r in state.server(s.name)["restored"].items()} for s in todo
        }
        runs = steps.verify(todo, images)
        failed = []
        for s in todo:
            run = runs[s.name]
            if run.available:
                state.mark(
                    s.name,
                    "verified",
                    {
                        "started": format_ts(run.boot_started_at),
                        "at": format_ts(run.verified_at),
                        "status": str(run.status),
                        "checks": [c.to_dict() for c in run.checks],
                    },
                )
            else:
                failed.append(f"{s.name}: {_failed_checks(run)}")
        if failed:
            raise SiteCheckFailed(
                f"failback of stack {stack} stopped: on the original site, {'; '.join(failed)}. The "
                "recovery space is kept (nothing was released; the last backups are in the repository). "
                f"Fix the site, then run the same `drctl failback {stack}` again: it resumes with this check"
            )

    # 4. only now: release, deactivate when nothing is left, the signed report.
    for s in scope:
        if not state.done(s.name, "released"):
            steps.release(s)
            state.mark(s.name, "released")
    outcome = FailbackOutcome(stack, run_id, [s.name for s in scope])
    if not state.doc.get("report"):
        state.doc["report"] = steps.report(state, scope)
        state.save()
    outcome.report = state.doc["report"]
    emit("report", {"path": outcome.report})
    if not remaining_after:
        if not state.doc.get("deactivated"):
            steps.deactivate()
            state.doc["deactivated"] = True
            state.save()
        outcome.deactivated = True
    emit("servers-released", {"servers": outcome.servers, "deactivated": outcome.deactivated})
    for s in scope:
        doc = state.server(s.name)
        outcome.details[s.name] = {
            "cut_over": doc["synced"]["cut_over"],
            "method": doc["synced"]["method"],
            "bytes_moved": doc["synced"]["bytes_moved"],
            "points": {d: p["id"] for d, p in doc["synced"]["points"].items()},
            "site_targets": {d: r["image"] for d, r in doc["restored"].items()},
            "verified_at": doc["verified"]["at"],
            "status": doc["verified"]["status"],
        }
    return outcome
