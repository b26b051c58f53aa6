"""NcaConfig: the on-site appliance (NCA) bundle of one site -- strongSwan ``swanctl.conf`` matching
that site's SiteVpn, and ``dnsmasq.conf`` for the site's DHCP and DNS.

The rendering itself is ``drctl.nca.render.render_bundle`` (jinja2, StrictUndefined); this component only
feeds it the PSK and the VPN endpoint once the engine knows them, and keeps the result secret.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from drctl.nca.render import render_bundle
from drctl.plan.model import Plan

TYPE = "flexrecovery:index:NcaConfig"


@dataclass(frozen=True)
class NcaConfigArgs:
    plan: Plan
    site_name: str
    psk: pulumi.Input[str]
    vpn_endpoint_address: pulumi.Input[str]


class NcaConfig(pulumi.ComponentResource):
    """``files`` is a secret Output of {filename: content}."""

    def __init__(self, name: str, args: NcaConfigArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        plan, site = args.plan, args.site_name
        self.files: pulumi.Output[dict[str, str]] = pulumi.Output.secret(
            pulumi.Output.all(args.psk, args.vpn_endpoint_address).apply(
                lambda v: render_bundle(plan, site, v[0], v[1])
            )
        )
        self.register_outputs({"files": self.files})
