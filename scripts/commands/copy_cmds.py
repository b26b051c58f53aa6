"""``drctl repo copy SRC DST``: restore points copied between repositories of the same key material
(the NAS seed into the cloud and back, a second copy). The work is in drctl.repo.copy."""

from __future__ import annotations

import argparse
import sys

from drctl.commands.arg_types import parallelism, positive_int
from drctl.errors import EXIT_INTEGRITY, EXIT_OK


def cmd_copy(args: argparse.Namespace) -> int:
    from drctl.repo.copy import copy_points, open_destination
    from drctl.repo.password import read_password
    from drctl.repo.progress import progress_for
    from drctl.repo.repository import open_repository, read_config
    from drctl.storage import open_storage

    src_storage, dst_storage = open_storage(args.src), open_storage(args.dst)
    read_config(src_storage)  # "no repository" (10) before asking for a password
    password = read_password(args.password_file, args.password_command)
    src = open_repository(src_storage, password)
    dst, initialised = open_destination(src, dst_storage, password)
    wanted = [p.strip() for p in args.points.split(",")] if args.points else None
    result = copy_points(
        src,
        dst,
        points=wanted,
        retain_days=args.retain,
        parallel=args.parallel,
        progress=progress_for(args.events),
        initialised=initialised,
    )
    for failed in result.failed_points:
        print(f"drctl: point {failed['point']} not copied: {failed['error']}", file=sys.stderr)
    if result.retention_enforced is False:
        print(
            f"drctl: warning: retention was requested but {dst.describe()} does not enforce it",
            file=sys.stderr,
        )
    if args.json:
        args.events.result(result.summary())
    else:
        print(
            f"{'initialised ' + result.dst + ' as a copy; ' if initialised else ''}"
            f"{len(result.copied_points)} point(s) copied, {len(result.present_points)} already there, "
            f"{len(result.failed_points)} failed; {result.copied_chunks} chunks ({result.copied_bytes} bytes) "
            f"copied and verified, {result.present_chunks} already in {result.dst}, {result.duration_s:.1f}s"
        )
    if not result.ok:
        print(
            f"drctl: {len(result.failed_points)} point(s) failed verification in {result.src} and were not "
            f"copied (nothing of them is presented in the destination); `drctl check {result.src} "
            f"--read-data` lists the damage",
            file=sys.stderr,
        )
        return EXIT_INTEGRITY
    return EXIT_OK


def register_repo_copy(
    repo_sub: argparse._SubParsersAction, password_parent: argparse.ArgumentParser
) -> None:
    """Add ``repo copy`` to the ``repo`` command group."""
    help_ = (
        "Copy restore points to another repository of the same key material, without re-encrypting "
        "(deduplicated, resumable, every object verified before upload; DST may be empty)."
    )
    p = repo_sub.add_parser(
        "copy",
        parents=[password_parent],
        help=help_,
        description=f"{help_} The password (it must open both) comes from --password-file, "
        "--password-command or DRCTL_PASSWORD.",
    )
    p.add_argument("src", metavar="SRC", help="source repository: s3://BUCKET[/PREFIX] or a directory")
    p.add_argument("dst", metavar="DST", help="destination repository (empty, or a copy of SRC)")
    p.add_argument("--points", metavar="ID,...", help="only these restore points (unique id prefixes)")
    p.add_argument(
        "--retain", type=positive_int, metavar="DAYS", help="Object Lock retention (default: DST's config)"
    )
    p.add_argument("--parallel", type=parallelism, default=8, help="objects in flight (default 8)")
    p.add_argument(
        "--json", action="store_true", help="JSON lines on stdout: progress, the last one the result"
    )
    p.set_defaults(func=cmd_copy)
