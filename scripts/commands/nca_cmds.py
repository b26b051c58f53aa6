"""``drctl nca render`` and ``drctl nca test``: the on-site appliance bundle and its proof.

The PSK never comes from argv: it is the stack's Pulumi secret (read by ``drctl.stack.config``) or
the environment variable ``DRCTL_VPN_PSK``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from drctl import paths
from drctl.commands.arg_types import stack_name
from drctl.errors import InvalidInput
from drctl.paths import check_stack_name
from drctl.plan.model import Plan
from drctl.processes import sigterm_as_interrupt

log = logging.getLogger(__name__)

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
    exists; else the project's ``recovery_plans/<stack>.yaml`` (a client without a stack yet). The
    stack name is checked first, so neither path can leave those directories. The stack's secret
    is the PSK the cloud side uses, so it wins; ``$DRCTL_VPN_PSK`` is only used when the stack has
    none for the site."""
    from drctl.stack.config import StackNotFound, load_plan_file, load_stack

    check_stack_name(stack)
    project = paths.project_dir()
    endpoint = os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT
    psk: str | None = None
    try:
        cfg = load_stack(stack, project)
    except StackNotFound:
        path = project / "recovery_plans" / f"{stack}.yaml"
        if not path.is_file():
            raise InvalidInput(
                f"stack {stack!r}: neither {project}/stacks/Pulumi.{stack}.yaml nor {path} "
                "exists; check the stack name (or set DRCTL_PROJECT_DIR to the project directory)"
            ) from None
        plan = load_plan_file(path)
        source = str(path)
    else:
        plan, source = cfg.plan, str(cfg.path)
        if site in cfg.psks:
            psk = cfg.psk(site)
    if plan_file:
        plan = load_plan_file(Path(plan_file))
    psk = psk or os.environ.get(PSK_ENV)
    if not psk:
        raise InvalidInput(
            f"stack {stack!r}, site {site!r}: no VPN pre-shared key; set the stack "
            f"secret (`drctl stack set-secret {stack} vpn_psks.{site}`) or export "
            f"{PSK_ENV} (never on the command line)"
        )
    return NcaInputs(plan=plan, psk=psk, vpn_endpoint_address=endpoint, source=source)


def cmd_render(args: argparse.Namespace) -> int:
    from drctl.nca.render import render_bundle, write_bundle

    inputs = load_inputs(args.stack, args.site)
    bundle = render_bundle(inputs.plan, args.site, inputs.psk, args.endpoint or inputs.vpn_endpoint_address)
    if "frr.conf" in bundle:
        from drctl.nca.bgp import BgpRenderError, frr_parse_errors

        errors = frr_parse_errors(bundle["frr.conf"])
        if errors is None:
            log.warning(
                "vtysh (Debian package frr) is not installed: frr.conf was not checked by FRR's parser"
            )
        elif errors:
            raise BgpRenderError(
                f"FRR's parser refuses the frr.conf rendered for site {args.site} (nothing "
                "was written):\n  " + "\n  ".join(errors)
            )
    written = write_bundle(bundle, args.out, force=args.force)
    for path in written:
        print(path)
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from drctl.nca.lab import LabError, NcaLab, default_target
    from drctl.nca.labrun import cleanup_leftovers, require_tools

    if args.cleanup:
        require_tools()
        removed = cleanup_leftovers(all_runs=True)
        if args.json:
            args.events.result({"removed": list(removed)})
        else:
            print(f"removed {len(removed)} namespace(s)" + (f": {', '.join(removed)}" if removed else ""))
        return 0
    if not args.stack or not args.site:
        raise InvalidInput("nca test needs STACK and --site (or --cleanup)")
    inputs = load_inputs(args.stack, args.site)
    site_plan = load_inputs(args.stack, args.site, args.site_plan).plan if args.site_plan else None
    require_tools()
    cleanup_leftovers()  # namespaces of crashed earlier runs (their owner process is gone)
    lab = NcaLab(
        plan=inputs.plan,
        site_name=args.site,
        psk=inputs.psk,
        vpn_endpoint_address=args.endpoint or inputs.vpn_endpoint_address,
        site_plan=site_plan,
        target=default_target(inputs.plan, args.target),
    )
    old = signal.signal(signal.SIGTERM, sigterm_as_interrupt)  # unwinds through the lab's teardown
    old_int = signal.getsignal(signal.SIGINT)
    failure: LabError | None = None
    try:
        try:
            lab.start()
            lab.probe_all()
        except LabError as e:
            failure = e
        finally:
            # A second Ctrl-C or SIGTERM must not cut the teardown short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            lab.close()
    finally:
        signal.signal(signal.SIGTERM, old)
        signal.signal(signal.SIGINT, old_int)
    report = {
        "stack": args.stack,
        "site": args.site,
        "ok": failure is None,
        "failed_step": next((s.step for s in lab.steps if not s.ok), None),
        "steps": [s.as_dict() for s in lab.steps],
    }
    if args.json:
        args.events.result(report)  # a failure below still prints its message and sets the exit code
    else:
        for s in lab.steps:
            print(f"{'ok  ' if s.ok else 'FAIL'} {s.step:<15} {s.seconds:7.2f}s  {s.detail}")
    if failure is not None:
        raise failure
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``nca render`` and ``nca test``."""
    p = sub.add_parser("nca", help="the on-site NCA appliance: render its bundle, test it in namespaces")
    nsub = p.add_subparsers(dest="nca_command", required=True, metavar="ACTION")

    r = nsub.add_parser("render", help="write the site's NCA bundle (swanctl.conf, dnsmasq.conf, ...)")
    r.add_argument("stack", type=stack_name)
    r.add_argument("--site", required=True)
    r.add_argument(
        "--out",
        required=True,
        help="directory for the files (created 0700, files 0600; an existing one must be yours, "
        "writable only by you, and empty)",
    )
    r.add_argument(
        "--force", action="store_true", help="replace an existing non-empty --out directory as a whole"
    )
    r.add_argument(
        "--endpoint",
        help="the recovery VPN endpoint address (default: stack output, "
        f"${ENDPOINT_ENV}, or {DEFAULT_ENDPOINT})",
    )
    r.set_defaults(func=cmd_render)

    t = nsub.add_parser(
        "test",
        help="prove the bundle in network namespaces: tunnel with the "
        "declared proposals, DHCP, DNS, ICMP and TCP to a recovered server",
    )
    t.add_argument("stack", nargs="?", type=stack_name)
    t.add_argument("--site")
    t.add_argument(
        "--json",
        action="store_true",
        help='JSON lines on stdout: a result event {"stack", "site", "ok", "failed_step", "steps"}',
    )
    t.add_argument(
        "--target",
        help="the recovered server to reach (default: the first with an http check, else a port check)",
    )
    t.add_argument(
        "--site-plan",
        help="render the appliance's bundle from this plan file instead "
        "(the cloud endpoint keeps the stack's policies): tests an edited site",
    )
    t.add_argument(
        "--endpoint", help=f"the recovery VPN endpoint address inside the lab (default {DEFAULT_ENDPOINT})"
    )
    t.add_argument(
        "--cleanup",
        action="store_true",
        help="remove every drnca-* namespace and run directory left behind, then exit",
    )
    t.set_defaults(func=cmd_test)
