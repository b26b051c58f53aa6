"""Drill wall time vs its critical path: what the orchestration adds to what the graph forces.

The critical path is what the dependency graph forces even with unlimited parallelism: a server
can be available at the earliest when its own restore has ended and every upstream server is
available, plus its own boot-and-check time. Each phase's duration is taken from the run itself
(restore: ``restore_started_at``..``restore_ended_at``; boot and checks: ``boot_started_at``..
``verified_at``), so the ratio measures what the orchestration adds (waiting, serialisation,
teardown, report), not how fast QEMU or the store are.

``python benchmarks/drill_benchmark.py RUN_ID`` prints a Markdown table for a stored run;
``--drill -- <drill args>`` runs ``drctl drill`` first. Target: wall time within 15 % of the path.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence

from drctl.runs.model import RunSummary, seconds_between
from drctl.runs.store import RunStore

TARGET_OVERHEAD = 0.15


def critical_path(summary: RunSummary) -> tuple[float, list[str]]:
    """(seconds from the run start to the last server available on the critical path, that path).
    Only servers that became available count (a failed branch has no availability to chase)."""
    by_name = {s.name: s for s in summary.servers}
    memo: dict[str, tuple[float, list[str]]] = {}

    def earliest(name: str) -> tuple[float, list[str]]:
        if name in memo:
            return memo[name]
        s = by_name[name]
        restore = seconds_between(s.restore_started_at, s.restore_ended_at) or 0.0
        start, path = restore, [f"{name} restore"]
        for dep in s.depends_on:
            if dep in by_name and by_name[dep].verified_at is not None:
                t, p = earliest(dep)
                if t > start:
                    start, path = t, p
        boot_and_checks = seconds_between(s.boot_started_at, s.verified_at) or 0.0
        memo[name] = (start + boot_and_checks, [*path, f"{name} boot+checks"])
        return memo[name]

    results = [earliest(s.name) for s in summary.servers if s.verified_at is not None]
    return max(results, key=lambda r: r[0]) if results else (0.0, [])


def table(summary: RunSummary) -> str:
    wall = seconds_between(summary.started_at, summary.ended_at) or 0.0
    last = summary.last_available_s or 0.0
    path_s, path = critical_path(summary)
    overhead = (wall / path_s - 1) if path_s else float("nan")
    rows = [
        "| figure | value |",
        "|---|---|",
        f"| run | `{summary.run_id}` ({summary.kind}, {summary.target}, {len(summary.servers)} servers) |",
        f"| critical path (restore + boot + checks along the graph) | {path_s:.1f} s: {' → '.join(path)} |",
        f"| last server available | {last:.1f} s |",
        f"| drill wall time (incl. reconnection test, teardown, report) | {wall:.1f} s |",
        f"| last available vs critical path | {((last / path_s - 1) * 100 if path_s else float('nan')):+.1f} % |",
        f"| wall time vs critical path (target ≤ +{TARGET_OVERHEAD:.0%}) | {overhead * 100:+.1f} % "
        f"{'PASS' if overhead <= TARGET_OVERHEAD else 'FAIL'} |",
    ]
    for s in summary.servers:
        r = seconds_between(s.restore_started_at, s.restore_ended_at)
        b = seconds_between(s.boot_started_at, s.verified_at)
        rows.append(f"| {s.name} ({s.status}) | restore {r or 0:.1f} s, boot+checks {b or 0:.1f} s |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python benchmarks/drill_benchmark.py", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("run_id", nargs="?", help="a stored run (default: run a drill with --drill)")
    p.add_argument("--drill", nargs=argparse.REMAINDER, help="run `drctl drill` with these arguments first")
    args = p.parse_args(argv)
    store = RunStore()
    if args.drill is not None:
        proc = subprocess.run(
            [sys.executable, "-m", "drctl.cli", "drill", *args.drill, "--json"],
            stdout=subprocess.PIPE,
            text=True,
        )
        summary = RunSummary.from_dict(json.loads(proc.stdout.splitlines()[-1]))
    elif args.run_id:
        summary = store.find(args.run_id).summary
    else:
        p.error("give a RUN_ID or --drill ARGS")
    print(table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
