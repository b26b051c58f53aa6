"""The preflight's comparison on its own (pure): needs counted from a graph, quotas that are
unlimited, absent or partly used by the stack itself, the project's first security group."""

from __future__ import annotations

from types import SimpleNamespace

from drctl.stack.preflight import Inventory, Needs, Quota, evaluate, needs_of
from drctl.stack.settings import StackSettings


def res(type_: str, name: str, **inputs):
    return SimpleNamespace(type=f"openstack:{type_}", name=name, inputs={"name": name, **inputs})


GRAPH = [
    res("networking/network:Network", "n"),
    res("networking/subnet:Subnet", "s", enableDhcp=True),
    res("networking/router:Router", "r"),
    res("networking/routerInterface:RouterInterface", "ri"),
    res("networking/secGroup:SecGroup", "g1", deleteDefaultRules=True),
    res("networking/secGroup:SecGroup", "g2"),
    *(res("networking/secGroupRule:SecGroupRule", f"rule{i}") for i in range(7)),
    res("networking/addressGroup:AddressGroup", "ag"),
]


def inventory(**quotas: Quota) -> Inventory:
    return Inventory(
        project_id="p1",
        network_quotas=quotas,
        compute={},
        volume={},
        flavors={},
        external_network="public",
        vpnaas=True,
        image_service=True,
    )


def needs() -> Needs:
    return needs_of(GRAPH, (), StackSettings(plan="x.yaml"))


def test_needs_count_the_graph_and_what_neutron_adds():
    n = needs()
    assert n.network["security_group"] == 2
    assert n.network["security_group_rule"] == 7 + 2  # g2 keeps Neutron's two egress rules
    assert n.network["port"] == 1 + 1  # the router interface and the subnet's DHCP port
    assert n.network["address_group"] == 1
    assert n.names["security_group"] == frozenset({"g1", "g2"})


def test_unlimited_and_absent_quotas_pass_and_say_so():
    found = {f.resource: f for f in evaluate(needs(), inventory(network=Quota(-1, 5)))}
    assert (found["network"].status, found["network"].have) == ("ok", "unlimited")
    assert (found["address_group"].status, found["address_group"].have) == ("ok", "no quota")


def test_the_stack_s_own_objects_are_not_counted_twice():
    found = {f.resource: f for f in evaluate(needs(), inventory(security_group=Quota(3, 3, of_stack=2)))}
    assert (found["security_group"].need, found["security_group"].have) == (2, 2)
    found = {f.resource: f for f in evaluate(needs(), inventory(security_group=Quota(3, 3, of_stack=0)))}
    f = found["security_group"]
    assert (f.status, f.have) == ("blocking", 0)
    assert "--secgroups 5 p1" in f.fix  # 3 used by others + the 2 the stack needs


def test_a_project_s_first_group_brings_the_default_group_with_it():
    found = {
        f.resource: f
        for f in evaluate(needs(), inventory(security_group=Quota(10, 0), security_group_rule=Quota(100, 0)))
    }
    assert found["security_group"].need == 3 and found["security_group_rule"].need == 9 + 4
