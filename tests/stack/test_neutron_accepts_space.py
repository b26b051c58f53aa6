"""The nominal recovery space of a stack, created in the real Neutron from the preview graph's own
inputs, with Neutron's default quotas: every network object the program declares is accepted.

This checks our declared inputs against the real API (names, CIDRs, rules, VPN parameters) and the
preflight's counting against Neutron's own; it does not replace `pulumi up`. Resources are created
by type, in the graph's dependency order, so a graph with other types of the same families (address
groups, per-role groups) is created the same way; a networking or VPN type without a creator here
fails the test by name.
"""

from __future__ import annotations

import graphlib
import re
from collections.abc import Callable
from typing import Any

import pytest
from openstack.exceptions import ConflictException

from drctl.stack.preflight import DEFAULT_GROUP_RULES, needs_of
from drctl.stack.preview import PreviewResource, preview_stack, unwrap
from tests.stack.openstack_project import copy_project

pytestmark = pytest.mark.integration

FAMILIES = ("openstack:networking/", "openstack:vpnaas/")


def snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


class SpaceBuilder:
    """Creates graph resources in a project; ``ids`` maps the preview's ``<name>-id`` to real ids."""

    def __init__(self, net: Any, project: str, external_network_id: str) -> None:
        self.net, self.project = net, project
        self.ids: dict[str, str] = {}
        self.external_network_id = external_network_id
        self.created: list[tuple[str, str]] = []  # (type, name)

    def ref(self, value: Any) -> Any:
        """A preview id (``<name>-id``, ``ext-<network>-id``) -> the real object's id."""
        if isinstance(value, list):
            return [self.ref(v) for v in value]
        if isinstance(value, str):
            if value in self.ids:
                return self.ids[value]
            if value.startswith("ext-") and value.endswith("-id"):
                return self.external_network_id
        return value

    def args(self, r: PreviewResource, keys: dict[str, str], ignored: tuple[str, ...] = ()) -> dict[str, Any]:
        """The resource's inputs as openstacksdk keywords; an unmapped input fails by name."""
        inputs = unwrap(r.inputs)
        unknown = set(inputs) - set(keys) - set(ignored)
        assert not unknown, f"{r.type} {r.name}: inputs {sorted(unknown)} have no mapping in this test"
        return {keys[k]: self.ref(v) for k, v in inputs.items() if k in keys}

    def create(self, r: PreviewResource) -> None:
        creator = CREATORS.get(r.type)
        assert creator is not None, f"{r.type} ({r.name}): no creator in this test; add one"
        obj_id = creator(self, r)
        self.ids[f"{r.name}-id"] = obj_id
        self.created.append((r.type, r.name))


def _network(b: SpaceBuilder, r: PreviewResource) -> str:
    a = b.args(r, {"name": "name", "adminStateUp": "is_admin_state_up", "description": "description"})
    return b.net.create_network(project_id=b.project, **a).id


def _subnet(b: SpaceBuilder, r: PreviewResource) -> str:
    keys = {
        "name": "name",
        "networkId": "network_id",
        "cidr": "cidr",
        "ipVersion": "ip_version",
        "gatewayIp": "gateway_ip",
        "enableDhcp": "is_dhcp_enabled",
        "dnsNameservers": "dns_nameservers",
        "description": "description",
    }
    a = b.args(r, keys, ignored=("allocationPools",))
    pools = unwrap(r.inputs).get("allocationPools")
    if pools:
        a["allocation_pools"] = [{"start": p["start"], "end": p["end"]} for p in pools]
    return b.net.create_subnet(project_id=b.project, **a).id


def _router(b: SpaceBuilder, r: PreviewResource) -> str:
    a = b.args(
        r,
        {"name": "name", "adminStateUp": "is_admin_state_up", "description": "description"},
        ("externalNetworkId",),
    )
    ext = unwrap(r.inputs).get("externalNetworkId")
    if ext:
        a["external_gateway_info"] = {"network_id": b.ref(ext)}
    return b.net.create_router(project_id=b.project, **a).id


def _router_interface(b: SpaceBuilder, r: PreviewResource) -> str:
    a = b.args(r, {"routerId": "router", "subnetId": "subnet_id", "portId": "port_id"})
    router = a.pop("router")
    return b.net.add_interface_to_router(router, **a)["port_id"]


def _group(b: SpaceBuilder, r: PreviewResource) -> str:
    a = b.args(r, {"name": "name", "description": "description"}, ("deleteDefaultRules",))
    group = b.net.create_security_group(project_id=b.project, **a)
    if unwrap(r.inputs).get("deleteDefaultRules"):  # what the provider does right after creating it
        for rule in b.net.security_group_rules(security_group_id=group.id):
            b.net.delete_security_group_rule(rule)
    return group.id


def _rule(b: SpaceBuilder, r: PreviewResource) -> str:
    keys = {
        k: snake(k)
        for k in (
            "direction",
            "ethertype",
            "protocol",
            "portRangeMin",
            "portRangeMax",
            "remoteIpPrefix",
            "remoteGroupId",
            "remoteAddressGroupId",
            "securityGroupId",
            "description",
        )
    }
    return b.net.create_security_group_rule(project_id=b.project, **b.args(r, keys)).id


def _address_group(b: SpaceBuilder, r: PreviewResource) -> str:
    a = b.args(r, {"name": "name", "description": "description", "addresses": "addresses"}, ("projectId",))
    return b.net.create_address_group(project_id=b.project, **a).id


def _vpn_service(b: SpaceBuilder, r: PreviewResource) -> str:
    keys = {
        "name": "name",
        "routerId": "router_id",
        "adminStateUp": "is_admin_state_up",
        "description": "description",
        "subnetId": "subnet_id",
    }
    return b.net.create_vpn_service(project_id=b.project, **b.args(r, keys)).id


def _lifetime(r: PreviewResource, a: dict[str, Any]) -> dict[str, Any]:
    lifetimes = unwrap(r.inputs).get("lifetimes") or []
    if lifetimes:
        a["lifetime"] = {"units": lifetimes[0]["units"], "value": lifetimes[0]["value"]}
    return a


def _ike_policy(b: SpaceBuilder, r: PreviewResource) -> str:
    keys = {
        k: snake(k)
        for k in (
            "name",
            "authAlgorithm",
            "encryptionAlgorithm",
            "ikeVersion",
            "pfs",
            "phase1NegotiationMode",
            "description",
        )
    }
    a = _lifetime(r, b.args(r, keys, ("lifetimes",)))
    return b.net.create_vpn_ike_policy(project_id=b.project, **a).id


def _ipsec_policy(b: SpaceBuilder, r: PreviewResource) -> str:
    keys = {
        k: snake(k)
        for k in (
            "name",
            "authAlgorithm",
            "encapsulationMode",
            "encryptionAlgorithm",
            "pfs",
            "transformProtocol",
            "description",
        )
    }
    a = _lifetime(r, b.args(r, keys, ("lifetimes",)))
    return b.net.create_vpn_ipsec_policy(project_id=b.project, **a).id


def _endpoint_group(b: SpaceBuilder, r: PreviewResource) -> str:
    a = b.args(r, {"name": "name", "type": "type", "endpoints": "endpoints", "description": "description"})
    return b.net.create_vpn_endpoint_group(project_id=b.project, **a).id


def _site_connection(b: SpaceBuilder, r: PreviewResource) -> str:
    keys = {
        "name": "name",
        "vpnserviceId": "vpnservice_id",
        "ikepolicyId": "ikepolicy_id",
        "ipsecpolicyId": "ipsecpolicy_id",
        "localEpGroupId": "local_ep_group_id",
        "peerEpGroupId": "peer_ep_group_id",
        "peerAddress": "peer_address",
        "peerId": "peer_id",
        "psk": "psk",
        "adminStateUp": "is_admin_state_up",
        "initiator": "initiator",
        "mtu": "mtu",
        "description": "description",
    }
    a = b.args(r, keys, ("dpds",))
    dpds = unwrap(r.inputs).get("dpds") or []
    if dpds:
        a["dpd"] = {k: dpds[0][k] for k in ("action", "interval", "timeout") if k in dpds[0]}
    return b.net.create_vpn_ipsec_site_connection(project_id=b.project, **a).id


CREATORS: dict[str, Callable[[SpaceBuilder, PreviewResource], str]] = {
    "openstack:networking/network:Network": _network,
    "openstack:networking/subnet:Subnet": _subnet,
    "openstack:networking/router:Router": _router,
    "openstack:networking/routerInterface:RouterInterface": _router_interface,
    "openstack:networking/secGroup:SecGroup": _group,
    "openstack:networking/secGroupRule:SecGroupRule": _rule,
    "openstack:networking/addressGroup:AddressGroup": _address_group,
    "openstack:vpnaas/service:Service": _vpn_service,
    "openstack:vpnaas/ikePolicy:IkePolicy": _ike_policy,
    "openstack:vpnaas/ipSecPolicy:IpSecPolicy": _ipsec_policy,
    "openstack:vpnaas/endpointGroup:EndpointGroup": _endpoint_group,
    "openstack:vpnaas/siteConnection:SiteConnection": _site_connection,
}


def in_dependency_order(resources: list[PreviewResource]) -> list[PreviewResource]:
    by_name = {r.name: r for r in resources}
    order = graphlib.TopologicalSorter(
        {r.name: [d for d in r.depends_on if d in by_name] for r in resources}
    ).static_order()
    return [by_name[n] for n in order]


@pytest.mark.parametrize("stack", ["demo", "acme"])
def test_the_nominal_space_is_accepted_by_neutron_within_default_quotas(openstack, tmp_path, stack):
    net = openstack.connect().network
    project = openstack.new_project()
    ext = net.create_network(name=f"public-{project[:8]}", is_router_external=True)
    net.create_subnet(network_id=ext.id, ip_version=4, cidr="203.0.113.0/24", is_dhcp_enabled=False)
    graph = preview_stack(stack, project_dir=copy_project(tmp_path, ext.name))
    declared = [r for r in graph.resources if r.type.startswith(FAMILIES)]
    assert declared, f"{stack}'s nominal graph declares no network object"
    defaults = net.get_quota(project)

    builder = SpaceBuilder(net, project, ext.id)
    for r in in_dependency_order(declared):
        builder.create(r)  # an API refusal (409 quota, 400 bad input) fails here, naming the call

    assert sorted(builder.created) == sorted((r.type, r.name) for r in declared)
    assert net.get_quota(project).security_groups == defaults.security_groups == 10  # default quotas
    # Neutron's own count of what exists agrees with what the preflight says the stack needs.
    response = net.get(f"/quotas/{project}/details")
    used = {k: v["used"] for k, v in response.json()["quota"].items()}
    needs = needs_of(graph.resources, (), _settings(stack, tmp_path))
    assert used["security_group"] == needs.network["security_group"] + 1  # + the project's `default`
    assert used["security_group_rule"] == needs.network["security_group_rule"] + DEFAULT_GROUP_RULES
    for resource in (
        "network",
        "subnet",
        "router",
        "vpnservice",
        "ikepolicy",
        "ipsecpolicy",
        "endpoint_group",
        "ipsec_site_connection",
    ):
        assert used[resource] == needs.network[resource], resource
    # No DHCP agent here, so no DHCP port: the router interfaces are the ports.
    assert used["port"] == needs.network["port"] - sum(
        1
        for r in declared
        if r.type == "openstack:networking/subnet:Subnet" and r.inputs.get("enableDhcp", True)
    )
    sites = {r.name for r in declared if r.type == "openstack:vpnaas/siteConnection:SiteConnection"}
    connections = list(net.vpn_ipsec_site_connections(project_id=project))
    assert len(connections) == len(sites) and all(c.auth_mode == "psk" for c in connections)


def _settings(stack: str, tmp_path):
    from drctl.stack.config import load_stack

    return load_stack(stack, tmp_path / "project").settings
