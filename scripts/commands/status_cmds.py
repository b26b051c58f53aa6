"""``drctl status [STACK ...] [--json] [--calendar] [--prometheus FILE]``: protection status across
clients (every stack of the project by default). Exit 0 when all is well, 20 when an RPO is
breached or a test overdue, 14 when a vault or a run summary cannot be read (the others are still
reported; a client with an unreadable run summary has its test verdicts unknown)."""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path

from drctl.commands.arg_types import stack_name


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status",
        help="protection status of every client: RPO, backup jobs, tests due, drift (exit 20 on trouble)",
        description="Per client and server: RPO met / at risk / breached from the agents' signed status "
        "records, last job, retention, last drill, next test due, drift. Exit 0 all good, 20 an RPO "
        "breached or a test overdue, 14 a vault or a run summary cannot be read.",
    )
    p.add_argument(
        "stacks", nargs="*", metavar="STACK", type=stack_name, help="stacks (default: every stack)"
    )
    p.add_argument("--json", action="store_true", help="JSON lines on stdout: a result event (every client)")
    p.add_argument("--calendar", action="store_true", help="also list the tests of the next 12 months")
    p.add_argument(
        "--prometheus",
        metavar="FILE",
        type=Path,
        help="also write the metrics (OpenMetrics text) to FILE, atomically (node_exporter's textfile collector)",
    )
    p.add_argument(
        "--state-dir", type=Path, help="where runs are kept (default $DRCTL_STATE_DIR or ./.state)"
    )
    p.add_argument(
        "--password-file",
        metavar="FILE",
        help="the client's repository password, to read its restore points where no trusted record says "
        "(also --password-command or DRCTL_PASSWORD; never asked for)",
    )
    p.add_argument("--password-command", metavar="CMD", help="run CMD (no shell) for that password")
    p.set_defaults(func=cmd_status)


def _password(args: argparse.Namespace) -> bytes | None:
    """The repository password only when the operator gave one: status never prompts."""
    from drctl.repo.password import PASSWORD_ENV, read_password

    if args.password_file or args.password_command or os.environ.get(PASSWORD_ENV):
        return read_password(args.password_file, args.password_command)
    return None


def cmd_status(args: argparse.Namespace) -> int:
    from drctl.status import render, schedule
    from drctl.status.collect import status_of
    from drctl.status.metrics import exposition, write_textfile
    from drctl.status.model import exit_code

    now = dt.datetime.now(dt.UTC)
    clients = status_of(args.stacks, state_dir=args.state_dir, password=_password(args), now=now)
    code = exit_code(clients)
    entries = []
    if args.calendar:
        for c in clients:
            entries += schedule.calendar_entries(c.stack, c.client, c.tests, c.agreed_tests, now.date())
        entries.sort(key=lambda e: (not e.overdue, e.date or dt.date.min, e.stack))
    if args.prometheus:
        write_textfile(args.prometheus, exposition(clients))
    if args.events is not None:
        result = {
            "exit_code": code,
            "health": render.worst_first(clients)[0].health.label if clients else "ok",
            "clients": [render.client_dict(c) for c in render.worst_first(clients)],
        }
        if args.calendar:
            result["calendar"] = [e.to_dict() for e in entries]
        if args.prometheus:
            result["prometheus"] = str(args.prometheus)
        args.events.result(result)
        return code
    print(render.human(clients) if clients else "no stack in this project (stacks/Pulumi.<stack>.yaml)")
    if args.calendar:
        print()
        print(render.calendar_text(entries))
    if args.prometheus:
        print(f"\nmetrics written to {args.prometheus}")
    return code
