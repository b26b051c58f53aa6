"""Reading a plan document before it is known to be valid: lists of objects, sub-objects, IPv4
addresses and durations that yield nothing (instead of raising) where the document is malformed,
so the semantic rules (:mod:`drctl.plan.rules`) and notes (:mod:`drctl.plan.notes`) report every
problem at once; and the backup-schedule arithmetic both use."""

from __future__ import annotations

import ipaddress
from typing import Any

from drctl.plan.model import parse_duration


def items(obj: Any, key: str) -> list[tuple[int, dict]]:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, list):
        return []
    return [(i, x) for i, x in enumerate(value) if isinstance(x, dict)]


def sub(obj: Any, key: str) -> dict:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, dict) else {}


def ipv4(value: Any) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(value) if isinstance(value, str) else None
    except ValueError:
        return None


def duration(value: Any) -> int | None:
    try:
        return parse_duration(value) if isinstance(value, str) else None
    except ValueError:
        return None


def format_duration(seconds: int) -> str:
    """900 -> ``15m``; the largest unit that divides exactly (the plan's own notation)."""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def restore_point_gap(steps: list[tuple[str, int]]) -> int | None:
    """Largest time between two consecutive restore points a backup schedule guarantees.

    Rule: every step of the schedule (full, incremental, differential or log) produces a restore
    point each time it runs, *provided a full backup exists to restore from* (an incremental or
    differential is applied over a full, log backups are replayed over a full). So the restore
    points are the union of the steps' periodic series, and the largest gap between two
    consecutive points is the period of the most frequent step: that series alone already has a
    point every ``min(every)``, and in the usual aligned schedule (all steps anchored on the same
    backup window, the lower step not run when a higher one runs) the other series add no point
    inside its gaps, so ``min(every)`` is also reached. Full every 7d + incremental every 1d
    gives 1d; full 1d + log 15m gives 15m; a full every 7d alone gives 7d.

    Returns None when the schedule has no full backup (no restore point at all).
    """
    if not any(kind == "full" for kind, _ in steps):
        return None
    return min(every for _, every in steps)
