"""``drctl protect``: back up the recovered servers of a stack's active disaster activation, or
render the systemd units that do it on the plan's schedule (README "Disaster mode keeps protecting")."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from drctl.commands.arg_types import stack_name
from drctl.errors import EXIT_OK


def _state_dir(args: argparse.Namespace) -> Path:
    from drctl.paths import state_dir

    return (args.state_dir or state_dir()).resolve()


def _servers(args: argparse.Namespace) -> tuple[str, ...] | None:
    return tuple(s for s in (args.servers or "").split(",") if s) or None


def _protect(args: argparse.Namespace) -> int:
    if args.units:
        return _units(args)
    from drctl.activation.protection import protect
    from drctl.repo.password import read_password
    from drctl.repo.progress import progress_for
    from drctl.repo.repository import open_repository, read_config

    def open_repo(storage):
        read_config(storage)  # "no repository" (10) before asking for a password
        return open_repository(storage, read_password(args.password_file, args.password_command))

    result = protect(
        args.stack,
        _state_dir(args),
        open_repo,
        servers=_servers(args),
        job_type=args.type,
        key_dir=args.agent_keys.resolve() if args.agent_keys else None,
        project_dir=args.project_dir,
        events=args.events if args.json else None,
        progress=progress_for(args.events if args.json else None),
    )
    if args.json:
        args.events.result(result.to_dict())
        return result.exit_code
    for s in result.servers:
        if s.outcome is not None:
            r = s.outcome.record
            points = ", ".join(f"{d} {p}" for d, p in r.points.items())
            print(
                f"{s.server}: {r.type} ok at {r.ended:%Y-%m-%d %H:%M:%S} UTC, {points}; "
                f"{r.bytes_read} bytes read, {r.bytes_uploaded} uploaded"
            )
        else:
            assert s.error is not None
            print(f"drctl: {s.server}: {s.error.message}", file=sys.stderr)
    if result.report:
        print(f"report: {result.report}")
    return result.exit_code


def _units(args: argparse.Namespace) -> int:
    from drctl.activation.protection_units import unit_files

    drctl = args.drctl or shutil.which("drctl") or str(Path(sys.argv[0]).resolve())
    files, skipped = unit_files(
        args.stack,
        _state_dir(args),
        drctl,
        servers=_servers(args),
        key_dir=args.agent_keys.resolve() if args.agent_keys else None,
        project_dir=args.project_dir.resolve() if args.project_dir else None,
        password_file=args.password_file,
        password_command=args.password_command,
    )
    from drctl.private_files import write_private_file

    out = Path(args.units)
    for name, text in files.items():
        write_private_file(out / name, text).chmod(0o644)  # systemd reads them; no secret inside
        print(f"wrote {out / name}")
    for note in skipped:
        print(f"drctl: note: {note}", file=sys.stderr)
    timers = " ".join(n for n in files if n.endswith(".timer"))
    print(f"next: systemctl daemon-reload && systemctl enable --now {timers}")
    print("after the failback (or deactivation), disable and remove these units")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "protect",
        help="back up the recovered servers of a disaster activation (or render its timers)",
        description="While a disaster activation runs, take one backup of each recovered server of "
        "STACK into its repository (new restore points, deduplicated against those they were restored "
        "from), each with a signed status record, and add them to the run's report. Local target: the "
        "running sandbox guests (qemu method: freeze, snapshot, thaw, no stop); cloud target: a snapshot "
        "of each volume, downloaded and backed up, then removed. With --units DIR: write systemd "
        "service and timer units that run it on the plan's schedule.",
    )
    p.add_argument("stack", metavar="STACK", type=stack_name)
    p.add_argument("--servers", metavar="A,B", help="only these recovered servers (default: all of the run)")
    p.add_argument(
        "--type",
        choices=("full", "incremental", "differential"),
        default="incremental",
        help="the job type recorded (default incremental; every job deduplicates)",
    )
    p.add_argument(
        "--agent-keys",
        type=Path,
        metavar="DIR",
        help="where each server's agent key <server>.agent-key is (what `drctl agent config --out DIR` "
        "wrote); it signs the status records (default STATE/protect/STACK/keys, keys created there for "
        "servers with none recorded)",
    )
    p.add_argument(
        "--units", metavar="DIR", help="write the systemd units running this on the plan's schedule"
    )
    p.add_argument("--drctl", metavar="PATH", help="with --units: the drctl executable (default: this one)")
    p.add_argument("--password-file", metavar="FILE", help="repository password file (else DRCTL_PASSWORD)")
    p.add_argument("--password-command", metavar="CMD", help="command printing the repository password")
    p.add_argument("--state-dir", type=Path, help="local state (default .state or $DRCTL_STATE_DIR)")
    p.add_argument("--project-dir", type=Path, help="Pulumi project holding stacks/ (default: this checkout)")
    p.add_argument(
        "--json", action="store_true", help="JSON lines on stdout: job events, the last one the result"
    )
    p.set_defaults(func=_protect)
