"""The signed report of a failback: a run summary of kind ``failback`` (stored, signed and uploaded
by :class:`drctl.runs.store.RunStore` like every run report, rendered by the same template)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from drctl.activation.failback import ALL_PRESENT
from drctl.activation.failback_state import FailbackState
from drctl.plan.model import Server
from drctl.runs.model import CheckResult, RunSummary, ServerResult, parse_ts, seconds_between, utc_now
from drctl.stack.config import StackConfig


def failback_summary(
    cfg: StackConfig, requested_by: str, state: FailbackState, servers: Sequence[Server], failback_id: str
) -> RunSummary:
    """The failback report as a run summary (kind ``failback``): per server its on-site restore and
    verification times and checks, the last point (whose time is the cut-over) and, in the notes,
    the cut-over, the bytes moved and what was proven."""
    results, notes = [], [f"failback of disaster run {state.doc['run_id']}"]
    first = None
    for s in servers:
        doc = state.server(s.name)
        synced, restored, verified = doc["synced"], doc["restored"], doc["verified"]
        cut_over = parse_ts(synced["cut_over"])
        boot = s.boot_disk.name
        first = min(first or cut_over, cut_over) if cut_over else first
        starts = [parse_ts(r["started"]) for r in restored.values()]
        ends = [parse_ts(r["ended"]) for r in restored.values()]
        results.append(
            ServerResult(
                name=s.name,
                os=f"{s.os_family}-{s.os_version}" if s.os_version else s.os_family,
                status=verified["status"],
                os_family=s.os_family,
                depends_on=s.depends_on,
                restore_started_at=min((t for t in starts if t), default=None),
                restore_ended_at=max((t for t in ends if t), default=None),
                boot_started_at=parse_ts(verified["started"]),
                verified_at=parse_ts(verified["at"]),
                restore_point=synced["points"][boot]["id"],
                restore_point_at=cut_over,
                checks=tuple(_checks(verified["checks"])),
                restored_bytes=sum(int(p["size"]) for p in synced["points"].values()),
            )
        )
        targets = ", ".join(f"{d} -> {r['image']}" for d, r in restored.items())
        restore_s = seconds_between(results[-1].restore_started_at, results[-1].restore_ended_at)
        verify_s = seconds_between(results[-1].boot_started_at, results[-1].verified_at)
        notes.append(
            f"{s.name}: data cut-over {synced['cut_over']} ({synced['method']}), {synced['bytes_moved']} bytes "
            f"moved by the final synchronisation; restored on site ({targets}) in {restore_s} s, "
            f"booted and verified there in {verify_s} s; {ALL_PRESENT}"
        )
    return RunSummary(
        run_id=failback_id,
        stack=cfg.stack,
        mode="disaster",
        target="local",
        started_at=first or utc_now(),
        ended_at=utc_now(),
        servers=tuple(results),
        client_id=cfg.plan.client.id,
        client_name=cfg.plan.client.name,
        client_timezone=cfg.plan.client.timezone,
        requested_by=requested_by,
        kind="failback",
        notes=tuple(notes),
    ).with_availability()


def _checks(docs: list[dict[str, Any]]) -> list[CheckResult]:
    return [CheckResult.from_dict(d, "failback check") for d in docs]
