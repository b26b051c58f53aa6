"""RecoverySpace: the client's network rebuilt in the cloud, ready for a failover.

One network and subnet per *restored* plan subnet (a subnet holding at least one server NIC) with
the same CIDR, gateway and DHCP pool (restored servers keep their addresses); a site's user LANs
stay on site, behind its NCA and the SiteVpn tunnel. One router with the external gateway and an
interface on every subnet, one address group of the client's networks, the security groups of
``security_rules.role_groups`` (one per role, shared by its servers, rules admitting the address
group; default rules deleted), the operators' keypair and the anti-affinity server groups the plan
asks for. No server: those are ``RecoveredServer``s, created only with the failover flag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pulumi
import pulumi_openstack as openstack

from drctl.components.security_rules import WORLD, RoleGroup, client_prefixes, groups_of, role_groups
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


def group_description(group: RoleGroup, client_name: str) -> str:
    """What a role group is for, as the cloud console shows it."""
    if not group.roles:
        return f"Every recovered server of {client_name}: ping from and egress to the client's networks"
    return f"Recovered {', '.join(group.roles)} servers of {client_name}: their services, from the client's networks"


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
    ``client_networks`` (the address group), ``security_groups`` (by group key, see
    :meth:`security_group_ids_of`), ``keypair``, ``server_groups`` (by group name)."""

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

        # The client's networks, named once: every rule admits them through this address group.
        self.client_networks = openstack.networking.AddressGroupV2(
            f"{name}-client-networks",
            name=f"{client}-client-networks",
            description=f"The networks of {plan.client.name}: every site subnet",
            addresses=list(client_prefixes(plan)),
            opts=child,
        )
        self.role_groups = role_groups(plan)
        self.security_groups: dict[str, openstack.networking.SecGroup] = {}
        for group in self.role_groups:
            sg_name = f"{name}-sg-{slug(group.key)}"
            sg = openstack.networking.SecGroup(
                sg_name,
                name=f"{client}-{group.key}",
                description=group_description(group, plan.client.name),
                delete_default_rules=True,
                opts=child,
            )
            for rule in group.rules:
                remote = (
                    {"remote_ip_prefix": WORLD}
                    if rule.remote == WORLD
                    else {"remote_address_group_id": self.client_networks.id}
                )
                openstack.networking.SecGroupRule(
                    f"{sg_name}-{rule.key}",
                    security_group_id=sg.id,
                    direction=rule.direction,
                    ethertype="IPv4",
                    protocol=rule.protocol,
                    port_range_min=rule.port_min,
                    port_range_max=rule.port_max,
                    opts=child,
                    **remote,
                )
            self.security_groups[group.key] = sg

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
                "security_group_ids": {key: sg.id for key, sg in self.security_groups.items()},
                "address_group_id": self.client_networks.id,
                "keypair": self.keypair.name,
            }
        )

    def security_group_ids_of(self, server: str) -> list[pulumi.Output[str]]:
        """The ids of the groups a recovered server's ports get: ``base`` and its role groups."""
        return [self.security_groups[key].id for key in groups_of(server, self.role_groups)]
