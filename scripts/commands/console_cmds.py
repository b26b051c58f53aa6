"""``drctl console serve`` and ``drctl console user add``: the management console (drctl.console).

- ``drctl console serve [--bind 127.0.0.1:8080] [--tls-cert FILE --tls-key FILE]``: the web
  console, read-only over the project's plans, stacks and run store (uvicorn; Ctrl-C stops it).
- ``drctl console user add NAME --role operator|client [--client STACK] [--password-file FILE]
  [--no-totp]``: a console user. The password comes from a prompt (typed twice), from stdin when
  it is not a terminal, or from ``--password-file``; never from the command line. TOTP is enrolled
  at the first sign-in; ``--no-totp`` (client users only) leaves it off.
"""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
import time
from pathlib import Path

from drctl.errors import InvalidInput, LocalIOError


class ConsoleAddressUnusable(LocalIOError):
    """The console cannot listen on the address asked for."""


def _bind(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give HOST:PORT, e.g. 127.0.0.1:8080 (port 0: any free port)"
        )
    return host.strip("[]"), int(port)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``console serve`` and ``console user add`` to the parser."""
    p = sub.add_parser("console", help="the management console (web): serve it, add its users")
    actions = p.add_subparsers(dest="console_action", required=True, metavar="ACTION")
    state = argparse.ArgumentParser(add_help=False)
    state.add_argument(
        "--state-dir", type=Path, help="state directory (default $DRCTL_STATE_DIR or ./.state)"
    )

    s = actions.add_parser("serve", parents=[state], help="serve the console (read-only) until Ctrl-C")
    s.add_argument(
        "--bind", type=_bind, default=("127.0.0.1", 8080), metavar="HOST:PORT", help="default 127.0.0.1:8080"
    )
    s.add_argument(
        "--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM); cookies are then Secure"
    )
    s.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    s.add_argument(
        "--idle-timeout", type=int, default=900, metavar="SECONDS", help="sign out after this idle time (900)"
    )
    s.add_argument(
        "--status-every",
        type=int,
        default=60,
        metavar="SECONDS",
        help="collect the protection status (drctl status) every SECONDS in the background (60; 0: never)",
    )
    s.set_defaults(func=cmd_serve)

    u = actions.add_parser("user", help="console users")
    uactions = u.add_subparsers(dest="user_action", required=True, metavar="ACTION")
    a = uactions.add_parser(
        "add", parents=[state], help="add a console user (password prompted, never in argv)"
    )
    a.add_argument("name", metavar="NAME")
    a.add_argument("--role", required=True, choices=("operator", "client"))
    a.add_argument("--client", metavar="STACK", help="the client (stack) a client user sees")
    a.add_argument("--password-file", metavar="FILE", help="read the password from the first line of FILE")
    a.add_argument("--no-totp", action="store_true", help="client users only: no second factor (not advised)")
    a.set_defaults(func=cmd_user_add)


def read_new_password(password_file: str | None) -> str:
    """The new user's password: the file's first line, else a prompt typed twice, else stdin."""
    if password_file:
        try:
            with open(password_file, encoding="utf-8") as f:
                return f.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidInput(f"--password-file {password_file}: cannot read it ({e})") from e
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("password again: ") != first:
            raise InvalidInput("the two passwords differ; run the command again")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def cmd_user_add(args: argparse.Namespace) -> int:
    from drctl.console.clients import ProjectData
    from drctl.console.users import ConsoleUserInvalid, UserStore, console_dir

    if args.no_totp and args.role == "operator":
        raise ConsoleUserInvalid(
            f"user {args.name}: operators always sign in with a second factor; drop --no-totp"
        )
    if args.client and args.client not in ProjectData(state_dir=args.state_dir).stacks():
        raise ConsoleUserInvalid(
            f"--client {args.client}: no stack stacks/Pulumi.{args.client}.yaml in this project; "
            "a client user sees one client stack"
        )
    store = UserStore(console_dir(args.state_dir))
    user = store.add(
        args.name, args.role, args.client, read_new_password(args.password_file), totp=not args.no_totp
    )
    what = f"client {user.client}" if user.client else "every client"
    factor = "TOTP enrolled at the first sign-in" if user.totp_required else "no second factor"
    print(f"console user {user.name} added ({user.role}, sees {what}; {factor}) in {store.path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from drctl.console.app import create_app

    started = time.monotonic()
    if bool(args.tls_cert) != bool(args.tls_key):
        raise InvalidInput("give both --tls-cert and --tls-key, or neither")
    if args.tls_cert:
        import ssl

        try:  # checked here, so that a bad pair is a message, not a traceback from the server
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as e:
            raise InvalidInput(
                f"--tls-cert {args.tls_cert} / --tls-key {args.tls_key}: not a usable PEM certificate "
                f"and private key pair ({e}); check both files"
            ) from e
    from drctl.console.users import UserStore, console_dir

    host, port = args.bind
    users = UserStore(console_dir(args.state_dir)).load()  # a damaged users file stops here, named
    app = create_app(
        state_dir=args.state_dir, idle_timeout_s=args.idle_timeout, status_every_s=args.status_every or None
    )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConsoleAddressUnusable(
            f"cannot listen on {host}:{port}: {e.strerror}; choose another with --bind HOST:PORT"
        ) from e
    sock.listen(128)  # connections queue from here on: "listening" below is already true
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        ssl_certfile=args.tls_cert,
        ssl_keyfile=args.tls_key,
        server_header=False,
    )
    scheme = "https" if args.tls_cert else "http"
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    print(
        f"drctl console: listening on {scheme}://{shown}:{sock.getsockname()[1]}/ "
        f"(ready in {time.monotonic() - started:.2f} s; Ctrl-C stops it)",
        file=sys.stderr,
        flush=True,
    )
    if not users:
        print(
            f"drctl: warning: no console user in {console_dir(args.state_dir)} yet: add one with "
            "`drctl console user add NAME --role operator`",
            file=sys.stderr,
            flush=True,
        )
    uvicorn.Server(config).run(sockets=[sock])
    return 0
