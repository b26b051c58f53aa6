"""NcaConfig: the on-site appliance (NCA) bundle of one site -- strongSwan ``swanctl.conf`` matching
that site's SiteVpn, and ``dnsmasq.conf`` for the site's DHCP and DNS.

The rendering itself is ``drctl.nca.render.render_bundle`` (jinja2, StrictUndefined); this component only
feeds it the PSK and the VPN endpoint once the engine knows them, and keeps the result secret.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pulumi

from drctl.plan.model import Plan

try:  # the renderer lands with the NCA issue; until then the component exports nothing
    from drctl.nca.render import render_bundle
except ImportError:  # pragma: no cover - exercised only before drctl.nca.render exists
    render_bundle = None

log = logging.getLogger(__name__)
TYPE = "flexrecovery:index:NcaConfig"


@dataclass(frozen=True)
class NcaConfigArgs:
    plan: Plan
    site_name: str
    psk: pulumi.Input[str]
    vpn_endpoint_address: pulumi.Input[str]


class NcaConfig(pulumi.ComponentResource):
    """``files`` is a secret Output of {filename: content}, or None when no renderer is installed."""

    def __init__(self, name: str, args: NcaConfigArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        self.files: pulumi.Output[dict[str, str]] | None = None
        if render_bundle is None:
            log.warning(
                "drctl.nca.render is not installed: NCA bundle of site %s not rendered", args.site_name
            )
        else:
            plan, site = args.plan, args.site_name
            self.files = pulumi.Output.secret(
                pulumi.Output.all(args.psk, args.vpn_endpoint_address).apply(
                    lambda v: render_bundle(plan, site, v[0], v[1])
                )
            )
        self.register_outputs({"files": self.files} if self.files is not None else {})
