"""SiteVpn: the IPsec tunnel between one client site (its NCA appliance) and the recovery router.

IKE and IPsec policies are always set explicitly from the site's plan ``vpn`` settings (defaults:
IKEv2, AES-256, SHA-256, PFS group14, 8 h / 1 h lifetimes): the provider's own defaults are weak.
The policy pack is what rejects a weakened override.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_openstack as openstack

from drctl.plan.model import Plan, Site, VpnSettings
from drctl.stack.settings import StackConfigInvalid

TYPE = "flexrecovery:index:SiteVpn"
DPD_ACTION = "restart"
DPD_INTERVAL_S = 30
DPD_TIMEOUT_S = 120


@dataclass(frozen=True)
class TunnelSpec:
    """The values both ends must agree on (the NCA bundle renders the same ones)."""

    ike_version: str
    encryption: str
    integrity: str
    pfs: str
    ike_lifetime_s: int
    ipsec_lifetime_s: int
    peer_address: str
    peer_cidrs: tuple[str, ...]  # the site's user LANs (the peer endpoint group)


def tunnel_spec(plan: Plan, site: Site) -> TunnelSpec:
    """The tunnel of ``site``: its plan VPN settings; the peer side is the site's user LANs (the
    recovery side is every restored subnet, the local endpoint group)."""
    v: VpnSettings = site.vpn
    peers = plan.user_subnets(site)
    if not peers:
        raise StackConfigInvalid(
            f"plan {plan.client.id}: sites.{site.name}: no user LAN (a subnet with a DHCP range and no "
            "server) for the tunnel's peer side; a subnet holding servers is restored in the cloud and "
            "cannot also stay on site: put the workstations in a separate subnet with the DHCP range"
        )
    return TunnelSpec(
        ike_version=v.ike_version,
        encryption=v.encryption,
        integrity=v.integrity,
        pfs=v.pfs,
        ike_lifetime_s=v.ike_lifetime_s,
        ipsec_lifetime_s=v.ipsec_lifetime_s,
        peer_address=site.peer_address,
        peer_cidrs=tuple(str(sn.network) for sn in peers),
    )


@dataclass(frozen=True)
class SiteVpnArgs:
    plan: Plan
    site: Site
    router_id: pulumi.Input[str]
    recovery_subnet_ids: list[pulumi.Input[str]]  # every restored subnet
    psk: pulumi.Input[str]  # a secret Output


class SiteVpn(pulumi.ComponentResource):
    """Children: ``-ike``, ``-ipsec``, ``-service``, ``-local`` and ``-peer`` endpoint groups,
    ``-connection``. ``service.external_v4_ip`` is the address the site's appliance dials."""

    def __init__(self, name: str, args: SiteVpnArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        spec = tunnel_spec(args.plan, args.site)
        child = pulumi.ResourceOptions(parent=self)
        base = f"{args.plan.client.id}-{args.site.name}"

        self.ike_policy = openstack.vpnaas.IkePolicy(
            f"{name}-ike",
            name=f"{base}-ike",
            ike_version=spec.ike_version,
            encryption_algorithm=spec.encryption,
            auth_algorithm=spec.integrity,
            pfs=spec.pfs,
            phase1_negotiation_mode="main",
            lifetimes=[openstack.vpnaas.IkePolicyLifetimeArgs(units="seconds", value=spec.ike_lifetime_s)],
            opts=child,
        )
        self.ipsec_policy = openstack.vpnaas.IpSecPolicy(
            f"{name}-ipsec",
            name=f"{base}-ipsec",
            encryption_algorithm=spec.encryption,
            auth_algorithm=spec.integrity,
            pfs=spec.pfs,
            encapsulation_mode="tunnel",
            transform_protocol="esp",
            lifetimes=[
                openstack.vpnaas.IpSecPolicyLifetimeArgs(units="seconds", value=spec.ipsec_lifetime_s)
            ],
            opts=child,
        )
        self.service = openstack.vpnaas.Service(
            f"{name}-service", name=f"{base}-vpn", router_id=args.router_id, admin_state_up=True, opts=child
        )
        self.local_group = openstack.vpnaas.EndpointGroup(
            f"{name}-local",
            name=f"{base}-recovery-subnets",
            type="subnet",
            endpoints=args.recovery_subnet_ids,
            opts=child,
        )
        self.peer_group = openstack.vpnaas.EndpointGroup(
            f"{name}-peer",
            name=f"{base}-site-subnets",
            type="cidr",
            endpoints=list(spec.peer_cidrs),
            opts=child,
        )
        self.connection = openstack.vpnaas.SiteConnection(
            f"{name}-connection",
            name=f"{base}",
            ikepolicy_id=self.ike_policy.id,
            ipsecpolicy_id=self.ipsec_policy.id,
            vpnservice_id=self.service.id,
            local_ep_group_id=self.local_group.id,
            peer_ep_group_id=self.peer_group.id,
            peer_address=spec.peer_address,
            peer_id=spec.peer_address,
            psk=pulumi.Output.secret(args.psk),
            initiator="bi-directional",
            admin_state_up=True,
            dpds=[
                openstack.vpnaas.SiteConnectionDpdArgs(
                    action=DPD_ACTION, interval=DPD_INTERVAL_S, timeout=DPD_TIMEOUT_S
                )
            ],
            # The engine strips secret markers before a policy pack sees the inputs: declaring the
            # PSK a secret output is what tells the pack (vpn-psk-secret) that it is held as one.
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(additional_secret_outputs=["psk"])
            ),
        )
        self.register_outputs(
            {"endpoint_address": self.service.external_v4_ip, "connection_id": self.connection.id}
        )
