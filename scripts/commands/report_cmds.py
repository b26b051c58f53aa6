"""``drctl report show|verify|upload|export`` and ``drctl runs``: stored run reports.

- ``drctl report show RUN_ID [--json]``: the run's summary, checked against its signature when a
  verification key is at hand (exit 13 if the report was altered).
- ``drctl report verify RUN_ID|PATH [--public-key FILE]``: exit 0 if untouched, 13 naming the file.
- ``drctl report upload RUN_ID --to URL``: (re)send a stored report to a report bucket.
- ``drctl report export RUN_ID --html PATH``: copy the report page to PATH, after checking it.
- ``drctl runs STACK [--json]``: past activations and drills of a stack, oldest first.

RUN_ID is a run id or a unique prefix of one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from drctl.commands.arg_types import stack_name
from drctl.errors import LocalIOError
from drctl.private_files import write_private_file
from drctl.runs import signing as report_signing
from drctl.runs.report import fmt_duration, fmt_time
from drctl.runs.store import RunStore, StoredRun

_RUN_HELP = "a run id or a unique prefix of one (see `drctl runs STACK`)"


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``report show|verify|upload|export`` and ``runs`` to the parser."""
    state = argparse.ArgumentParser(add_help=False)
    state.add_argument(
        "--state-dir", type=Path, help="state directory (default $DRCTL_STATE_DIR or ./.state)"
    )
    key = argparse.ArgumentParser(add_help=False)
    key.add_argument(
        "--public-key", metavar="FILE", help="verify with this public key (default: the operator's)"
    )

    p = sub.add_parser("report", help="show, verify, upload or export a run report")
    actions = p.add_subparsers(dest="report_action", required=True, metavar="ACTION")

    a = actions.add_parser(
        "show",
        parents=[state, key],
        help="the run's summary (its signature checked when a verification key is at hand)",
    )
    a.add_argument("run", metavar="RUN_ID", help=_RUN_HELP)
    a.add_argument(
        "--json", action="store_true", help="JSON lines on stdout: a result event (the run summary)"
    )
    a.set_defaults(func=cmd_show)

    a = actions.add_parser(
        "verify",
        parents=[state, key],
        help="check the report's signature: exit 0 if untouched, 13 naming the altered file",
    )
    a.add_argument("run", metavar="RUN_ID|PATH", help=f"{_RUN_HELP}, or a run directory")
    a.set_defaults(func=cmd_verify)

    a = actions.add_parser(
        "upload", parents=[state, key], help="(re)send a stored report to a report bucket, after checking it"
    )
    a.add_argument("run", metavar="RUN_ID", help=_RUN_HELP)
    a.add_argument("--to", required=True, metavar="URL", help="the report bucket, e.g. s3://demo-reports")
    a.set_defaults(func=cmd_upload)

    a = actions.add_parser(
        "export", parents=[state, key], help="copy the report page to a file, after checking its signature"
    )
    a.add_argument("run", metavar="RUN_ID", help=_RUN_HELP)
    a.add_argument("--html", required=True, metavar="PATH", help="where to write the report page")
    a.set_defaults(func=cmd_export)

    r = sub.add_parser("runs", parents=[state], help="list the past activations and drills of a stack")
    r.add_argument("stack", metavar="STACK", type=stack_name)
    r.add_argument(
        "--json", action="store_true", help='JSON lines on stdout: a result event {"stack", "runs"}'
    )
    r.set_defaults(func=cmd_runs)


def _public_key(args: argparse.Namespace):
    return report_signing.load_public_key(Path(args.public_key)) if args.public_key else None


def cmd_show(args: argparse.Namespace) -> int:
    store = RunStore(args.state_dir)
    run = store.find(args.run)
    signature = _signature_status(store, run, args)
    if args.json:
        args.events.result(run.summary.to_dict())
    else:
        print(_describe(run, signature))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    store = RunStore(args.state_dir)
    run = store.find(args.run)
    signature = _signature_status(store, run, args)
    dest = Path(args.html)
    try:
        page = run.html_path.read_bytes()
    except OSError as e:
        raise LocalIOError(f"cannot read the report page {run.html_path}: {e.strerror}") from e
    write_private_file(dest, page)  # 0600, never through a link nor over another user's file
    print(f"report of run {run.summary.run_id} written to {dest} ({signature})")
    return 0


def _signature_status(store: RunStore, run: StoredRun, args: argparse.Namespace) -> str:
    """Verify when a key is at hand (a tampered report raises, exit 13); else say it was not."""
    public = _public_key(args)
    kp = store.key_path()
    if public is None and not (report_signing.public_key_path(kp).exists() or kp.exists()):
        return f"signature not checked: no verification key at {report_signing.public_key_path(kp)}"
    return f"signature valid, key {store.verify(run.path, public)}"


def cmd_verify(args: argparse.Namespace) -> int:
    store = RunStore(args.state_dir)
    candidate = Path(args.run)
    path = (
        candidate
        if (candidate / "summary.json").exists() or candidate.is_dir()
        else store.find(args.run).path
    )
    kid = store.verify(path, _public_key(args))
    print(f"report {path}: signature valid (key {kid}); summary.json and report.html are as signed")
    return 0


def cmd_upload(args: argparse.Namespace) -> int:
    from drctl.storage import open_storage

    store = RunStore(args.state_dir)
    run = store.find(args.run)
    store.verify(run.path, _public_key(args))
    keys = RunStore(store.state_dir, open_storage(args.to)).upload(run.summary, local_path=run.path)
    print(f"uploaded run {run.summary.run_id}: {', '.join(keys)} to {args.to}")
    return 0


def _describe(run: StoredRun, signature: str) -> str:
    s = run.summary
    c = s.counts()
    fams = ", ".join(f"{k} {v}" for k, v in s.os_families().items())
    lines = [
        f"run {s.run_id} ({s.kind}) of stack {s.stack}: mode {s.mode}, target {s.target}, outcome {s.outcome}",
        f"client: {s.client_name or '-'} ({s.client_id or '-'}), requested by {s.requested_by or '-'}",
        f"started {fmt_time(s.started_at)}, ended {fmt_time(s.ended_at)}",
        f"first server available after {fmt_duration(s.first_available_s)}, "
        f"last after {fmt_duration(s.last_available_s)}",
        f"servers: {len(s.servers)} ({fams}): ok {c['ok']}, warning {c['warning']}, "
        f"failed {c['failed']}, not started {c['not-started']}",
    ]
    if s.override_reason:
        lines.append(f"outside the activation window: {s.override_reason}")
    levels = s.dependency_levels()
    for v in sorted(s.servers, key=lambda v: (levels[v.name], v.name)):
        what = (
            f"available after {fmt_duration(v.rto_achieved_s)} (RTO {fmt_duration(v.rto_target_s)})"
            if v.available
            else (v.reason or "")
        )
        lines.append(f"  {v.name:<14} {v.status:<11} L{levels[v.name]} {what}".rstrip())
        for ch in v.checks:
            if not ch.ok:
                lines.append(f"      {'x' if ch.critical else '!'} {ch.check}: {ch.detail}")
    lines += [f"report: {run.html_path}", signature]
    return "\n".join(lines)


def cmd_runs(args: argparse.Namespace) -> int:
    runs = RunStore(args.state_dir).list_runs(args.stack)
    if args.json:
        args.events.result(
            {
                "stack": args.stack,
                "runs": [
                    {
                        "run_id": r.summary.run_id,
                        "kind": r.summary.kind,
                        "mode": r.summary.mode,
                        "target": r.summary.target,
                        "requested_by": r.summary.requested_by,
                        "started_at": r.summary.to_dict()["started_at"],
                        "ended_at": r.summary.to_dict()["ended_at"],
                        "first_available_s": r.summary.first_available_s,
                        "last_available_s": r.summary.last_available_s,
                        "outcome": r.summary.outcome,
                        "counts": r.summary.counts(),
                        "report": str(r.html_path),
                    }
                    for r in runs
                ],
            }
        )
        return 0
    if not runs:
        print(f"no runs of stack {args.stack} yet")
        return 0
    header = (
        f"{'RUN ID':<24} {'KIND':<10} {'MODE':<8} {'TARGET':<6} {'STARTED (UTC)':<19} {'ENDED (UTC)':<19} "
        f"{'FIRST':>10} {'LAST':>10}  OK/WARN/FAIL/NS  OUTCOME"
    )
    print(header)
    for r in runs:
        s, c = r.summary, r.summary.counts()
        ended = s.ended_at.strftime("%Y-%m-%d %H:%M:%S") if s.ended_at else "-"
        print(
            f"{s.run_id:<24} {s.kind:<10} {s.mode:<8} {s.target:<6} {s.started_at.strftime('%Y-%m-%d %H:%M:%S'):<19} "
            f"{ended:<19} {fmt_duration(s.first_available_s):>10} {fmt_duration(s.last_available_s):>10}  "
            f"{c['ok']}/{c['warning']}/{c['failed']}/{c['not-started']:<9}  {s.outcome}"
        )
    return 0
