"""RecoverySpace: the client's network rebuilt in the cloud, ready for a failover.

One network and subnet per *restored* plan subnet (a subnet holding at least one server NIC) with
the same CIDR, gateway and DHCP pool (restored servers keep their addresses); a site's user LANs
stay on site, behind its NCA and the SiteVpn tunnel, one router with the external gateway and an interface on every subnet, one
security group per server (default rules deleted; ingress from ``security_rules``), the operators'
keypair and the anti-affinity server groups the plan asks for. No server: those are
``RecoveredServer``s, created only with the failover flag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pulumi
import pulumi_openstack as openstack

from drctl.components.security_rules import egress_prefixes, ingress_rules
from drctl.plan.model import Plan, Subnet

TYPE = "flexrecovery:index:RecoverySpace"


def slug(text: str) -> str:
    """A resource-name-safe form of a plan name (``paris/lan`` -> ``paris-lan``)."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", text).strip("-").lower()


@dataclass(frozen=True)
class SubnetSpec:
    """What the cloud subnet copies from the plan."""

    cidr: str
    gateway_ip: str
    allocation_pools: tuple[tuple[str, str], ...]


def subnet_spec(subnet: Subnet) -> SubnetSpec:
    pools = ((subnet.dhcp.start, subnet.dhcp.end),) if subnet.dhcp else ()
    return SubnetSpec(cidr=str(subnet.network), gateway_ip=subnet.gateway, allocation_pools=pools)


def placement_groups(plan: Plan) -> dict[str, tuple[str, ...]]:
    """Anti-affinity group name -> its servers, for groups of at least one server."""
    groups: dict[str, list[str]] = {}
    for s in plan.servers:
        if s.anti_affinity:
            groups.setdefault(s.anti_affinity, []).append(s.name)
    return {g: tuple(names) for g, names in groups.items()}


@dataclass(frozen=True)
class RecoverySpaceArgs:
    plan: Plan
    external_network_id: pulumi.Input[str]
    admin_ssh_public_key: str = ""  # empty: Nova generates the keypair


class RecoverySpace(pulumi.ComponentResource):
    """Attributes for other components: ``networks``/``subnets`` (by ``site/subnet``), ``router``,
    ``security_groups`` (by server), ``keypair``, ``server_groups`` (by group name)."""

    def __init__(
        self, name: str, args: RecoverySpaceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        plan = args.plan
        client = plan.client.id
        child = pulumi.ResourceOptions(parent=self)

        self.router = openstack.networking.Router(
            f"{name}-router",
            name=f"{client}-recovery",
            external_network_id=args.external_network_id,
            admin_state_up=True,
            opts=child,
        )

        self.networks: dict[str, openstack.networking.Network] = {}
        self.subnets: dict[str, openstack.networking.Subnet] = {}
        for sn in plan.recovery_subnets():
            ref = slug(sn.ref)
            spec = subnet_spec(sn)
            net = openstack.networking.Network(
                f"{name}-net-{ref}", name=f"{client}-{ref}", admin_state_up=True, opts=child
            )
            subnet = openstack.networking.Subnet(
                f"{name}-subnet-{ref}",
                name=f"{client}-{ref}",
                network_id=net.id,
                ip_version=4,
                cidr=spec.cidr,
                gateway_ip=spec.gateway_ip,
                enable_dhcp=True,
                # No plan DHCP range: Neutron's default pool; servers get their fixed IPs anyway.
                allocation_pools=[
                    openstack.networking.SubnetAllocationPoolArgs(start=a, end=b)
                    for a, b in spec.allocation_pools
                ]
                or None,
                opts=child,
            )
            openstack.networking.RouterInterface(
                f"{name}-rif-{ref}", router_id=self.router.id, subnet_id=subnet.id, opts=child
            )
            self.networks[sn.ref] = net
            self.subnets[sn.ref] = subnet

        self.security_groups: dict[str, openstack.networking.SecGroup] = {}
        for server in plan.servers:
            sg_name = f"{name}-sg-{slug(server.name)}"
            sg = openstack.networking.SecGroup(
                sg_name,
                name=f"{client}-{server.name}",
                description=f"Recovered {server.name} of {plan.client.name}: its services, from the client's networks",
                delete_default_rules=True,
                opts=child,
            )
            rule_opts = pulumi.ResourceOptions(parent=self)
            for rule in ingress_rules(server, plan):
                openstack.networking.SecGroupRule(
                    f"{sg_name}-in-{rule.key}",
                    security_group_id=sg.id,
                    direction="ingress",
                    ethertype="IPv4",
                    protocol=rule.protocol,
                    port_range_min=rule.port_min,
                    port_range_max=rule.port_max,
                    remote_ip_prefix=rule.remote_ip_prefix,
                    opts=rule_opts,
                )
            for prefix in egress_prefixes(plan):
                openstack.networking.SecGroupRule(
                    f"{sg_name}-out-{slug(prefix)}",
                    security_group_id=sg.id,
                    direction="egress",
                    ethertype="IPv4",
                    remote_ip_prefix=prefix,
                    opts=rule_opts,
                )
            self.security_groups[server.name] = sg

        self.keypair = openstack.compute.Keypair(
            f"{name}-keypair",
            name=f"{client}-operators",
            public_key=args.admin_ssh_public_key or None,
            opts=child,
        )

        self.server_groups: dict[str, openstack.compute.ServerGroup] = {
            group: openstack.compute.ServerGroup(
                f"{name}-group-{slug(group)}",
                name=f"{client}-{slug(group)}",
                policies="anti-affinity",
                opts=child,
            )
            for group in placement_groups(plan)
        }

        self.register_outputs(
            {
                "router_id": self.router.id,
                "subnet_ids": {ref: s.id for ref, s in self.subnets.items()},
                "security_group_ids": {n: sg.id for n, sg in self.security_groups.items()},
                "keypair": self.keypair.name,
            }
        )
