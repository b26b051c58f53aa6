"""``drctl preflight STACK [--cloud NAME] [--servers A,B] [--json]``: can the client's OpenStack
project hold its recovery space and a full activation? Exit 0 when nothing blocks (warnings
allowed), :data:`~drctl.errors.EXIT_PREFLIGHT` when a finding blocks (after the ``result``
event with ``--json``), the cloud errors' codes when the cloud cannot be read."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from drctl.commands.arg_types import stack_name
from drctl.errors import EXIT_OK, EXIT_PREFLIGHT


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "preflight",
        help="check a cloud project's quotas, flavors, external network and VPN service against a stack",
        description="Compare what the stack needs (its recovery space and every in-scope server: "
        "instances, cores, RAM, volumes, gigabytes, networks, subnets, ports, routers, security groups, "
        "rules, address groups, VPN objects, flavors, external network, VPN service) with what the "
        "OpenStack project has (clouds.yaml / OS_CLOUD). Each finding names the resource, the need, what "
        "the project has and the fix. Run it before onboarding; every cloud activation runs it.",
    )
    p.add_argument("stack", type=stack_name, help="stack name: stacks/Pulumi.<stack>.yaml")
    p.add_argument(
        "--cloud", metavar="NAME", help="cloud of clouds.yaml (default: OS_CLOUD, else OS_* variables)"
    )
    p.add_argument(
        "--servers",
        metavar="A,B",
        help="activation scope (default: activation.servers, else every dr and backup-tested server)",
    )
    p.add_argument("--project-dir", type=Path, default=None, help="directory of Pulumi.yaml")
    p.add_argument(
        "--json",
        action="store_true",
        help="JSON lines on stdout: a result event {stack, cloud, project_id, ok, blocking, warnings, findings}",
    )
    p.set_defaults(func=cmd_preflight)


def render(report) -> str:
    """The findings for people: the problems first, then one line for what passed."""
    lines = [f"preflight of stack {report.stack} in project {report.project_id}:"]
    for f in report.findings:
        if f.status == "ok":
            continue
        lines.append(f"  {f.status.upper():<8} {f.resource}: needs {f.need}, has {f.have}")
        lines.append(f"           fix: {f.fix}")
    passed = sum(1 for f in report.findings if f.status == "ok")
    lines.append(
        f"  {passed} checks passed, {len(report.warnings)} warning(s), {len(report.blocking)} blocking"
    )
    return "\n".join(lines)


def cmd_preflight(args: argparse.Namespace) -> int:
    from drctl.stack.cloud_inventory import run_preflight

    servers = [s for s in (args.servers or "").split(",") if s] or None
    report = run_preflight(args.stack, cloud=args.cloud, project_dir=args.project_dir, servers=servers)
    if args.json:
        args.events.result(report.to_dict())
    else:
        print(render(report))
    if not report.ok:
        print(
            f"drctl: preflight of {args.stack}: blocking finding(s): {report.summary()}",
            file=sys.stderr,
        )
        return EXIT_PREFLIGHT
    return EXIT_OK
