"""``drctl local up|down|status``: the embedded object store (SeaweedFS) for local use and demos."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from drctl.devstore import LocalStore, LocalStoreInfo, LocalStorePorts, default_state_dir
from drctl.errors import EXIT_STORAGE, InvalidInput


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``local up|down|status`` to the parser."""
    local = sub.add_parser("local", help="embedded S3 object store (SeaweedFS) on 127.0.0.1")
    actions = local.add_subparsers(dest="local_action", required=True, metavar="ACTION")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="data, keys, pid and log (default: $DRCTL_STATE_DIR/local or .state/local)",
    )
    common.add_argument(
        "--json", action="store_true", help="JSON lines on stdout (a result event) instead of shell exports"
    )

    up = actions.add_parser(
        "up", parents=[common], help="start it (idempotent), create the demo buckets, print the env"
    )
    up.add_argument(
        "--port-base",
        type=int,
        default=None,
        help="use five consecutive ports from here (S3 first) and each +10000 for gRPC",
    )
    up.add_argument("--s3-port", type=int, default=None, help="S3 port (default 8333)")
    up.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for S3 to answer")
    up.set_defaults(func=_up)

    down = actions.add_parser("down", parents=[common], help="stop it (data is kept)")
    down.set_defaults(func=_down)

    status = actions.add_parser("status", parents=[common], help="running or not, and the endpoint")
    status.set_defaults(func=_status)


def _store(args: argparse.Namespace, ports: LocalStorePorts | None = None) -> LocalStore:
    return LocalStore(args.state_dir or default_state_dir(), ports=ports)


def _ports(args: argparse.Namespace) -> LocalStorePorts | None:
    ports = LocalStorePorts.from_base(args.port_base) if args.port_base else None
    if args.s3_port:
        ports = dataclasses.replace(ports or LocalStorePorts(), s3=args.s3_port)
    if ports is not None:
        bad = [p for p in ports.all() if not 1024 <= p <= 65535]
        if bad:
            raise InvalidInput(f"port(s) {bad} out of range 1024-65535: choose another --port-base/--s3-port")
    return ports


def _print_info(info: LocalStoreInfo, args: argparse.Namespace) -> None:
    if args.json:
        args.events.result(info.to_json())
        return
    print(
        f"# local object store {'running' if info.running else 'NOT running'} at {info.endpoint} "
        f"(state {info.state_dir}, pid {info.pid or '-'}); buckets: {', '.join(info.buckets) or '-'}"
    )
    print(f'# use it: eval "$(drctl local status)"  or  source {info.env_file}')
    print(info.shell_exports())


def _up(args: argparse.Namespace) -> int:
    info = _store(args, _ports(args)).up(timeout=args.timeout)
    _print_info(info, args)
    return 0


def _down(args: argparse.Namespace) -> int:
    store = _store(args)
    was_running = store.down()
    if args.json:
        args.events.result({"stopped": was_running, "state_dir": str(store.state_dir)})
    else:
        print(f"local object store {'stopped' if was_running else 'was not running'} ({store.state_dir})")
    return 0


def _status(args: argparse.Namespace) -> int:
    info = _store(args).status()
    if not info.running and not args.json:
        print(
            f"local object store is not running (state {info.state_dir}): start it with `drctl local up`",
            file=sys.stderr,
        )
        return EXIT_STORAGE
    _print_info(info, args)
    return 0 if info.running else EXIT_STORAGE
