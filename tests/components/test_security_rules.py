"""Pure helpers of the components: security rules, subnets, tunnel, vault, recovery order."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from drctl.components.backup_vault import BackupVaultArgs, vault_containers
from drctl.components.recovered_server import recovery_order, restore_image, upstream_in_scope
from drctl.components.recovery_space import placement_groups, subnet_spec
from drctl.components.security_rules import (
    CLIENT_NETWORKS,
    WORLD,
    RuleSpec,
    client_prefixes,
    groups_of,
    role_groups,
    server_access,
)
from drctl.components.site_vpn import tunnel_spec
from drctl.plan.model import Check
from drctl.stack.config import StackConfigInvalid, load_stack

ADMIN_PORTS = {22, 3389, 5985, 5986, 1433, 3306, 5432}


@pytest.fixture(scope="module")
def demo():
    return load_stack("demo").plan


@pytest.fixture(scope="module")
def acme():
    return load_stack("acme").plan


def _ports(rules, remote=None):
    return {
        (r.protocol, r.port_min)
        for r in rules
        if r.direction == "ingress" and (remote is None or r.remote == remote)
    }


def test_rules_come_from_checks_and_roles_and_only_from_client_networks(demo):
    dns = server_access(demo.server("dns01"), demo)  # roles dns, ssh; check port 53
    assert _ports(dns) == {("tcp", 53), ("udp", 53), ("tcp", 22), ("icmp", None)}
    app = server_access(demo.server("app01"), demo)  # http check on :8080
    assert ("tcp", 8080) in _ports(app)
    db = server_access(demo.server("db01"), demo)  # sql on Linux with a 5432 check: not 3306
    assert ("tcp", 5432) in _ports(db) and ("tcp", 3306) not in _ports(db)
    for server in demo.servers:
        rules = server_access(server, demo)
        assert {r.remote for r in rules} == {CLIENT_NETWORKS}
        # egress only to the client's networks, never to the world
        assert [r for r in rules if r.direction == "egress"] == [
            RuleSpec("egress", None, None, None, CLIENT_NETWORKS)
        ]
    assert client_prefixes(demo) == tuple(str(sn.network) for sn in demo.subnets)


def test_a_server_gets_the_base_group_and_one_group_per_role_shared_with_its_peers(demo, acme):
    groups = role_groups(demo)
    assert groups_of("dns01", groups) == ("base", "dns", "ssh")
    assert groups_of("app01", groups) == ("base", "ssh", "app")  # app carries its checked 8080
    ssh = next(g for g in groups if g.key == "ssh")
    assert ssh.servers == tuple(s.name for s in demo.servers)  # one group, every ssh server
    acme_groups = role_groups(acme)
    # ad and dns are held by the same two domain controllers: one group, not two
    assert groups_of("dc01", acme_groups) == ("base", "ad-dns", "rdp")
    assert [g.key for g in acme_groups].count("ad-dns") == 1
    # a server without role nor check port has the base group only
    assert groups_of("badge01", acme_groups) == ("base",)


def test_acme_fits_neutrons_default_group_and_rule_quotas(acme):
    groups = role_groups(acme)
    rules = sum(len(g.rules) for g in groups)
    assert len(groups) + 1 <= 10  # + the project's default group
    assert rules + 4 + 2 * len(groups) <= 100  # + the default group's rules and the new groups' own


def test_public_web_opens_only_80_and_443_to_the_world(demo):
    web = demo.server("web01")
    public = dataclasses.replace(web, roles=(*web.roles, "public-web"))
    plan = dataclasses.replace(demo, servers=tuple(public if s.name == "web01" else s for s in demo.servers))
    world = {(r.protocol, r.port_min, r.port_max) for r in server_access(public, plan) if r.remote == WORLD}
    assert world == {("tcp", 80, 80), ("tcp", 443, 443)}
    assert not [r for r in server_access(web, demo) if r.remote == WORLD]


def test_a_check_port_never_rides_a_world_facing_role(demo):
    """A public-web-only server's checked admin port stays on the client's networks."""
    web = demo.server("web01")
    public = dataclasses.replace(
        web, roles=("public-web",), checks=(*web.checks, Check("port", 22), Check("port", 8081))
    )
    plan = dataclasses.replace(demo, servers=tuple(public if s.name == "web01" else s for s in demo.servers))
    rules = server_access(public, plan)
    assert {(r.protocol, r.port_min) for r in rules if r.remote == WORLD} == {("tcp", 80), ("tcp", 443)}
    assert {("tcp", 22), ("tcp", 8081)} <= _ports(rules, CLIENT_NETWORKS)
    assert "services" in groups_of("web01", role_groups(plan))


def test_nothing_administrative_faces_the_world_in_any_shipped_plan(demo, acme):
    for plan in (demo, acme):
        for group in role_groups(plan):
            for r in group.rules:
                if r.remote == WORLD:
                    assert r.port_min not in ADMIN_PORTS, (group.key, r)


def test_windows_sql_and_domain_controllers(acme):
    sql = acme.server("sql01")
    assert ("tcp", 1433) in _ports(server_access(sql, acme))
    dc = acme.server("dc01")
    assert {("tcp", 88), ("udp", 88), ("tcp", 389), ("tcp", 3389)} <= _ports(server_access(dc, acme))


def test_recovery_subnets_copy_the_plan(demo, acme):
    for plan in (demo, acme):
        nic_subnets = {n.subnet for s in plan.servers for n in s.nics}
        assert {sn.ref for sn in plan.recovery_subnets()} == nic_subnets
        for sn in plan.recovery_subnets():
            spec = subnet_spec(sn)
            assert spec.cidr == sn.cidr and spec.gateway_ip == sn.gateway
            assert spec.allocation_pools == (((sn.dhcp.start, sn.dhcp.end),) if sn.dhcp else ())


def test_tunnel_peer_is_the_sites_user_lans_with_the_plan_algorithms(demo):
    site = demo.sites[0]
    spec = tunnel_spec(demo, site)
    assert spec.peer_cidrs == tuple(sn.cidr for sn in demo.user_subnets(site))
    assert spec.peer_cidrs and not set(spec.peer_cidrs) & {sn.cidr for sn in demo.recovery_subnets()}
    assert (spec.ike_version, spec.encryption, spec.integrity, spec.pfs) == (
        "v2",
        "aes-256",
        "sha256",
        "group14",
    )


def test_a_site_whose_only_dhcp_subnet_holds_servers_is_refused(demo):
    site = demo.sites[0]
    lan = next(sn for sn in site.subnets if sn.ref in {r.ref for r in demo.recovery_subnets()})
    mixed = dataclasses.replace(
        site, subnets=(dataclasses.replace(lan, dhcp=site.subnets[-1].dhcp or lan.dhcp),)
    )
    plan = dataclasses.replace(demo, sites=(mixed,))
    with pytest.raises(StackConfigInvalid, match="sites.paris: no user LAN"):
        tunnel_spec(plan, mixed)


def test_vault_containers_are_named_and_labelled_per_client():
    specs = vault_containers(BackupVaultArgs(client_id="acme", client_name="ACME"))
    assert [(s.role, s.name) for s in specs] == [("backups", "acme-backups"), ("reports", "acme-reports")]
    assert all(s.metadata["client"] == "acme" and s.metadata["purpose"] == s.role for s in specs)


def test_upstreams_follow_the_plan_through_servers_left_out(demo):
    assert upstream_in_scope(demo, ("dns01", "db01", "app01", "web01"))["app01"] == ("dns01", "db01")
    # db01 left out: app01 still waits for dns01, which db01 waited for.
    assert upstream_in_scope(demo, ("dns01", "app01", "web01"))["app01"] == ("dns01",)
    assert upstream_in_scope(demo, ("web01",)) == {"web01": ()}
    order = recovery_order(demo, demo.default_scope())
    for name in order:
        for up in demo.server(name).depends_on:
            assert order.index(up) < order.index(name)


def test_placement_groups_and_missing_image(acme):
    assert placement_groups(acme)["domain-controllers"] == ("dc01", "dc02")
    with pytest.raises(StackConfigInvalid, match="no restore image for server dc01; restore it first"):
        restore_image("dc01", {"dc02": "img"})


def test_acme_user_lans_do_not_overlap_restored_subnets(acme):
    restored = [ipaddress.ip_network(sn.cidr) for sn in acme.recovery_subnets()]
    for site in acme.sites:
        for sn in acme.user_subnets(site):
            assert not any(ipaddress.ip_network(sn.cidr).overlaps(r) for r in restored)
