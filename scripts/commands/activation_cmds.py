"""``drctl activate``, ``drctl drill`` and ``drctl deactivate`` (``runs`` and ``report`` live in
report_cmds). Exit status: the run's (``RunSummary.exit_code``): 0 when every server in scope is ok
or warning, else the most serious error a server failed with (e.g. 13 for a tampered backup, 14
for an unreachable store), else 20 (a check failed, a server was not started); the error tree's
codes when the run could not take place."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from drctl.errors import EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("stack", metavar="STACK", help="client stack (stacks/Pulumi.<STACK>.yaml)")
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
        "--max-wait", type=int, metavar="S", help="cap each server's wait for its checks (default: its RTO)"
    )
    common.add_argument("--ram-cap", type=int, metavar="MB", help="local: cap guest RAM (small machines)")
    common.add_argument("--vcpu-cap", type=int, metavar="N", help="local: cap guest vCPUs")
    common.add_argument("--restore-parallel", type=int, default=4, help="disks restored at once (default 4)")
    common.add_argument(
        "--password-file", metavar="FILE", help="repository password file (else DRCTL_PASSWORD)"
    )
    common.add_argument("--password-command", metavar="CMD", help="command printing the repository password")
    common.add_argument("--state-dir", type=Path, help="local state (default .state or $DRCTL_STATE_DIR)")
    common.add_argument(
        "--project-dir", type=Path, help="Pulumi project holding stacks/ (default: this checkout)"
    )
    common.add_argument("--json", action="store_true", help="JSON lines; the last line is the run summary")

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

    p = sub.add_parser("deactivate", help="return a stack to nominal (servers removed)")
    p.add_argument("stack", metavar="STACK")
    p.add_argument("--state-dir", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_deactivate)


def _state_dir(args: argparse.Namespace) -> Path:
    from drctl.paths import state_dir

    return args.state_dir or state_dir()


def _printer(json_mode: bool):
    def emit(kind: str, data: dict) -> None:
        if json_mode:
            sys.stdout.write(json.dumps({"event": kind, **data}) + "\n")
            sys.stdout.flush()
        else:
            detail = " ".join(f"{k}={v}" for k, v in data.items() if k != "servers")
            print(f"drctl: {kind} {detail}", file=sys.stderr, flush=True)

    return emit


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
    )
    act = Activation(
        req,
        password=read_password(args.password_file, args.password_command),
        state_dir=_state_dir(args),
        on_event=_printer(args.json),
        project_dir=args.project_dir,
    )
    summary = act.execute()
    if args.json:
        sys.stdout.write(summary.to_json() + "\n")
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
        print(
            f"  {s.name:<12} {s.status:<12} rto {dur(s.rto_achieved_s)} / {dur(s.rto_target_s)}"
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
    from drctl.activation.activation import deactivate

    result = deactivate(args.stack, _state_dir(args))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.stack}: back to nominal (run {result['run_id']}, target {result['target']})")
    return EXIT_OK
