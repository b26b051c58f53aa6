"""``drctl status`` for people (one line per client, worst first, then the servers in trouble) and
for programs (the JSON of the ``result`` event, documented in the README)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from drctl.status.model import ClientState, Health, NextTest, RunInfo, ServerState, describe_due, format_age
from drctl.status.schedule import CalendarEntry


def worst_first(clients: Sequence[ClientState]) -> list[ClientState]:
    return sorted(clients, key=lambda c: (-c.health, c.stack))


def _client_line(c: ClientState) -> str:
    head = f"{c.stack:<16} {c.health.label.upper():<10}"
    parts = [c.unreadable]
    if not c.unreadable:
        n = c.counts()
        parts = [f"{n['servers']} servers", f"RPO met {n['rpo_met']}"]
        parts += [f"{label} {n[key]}" for key, label in _COUNTED if n[key]]
    t = c.test_due  # known from the runs and the plan, even without the vault
    if t is not None and t.unknown:
        parts.append(f"next test {t.scope} UNKNOWN (a run summary is unreadable: see the notes)")
    elif t is not None:
        state = " OVERDUE" if t.overdue else " (agreed, within 30 days)" if t.soon else ""
        parts.append(f"next test {t.scope} {t.due or 'never tested'}{state}")
    if c.last_drill is not None:
        parts.append(f"last drill {c.last_drill.ended.date()} {c.last_drill.outcome}")
    if c.retention is not None:
        r = c.retention
        kept = f"{r.retain_days} d" if r.retain_days else "none"
        parts.append(
            f"retention {kept}{', enforced' if r.enforced else ', NOT enforced' if r.retain_days else ''}"
        )
    if c.not_in_plan:
        parts.append(f"not in plan: {', '.join(c.not_in_plan)}")
    return f"{head} " + "; ".join(parts)


_COUNTED = (
    ("rpo_at_risk", "at risk"),
    ("rpo_breached", "BREACHED"),
    ("jobs_failed", "jobs failed"),
    ("no_restore_point", "no restore point"),
    ("untrusted_records", "untrusted records"),
)


def human(clients: Sequence[ClientState]) -> str:
    """The text ``drctl status`` prints."""
    ordered = worst_first(clients)
    lines = [_client_line(c) for c in ordered]
    trouble = [(c, s) for c in ordered for s in c.servers if s.health > Health.OK]
    if trouble or any(c.not_in_plan for c in ordered):
        lines += ["", "servers in trouble:"]
    for c, s in sorted(trouble, key=lambda cs: (-cs[1].health, cs[0].stack, cs[1].name)):
        lines.append(f"  {c.stack}/{s.name} ({s.protection}) {s.health.label}: " + "; ".join(s.problems()))
    for c in ordered:
        for name in c.not_in_plan:
            lines.append(
                f"  {c.stack}/{name} failing: has restore points or records, not in the plan (drift)"
            )
    notes = [f"  {c.stack}: {note}" for c in ordered for note in c.notes]
    if notes:
        lines += ["", "notes:", *notes]
    return "\n".join(lines)


def calendar_text(entries: Sequence[CalendarEntry]) -> str:
    lines = ["test calendar (next 12 months):"]
    if not entries:
        lines.append("  (no test to plan: no dr or backup-tested server)")
    for e in entries:
        flag = "  OVERDUE" if e.overdue else "  agreed, fewer than 30 days ahead" if e.soon else ""
        day = e.date.isoformat() if e.date else "unknown" if e.source == "unknown" else "never tested"
        lines.append(f"  {day:<12} {e.stack:<16} {e.scope:<14} {e.source}{flag}")
    return "\n".join(lines)


# --- JSON ---------------------------------------------------------------------------------------


def _time(t: dt.datetime | None) -> str | None:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if t else None


def _run(r: RunInfo | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {"run_id": r.run_id, "kind": r.kind, "mode": r.mode, "ended": _time(r.ended), "outcome": r.outcome}


def _test(t: NextTest | None) -> dict[str, Any] | None:
    if t is None:
        return None
    return {
        "scope": t.scope,
        "due": t.due.isoformat() if t.due else None,
        "source": t.source,
        "overdue": t.overdue,
        "soon": t.soon,
        "why": describe_due(t),
    }


def server_dict(s: ServerState) -> dict[str, Any]:
    job = s.last_job
    return {
        "server": s.name,
        "class": s.protection,
        "health": s.health.label,
        "rpo": s.rpo.value,
        "rpo_seconds": s.rpo_s,
        "backup_age_seconds": None if s.backup_age_s is None else round(s.backup_age_s, 3),
        "backup_age": None if s.backup_age_s is None else format_age(s.backup_age_s),
        "disks": [
            {
                "disk": d.disk,
                "last_backup": _time(d.at),
                "age_seconds": None if d.age_s is None else round(d.age_s, 3),
                "point": d.point,
                "source": d.source or None,
            }
            for d in s.disks
        ],
        "last_job": None
        if job is None
        else {
            "job_id": job.job_id,
            "type": job.type,
            "result": job.result,
            "ended": _time(job.ended),
            "error_class": job.error_class,
        },
        "consecutive_failures": s.consecutive_failures,
        "untrusted_records": [{"key": u.key, "trust": u.trust, "problem": u.problem} for u in s.untrusted],
        "last_run": _run(s.last_run),
        "test": _test(s.test),
        "drift": "no-restore-point" if s.no_restore_point else None,
        "problems": s.problems(),
    }


def client_dict(c: ClientState) -> dict[str, Any]:
    r = c.retention
    return {
        "stack": c.stack,
        "client": c.client,
        "name": c.name,
        "health": c.health.label,
        "vault": c.vault,
        "unreadable": c.unreadable or None,
        "retention": None
        if r is None
        else {"retain_days": r.retain_days, "enforced": r.enforced, "detail": r.detail},
        "counts": c.counts() if not c.unreadable else None,
        "tests": [_test(t) for t in c.tests],
        "last_drill": _run(c.last_drill),
        "not_in_plan": list(c.not_in_plan),
        "notes": list(c.notes),
        "servers": [server_dict(s) for s in c.servers],
    }
