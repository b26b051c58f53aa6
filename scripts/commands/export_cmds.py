"""``drctl export STACK --to DIR``: the client's data at contract end as standard files (the work
is in drctl.export)."""

from __future__ import annotations

import argparse
from pathlib import Path

from drctl.commands.arg_types import parallelism
from drctl.errors import EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from drctl.export.export import check_target, export_stack
    from drctl.paths import state_dir
    from drctl.repo.password import read_password
    from drctl.repo.progress import progress_for
    from drctl.repo.repository import open_repository, read_config
    from drctl.stack.config import load_stack
    from drctl.storage import open_storage

    check_target(args.to)  # before the stack, the store or a password is touched
    cfg = load_stack(args.stack, args.project_dir) if args.project_dir else load_stack(args.stack)
    storage = open_storage(cfg.settings.repository_url(cfg.plan))
    read_config(storage)  # "no repository" (10) before asking for a password
    repo = open_repository(storage, read_password(args.password_file, args.password_command))
    result = export_stack(
        cfg,
        repo,
        args.to,
        state_dir=args.state_dir or state_dir(),
        fmt=args.format,
        all_points=args.all_points,
        parallel=args.parallel,
        progress=progress_for(args.events),
        on_event=args.events.emit if args.json else None,
    )
    if args.json:
        args.events.result(result.summary())
    else:
        print(
            f"exported {len(result.images)} image(s) ({result.format}), the plan, the settings and "
            f"{len(result.reports)} report(s) of {result.stack} to {result.path} ({result.files} files, "
            f"{result.duration_s:.0f}s); check it with: cd {result.path} && sha256sum -c SHA256SUMS"
        )
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``export`` to the parser."""
    help_ = (
        "Export a stack's data at contract end: every server's latest restore point (or every point) "
        "as verified disk images, the plan, non-secret settings, signed reports, SHA256SUMS, a README."
    )
    p = sub.add_parser(
        "export",
        help=help_,
        description=f"{help_} The repository password comes from --password-file, --password-command or "
        "DRCTL_PASSWORD (never from the command line).",
    )
    p.add_argument("stack", metavar="STACK")
    p.add_argument("--to", required=True, type=Path, metavar="DIR", help="an empty or absent directory")
    p.add_argument("--format", default="qcow2", choices=("qcow2", "raw"), help="image format (default qcow2)")
    p.add_argument("--all-points", action="store_true", help="every restore point, not only the latest")
    p.add_argument("--parallel", type=parallelism, default=16, help="downloads in flight (default 16)")
    p.add_argument("--password-file", metavar="FILE", help="read the password from the first line of FILE")
    p.add_argument(
        "--password-command",
        metavar="CMD",
        help="run CMD (no shell) and read the password from its first line",
    )
    p.add_argument("--state-dir", type=Path, help="local state holding the run reports (default .state)")
    p.add_argument("--project-dir", type=Path, help="Pulumi project holding stacks/ (default: this checkout)")
    p.add_argument(
        "--json", action="store_true", help="JSON lines on stdout: progress, export-image, the result"
    )
    p.set_defaults(func=cmd_export)
