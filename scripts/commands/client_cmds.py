"""``drctl client new`` (onboarding: plan skeleton and stack file) and ``drctl cost`` (what an
activation and the backup space cost)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from drctl.commands.arg_types import positive_int, stack_name


def _site(value: str):  # -> SiteSpec
    from drctl.client.scaffold import parse_site

    try:
        return parse_site(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``client new`` and ``cost``."""
    c = sub.add_parser("client", help="onboard a client")
    c_sub = c.add_subparsers(dest="client_command", required=True, metavar="SUBCOMMAND")
    n = c_sub.add_parser(
        "new",
        help="write a new client's plan skeleton and stack file",
        description="Writes recovery_plans/ID.yaml (a commented skeleton whose TODOs `drctl validate` "
        "names until filled) and stacks/Pulumi.ID.yaml (a fresh encryption salt for the passphrase "
        "in PULUMI_CONFIG_PASSPHRASE(_FILE), a random PSK per site as a secret, the default flavor "
        "map, illustrative prices), then prints the next steps. Refuses an existing client; on an "
        "error nothing is written.",
    )
    n.add_argument(
        "client_id", metavar="ID", help="client id: lower-case letters, digits, '-' (the stack name)"
    )
    n.add_argument("--name", required=True, help="the client's name, e.g. 'Bravo & Fils SA'")
    n.add_argument(
        "--site",
        dest="sites",
        action="append",
        type=_site,
        required=True,
        metavar="NAME=PEER_ADDRESS",
        help="a site and its public IPv4 address (repeat for each site)",
    )
    n.add_argument(
        "--project-dir", type=Path, default=None, help="directory of Pulumi.yaml (default: this checkout)"
    )
    n.set_defaults(func=run_client_new)

    p = sub.add_parser(
        "cost",
        help="what an activation costs per day and for N days, and the backup space per month",
        description="Prices from the stack's `prices` table: instances by flavor, volumes and images "
        "by GB, the router's public IP, one VPN per reconnected site; the backup space from the bytes "
        "stored in the client's repository (its objects are listed, nothing is decrypted).",
    )
    p.add_argument("stack", type=stack_name, help="stack name: stacks/Pulumi.<stack>.yaml")
    p.add_argument("--days", type=positive_int, default=1, help="length of the activation (default 1)")
    p.add_argument(
        "--no-repository",
        action="store_true",
        help="skip the backup space (do not contact the repository)",
    )
    p.add_argument(
        "--repository",
        metavar="REPO",
        help="the client's repository (default: the stack's backup_repository)",
    )
    p.add_argument("--json", action="store_true", help="JSON lines on stdout: a result event (README)")
    p.add_argument(
        "--project-dir", type=Path, default=None, help="directory of Pulumi.yaml (default: this checkout)"
    )
    p.set_defaults(func=run_cost)


def run_client_new(args: argparse.Namespace) -> int:
    from drctl import paths
    from drctl.client.scaffold import NewClient, create_client, next_steps

    client = NewClient(id=args.client_id, name=args.name, sites=tuple(args.sites))
    project_dir = args.project_dir or paths.project_dir()
    plan, stack = create_client(client, project_dir)
    print(next_steps(client, plan.relative_to(project_dir), stack.relative_to(project_dir)))
    return 0


def stored_bytes(url: str) -> int:
    """The bytes a repository's objects take in its store (current versions, listed, not read)."""
    from drctl.stack import cost
    from drctl.storage import open_storage

    return cost.stored_bytes(open_storage(url))


def run_cost(args: argparse.Namespace) -> int:
    from drctl.stack.config import load_stack
    from drctl.stack.cost import estimate, format_estimate, parse_prices

    cfg = load_stack(args.stack, args.project_dir)
    prices = parse_prices(cfg.settings.prices, where=str(cfg.path))
    size = None
    if not args.no_repository:
        size = stored_bytes(args.repository or cfg.settings.repository_url(cfg.plan))
    est = estimate(cfg.plan, cfg.settings, prices, days=args.days, stored_bytes=size, where=str(cfg.path))
    if args.json:
        args.events.result({"stack": args.stack, **est.as_dict()})
    else:
        print(format_estimate(est))
        if size is None:
            print("backup space: not measured (--no-repository)", file=sys.stderr)
    return 0
