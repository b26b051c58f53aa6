"""``drctl demo prepare``: the demo client's images and nightly backups (see drctl.demo.prepare)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="the demo client: build its servers' images and back them up")
    dsub = demo.add_subparsers(dest="demo_command", required=True, metavar="ACTION")
    p = dsub.add_parser(
        "prepare",
        help="build (cached) the demo disk images and back them up into the "
        "embedded object store (needs `drctl local up` and its env)",
    )
    p.add_argument(
        "--break",
        dest="broken",
        action="append",
        default=[],
        metavar="SERVER",
        help="back up SERVER's image with its main service disabled (a failing drill)",
    )
    p.add_argument("--state-dir", type=Path, help="local state (default .state or $DRCTL_STATE_DIR)")
    p.add_argument(
        "--json",
        action="store_true",
        help="JSON lines on stdout: prepare-step events, then the result",
    )
    p.set_defaults(func=_prepare)

    c = dsub.add_parser(
        "console-user",
        help="(re)create the console's demo operator; its one-time password and TOTP secret are "
        "shown on this terminal only",
    )
    c.add_argument("--state-dir", type=Path, help="local state (default .state or $DRCTL_STATE_DIR)")
    c.set_defaults(func=_console_user)


def _prepare(args: argparse.Namespace) -> int:
    from drctl.demo.prepare import prepare_demo
    from drctl.paths import state_dir

    def progress(who: str, msg: str) -> None:
        if args.json:
            args.events.emit("prepare-step", {"subject": who, "message": msg})
        else:
            print(f"[{time.strftime('%H:%M:%S')}] {who}: {msg}", file=sys.stderr, flush=True)

    result = prepare_demo(args.state_dir or state_dir(), broken=args.broken, progress=progress)
    if args.json:
        args.events.result(result)
    else:
        print(f"demo backups ready in {result['repository']} (password file {result['password_file']})")
        from drctl.demo.console_user import how_to_open

        print(how_to_open())
    return 0


def _console_user(args: argparse.Namespace) -> int:
    import segno

    from drctl.demo.console_user import CONSOLE_URL, create_demo_operator
    from drctl.errors import InvalidInput

    if not sys.stdout.isatty():
        raise InvalidInput(
            "demo console-user shows a password and a TOTP secret: it prints them on a terminal only "
            "(stdout is not one); run it in a terminal"
        )
    op = create_demo_operator(args.state_dir)
    secret = " ".join(op.totp_secret[i : i + 4] for i in range(0, len(op.totp_secret), 4))
    print(f"console demo operator: {op.name}")
    print(f"  one-time password: {op.password}   (you choose your own at the first sign-in)")
    print(f"  TOTP secret:       {secret}   (add it to an authenticator app, or scan:)")
    segno.make(op.otpauth_uri, error="m").terminal(compact=True)
    print(f"then: source .state/local/env; .venv/bin/drctl console serve   and open {CONSOLE_URL}")
    return 0
