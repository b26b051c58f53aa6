"""``drctl policy STACK``: run the policy pack offline over the stack's preview graph."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from drctl.commands.arg_types import stack_name
from drctl.errors import EXIT_INVALID, EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``policy`` to the parser."""
    p = sub.add_parser(
        "policy",
        help="check a stack against the policy pack, offline",
        description="Preview the stack offline (the real program under the SDK's mocks) and run "
        "every rule of policies/ over its resources. Prints one line per violation; "
        "exits 1 when a mandatory rule fails.",
    )
    p.add_argument("stack", type=stack_name, help="client stack (stacks/Pulumi.<stack>.yaml)")
    p.add_argument(
        "--failover",
        action="store_true",
        default=None,
        help="check the stack as during an activation (failover: true)",
    )
    p.add_argument(
        "--servers",
        type=lambda s: [x for x in s.split(",") if x],
        help="with --failover: only these servers (comma-separated)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='JSON lines on stdout: notes, then a result event {"stack", "ok", "violations"}',
    )
    p.add_argument(
        "--project-dir",
        type=Path,
        default=None,
        help="the Pulumi project (Pulumi.yaml, stacks/, recovery_plans/); default: this checkout",
    )
    p.add_argument(
        "--write-pack-config",
        type=Path,
        metavar="FILE",
        help="also write the policy config this run used (failover flag, the plan's "
        "servers and checks) for `pulumi preview --policy-pack policies "
        "--policy-pack-config FILE`",
    )
    p.set_defaults(func=run_policy)


def run_policy(args: argparse.Namespace) -> int:
    from drctl.stack.policy import check_stack

    report, notes = check_stack(
        args.stack, failover=args.failover, servers=args.servers, project_dir=args.project_dir
    )
    if args.write_pack_config:
        write_pack_config(args.write_pack_config, report.config)
    for note in notes:
        print(f"drctl: note: {note}", file=sys.stderr)
    if args.json:
        for note in notes:
            args.events.emit("note", {"message": note})
        args.events.result(
            {
                "stack": args.stack,
                "ok": not report.mandatory_failed,
                "violations": [v.to_dict() for v in report.violations],
            }
        )
    else:
        for v in report.violations:
            print(v.line())
        mandatory = sum(v.level == "mandatory" for v in report.violations)
        advisory = len(report.violations) - mandatory
        verdict = "FAILED" if report.mandatory_failed else "passed"
        print(
            f"policy {verdict} for stack {args.stack}: {mandatory} mandatory and "
            f"{advisory} advisory violation(s)",
            file=sys.stderr,
        )
    return EXIT_INVALID if report.mandatory_failed else EXIT_OK


def write_pack_config(path: Path, config: object) -> None:
    """Write the pack's config file (no secrets: a flag and server names/checks), mode 0600, never
    through a planted link (:func:`drctl.private_files.write_private_file`)."""
    from drctl.private_files import write_private_file

    write_private_file(path, json.dumps(config, indent=2) + "\n")
