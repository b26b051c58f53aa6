"""``drctl nca render`` and ``drctl nca test``: the on-site appliance bundle and its proof.

The PSK never comes from argv: it is the stack's Pulumi secret (via ``drctl.stack_config`` when
available) or the environment variable ``DRCTL_VPN_PSK``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from drctl.errors import InvalidInput
from drctl.plan import Plan

PSK_ENV = "DRCTL_VPN_PSK"
ENDPOINT_ENV = "DRCTL_VPN_ENDPOINT"
# Documentation address (RFC 5737) for the recovery VPN endpoint when the stack has not been
# deployed: only ever used inside the lab's own namespaces or written into a bundle file.
DEFAULT_ENDPOINT = "198.51.100.1"


@dataclass(frozen=True)
class NcaInputs:
    plan: Plan
    psk: str
    vpn_endpoint_address: str
    source: str  # where the plan and PSK came from, for messages


def load_inputs(stack: str, site: str, plan_file: str | None = None) -> NcaInputs:
    """Plan, PSK and endpoint for a stack's site.

    The stack file (``stacks/Pulumi.<stack>.yaml``: plan + the ``vpn_psks`` Pulumi secret) when it
    exists; else ``recovery_plans/<stack>.yaml`` with the PSK from ``$DRCTL_VPN_PSK``. The
    environment variable, when set, wins over the stack secret (a one-off test key)."""
    from drctl.stack_config import StackNotFound, load_plan_file, load_stack

    endpoint = os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT
    psk = os.environ.get(PSK_ENV) or None
    try:
        cfg = load_stack(stack)
    except StackNotFound:
        path = Path("recovery_plans") / f"{stack}.yaml"
        if not path.exists():
            raise InvalidInput(f"stack {stack!r}: neither stacks/Pulumi.{stack}.yaml nor {path} "
                               f"exists; check the stack name (run from the repository root)") from None
        plan = load_plan_file(path)
        source = str(path)
    else:
        plan, source = cfg.plan, str(cfg.path)
        if psk is None and site in cfg.psks:
            psk = cfg.psk(site)
    if plan_file:
        plan = load_plan_file(Path(plan_file))
    if not psk:
        raise InvalidInput(f"stack {stack!r}, site {site!r}: no VPN pre-shared key; set the stack "
                           f"secret (`drctl stack set-secret {stack} vpn_psks.{site}`) or export "
                           f"{PSK_ENV} (never on the command line)")
    return NcaInputs(plan=plan, psk=psk, vpn_endpoint_address=endpoint, source=source)


def cmd_render(args: argparse.Namespace) -> int:
    from drctl.nca import render_bundle, write_bundle

    inputs = load_inputs(args.stack, args.site)
    bundle = render_bundle(inputs.plan, args.site, inputs.psk, args.endpoint or inputs.vpn_endpoint_address)
    written = write_bundle(bundle, args.out)
    for path in written:
        print(path)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``nca render`` and ``nca test``."""
    p = sub.add_parser("nca", help="the on-site NCA appliance: render its bundle, test it in namespaces")
    nsub = p.add_subparsers(dest="nca_command", required=True, metavar="ACTION")

    r = nsub.add_parser("render", help="write the site's NCA bundle (swanctl.conf, dnsmasq.conf, ...)")
    r.add_argument("stack")
    r.add_argument("--site", required=True)
    r.add_argument("--out", required=True, help="directory for the files (created 0700; files 0600)")
    r.add_argument("--endpoint", help="the recovery VPN endpoint address (default: stack output, "
                   f"${ENDPOINT_ENV}, or {DEFAULT_ENDPOINT})")
    r.set_defaults(func=cmd_render)
