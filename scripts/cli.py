"""Entry point of ``drctl``: builds the argument parser from the command modules and is the one
place that turns a :class:`DrctlError` into a message and an exit code.

A command run with ``--json`` gets ``args.events``, the :class:`~drctl.events.EventStream` it
writes its events and its ``result`` to; when an error stops it first, the ``error`` event is
written here. Without ``--json``, ``args.events`` is None."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from drctl.errors import EXIT_INTERRUPTED, EXIT_USAGE, DrctlError, exit_code_table
from drctl.events import EventStream
from drctl.processes import sigterm_as_interrupt

# Each module exposes ``register(subparsers)``; every sub-command sets ``func(args) -> int``. The
# top-level commands each module registers (tests/test_cli_imports.py keeps this table exact): a run
# imports only the module of its command, not all of them with their dependencies (jinja2, yaml,
# the plan model...): ~0.1 CPU-second less at the start of every drctl process.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "drctl.commands.plan_cmds": ("validate", "plan"),
    "drctl.commands.client_cmds": ("client", "cost"),
    "drctl.commands.stack_cmds": ("preview", "stack"),  # preview, policy, nca render
    "drctl.commands.repo_cmds": ("repo", "key", "backup", "snapshots", "restore", "check", "forget")
    + ("prune", "unlock"),
    "drctl.commands.local_cmds": ("local",),  # embedded object store
    "drctl.commands.policy_cmds": ("policy",),
    "drctl.commands.nca_cmds": ("nca",),  # nca render|test
    "drctl.commands.preflight_cmds": ("preflight",),
    "drctl.commands.activation_cmds": ("activate", "drill", "deactivate", "failback"),
    "drctl.commands.export_cmds": ("export",),  # contract end
    "drctl.commands.protect_cmds": ("protect",),  # backups during a disaster activation
    "drctl.commands.report_cmds": ("report", "runs"),  # report show|verify|upload|export, runs
    "drctl.commands.demo_cmds": ("demo",),  # demo prepare
    "drctl.commands.agent_cmds": ("agent",),  # agent config|units|run|status
    "drctl.commands.wal_cmds": ("wal",),  # wal push|fetch|base|restore|check|prune
    "drctl.commands.status_cmds": ("status",),
    "drctl.commands.console_cmds": ("console",),  # console serve, console user add
}


def modules_for(argv: Sequence[str] | None) -> list[str]:
    """The command modules a parser for ``argv`` needs: the one registering its command (the first
    word that is not an option), or every module when there is none or it is unknown (``--help``,
    a typo: the parser then lists every command)."""
    if argv is not None:
        word = next((a for a in argv if not a.startswith("-")), None)
        for module, commands in COMMAND_MODULES.items():
            if word in commands:
                return [module]
    return list(COMMAND_MODULES)


class DrctlArgumentParser(argparse.ArgumentParser):
    """argparse with usage errors in drctl's one format, ``drctl: <command>: <problem>`` (exit 2),
    like every other error; sub-command parsers inherit it."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("drctl").strip()
        where = f"{command}: " if command else ""
        self.exit(EXIT_USAGE, f"drctl: {where}{message}; see `{self.prog} --help`\n")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or with ``argv`` only of the command it names (see
    :func:`modules_for`)."""
    import importlib

    parser = DrctlArgumentParser(
        prog="drctl",
        description="Flexible Recovery operator CLI: recovery plans, per-client stacks, encrypted backups.",
        epilog="With --json a command writes JSON lines on stdout, the last one its result or its\n"
        'error (README, "Machine-readable output").\n\n' + exit_code_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in modules_for(argv):
        importlib.import_module(name).register(sub)
    return parser


# Allocations between two young-generation collections of the cyclic GC (Python's default: 700).
# Starting a command imports botocore and builds its S3 client, hundreds of thousands of objects
# that the default made the collector walk again and again (~10 % of a start's CPU, measured
# with perf); cycles are still collected, just in fewer passes.
GC_YOUNG_THRESHOLD = 50_000


def main(argv: Sequence[str] | None = None) -> int:
    young, older, oldest = gc.get_threshold()
    gc.set_threshold(max(GC_YOUNG_THRESHOLD, young), older, oldest)
    signal.signal(signal.SIGTERM, sigterm_as_interrupt)
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="drctl: %(levelname)s: %(name)s: %(message)s",
    )
    args.events = EventStream() if getattr(args, "json", False) else None
    return run_reporting_errors(lambda: int(args.func(args) or 0), args.events)


def run_reporting_errors(
    command: Callable[[], int],
    events: EventStream | None,
    interrupted: str = "interrupted; nothing half-written was left behind",
) -> int:
    """Run ``command`` and turn a :class:`DrctlError` or Ctrl-C/SIGTERM into ``drctl: <message>``
    on stderr (and an ``error`` event with ``--json``) and its exit code: the one error handler
    of every drctl entry point."""
    try:
        return command()
    except DrctlError as e:
        print(f"drctl: {e.message}", file=sys.stderr)
        if events is not None:
            events.error(e.exit_code, type(e).__name__, e.message)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"drctl: {interrupted}", file=sys.stderr)
        if events is not None:
            events.error(EXIT_INTERRUPTED, "Interrupted", interrupted)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
