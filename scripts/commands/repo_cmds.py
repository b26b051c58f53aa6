"""Backup repository commands: repo init|upgrade (and copy, in copy_cmds), key add|list|remove|passwd, backup, snapshots, restore,
check, forget, prune, unlock. Formats and exit codes: docs/repository-format.md.

Size: over 400 lines because it is the argument parsing and the printing of eleven commands, each a
few lines with no logic of its own (that lives in drctl.repo); splitting it by command would only
scatter one command group's options."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from drctl.commands.arg_types import non_negative_int, parallelism, positive_int
from drctl.errors import EXIT_INTEGRITY, EXIT_OK

_PASSWORD_HELP = (
    "The repository password comes from --password-file, --password-command or "
    "DRCTL_PASSWORD (never from the command line)."
)

_JSON_HELP = "JSON lines on stdout: events (progress), the last one the result"


def _password_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--password-file", metavar="FILE", help="read the password from the first line of FILE")
    p.add_argument(
        "--password-command",
        metavar="CMD",
        help="run CMD (no shell) and read the password from its first output line",
    )
    return p


def _storage(url: str):
    from drctl.storage import open_storage

    return open_storage(url)


def _open(args: argparse.Namespace):
    from drctl.repo.password import read_password
    from drctl.repo.repository import open_repository

    storage = _storage(args.repo)
    from drctl.repo.repository import read_config

    read_config(storage)  # "no repository" (10) before asking for a password
    return open_repository(storage, read_password(args.password_file, args.password_command))


def _progress(args: argparse.Namespace):
    from drctl.repo.progress import progress_for

    return progress_for(args.events)


# -- handlers ------------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from drctl.repo.password import check_new_password, read_password
    from drctl.repo.repository import init_repository

    storage = _storage(args.repo)
    password = read_password(args.password_file, args.password_command, confirm=True)
    check_new_password(password)  # before anything is created
    # The directory or bucket is created if missing; asking for retention enables Object Lock on a
    # new bucket (an existing bucket keeps its setting: lock_support() below reads what it does).
    storage.create(object_lock=bool(args.retain))
    object_lock = None
    if args.retain:
        support = storage.lock_support()
        object_lock = {"retain_days": args.retain, "enforced": support.enforced, "detail": support.detail}
        if not support.enforced:
            print(
                f"drctl: warning: {storage.describe()} does not enforce Object Lock ({support.detail}); "
                f"backups will be written with a retention date the store ignores",
                file=sys.stderr,
            )
    repo = init_repository(
        storage, password, chunk_size=args.chunk_size * 1024 * 1024, object_lock=object_lock, label=args.label
    )
    print(f"created repository {repo.config.id} at {storage.describe()} (key {repo.key_id})")
    return EXIT_OK


def cmd_upgrade(args: argparse.Namespace) -> int:
    from drctl.repo.repository import FORMAT_VERSION, upgrade_repository

    repo = _open(args)
    before = repo.config.version
    changed = upgrade_repository(repo)
    if args.json:
        args.events.result(
            {"repo": repo.describe(), "from": before, "version": FORMAT_VERSION, "changed": changed}
        )
    elif changed:
        print(
            f"repository {repo.describe()} upgraded from format {before} to {FORMAT_VERSION}; its "
            f"existing restore points stay restorable"
        )
    else:
        print(f"repository {repo.describe()} already has format {FORMAT_VERSION}: nothing to do")
    return EXIT_OK


def cmd_key_list(args: argparse.Namespace) -> int:
    repo = _open(args)
    keys = repo.list_keys()
    if args.json:
        args.events.result(
            {
                "keys": [
                    {
                        "id": k.key_id,
                        "label": k.label,
                        "created": k.created,
                        "host": k.hostname,
                        "kdf": k.kdf,
                        "current": k.key_id == repo.key_id,
                        "damaged": k.problem,
                    }
                    for k in keys
                ]
            }
        )
        return EXIT_OK
    for k in keys:
        mark = "*" if k.key_id == repo.key_id else " "
        if k.problem is not None:
            print(f"{mark} {k.key_id}  DAMAGED: {k.problem}")
        else:
            print(f"{mark} {k.key_id}  {k.label:<10} {k.created:<28} {k.hostname:<16} {k.kdf}")
    return EXIT_OK


def cmd_key_add(args: argparse.Namespace) -> int:
    from drctl.repo.password import read_new_password

    repo = _open(args)
    key_id = repo.add_key(read_new_password(args.new_password_file), args.label)
    print(f"added key {key_id} ({args.label})")
    return EXIT_OK


def cmd_key_remove(args: argparse.Namespace) -> int:
    repo = _open(args)
    with repo.lock(exclusive=True, operation="key remove"):
        repo.remove_key(args.key_id)
    print(f"removed key {args.key_id}")
    return EXIT_OK


def cmd_key_passwd(args: argparse.Namespace) -> int:
    from drctl.repo.password import read_new_password

    repo = _open(args)
    new = read_new_password(args.new_password_file)
    with repo.lock(exclusive=True, operation="key passwd"):
        old = repo.key_id
        key_id = repo.change_password(new)
    print(f"password changed: key {old} replaced by {key_id}")
    return EXIT_OK


def cmd_backup(args: argparse.Namespace) -> int:
    from drctl.repo.backup import backup_disk

    repo = _open(args)
    result = backup_disk(
        repo,
        args.source,
        server=args.server,
        disk=args.disk,
        chunk_size=args.chunk_size * 1024 * 1024 if args.chunk_size else None,
        backup_type=args.type,
        retain_days=args.retain,
        parallel=args.parallel,
        progress=_progress(args),
    )
    if result.retention_enforced is False:
        print(
            f"drctl: warning: retention until {result.point.retain_until:%Y-%m-%d} was requested but "
            f"{repo.describe()} does not enforce it: {result.retention_detail}",
            file=sys.stderr,
        )
    if args.json:
        args.events.result(result.summary())
    else:
        print(result.point.id)
        print(
            f"drctl: {result.point.server}/{result.point.disk}: {result.chunks} chunks, "
            f"{result.new_chunks} new, {result.uploaded_bytes} bytes uploaded in "
            f"{result.duration_s:.1f}s ({result.point.type})",
            file=sys.stderr,
        )
    return EXIT_OK


def _point_dict(p) -> dict[str, Any]:
    return {
        "id": p.id,
        "server": p.server,
        "disk": p.disk,
        "created": p.created.isoformat(),
        "size": p.size,
        "chunk_size": p.chunk_size,
        "type": p.type,
        "parent": p.parent,
        "sha256": p.sha256 or None,
        "repo_format": p.version,
        "image_digest": p.digest_label,
        "chunks": p.stored_chunks,
        "host": p.host,
        "retain_until": p.retain_until.isoformat() if p.retain_until else None,
    }


def cmd_snapshots(args: argparse.Namespace) -> int:
    from drctl.repo.points import load_readable_points

    repo = _open(args)
    with repo.lock(exclusive=False, operation="snapshots"):
        listing = load_readable_points(repo)
    points = [p for p in listing.points if args.server in (None, p.server)]
    if args.json:
        args.events.result(
            {
                "snapshots": [_point_dict(p) for p in points],
                "damaged": [{"key": d.key, "reason": d.reason} for d in listing.damaged],
            }
        )
    else:
        print(f"{'ID':<10} {'CREATED (UTC)':<20} {'SERVER':<16} {'DISK':<8} {'TYPE':<12} {'SIZE':>12}")
        for p in points:
            print(
                f"{p.id[:8]:<10} {p.created:%Y-%m-%d %H:%M:%S}  {p.server:<16} {p.disk:<8} "
                f"{p.type:<12} {p.size:>12}"
            )
    if listing.damaged:
        for d in listing.damaged:
            print(f"drctl: {d.reason}", file=sys.stderr)
        print(
            f"drctl: {len(listing.damaged)} manifest(s) under snapshots/ cannot be read (their points, "
            f"whatever server they belong to, cannot be restored); every point listed can be "
            f"restored with `drctl restore REPO --point ID`; `drctl check REPO` checks the rest",
            file=sys.stderr,
        )
        return EXIT_INTEGRITY
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    from drctl.repo.restore import restore_disk

    repo = _open(args)
    result = restore_disk(
        repo,
        server=args.server,
        disk=args.disk,
        point=args.point,
        out=args.out,
        fmt=args.format,
        parallel=args.parallel,
        progress=_progress(args),
    )
    if args.json:
        args.events.result(result.summary())
    else:
        algorithm = result.point.digest_label.split(":")[0]
        print(
            f"restored {result.point.server}/{result.point.disk} point {result.point.id[:8]} "
            f"({result.point.created.isoformat()}) to {result.path}: {algorithm} digest verified, "
            f"{result.fetched_chunks} chunks fetched, {result.resumed_chunks} resumed, "
            f"{result.duration_s:.1f}s"
        )
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from drctl.repo.maintenance import check

    repo = _open(args)
    report = check(repo, read_data=args.read_data, parallel=args.parallel, progress=_progress(args))
    if args.json:
        args.events.result(report.as_dict())
    else:
        for problem in report.problems:
            print(f"problem: {problem}")
        for w in report.wal:
            last = w.last_archived_at.isoformat() if w.last_archived_at else "never"
            print(
                f"WAL of {w.server}: {len(w.bases)} base backup(s), {w.segments} segment(s) kept "
                f"({w.first or '-'} .. {w.last or '-'}), {w.read} file(s) read, last archived {last}"
            )
        print(
            f"{report.points} restore points, {report.chunks_present} chunks present, "
            f"{report.chunks_read} read and verified, {report.unreferenced} unreferenced: "
            f"{'no problems' if report.ok else f'{len(report.problems)} problem(s)'}"
        )
    if not report.ok:
        print(
            f"drctl: check found {len(report.problems)} problem(s) in {repo.describe()}; restore "
            f"points listed above are damaged",
            file=sys.stderr,
        )
        return EXIT_INTEGRITY
    return EXIT_OK


def cmd_forget(args: argparse.Namespace) -> int:
    from drctl.repo.maintenance import KeepPolicy, forget

    policy = KeepPolicy(
        last=args.keep_last,
        hourly=args.keep_hourly,
        daily=args.keep_daily,
        weekly=args.keep_weekly,
        monthly=args.keep_monthly,
    )
    from drctl.repo.maintenance import plan_forget

    plan_forget([], policy)  # refuse an empty policy before asking for the password
    repo = _open(args)
    kept, removed = forget(repo, policy, server=args.server, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    if args.json:
        args.events.result(
            {"dry_run": args.dry_run, "kept": [p.id for p in kept], "removed": [p.id for p in removed]}
        )
    else:
        for p in removed:
            print(f"{verb} {p.id[:8]} {p.created:%Y-%m-%d %H:%M:%S} {p.server}/{p.disk}")
        print(f"{len(kept)} points kept, {len(removed)} {verb}; run `drctl prune` to free their chunks")
    return EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    from drctl.repo.maintenance import prune

    repo = _open(args)
    result = prune(repo, dry_run=args.dry_run)
    if args.json:
        args.events.result(result.as_dict())
    else:
        verb = "would delete" if args.dry_run else "deleted"
        print(
            f"{result.points} points reference {result.referenced_chunks} chunks; {verb} "
            f"{result.deleted_chunks} unreferenced chunks ({result.deleted_bytes} bytes), "
            f"{result.wal_deleted} WAL object(s) no kept base backup needs"
        )
    return EXIT_OK


def cmd_unlock(args: argparse.Namespace) -> int:
    from drctl.repo.locks import remove_locks

    removed = remove_locks(_storage(args.repo), all_locks=args.all)
    for lk in removed:
        if lk.problem is not None:
            print(f"removed malformed lock {lk.key!r} ({lk.problem})")
        else:
            print(f"removed {lk.describe()}")
    print(f"removed {len(removed)} lock(s)")
    return EXIT_OK


# -- parser --------------------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's sub-commands to the parser."""
    pw = _password_parent()

    def add(parent, name: str, func, help_: str) -> argparse.ArgumentParser:
        p = parent.add_parser(name, parents=[pw], help=help_, description=f"{help_} {_PASSWORD_HELP}")
        p.add_argument("repo", metavar="REPO", help="s3://BUCKET[/PREFIX] or a directory path")
        p.set_defaults(func=func)
        return p

    repo = sub.add_parser("repo", help="create an encrypted backup repository")
    repo_sub = repo.add_subparsers(dest="repo_command", required=True, metavar="ACTION")
    p = add(repo_sub, "init", cmd_init, "Create a repository (and its first key).")
    p.add_argument(
        "--chunk-size",
        type=positive_int,
        default=4,
        metavar="MIB",
        help="default chunk size (MiB, default 4)",
    )
    p.add_argument(
        "--retain", type=positive_int, metavar="DAYS", help="default Object Lock retention of backups"
    )
    p.add_argument("--label", default="client", help="label of the first key (default: client)")
    p = add(
        repo_sub,
        "upgrade",
        cmd_upgrade,
        "Raise the repository to the current format (exclusive lock; idempotent; existing points stay "
        "restorable).",
    )
    p.add_argument("--json", action="store_true", help=_JSON_HELP)
    from drctl.commands.copy_cmds import register_repo_copy

    register_repo_copy(repo_sub, pw)

    key = sub.add_parser("key", help="manage the repository's key slots")
    key_sub = key.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    p = add(key_sub, "list", cmd_key_list, "List key slots.")
    p.add_argument("--json", action="store_true", help=_JSON_HELP)
    for name, func, help_ in (
        ("add", cmd_key_add, "Add a key slot with a new password."),
        ("passwd", cmd_key_passwd, "Change the password of the key in use."),
    ):
        p = add(
            key_sub, name, func, help_ + " The new one comes from --new-password-file or DRCTL_NEW_PASSWORD."
        )
        p.add_argument("--new-password-file", metavar="FILE")
        if name == "add":
            p.add_argument("--label", default="escrow", help="e.g. client, escrow (default: escrow)")
    p = add(key_sub, "remove", cmd_key_remove, "Remove a key slot (never the last one).")
    p.add_argument("key_id", metavar="KEY_ID", help="id (or unique prefix) from `drctl key list`")

    p = add(sub, "backup", cmd_backup, "Back up one disk image; prints the restore point id.")
    p.add_argument("source", metavar="SOURCE", help="image file or block device")
    p.add_argument("--server", required=True)
    p.add_argument("--disk", required=True)
    p.add_argument("--type", default="auto", choices=("auto", "full", "incremental", "differential"))
    p.add_argument(
        "--chunk-size", type=positive_int, metavar="MIB", help="chunk size (default: the repository's)"
    )
    p.add_argument("--retain", type=positive_int, metavar="DAYS", help="Object Lock retention of this backup")
    p.add_argument("--parallel", type=parallelism, default=8, help="uploads in flight (default 8)")
    p.add_argument("--json", action="store_true", help=_JSON_HELP)

    p = add(sub, "snapshots", cmd_snapshots, "List restore points.")
    p.add_argument("--server")
    p.add_argument("--json", action="store_true", help=_JSON_HELP)

    p = add(sub, "restore", cmd_restore, "Restore one server disk, verified, to --out.")
    p.add_argument("--server", required=True)
    p.add_argument("--disk")
    p.add_argument(
        "--point", default="latest", help="ID (prefix), latest, or an ISO time (newest at or before)"
    )
    p.add_argument("--out", required=True, metavar="PATH")
    p.add_argument("--format", default="raw", choices=("raw", "qcow2"))
    p.add_argument("--parallel", type=parallelism, default=16, help="downloads in flight (default 16)")
    p.add_argument("--json", action="store_true", help=_JSON_HELP)

    p = add(sub, "check", cmd_check, "Check the repository's structure (and data with --read-data).")
    p.add_argument("--read-data", action="store_true", help="download and verify every chunk")
    p.add_argument("--parallel", type=parallelism, default=8)
    p.add_argument("--json", action="store_true", help=_JSON_HELP)

    p = add(sub, "forget", cmd_forget, "Remove restore points not kept by the policy.")
    for unit in ("last", "hourly", "daily", "weekly", "monthly"):
        p.add_argument(f"--keep-{unit}", type=non_negative_int, default=0, metavar="N")
    p.add_argument("--server", help="only this server's points")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--json", action="store_true", help=_JSON_HELP)

    p = add(sub, "prune", cmd_prune, "Delete chunks no restore point references.")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--json", action="store_true", help=_JSON_HELP)

    p = add(sub, "unlock", cmd_unlock, "Remove stale and malformed locks (or all with --all).")
    p.add_argument("--all", action="store_true", help="also remove live locks (only if no drctl runs)")
