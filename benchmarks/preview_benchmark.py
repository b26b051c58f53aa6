"""`drctl preview` of a large client: resource count, wall time and peak memory, nominal and failover.

``python -m benchmarks.preview_benchmark [--servers 200 --sites 4 --networks 16] [--rounds 3]``
generates a client with :mod:`benchmarks.plan_generator` in a temporary project, runs
``drctl preview STACK --json`` (nominal) and ``drctl preview STACK --failover --json`` as a user
would, each as its own process, and prints a Markdown table: resources declared, security groups
and rules, the median wall time and the largest peak RSS of the rounds, against the targets
(nominal < 500 resources; each preview < 10 s and < 512 MiB). Exit 0 only when every target is met.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout
from benchmarks.plan_generator import write_project
from benchmarks.restore_benchmark import last_json, run

MAX_NOMINAL_RESOURCES = 500
MAX_SECONDS = 10.0
MAX_RSS_MIB = 512
SEC_GROUP = "openstack:networking/secGroup:SecGroup"
SEC_GROUP_RULE = "openstack:networking/secGroupRule:SecGroupRule"


@dataclass(frozen=True)
class Measure:
    mode: str
    resources: int
    groups: int
    rules: int
    seconds: float  # median over the rounds
    rss_mib: float  # largest over the rounds


def drctl() -> list[str]:
    """The drctl of this interpreter's environment."""
    exe = Path(sys.executable).with_name("drctl")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "drctl.cli"]


def run_preview(project: Path, stack: str, failover: bool) -> tuple[dict, float, float]:
    """One ``drctl preview --json`` process: (its result event, wall seconds, its own peak RSS in MiB,
    through the restore benchmark's launcher so that our own memory is not counted)."""
    argv = [*drctl(), "preview", stack, "--project-dir", str(project), "--json"]
    if failover:
        argv.append("--failover")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_CONFIG_PASSPHRASE")}
    child = run(argv, env, f"drctl preview {stack}{' --failover' if failover else ''}")
    return last_json(child.stdout), child.wall_s, child.maxrss_kib / 1024


def measure(project: Path, stack: str, failover: bool, rounds: int) -> Measure:
    times, peaks = [], []
    result: dict = {}
    for _ in range(rounds):
        result, seconds, rss = run_preview(project, stack, failover)
        times.append(seconds)
        peaks.append(rss)
    types = Counter(r["type"] for r in result["resources"])
    return Measure(
        mode="failover" if failover else "nominal",
        resources=len(result["resources"]),
        groups=types[SEC_GROUP],
        rules=types[SEC_GROUP_RULE],
        seconds=statistics.median(times),
        rss_mib=max(peaks),
    )


def table(measures: list[Measure], servers: int, sites: int, networks: int) -> tuple[str, bool]:
    """The Markdown table and whether every target is met."""
    lines = [
        f"| `drctl preview` ({servers} servers, {sites} sites, {networks} networks) | resources | "
        "groups / rules | wall time (median) | peak RSS | verdict |",
        "|---|---|---|---|---|---|",
    ]
    ok = True
    for m in measures:
        met = m.seconds < MAX_SECONDS and m.rss_mib < MAX_RSS_MIB
        if m.mode == "nominal":
            met = met and m.resources < MAX_NOMINAL_RESOURCES
        ok = ok and met
        lines.append(
            f"| {m.mode} | {m.resources} | {m.groups} / {m.rules} | {m.seconds:.2f} s | "
            f"{m.rss_mib:.0f} MiB | {'PASS' if met else 'MISS'} |"
        )
    lines.append(
        f"\nTargets: nominal < {MAX_NOMINAL_RESOURCES} resources; each preview < {MAX_SECONDS:.0f} s "
        f"and < {MAX_RSS_MIB} MiB."
    )
    return "\n".join(lines), ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=200)
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--networks", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="drctl-preview-bench-") as tmp:
        project = write_project(Path(tmp), servers=args.servers, sites=args.sites, networks=args.networks)
        measures = [measure(project, "bench", failover, args.rounds) for failover in (False, True)]
    text, ok = table(measures, args.servers, args.sites, args.networks)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
