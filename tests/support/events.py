"""Reading a command's ``--json`` output as a consumer would, checking the schema of
:mod:`drctl.events` on every line (not a test module: imported by the CLI tests)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from drctl.events import EVENTS, TERMINAL


def read_events(stdout: str) -> list[dict[str, Any]]:
    """Every line of ``stdout`` as an event, checked: a JSON object with a documented ``event``
    name and an ISO-8601 UTC ``time``; exactly one terminal event (``result`` or ``error``), last."""
    lines = stdout.splitlines()
    assert lines, "no output: a --json command always ends with a result or error event"
    events = []
    for n, line in enumerate(lines, 1):
        event = json.loads(line)
        assert isinstance(event, dict), f"line {n} is not a JSON object: {line!r}"
        assert event.get("event") in EVENTS, f"line {n}: undocumented event {event.get('event')!r}"
        stamp = event.get("time")
        assert isinstance(stamp, str) and stamp.endswith("Z"), f"line {n}: time {stamp!r} is not UTC"
        assert datetime.fromisoformat(stamp).tzinfo == UTC
        events.append(event)
    kinds = [e["event"] for e in events]
    assert kinds[-1] in TERMINAL, f"last event is {kinds[-1]!r}, not result/error"
    assert not TERMINAL & set(kinds[:-1]), f"terminal event before the end: {kinds}"
    return events


def result_of(stdout: str) -> dict[str, Any]:
    """The ``result`` event's fields (without ``event`` and ``time``); fails on an ``error``."""
    last = read_events(stdout)[-1]
    assert last["event"] == "result", f"the command ended with {last}"
    return {k: v for k, v in last.items() if k not in ("event", "time")}


def error_of(stdout: str) -> dict[str, Any]:
    """The ``error`` event that ended the command."""
    last = read_events(stdout)[-1]
    assert last["event"] == "error", f"the command ended with {last}"
    return last
