"""The predicted time to recover each server, before anything is restored.

A server is available at the earliest when its own disks are restored and every upstream server
in scope is available, plus its own boot-and-check time: the critical path through the boot
dependencies (:mod:`drctl.plan.graph`), as the drill benchmark measures it after the fact.

- restore time = the server's disk sizes (plan ``size_gb``) / the restore throughput measured
  on this client's repository by its last drill (bytes restored / seconds restoring, over every
  server of that run; restores run in parallel, so each one's rate already includes the others);
- boot and check time = what the last drill measured for that server (``boot_started_at`` to
  ``verified_at``), else a stated default per OS family.

Without a drill the defaults below are used and every figure says so. Pure: the measurements are
read from a :class:`~drctl.runs.model.RunSummary` by :func:`measurements_from_run`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from drctl.plan.graph import dependency_levels
from drctl.plan.model import Plan

GIB = 1024**3
DEFAULT_THROUGHPUT_BYTES_S = 50 * 1024**2  # 50 MiB/s: a stated guess until a drill measures it
DEFAULT_BOOT_S: Mapping[str, float] = {"linux": 120.0, "windows": 300.0, "other": 180.0}


@dataclass(frozen=True)
class Measurements:
    """What a drill measured, for the prediction: the run, its throughput, boot+check times."""

    run_id: str | None = None  # None: nothing measured, defaults only
    throughput_bytes_s: float | None = None
    boot_s: Mapping[str, float] = field(default_factory=dict)  # server -> boot + checks seconds


def measurements_from_run(summary: Any, planned_bytes: Mapping[str, int] | None = None) -> Measurements:
    """The throughput and boot+check times of a stored run (a RunSummary). A server recorded
    without ``restored_bytes`` (runs from before it was recorded) counts with its planned disk
    sizes, ``planned_bytes`` (server -> bytes), when given; else not at all."""
    from drctl.runs.model import seconds_between

    restored = 0
    seconds = 0.0
    boots: dict[str, float] = {}
    for s in summary.servers:
        r = seconds_between(s.restore_started_at, s.restore_ended_at)
        size = s.restored_bytes if s.restored_bytes else (planned_bytes or {}).get(s.name)
        if size and r and r > 0 and s.error is None:
            restored += size
            seconds += r
        b = seconds_between(s.boot_started_at, s.verified_at)
        if b is not None and s.verified_at is not None:
            boots[s.name] = b
    return Measurements(
        run_id=summary.run_id,
        throughput_bytes_s=restored / seconds if seconds > 0 else None,
        boot_s=boots,
    )


@dataclass(frozen=True)
class ServerPrediction:
    name: str
    server_class: str
    restore_s: float
    boot_s: float
    boot_measured: bool
    available_s: float  # from the activation's start
    path: tuple[str, ...]  # the critical path to it, as "x restore" / "x boot+checks"
    rto_s: int

    @property
    def within_target(self) -> bool:
        return self.available_s <= self.rto_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "server": self.name,
            "class": self.server_class,
            "restore_s": round(self.restore_s, 1),
            "boot_s": round(self.boot_s, 1),
            "boot_measured": self.boot_measured,
            "predicted_s": round(self.available_s, 1),
            "rto_s": self.rto_s,
            "within_target": self.within_target,
            "critical_path": list(self.path),
        }


@dataclass(frozen=True)
class RtoPrediction:
    servers: tuple[ServerPrediction, ...]
    throughput_bytes_s: float
    throughput_measured: bool
    run_id: str | None

    @property
    def last_available_s(self) -> float:
        return max((s.available_s for s in self.servers), default=0.0)

    def server(self, name: str) -> ServerPrediction:
        return next(s for s in self.servers if s.name == name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "measured_by": self.run_id,
            "throughput_bytes_s": round(self.throughput_bytes_s),
            "throughput_measured": self.throughput_measured,
            "predicted_last_available_s": round(self.last_available_s, 1),
            "servers": [s.as_dict() for s in self.servers],
        }


def predict(plan: Plan, scope: Sequence[str], measured: Measurements) -> RtoPrediction:
    """The predicted time to available of every server of ``scope`` (see the module docstring)."""
    servers = {n: plan.server(n) for n in scope}
    graph = {n: [d for d in s.depends_on if d in servers] for n, s in servers.items()}
    levels = dependency_levels(graph)  # refuses a cycle, naming it
    rate = measured.throughput_bytes_s or DEFAULT_THROUGHPUT_BYTES_S
    done: dict[str, tuple[float, tuple[str, ...]]] = {}
    out: dict[str, ServerPrediction] = {}
    for name in sorted(servers, key=lambda n: levels[n]):
        s = servers[name]
        restore = sum(d.size_gb for d in s.disks) * GIB / rate
        start: float = restore
        path: tuple[str, ...] = (f"{name} restore",)
        for dep in graph[name]:
            if done[dep][0] > start:
                start, path = done[dep]
        boot = measured.boot_s.get(name)
        boot_s = boot if boot is not None else DEFAULT_BOOT_S.get(s.os_family, DEFAULT_BOOT_S["other"])
        done[name] = (start + boot_s, (*path, f"{name} boot+checks"))
        out[name] = ServerPrediction(
            name=name,
            server_class=s.protection,
            restore_s=restore,
            boot_s=boot_s,
            boot_measured=boot is not None,
            available_s=start + boot_s,
            path=done[name][1],
            rto_s=s.rto_s,
        )
    return RtoPrediction(
        servers=tuple(out[n] for n in scope),
        throughput_bytes_s=rate,
        throughput_measured=measured.throughput_bytes_s is not None,
        run_id=measured.run_id,
    )


def format_duration_s(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def format_prediction(p: RtoPrediction) -> str:
    """The table ``drctl plan rto`` prints."""
    mib = p.throughput_bytes_s / 1024**2
    source = (
        f"measured by drill {p.run_id}" if p.throughput_measured else "DEFAULT (no drill measured it yet)"
    )
    lines = [f"restore throughput: {mib:.1f} MiB/s, {source}"]
    lines.append(f"{'server':<16} {'class':<14} {'restore':>9} {'boot+chk':>9} {'predicted':>10} {'RTO':>9}")
    for s in p.servers:
        boot = format_duration_s(s.boot_s) + ("" if s.boot_measured else "*")
        verdict = "ok" if s.within_target else "OVER TARGET"
        lines.append(
            f"{s.name:<16} {s.server_class:<14} {format_duration_s(s.restore_s):>9} {boot:>9} "
            f"{format_duration_s(s.available_s):>10} {format_duration_s(s.rto_s):>9}  {verdict}"
        )
    if any(not s.boot_measured for s in p.servers):
        lines.append(
            "* default boot+check time (no drill measured this server): "
            + ", ".join(f"{k} {v:.0f} s" for k, v in DEFAULT_BOOT_S.items())
        )
    worst = max(p.servers, key=lambda s: s.available_s, default=None)
    if worst is not None:
        lines.append(f"critical path ({format_duration_s(worst.available_s)}): {' -> '.join(worst.path)}")
    return "\n".join(lines)


def planned_bytes(plan: Plan) -> dict[str, int]:
    """Each server's disks, in bytes, as the plan sizes them."""
    return {s.name: sum(d.size_gb for d in s.disks) * GIB for s in plan.servers}


def last_measurement(runs: Sequence[Any], plan: Plan) -> Measurements:
    """The measurements of the newest drill among ``runs`` (RunSummary objects, oldest first)
    that made at least one server available; none: defaults."""
    for summary in reversed(runs):
        if summary.kind == "drill" and any(s.verified_at is not None for s in summary.servers):
            return measurements_from_run(summary, planned_bytes(plan))
    return Measurements()
