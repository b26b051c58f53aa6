"""The run report as a self-contained HTML page (jinja2): summary, timeline, one section per server.

Self-contained means no external resource at all: CSS is inline, the timeline is inline SVG, there
is no script, font or image URL, so the page opens offline and prints as it shows (service
description §8.2: first and last server available, summary, then the detail of each server).

The timeline's geometry is computed here (:func:`timeline_layout`, pure) and only drawn by the
template: one row per server ordered by dependency level, bars for restore, boot and checks on one
time axis, and an arrow from each upstream server's verification to the start of its dependants.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2

from drctl.runs.forecast import prediction_rows
from drctl.runs.model import RunSummary, ServerResult, SiteReconnection, seconds_between

TEMPLATE = "report.html.j2"  # package data of drctl.runs, under templates/

# Timeline geometry (SVG user units; the SVG scales to the page width).
LABEL_W = 170
CHART_W = 800
RIGHT_PAD = 80
AXIS_H = 34
ROW_H = 34
BAR_H = 16
MIN_BAR_W = 2.0
TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400)


# --- formatting ----------------------------------------------------------------------------------


def fmt_duration(seconds: float | None) -> str:
    """``45 s``, ``12 min 05 s``, ``2 h 05 min``, ``1 d 03 h``; an em dash when unknown."""
    if seconds is None:
        return "\u2014"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600:02d} h"


def fmt_time(ts: datetime | None) -> str:
    return "\u2014" if ts is None else ts.strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_local(ts: datetime | None, zone: str) -> str:
    """``ts`` in the client's time zone (what the client's people read), or '' if unknown."""
    if ts is None or not zone:
        return ""
    try:
        local = ts.astimezone(ZoneInfo(zone))
    except (ZoneInfoNotFoundError, ValueError):
        return ""
    return f"{local.strftime('%Y-%m-%d %H:%M:%S')} {zone}"


def fmt_offset(seconds: float) -> str:
    s = int(round(seconds))
    if s < 3600:
        return f"{s // 60}:{s % 60:02d}"
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


# --- timeline layout ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    kind: str  # restore | boot | checks-ok | checks-warning | checks-failed | no-answer
    x: float
    w: float
    title: str


@dataclass(frozen=True)
class Row:
    name: str
    level: int
    status: str
    y: float  # top of the row
    bars: tuple[Bar, ...]
    verified_x: float | None  # marker where the server became available
    end_x: float | None  # where its last bar ends
    note: str = ""

    @property
    def mid(self) -> float:
        return self.y + ROW_H / 2


@dataclass(frozen=True)
class Arrow:
    upstream: str
    downstream: str
    x1: float
    y1: float
    x2: float
    y2: float
    kind: str  # "started-after" (upstream verified, then dependant booted) | "blocked"


@dataclass(frozen=True)
class Timeline:
    width: float
    height: float
    rows: tuple[Row, ...]
    arrows: tuple[Arrow, ...]
    ticks: tuple[tuple[float, str], ...]
    marks: tuple[tuple[float, str], ...] = field(default=())  # first / last available
    span_s: float = 0.0


def _server_end(s: ServerResult) -> datetime | None:
    ends = [t for t in (s.verified_at, s.boot_started_at, s.restore_ended_at) if t is not None]
    ends += [c.ended_at for c in s.checks if c.ended_at is not None]
    return max(ends) if ends else None


def timeline_layout(summary: RunSummary) -> Timeline:
    t0 = summary.started_at
    stamps = [summary.ended_at] + [_server_end(s) for s in summary.servers]
    t1 = max((t for t in stamps if t is not None), default=t0)
    span = max((t1 - t0).total_seconds(), 1.0)

    def x(ts: datetime) -> float:
        return round(LABEL_W + (ts - t0).total_seconds() / span * CHART_W, 2)

    def bar(kind: str, a: datetime | None, b: datetime | None, what: str) -> Bar | None:
        if a is None or b is None:
            return None
        xa, xb = x(a), x(b)
        return Bar(
            kind,
            xa,
            max(MIN_BAR_W, round(xb - xa, 2)),
            f"{what}: {fmt_offset((a - t0).total_seconds())} \u2192 {fmt_offset((b - t0).total_seconds())}"
            f" ({fmt_duration((b - a).total_seconds())})",
        )

    levels = summary.dependency_levels()
    order = sorted(summary.servers, key=lambda s: (levels[s.name], s.name))
    rows: list[Row] = []
    for i, s in enumerate(order):
        bars: list[Bar | None] = [bar("restore", s.restore_started_at, s.restore_ended_at, "restore")]
        last_check = max((c.ended_at for c in s.checks if c.ended_at is not None), default=None)
        end = s.verified_at or last_check
        up = s.up_at or (s.verified_at if s.available else None)  # a server without checks
        if s.boot_started_at is not None:
            if up is None:  # the guest never passed a check
                bars.append(bar("no-answer", s.boot_started_at, end or s.boot_started_at, "boot, no answer"))
            else:
                bars.append(bar("boot", s.boot_started_at, up, "boot"))
                kind = {"ok": "checks-ok", "warning": "checks-warning"}.get(s.status, "checks-failed")
                bars.append(bar(kind, up, end or up, "checks"))
        kept = tuple(b for b in bars if b is not None)
        note = ""
        if s.status == "not-started":
            note = s.reason or "not started"
            note = note if note.lower().startswith("not started") else f"not started: {note}"
        rows.append(
            Row(
                name=s.name,
                level=levels[s.name],
                status=s.status,
                y=AXIS_H + i * ROW_H,
                bars=kept,
                verified_x=x(s.verified_at) if s.verified_at is not None else None,
                end_x=max((b.x + b.w for b in kept), default=None),
                note=note,
            )
        )

    by_name = {r.name: r for r in rows}
    servers = {s.name: s for s in summary.servers}
    arrows: list[Arrow] = []
    for r in rows:
        s = servers[r.name]
        for up_name in s.depends_on:
            u = by_name.get(up_name)
            if u is None:
                continue
            if u.verified_x is not None and s.boot_started_at is not None:
                arrows.append(
                    Arrow(up_name, r.name, u.verified_x, u.mid, x(s.boot_started_at), r.mid, "started-after")
                )
            elif s.status == "not-started" and u.end_x is not None:
                arrows.append(Arrow(up_name, r.name, u.end_x, u.mid, u.end_x, r.mid, "blocked"))

    step = next((st for st in TICK_STEPS_S if span / st <= 10), TICK_STEPS_S[-1])
    ticks = tuple(
        (round(LABEL_W + k * step / span * CHART_W, 2), fmt_offset(k * step))
        for k in range(int(span // step) + 1)
    )
    marks = []
    for label, val in (
        ("first available", summary.first_available_s),
        ("last available", summary.last_available_s),
    ):
        if val is not None:
            marks.append((round(LABEL_W + val / span * CHART_W, 2), label))
    return Timeline(
        width=LABEL_W + CHART_W + RIGHT_PAD,
        height=AXIS_H + len(rows) * ROW_H + 12,
        rows=tuple(rows),
        arrows=tuple(arrows),
        ticks=ticks,
        marks=tuple(marks),
        span_s=span,
    )


# --- network and user reconnection ------------------------------------------------------------------

# The NCA lab's steps in the order it runs them (drctl.nca.lab: start, probe_all, close), in words.
LAB_STEPS: tuple[tuple[str, str], ...] = (
    ("setup", "Lab set up (PSK, bundle, tools)"),
    ("bundle-check", "NCA bundle accepted by dnsmasq"),
    ("namespaces", "Site, workstation and VPN link attached to the sandbox"),
    ("cloud-endpoint", "Recovery VPN endpoint started"),
    ("nca-start", "NCA started (strongSwan and dnsmasq, bundle as rendered)"),
    ("tunnel", "IPsec tunnel up with exactly the declared proposals"),
    ("pfs-rekey", "Declared PFS group used on rekey"),
    ("dhcp", "Workstation lease from the NCA's DHCP"),
    ("dns", "Recovered server's name resolved by the NCA's DNS"),
    ("icmp", "Recovered server answers ICMP through the tunnel"),
    ("tcp", "Recovered server's service reached through the tunnel"),
    ("lab-error", "NCA lab error"),
    ("teardown", "Lab removed"),
)
_STEP_LABELS = dict(LAB_STEPS)


@dataclass(frozen=True)
class StepRow:
    step: str
    label: str
    state: str  # ok | failed | not-run
    seconds: float | None
    detail: str


def fmt_seconds(seconds: float | None) -> str:
    """Step timings: ``0.42 s``, ``12.3 s``; a minute or more as :func:`fmt_duration`."""
    if seconds is None:
        return "\u2014"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return fmt_duration(seconds)


def reconnection_rows(site: SiteReconnection) -> tuple[StepRow, ...]:
    """The site's steps as run, then (when a step failed) the lab steps that never ran, shown as
    "not run" before the teardown: a reader sees what was not proven."""
    rows = [
        StepRow(s.step, _STEP_LABELS.get(s.step, s.step), "ok" if s.ok else "failed", s.seconds, s.detail)
        for s in site.steps
    ]
    if site.status == "failed":
        done = {s.step for s in site.steps}
        missing = [
            StepRow(step, label, "not-run", None, "not run: an earlier step failed")
            for step, label in LAB_STEPS
            if step not in done and step not in ("setup", "lab-error", "teardown")
        ]
        cut = next((i for i, r in enumerate(rows) if r.step == "teardown"), len(rows))
        rows[cut:cut] = missing
    return tuple(rows)


# --- page ------------------------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("drctl.runs", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(duration=fmt_duration, time=fmt_time, seconds=fmt_seconds, local=fmt_local)
    return env


def render_html(summary: RunSummary) -> str:
    """The report page. Deterministic: the same summary gives the same bytes (they are signed)."""
    levels = summary.dependency_levels()
    servers = sorted(summary.servers, key=lambda s: (levels[s.name], s.name))
    ages = {
        s.name: s.rpo_achieved_s
        if s.rpo_achieved_s is not None
        else seconds_between(s.restore_point_at, summary.started_at)
        for s in servers
    }
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(
            s=summary,
            servers=servers,
            levels=levels,
            rpo_ages=ages,
            counts=summary.counts(),
            families=summary.os_families(),
            timeline=timeline_layout(summary),
            duration=seconds_between(summary.started_at, summary.ended_at),
            bar_h=BAR_H,
            row_h=ROW_H,
            axis_h=AXIS_H,
            label_w=LABEL_W,
            sites=[(r, reconnection_rows(r)) for r in summary.reconnection],
            forecast=summary.forecast,
            forecast_rows=prediction_rows(summary.forecast, servers) if summary.forecast else [],
            site_counts=summary.reconnection_counts(),
        )
    )
