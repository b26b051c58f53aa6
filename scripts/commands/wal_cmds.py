"""``drctl wal push|fetch|base|restore|check|prune``: PostgreSQL log backups in the repository.

A server archives with (``postgresql.conf``; the password never appears in it)::

    archive_mode = on
    archive_command = 'drctl wal push --repo s3://acme-backups/repo --server db01 --password-file /etc/drctl/db01.pw --key-cache /var/lib/postgresql/.drctl-wal-key --state /var/lib/postgresql/drctl-wal-state.json %p %f'

and takes base backups with ``drctl wal base`` (or the agent's full jobs, with a ``database``
section in its config, whose log jobs report what ``--state`` recorded). Exit codes
are drctl's (README); ``wal fetch --recovery``, PostgreSQL's ``restore_command`` as written by
``drctl wal restore``, exits 1 for "no such file" (the normal end of a replay) and
:data:`EXIT_ABORT_RECOVERY` for anything else, which PostgreSQL treats as fatal.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import sys
from datetime import datetime

from drctl.commands.arg_types import parallelism, positive_int
from drctl.errors import EXIT_OK, DrctlError, InvalidInput

# PostgreSQL aborts a replay when restore_command exits above 125 ("command not found" class);
# any lower non-zero status means "this file does not exist" and ends the replay normally.
EXIT_ABORT_RECOVERY = 126

_JSON_HELP = "JSON lines on stdout: the last one the result"


def _open(args: argparse.Namespace):
    from drctl.storage import open_storage
    from drctl.wal.keycache import open_with_cache

    return open_with_cache(
        open_storage(args.repo),
        password_file=args.password_file,
        password_command=args.password_command,
        cache=args.key_cache,
    )


def cmd_push(args: argparse.Namespace) -> int:
    from drctl.wal.archive import check_name, push
    from drctl.wal.state import record_failure, record_success

    check_name(args.server, args.name)  # a wrong %f is a configuration error, not an archiving failure
    try:
        result = push(_open(args), args.server, args.path, args.name)
    except BaseException as e:
        if args.state:
            record_failure(args.state, args.server, args.name, e)
        raise
    if args.state:
        record_success(args.state, args.server, args.name)
    if args.json:
        args.events.result(result.summary())
    return EXIT_OK


def cmd_fetch(args: argparse.Namespace) -> int:
    from drctl.wal.archive import WalSegmentMissing, fetch

    try:
        size = fetch(_open(args), args.server, args.name, args.dest)
    except WalSegmentMissing as e:
        if args.events is not None:
            args.events.error(e.exit_code, type(e).__name__, e.message)
        return e.exit_code  # quietly: PostgreSQL asks for files that do not exist by design
    except DrctlError as e:
        if not args.recovery:
            raise
        print(f"drctl: {e.message}; the replay is stopped", file=sys.stderr)
        return EXIT_ABORT_RECOVERY
    except Exception as e:  # an unexpected failure must not read as "end of the archive"
        if not args.recovery:
            raise
        logging.getLogger(__name__).error("wal fetch %s failed", args.name, exc_info=True)
        print(
            f"drctl: wal fetch {args.name} failed ({type(e).__name__}: {e}); the replay is stopped",
            file=sys.stderr,
        )
        return EXIT_ABORT_RECOVERY
    if args.json:
        args.events.result({"name": args.name, "size": size})
    return EXIT_OK


def cmd_base(args: argparse.Namespace) -> int:
    from drctl.wal.base import base_backup, workdir_default

    info = base_backup(
        _open(args),
        args.server,
        conninfo=args.conninfo,
        workdir=args.workdir or workdir_default(),
        timeout=args.timeout,
    )
    if args.json:
        args.events.result(info.as_dict())
    else:
        print(f"base backup of {args.server}: point {info.point}, WAL from {info.start_segment}")
    return EXIT_OK


def _target(text: str) -> datetime | None:
    if text == "latest":
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError as e:
        raise InvalidInput(f"--to {text!r} is not an ISO time (2026-11-30T10:15:00+00:00) or latest") from e
    if t.tzinfo is None:
        raise InvalidInput(f"--to {text!r} has no time zone: add +00:00 (or Z)")
    return t


def restore_command(args: argparse.Namespace) -> str:
    """The ``restore_command`` the restored server runs: this drctl, the same repository and keys."""
    drctl = args.drctl or shutil.which("drctl") or os.path.abspath(sys.argv[0])
    argv = [drctl, "wal", "fetch", "--recovery", "--repo", args.repo, "--server", args.server]
    for opt, value in (
        ("--password-file", args.password_file),
        ("--password-command", args.password_command),
        ("--key-cache", args.key_cache),
    ):
        if value:
            argv += [opt, os.path.abspath(value) if opt != "--password-command" else value]
    return shlex.join(argv) + " %f %p"


def cmd_restore(args: argparse.Namespace) -> int:
    from drctl.wal.pitr import restore_database

    result = restore_database(
        _open(args),
        args.server,
        target=_target(args.to),
        datadir=args.datadir,
        restore_command=restore_command(args),
        keep_archiving=args.keep_archiving,
        parallel=args.parallel,
    )
    if args.json:
        args.events.result(result.summary())
    else:
        print(
            f"restored base {result.base.point[:8]} of {args.server} into {result.datadir}; start PostgreSQL "
            f"on it to replay to {args.to} (recovery.signal and restore_command are in place)"
        )
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from drctl.errors import EXIT_INTEGRITY
    from drctl.wal.history import check_wal

    report = check_wal(_open(args), args.server, read_data=args.read_data, parallel=args.parallel)
    if args.json:
        args.events.result(report.as_dict())
    else:
        print(
            f"{args.server}: {len(report.bases)} base backup(s), {report.segments} WAL segment(s) kept "
            f"({report.first or '-'} .. {report.last or '-'}), last archived "
            f"{report.last_archived_at.isoformat() if report.last_archived_at else 'never'}"
        )
        for g in report.gaps:
            print(
                f"gap: {g.missing} segment(s) missing after {g.after}: no recovery possible from "
                f"{g.from_time.isoformat() if g.from_time else '?'} to {g.to_time.isoformat() if g.to_time else '?'}"
            )
        for p in report.problems:
            print(f"problem: {p}")
    return EXIT_OK if report.ok else EXIT_INTEGRITY


def cmd_prune(args: argparse.Namespace) -> int:
    from drctl.wal.history import prune_wal

    doomed = prune_wal(_open(args), args.server, dry_run=args.dry_run)
    if args.json:
        args.events.result({"dry_run": args.dry_run, "deleted": doomed})
    else:
        print(f"{'would delete' if args.dry_run else 'deleted'} {len(doomed)} WAL object(s) of {args.server}")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``drctl wal ...`` to the parser."""
    wal = sub.add_parser("wal", help="PostgreSQL log backups: archive_command, restore_command, PITR")
    wal_sub = wal.add_subparsers(dest="wal_command", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--repo", required=True, metavar="REPO", help="s3://BUCKET[/PREFIX] or a directory")
    common.add_argument("--server", required=True, help="the plan's server name")
    common.add_argument("--password-file", metavar="FILE")
    common.add_argument("--password-command", metavar="CMD")
    common.add_argument(
        "--key-cache", metavar="FILE", help="keep the unlocked key in FILE (0600) between calls (see README)"
    )
    common.add_argument("--json", action="store_true", help=_JSON_HELP)

    def add(name: str, func, help_: str) -> argparse.ArgumentParser:
        p = wal_sub.add_parser(name, parents=[common], help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    p = add("push", cmd_push, "Archive one WAL file (archive_command: %p %f).")
    p.add_argument("path", metavar="PATH", help="PostgreSQL's %%p")
    p.add_argument("name", metavar="NAME", help="PostgreSQL's %%f")
    p.add_argument(
        "--state",
        metavar="FILE",
        help="record the outcome in FILE (0600) for the agent's log job (database.wal_state of its config)",
    )
    p = add("fetch", cmd_fetch, "Restore one WAL file (restore_command: %f %p).")
    p.add_argument("name", metavar="NAME", help="PostgreSQL's %%f")
    p.add_argument("dest", metavar="PATH", help="PostgreSQL's %%p")
    p.add_argument(
        "--recovery",
        action="store_true",
        help=f"as restore_command: exit {EXIT_ABORT_RECOVERY} (PostgreSQL aborts) on anything but a missing file",
    )
    p = add("base", cmd_base, "Take a base backup with pg_basebackup into a restore point.")
    p.add_argument("--conninfo", default="", help="libpq connection string (no password in it)")
    p.add_argument(
        "--workdir", metavar="DIR", help="where the stream is staged (default $TMPDIR or /var/tmp)"
    )
    p.add_argument(
        "--timeout",
        type=positive_int,
        default=3600,
        metavar="S",
        help="give up after S seconds (default 3600)",
    )
    p = add("restore", cmd_restore, "Restore a base and configure the replay to a moment.")
    p.add_argument("--to", required=True, metavar="TIME", help="ISO time with zone, or latest")
    p.add_argument("--datadir", required=True, metavar="DIR", help="a new or empty data directory")
    p.add_argument("--keep-archiving", action="store_true", help="the restored server keeps archive_mode")
    p.add_argument(
        "--drctl",
        metavar="PATH",
        help="the drctl the restored server runs as restore_command (default: this one)",
    )
    p.add_argument("--parallel", type=parallelism, default=8)
    p = add("check", cmd_check, "Report the WAL history: bases, holes and their time ranges.")
    p.add_argument("--read-data", action="store_true", help="download and authenticate every kept file")
    p.add_argument("--parallel", type=parallelism, default=8)
    p = add("prune", cmd_prune, "Delete WAL older than the oldest kept base backup.")
    p.add_argument("--dry-run", action="store_true")
