"""``drctl activate``, ``drctl drill`` and ``drctl deactivate`` (``runs`` and ``report`` live in
report_cmds). Exit status: the run's (``RunSummary.exit_code``): 0 when every server in scope is ok
or warning, else the most serious error a server failed with (e.g. 13 for a tampered backup, 14
for an unreachable store), else 20 (a check failed, a server was not started); the error tree's
codes when the run could not take place."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from drctl.commands.arg_types import parallelism, positive_int, stack_name
from drctl.errors import EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "stack", metavar="STACK", type=stack_name, help="client stack (stacks/Pulumi.<STACK>.yaml)"
    )
    common.add_argument(
        "--target",
        choices=("local", "cloud"),
        default="local",
        help="local: QEMU sandbox on this machine (default); cloud: the client's OpenStack stack",
    )
    common.add_argument(
        "--requested-by",
        required=True,
        metavar="NAME",
        help="plan contact (name or e-mail) allowed to activate",
    )
    common.add_argument("--servers", metavar="A,B", help="partial activation: only these servers")
    common.add_argument("--point", default="latest", help="restore point: latest, an id, or an ISO time")
    common.add_argument(
        "--override-window",
        action="store_true",
        help="activate outside the plan's activation window (needs --reason)",
    )
    common.add_argument("--reason", help="why; recorded in the report")
    common.add_argument(
        "--override-preflight",
        metavar="REASON",
        help="cloud: run despite blocking preflight findings (quota, flavor, network, VPN); "
        "the reason and the findings are recorded in the report",
    )
    common.add_argument(
        "--max-wait",
        type=positive_int,
        metavar="S",
        help="cap each server's wait for its checks (default: its RTO)",
    )
    common.add_argument(
        "--ram-cap", type=positive_int, metavar="MB", help="local: cap guest RAM (small machines)"
    )
    common.add_argument("--vcpu-cap", type=positive_int, metavar="N", help="local: cap guest vCPUs")
    common.add_argument(
        "--restore-parallel", type=parallelism, default=4, help="disks restored at once (default 4)"
    )
    common.add_argument(
        "--password-file", metavar="FILE", help="repository password file (else DRCTL_PASSWORD)"
    )
    common.add_argument("--password-command", metavar="CMD", help="command printing the repository password")
    common.add_argument("--state-dir", type=Path, help="local state (default .state or $DRCTL_STATE_DIR)")
    common.add_argument(
        "--project-dir", type=Path, help="Pulumi project holding stacks/ (default: this checkout)"
    )
    common.add_argument(
        "--json",
        action="store_true",
        help="JSON lines on stdout: the run's events, the last one the result (the run summary)",
    )

    p = sub.add_parser(
        "activate", parents=[common], help="activate a client's recovery plan (test or disaster)"
    )
    p.add_argument("--mode", choices=("test", "disaster"), required=True)
    p.add_argument("--yes", action="store_true", help="disaster mode: skip the typed confirmation")
    p.set_defaults(func=_activate, kind="activation", keep=False)

    p = sub.add_parser(
        "drill", parents=[common], help="DR test: activate in test mode, verify, report, tear down"
    )
    p.add_argument("--keep", action="store_true", help="leave the servers running (then `drctl deactivate`)")
    p.set_defaults(func=_activate, kind="drill", mode="test", yes=False)

    p = sub.add_parser(
        "deactivate",
        help="return a stack to nominal (servers removed)",
        description="Return a stack to nominal: the servers of its active run are removed. After a "
        "disaster activation they hold the production data written since: it refuses until `drctl failback` "
        "brought every server home, unless --discard-disaster-changes (with --requested-by, --reason and a typed "
        "confirmation, recorded in the run).",
    )
    p.add_argument("stack", metavar="STACK", type=stack_name)
    p.add_argument(
        "--discard-disaster-changes",
        action="store_true",
        help="after a disaster activation: delete the servers and the data written on them since",
    )
    p.add_argument("--requested-by", metavar="NAME", help="plan contact allowed to activate (recorded)")
    p.add_argument("--reason", help="why the changes may be discarded (recorded in the run)")
    p.add_argument(
        "--yes", action="store_true", help="with --discard-disaster-changes: skip the typed confirmation"
    )
    p.add_argument("--state-dir", type=Path)
    p.add_argument("--project-dir", type=Path, help="Pulumi project holding stacks/ (default: this checkout)")
    p.add_argument("--json", action="store_true", help="JSON lines on stdout: a result event")
    p.set_defaults(func=_deactivate, parser=p)

    p = sub.add_parser(
        "failback",
        help="return to nominal after a disaster: bring the recovered servers' data home, then deactivate",
        description="After a disaster activation on the local target: for each recovered server, the "
        "last backup of its quiesced guest (frozen through its guest agent and paused, or shut down "
        "with --shutdown; its time is the data cut-over), the guest stopped, that point restored to its "
        "target on the original site (SITE_TARGETS: YAML/JSON 'servers: {NAME: PATH}' or "
        "'servers: {NAME: {DISK: PATH}}'; PATH a block device, a new image file, or a directory for a "
        "NAS seed), the site images booted in a sandbox with their production addresses and checked "
        "with the plan's checks; only then the servers are released (the run deactivated once all are "
        "back) and a signed report is written. A failed check stops it (exit 20) with the recovery "
        "space kept; run again, it resumes where it stopped.",
    )
    p.add_argument("stack", metavar="STACK", type=stack_name)
    p.add_argument("--to", dest="site_targets", type=Path, required=True, metavar="SITE_TARGETS")
    p.add_argument("--servers", metavar="A,B", help="partial failback: only these servers")
    p.add_argument("--shutdown", action="store_true", help="shut the guests down instead of freezing them")
    p.add_argument(
        "--requested-by", required=True, metavar="NAME", help="plan contact allowed to activate (recorded)"
    )
    p.add_argument(
        "--max-wait", type=positive_int, metavar="S", help="cap each server's wait for its site checks"
    )
    p.add_argument("--ram-cap", type=positive_int, metavar="MB", help="cap guest RAM of the site proof")
    p.add_argument("--vcpu-cap", type=positive_int, metavar="N", help="cap guest vCPUs of the site proof")
    p.add_argument("--password-file", metavar="FILE", help="repository password file (else DRCTL_PASSWORD)")
    p.add_argument("--password-command", metavar="CMD", help="command printing the repository password")
    p.add_argument("--state-dir", type=Path)
    p.add_argument("--project-dir", type=Path, help="Pulumi project holding stacks/ (default: this checkout)")
    p.add_argument(
        "--json", action="store_true", help="JSON lines on stdout: the failback's events, then its result"
    )
    p.set_defaults(func=_failback)


def _state_dir(args: argparse.Namespace) -> Path:
    from drctl.paths import state_dir

    return args.state_dir or state_dir()


def _print_event(kind: str, data: dict) -> None:
    """Without ``--json``: the run's events as progress lines on stderr."""
    detail = " ".join(f"{k}={v}" for k, v in data.items() if k != "servers")
    print(f"drctl: {kind} {detail}", file=sys.stderr, flush=True)


def _activate(args: argparse.Namespace) -> int:
    from drctl.activation.activation import Activation, ActivationRequest
    from drctl.repo.password import read_password

    req = ActivationRequest(
        stack=args.stack,
        mode=args.mode,
        target=args.target,
        requested_by=args.requested_by,
        servers=tuple(s for s in (args.servers or "").split(",") if s) or None,
        point=args.point,
        override_window=args.override_window,
        reason=args.reason,
        yes=args.yes,
        kind=args.kind,
        keep=args.keep,
        max_wait_s=args.max_wait,
        ram_cap_mb=args.ram_cap,
        vcpu_cap=args.vcpu_cap,
        restore_parallel=args.restore_parallel,
        override_preflight=args.override_preflight,
    )
    act = Activation(
        req,
        password=read_password(args.password_file, args.password_command),
        state_dir=_state_dir(args),
        on_event=args.events.emit if args.json else _print_event,
        project_dir=args.project_dir,
    )
    summary = act.execute()
    if args.json:
        args.events.result(summary.to_dict())
    else:
        _print_summary(summary, _state_dir(args))
    return summary.exit_code


def _print_summary(summary, state_dir: Path) -> None:
    def dur(x):
        return "-" if x is None else f"{x:.0f} s"

    print(
        f"{summary.kind} {summary.run_id} of {summary.stack} ({summary.mode}, {summary.target}): "
        f"first server available after {dur(summary.first_available_s)}, last after {dur(summary.last_available_s)}"
    )
    for s in summary.servers:
        log = (
            f" (WAL replayed to {s.log_recovered_to:%H:%M:%S}Z, segment {s.log_segment}; "
            f"disk point {dur(s.disk_point_age_s)} old)"
            if s.log_recovered_to
            else ""
        )
        print(
            f"  {s.name:<12} {s.status:<12} rto {dur(s.rto_achieved_s)} / {dur(s.rto_target_s)}"
            f"  rpo {dur(s.rpo_achieved_s)} / {dur(s.rpo_target_s)}{log}"
            + (f"  ({s.reason})" if s.reason else "")
        )
    counts = summary.counts()
    print("  " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    if summary.reconnection:
        c = summary.reconnection_counts()
        print(
            f"  sites reconnected {c['ok']}/{len(summary.reconnection)}: "
            + "; ".join(
                f"{r.site} {r.status}" + (f" ({r.reason})" if r.reason else "") for r in summary.reconnection
            )
        )
    print(f"report: {state_dir / 'runs' / summary.stack / summary.run_id / 'report.html'}")


def _deactivate(args: argparse.Namespace) -> int:
    from drctl.activation.deactivation import DiscardApproval, deactivate

    discard = None
    if args.discard_disaster_changes:
        missing = [
            opt for opt, v in (("--requested-by", args.requested_by), ("--reason", args.reason)) if not v
        ]
        if missing:
            args.parser.error(
                f"--discard-disaster-changes needs {' and '.join(missing)} (recorded in the run)"
            )
        discard = DiscardApproval(requested_by=args.requested_by, reason=args.reason, yes=args.yes)
    elif args.yes or args.requested_by or args.reason:
        args.parser.error("--yes, --requested-by and --reason only go with --discard-disaster-changes")
    result = deactivate(args.stack, _state_dir(args), project_dir=args.project_dir, discard=discard)
    if args.json:
        args.events.result(result)
    else:
        print(f"{args.stack}: back to nominal (run {result['run_id']}, target {result['target']})")
        if "discarded" in result:
            d = result["discarded"]
            print(f"  disaster changes discarded by {d['requested_by']} at {d['at']}: {d['reason']}")
    return EXIT_OK


def _failback(args: argparse.Namespace) -> int:
    from drctl.activation.failback_local import FailbackRequest, failback
    from drctl.repo.password import read_password

    req = FailbackRequest(
        stack=args.stack,
        requested_by=args.requested_by,
        site_targets=args.site_targets,
        servers=tuple(s for s in (args.servers or "").split(",") if s) or None,
        shutdown=args.shutdown,
        max_wait_s=args.max_wait,
        ram_cap_mb=args.ram_cap,
        vcpu_cap=args.vcpu_cap,
    )
    outcome = failback(
        req,
        password=read_password(args.password_file, args.password_command),
        state_dir=_state_dir(args),
        project_dir=args.project_dir,
        on_event=args.events.emit if args.json else _print_event,
    )
    if args.json:
        args.events.result(outcome.to_dict())
    else:
        back = ", ".join(outcome.servers)
        print(f"{args.stack}: {back} failed back from run {outcome.run_id}")
        for s in outcome.to_dict()["servers"]:
            print(
                f"  {s['name']:<12} cut-over {s['cut_over']}  {s['bytes_moved']} bytes moved  {s['status']}"
            )
        print("  run deactivated" if outcome.deactivated else "  the run stays active for its other servers")
        print(f"report: {outcome.report}")
    return EXIT_OK
