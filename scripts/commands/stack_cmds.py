"""``drctl preview STACK`` (the stack's resource graph, offline) and ``drctl stack set-secret``.

``nca render`` lives in ``nca_cmds`` and ``policy`` in ``policy_cmds``; both read stacks through
``drctl.stack.config`` and graphs through ``drctl.stack.preview`` like this module.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from drctl.commands.arg_types import stack_name
from drctl.errors import InvalidInput


def _servers(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected server names separated by commas, e.g. web01,db01")
    return names


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``preview`` and ``stack set-secret``."""
    p = sub.add_parser(
        "preview",
        help="show a stack's resource graph, computed offline (no Pulumi CLI, no cloud)",
        description="Run stacks/__main__.py under the Pulumi SDK's mocks with the stack's "
        "config and print the resources it declares.",
    )
    p.add_argument("stack", type=stack_name, help="stack name: stacks/Pulumi.<stack>.yaml")
    p.add_argument("--failover", action="store_true", help="as if the stack's failover flag were true")
    p.add_argument(
        "--servers",
        type=_servers,
        metavar="A,B",
        help="activation scope (default: activation.servers, else every dr and backup-tested server)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='JSON lines on stdout: notes, then a result event {"stack", "resources"} (secrets redacted)',
    )
    p.add_argument(
        "--project-dir", type=Path, default=None, help="directory of Pulumi.yaml (default: this checkout)"
    )
    p.set_defaults(func=cmd_preview)

    st = sub.add_parser("stack", help="stack file operations")
    st_sub = st.add_subparsers(dest="stack_command", required=True, metavar="SUBCOMMAND")
    s = st_sub.add_parser(
        "set-secret",
        help="encrypt a secret into the stack file like `pulumi config set --secret`",
        description="Reads the value from stdin (a terminal prompts without echo); never from "
        "the command line. Uses PULUMI_CONFIG_PASSPHRASE(_FILE).",
    )
    s.add_argument("stack", type=stack_name, help="stack name: stacks/Pulumi.<stack>.yaml")
    s.add_argument("key", help="config key, dotted path allowed: vpn_psks.paris")
    s.add_argument(
        "--project-dir", type=Path, default=None, help="directory of Pulumi.yaml (default: this checkout)"
    )
    s.set_defaults(func=cmd_set_secret)


def render_tree(graph) -> str:
    """Resources as a tree of parents and children, with type and dependencies."""
    by_parent: dict[str | None, list] = {}
    for r in graph.resources:
        by_parent.setdefault(r.parent, []).append(r)
    lines = [f"stack {graph.stack}: {len(graph.resources)} resources"]

    def walk(parent: str | None, prefix: str) -> None:
        kids = by_parent.get(parent, [])
        for i, r in enumerate(kids):
            last = i == len(kids) - 1
            flags = " [protected]" if r.protect else ""
            deps = (
                f"  <- {', '.join(r.depends_on)}"
                if r.depends_on and r.type.startswith("flexrecovery:")
                else ""
            )
            lines.append(f"{prefix}{'└─ ' if last else '├─ '}{r.name}  ({r.type}){flags}{deps}")
            walk(r.name, prefix + ("   " if last else "│  "))

    walk(None, "")
    return "\n".join(lines)


def cmd_preview(args: argparse.Namespace) -> int:
    from drctl.stack.preview import preview_stack

    graph = preview_stack(
        args.stack,
        failover=True if args.failover else None,
        servers=args.servers,
        project_dir=args.project_dir,
    )
    if args.json:
        for note in graph.notes:
            print(f"drctl: note: {note}", file=sys.stderr)
            args.events.emit("note", {"message": note})
        args.events.result(graph.to_json(redact=True))
        return 0
    print(render_tree(graph))
    for note in graph.notes:
        print(f"note: {note}")
    return 0


def _read_secret(prompt: str) -> str:
    if sys.stdin.isatty():
        first = getpass.getpass(prompt)
        if getpass.getpass("Again: ") != first:
            raise InvalidInput("the two entries differ; nothing was written")
        return first
    return sys.stdin.read().rstrip("\r\n")


def cmd_set_secret(args: argparse.Namespace) -> int:
    from drctl.stack.config import set_secret

    value = _read_secret(f"Value of {args.key} for stack {args.stack}: ")
    path = set_secret(args.stack, args.key, value, args.project_dir)
    print(f"{args.key} encrypted into {path}")
    return 0
