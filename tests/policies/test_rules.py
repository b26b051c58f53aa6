"""Each rule of the pack: a passing stack, then one field changed, then the exact violation.

The resources are hand-built in the shape the offline preview records (camelCase inputs, secrets
wrapped, parents and dependencies by name) and go through the same runner as ``drctl policy``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest

from drctl.plan.model import Check, Server
from drctl.stack.policy import Violation, check_resources, policy_config

SECRET = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270"}
UNKNOWN_STRING = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
PSK = "Zq8-very-long-random-pre-shared-key-42"


@dataclass(frozen=True)
class Res:
    """Same fields as drctl.stack.preview.PreviewResource."""

    type: str
    name: str
    inputs: dict[str, Any] = field(default_factory=dict)
    parent: str | None = None
    depends_on: tuple[str, ...] = ()
    protect: bool = False


def secret(value: Any) -> dict[str, Any]:
    return {**SECRET, "value": value}


def nominal() -> list[Res]:
    """A compliant nominal-mode stack: vault, recovery space with one group, one site VPN."""
    return [
        Res("flexrecovery:index:BackupVault", "demo-vault"),
        Res(
            "openstack:objectstorage/container:Container",
            "demo-vault-backups",
            {"name": "demo-backups", "versioning": True, "metadata": {"client": "demo"}},
            parent="demo-vault",
            protect=True,
        ),
        Res("flexrecovery:index:RecoverySpace", "demo-space"),
        Res(
            "openstack:networking/secGroup:SecGroup",
            "demo-space-sg-dns01",
            {"name": "demo-dns01", "deleteDefaultRules": True},
            parent="demo-space",
        ),
        Res(
            "openstack:networking/secGroupRule:SecGroupRule",
            "demo-space-sg-dns01-tcp-22",
            {
                "direction": "ingress",
                "ethertype": "IPv4",
                "protocol": "tcp",
                "portRangeMin": 22,
                "portRangeMax": 22,
                "remoteIpPrefix": "192.168.10.0/24",
                "securityGroupId": UNKNOWN_STRING,
            },
            parent="demo-space",
            depends_on=("demo-space-sg-dns01",),
        ),
        Res(
            "openstack:networking/secGroupRule:SecGroupRule",
            "demo-space-sg-dns01-https",
            {
                "direction": "ingress",
                "ethertype": "IPv4",
                "protocol": "tcp",
                "portRangeMin": 443,
                "portRangeMax": 443,
                "remoteIpPrefix": "0.0.0.0/0",
                "securityGroupId": UNKNOWN_STRING,
            },
            parent="demo-space",
            depends_on=("demo-space-sg-dns01",),
        ),
        Res("flexrecovery:index:SiteVpn", "demo-vpn-paris"),
        Res(
            "openstack:vpnaas/ikePolicy:IkePolicy",
            "demo-vpn-paris-ike",
            {
                "ikeVersion": "v2",
                "encryptionAlgorithm": "aes-256",
                "authAlgorithm": "sha256",
                "pfs": "group14",
            },
            parent="demo-vpn-paris",
        ),
        Res(
            "openstack:vpnaas/ipSecPolicy:IpSecPolicy",
            "demo-vpn-paris-ipsec",
            {
                "encryptionAlgorithm": "aes-256",
                "authAlgorithm": "sha256",
                "pfs": "group14",
                "transformProtocol": "esp",
            },
            parent="demo-vpn-paris",
        ),
        Res(
            "openstack:vpnaas/siteConnection:SiteConnection",
            "demo-vpn-paris-conn",
            {"psk": secret(PSK), "peerAddress": "203.0.113.10", "ikepolicyId": UNKNOWN_STRING},
            parent="demo-vpn-paris",
            depends_on=("demo-vpn-paris-ike", "demo-vpn-paris-ipsec"),
        ),
    ]


def failover() -> list[Res]:
    """The nominal stack plus one recovered server, as an activation declares it."""
    return nominal() + [
        Res("flexrecovery:index:RecoveredServer", "demo-dns01", parent="demo-space"),
        Res(
            "openstack:compute/instance:Instance",
            "demo-dns01-instance",
            {
                "imageId": "img-dns01-20261120",
                "flavorName": "s1.small",
                "metadata": {"client": "demo", "restore_point": "2026-11-20T02:00:00Z"},
            },
            parent="demo-dns01",
        ),
    ]


def servers(checks: tuple[Check, ...] = (Check("port", 53),)) -> list[Server]:
    return [
        Server(
            name="dns01",
            os_family="linux",
            os_version="12",
            protection="dr",
            vcpus=1,
            ram_mb=1024,
            disks=(),
            nics=(),
            boot_group=1,
            depends_on=(),
            backup=(),
            rpo_s=86400,
            rto_s=14400,
            checks=checks,
        )
    ]


def run(
    resources: list[Res], *, fail_over: bool = False, plan_servers: list[Server] | None = None
) -> list[Violation]:
    config = policy_config(failover=fail_over, servers=servers() if plan_servers is None else plan_servers)
    return list(check_resources(resources, stack="demo", config=config).violations)


def change(
    resources: list[Res],
    name: str,
    *,
    inputs: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
    **fields: Any,
) -> list[Res]:
    """The same graph with one resource changed: inputs merged/dropped or fields replaced."""
    out = []
    hit = False
    for r in resources:
        if r.name == name:
            hit = True
            new_inputs = {k: v for k, v in {**r.inputs, **(inputs or {})}.items() if k not in drop}
            r = dataclasses.replace(r, inputs=new_inputs, **fields)
        out.append(r)
    assert hit, name
    return out


def only(violations: list[Violation]) -> Violation:
    assert len(violations) == 1, [v.line() for v in violations]
    return violations[0]


def test_compliant_stacks_pass_every_rule():
    assert run(nominal()) == []
    assert run(failover(), fail_over=True) == []


# --- backup containers ---------------------------------------------------------------------------


@pytest.mark.parametrize("acl", [".r:*", ".r:*,.rlistings", "*:*", ".r:example.com"])
def test_public_container_read_acl(acl):
    v = only(run(change(nominal(), "demo-vault-backups", inputs={"containerRead": acl})))
    assert (v.policy, v.level, v.resource) == ("backup-containers-private", "mandatory", "demo-vault-backups")
    assert "containerRead" in v.message and "remove containerRead" in v.message


def test_container_read_acl_for_a_named_project_user_passes():
    assert (
        run(change(nominal(), "demo-vault-backups", inputs={"containerRead": "demo-project:backup-reader"}))
        == []
    )


def test_world_writable_container():
    v = only(run(change(nominal(), "demo-vault-backups", inputs={"containerWrite": "*:*"})))
    assert (v.policy, v.resource) == ("backup-containers-private", "demo-vault-backups")
    assert "containerWrite '*:*'" in v.message


@pytest.mark.parametrize("edit", [{"inputs": {"versioning": False}}, {"drop": ("versioning",)}])
def test_unversioned_container(edit):
    v = only(run(change(nominal(), "demo-vault-backups", **edit)))
    assert (v.policy, v.resource) == ("backup-containers-versioned", "demo-vault-backups")
    assert "set versioning=True" in v.message


def test_legacy_versioning_counts_as_versioned():
    res = change(
        nominal(),
        "demo-vault-backups",
        drop=("versioning",),
        inputs={"versioningLegacy": {"type": "versions", "location": "demo-old"}},
    )
    assert run(res) == []


def _s3_vault_bucket(protect: bool) -> Res:
    return Res(
        "pulumi-python:dynamic:Resource",
        "demo-vault-reports",
        {"bucket": "demo-reports", "tags": {"client": "demo", "purpose": "reports"}},
        parent="demo-vault",
        protect=protect,
    )


def test_s3_vault_buckets_must_be_protected_too():
    assert run([*nominal(), _s3_vault_bucket(protect=True)]) == []
    v = only(run([*nominal(), _s3_vault_bucket(protect=False)]))
    assert (v.policy, v.resource) == ("backup-containers-protected", "demo-vault-reports")


def test_unprotected_container():
    v = only(run(change(nominal(), "demo-vault-backups", protect=False)))
    assert (v.policy, v.resource) == ("backup-containers-protected", "demo-vault-backups")
    assert "protect=True" in v.message


def test_force_destroy_container():
    v = only(run(change(nominal(), "demo-vault-backups", inputs={"forceDestroy": True})))
    assert (v.policy, v.resource) == ("backup-containers-protected", "demo-vault-backups")
    assert "remove forceDestroy" in v.message


# --- security groups -----------------------------------------------------------------------------

SSH_RULE = "demo-space-sg-dns01-tcp-22"


@pytest.mark.parametrize(
    "inputs, shown",
    [
        ({"remoteIpPrefix": "0.0.0.0/0"}, "22 (SSH)"),
        ({"remoteIpPrefix": "::/0", "ethertype": "IPv6"}, "22 (SSH)"),
        ({"portRangeMin": 3389, "portRangeMax": 3389, "remoteIpPrefix": "0.0.0.0/0"}, "3389 (RDP)"),
        (
            {"portRangeMin": 5000, "portRangeMax": 6000, "remoteIpPrefix": "0.0.0.0/0"},
            "5432 (PostgreSQL), 5985 (WinRM), 5986 (WinRM)",
        ),
        (
            {"portRangeMin": 1433, "portRangeMax": 1433, "protocol": None, "remoteIpPrefix": "0.0.0.0/0"},
            "1433 (SQL Server)",
        ),
        (
            {"portRangeMin": 3306, "portRangeMax": 3306, "protocol": "udp", "remoteIpPrefix": "0.0.0.0/0"},
            "3306 (MySQL)",
        ),
    ],
)
def test_admin_port_open_to_world(inputs, shown):
    v = only(run(change(nominal(), SSH_RULE, inputs=inputs)))
    assert (v.policy, v.level, v.resource) == ("no-admin-ports-open-to-world", "mandatory", SSH_RULE)
    assert f"opens {shown};" in v.message
    assert "restrict remoteIpPrefix" in v.message


def test_rule_without_remote_means_the_whole_internet():
    v = only(run(change(nominal(), SSH_RULE, drop=("remoteIpPrefix",))))
    assert v.policy == "no-admin-ports-open-to-world"
    assert "no remoteIpPrefix nor remoteGroupId" in v.message


def test_all_ports_open_to_world_lists_every_admin_port():
    v = only(
        run(
            change(
                nominal(),
                SSH_RULE,
                drop=("portRangeMin", "portRangeMax", "protocol"),
                inputs={"remoteIpPrefix": "0.0.0.0/0"},
            )
        )
    )
    assert "22 (SSH), 1433 (SQL Server), 3306 (MySQL), 3389 (RDP), 5432 (PostgreSQL)" in v.message


@pytest.mark.parametrize(
    "inputs",
    [
        {"remoteIpPrefix": "0.0.0.0/0", "direction": "egress"},
        {"remoteIpPrefix": "0.0.0.0/0", "protocol": "icmp", "portRangeMin": None, "portRangeMax": None},
        {"remoteIpPrefix": None, "remoteGroupId": UNKNOWN_STRING},
        {"remoteIpPrefix": "203.0.113.0/24"},
    ],
)
def test_admin_port_rules_that_are_not_open_to_world_pass(inputs):
    assert run(change(nominal(), SSH_RULE, inputs=inputs)) == []


def test_rule_on_a_group_the_stack_does_not_create():
    v = only(run(change(nominal(), SSH_RULE, depends_on=(), inputs={"securityGroupId": "3f1c-default"})))
    assert (v.policy, v.resource) == ("no-rules-on-default-security-group", SSH_RULE)
    assert "does not create" in v.message


def test_rule_on_a_stack_group_named_default():
    # Both rules of that group are reported, each by name.
    vs = run(change(nominal(), "demo-space-sg-dns01", inputs={"name": "default"}))
    assert {(x.policy, x.resource) for x in vs} == {
        ("no-rules-on-default-security-group", SSH_RULE),
        ("no-rules-on-default-security-group", "demo-space-sg-dns01-https"),
    }
    assert all("named 'default'" in x.message for x in vs)


# --- VPN -----------------------------------------------------------------------------------------

IKE, IPSEC, CONN = "demo-vpn-paris-ike", "demo-vpn-paris-ipsec", "demo-vpn-paris-conn"


@pytest.mark.parametrize(
    "name, inputs, expected",
    [
        (IKE, {"ikeVersion": "v1"}, "ikeVersion is v1; set ike_version='v2'"),
        (IKE, {"encryptionAlgorithm": "aes-128"}, "encryptionAlgorithm is aes-128;"),
        (IKE, {"authAlgorithm": "sha1"}, "authAlgorithm is sha1; SHA-1 and weaker are refused"),
        (IKE, {"pfs": "group5"}, "pfs is group5; set pfs='group14' or higher"),
        (IPSEC, {"encryptionAlgorithm": "3des"}, "encryptionAlgorithm is 3des;"),
        (IPSEC, {"authAlgorithm": "sha1"}, "authAlgorithm is sha1;"),
        (IPSEC, {"pfs": "group2"}, "pfs is group2;"),
        (IPSEC, {"transformProtocol": "ah"}, "transformProtocol is 'ah'"),
    ],
)
def test_weak_vpn_parameter(name, inputs, expected):
    v = only(run(change(nominal(), name, inputs=inputs)))
    assert (v.policy, v.level, v.resource) == ("vpn-strong-crypto", "mandatory", name)
    assert expected in v.message


def test_unset_vpn_parameters_are_the_weak_defaults_each_reported():
    vs = run(change(nominal(), IKE, drop=("ikeVersion", "encryptionAlgorithm", "authAlgorithm", "pfs")))
    assert [(v.policy, v.resource) for v in vs] == [("vpn-strong-crypto", IKE)] * 4
    assert [v.message.split(";")[0] for v in vs] == [
        "ikeVersion is unset (defaults to v1)",
        "encryptionAlgorithm is unset (defaults to aes-128)",
        "authAlgorithm is unset (defaults to sha1)",
        "pfs is unset (defaults to group5)",
    ]


@pytest.mark.parametrize(
    "inputs",
    [
        {"encryptionAlgorithm": "aes-256-gcm-16", "authAlgorithm": "sha512", "pfs": "group21"},
        {"authAlgorithm": "sha384", "pfs": "group31"},
    ],
)
def test_stronger_vpn_parameters_pass(inputs):
    assert run(change(nominal(), IKE, inputs=inputs)) == []


def test_psk_not_a_secret():
    v = only(run(change(nominal(), CONN, inputs={"psk": PSK})))
    assert (v.policy, v.resource) == ("vpn-psk-secret", CONN)
    assert "not a secret" in v.message
    assert PSK not in v.message


def test_psk_too_short():
    v = only(run(change(nominal(), CONN, inputs={"psk": secret("short-key-123")})))
    assert (v.policy, v.resource) == ("vpn-psk-secret", CONN)
    assert "psk has 13 characters; use at least 20" in v.message
    assert "short-key-123" not in v.message


def test_psk_missing():
    v = only(run(change(nominal(), CONN, drop=("psk",))))
    assert (v.policy, v.resource) == ("vpn-psk-secret", CONN)
    assert "psk is empty" in v.message


def test_psk_computed_during_preview_is_checked_for_secrecy_only():
    assert run(change(nominal(), CONN, inputs={"psk": secret(UNKNOWN_STRING)})) == []


# --- recovered servers ---------------------------------------------------------------------------

INSTANCE = "demo-dns01-instance"


def test_instance_while_failover_flag_is_false():
    v = only(run(failover(), fail_over=False))
    assert (v.policy, v.level, v.resource) == ("recovered-server-only-in-failover", "mandatory", INSTANCE)
    assert "failover flag is false" in v.message


def test_instance_outside_a_recovered_server():
    v = only(run(change(failover(), INSTANCE, parent="demo-space"), fail_over=True))
    assert (v.policy, v.resource) == ("recovered-server-only-in-failover", INSTANCE)
    assert "not part of a RecoveredServer" in v.message


def test_instance_without_image():
    v = only(run(change(failover(), INSTANCE, drop=("imageId",)), fail_over=True))
    assert (v.policy, v.resource) == ("recovered-server-only-in-failover", INSTANCE)
    assert "names no boot image" in v.message


def test_instance_booted_from_an_image_volume_passes():
    res = change(
        failover(),
        INSTANCE,
        drop=("imageId",),
        inputs={
            "blockDevices": [
                {"sourceType": "image", "uuid": "img-dns01", "destinationType": "volume", "bootIndex": 0}
            ]
        },
    )
    assert run(res, fail_over=True) == []


def test_instance_with_a_blank_data_volume():
    res = change(
        failover(),
        INSTANCE,
        drop=("imageId",),
        inputs={
            "blockDevices": [
                {"sourceType": "image", "uuid": "img-dns01", "destinationType": "volume", "bootIndex": 0},
                {"sourceType": "blank", "destinationType": "volume", "bootIndex": -1, "volumeSize": 50},
            ]
        },
    )
    v = only(run(res, fail_over=True))
    assert (v.policy, v.resource) == ("recovered-server-only-in-failover", INSTANCE)
    assert "block device 1 is not created from a restore image" in v.message


def test_instance_without_restore_point():
    v = only(run(change(failover(), INSTANCE, inputs={"metadata": {"client": "demo"}}), fail_over=True))
    assert (v.policy, v.resource) == ("recovered-server-only-in-failover", INSTANCE)
    assert "restore_point is empty" in v.message


def test_dr_server_without_checks():
    v = only(run(nominal(), plan_servers=servers(checks=())))
    assert (v.policy, v.level, v.resource) == ("dr-servers-have-checks", "mandatory", "demo")
    assert "dr server 'dns01' has no check" in v.message


def test_backup_only_server_without_checks_passes():
    plan = [dataclasses.replace(servers(checks=())[0], protection="backup-only")]
    assert run(nominal(), plan_servers=plan) == []


def test_dr_checks_read_from_a_component_when_no_config_is_given():
    res = failover()
    res = change(res, "demo-dns01", inputs={"serverClass": "dr", "checks": []})
    vs = check_resources(res, stack="demo", config={"recovered-server-only-in-failover": {"failover": True}})
    v = only(list(vs.violations))
    assert (v.policy, v.resource) == ("dr-servers-have-checks", "demo-dns01")


def test_dr_checks_not_applicable_without_any_description():
    report = check_resources(nominal(), stack="demo", config={})
    assert report.violations == ()
    assert [name for name, _ in report.not_applicable] == [
        "dr-servers-have-checks",
        "predicted-rto-within-target",
    ]


@dataclass(frozen=True)
class DeclaredRes(Res):
    additional_secret_outputs: tuple[str, ...] = ()


def test_psk_declared_secret_through_additional_secret_outputs_passes():
    """The Pulumi engine hands the analyzer secrets already unwrapped: under the real pack a PSK
    counts as secret only when the resource declares additional_secret_outputs=['psk']."""
    res = [
        DeclaredRes(
            **{**dataclasses.asdict(r), "inputs": {**r.inputs, "psk": PSK}},
            additional_secret_outputs=("psk",),
        )
        if r.name == CONN
        else r
        for r in nominal()
    ]
    assert run(res) == []


def test_psk_as_the_real_engine_shows_it_without_declaration():
    from pulumi_policy import PolicyCustomTimeouts, PolicyResourceOptions, ResourceValidationArgs

    from drctl.policies.dr_rules import vpn_psk_secret

    opts = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)
    args = ResourceValidationArgs(
        "openstack:vpnaas/siteConnection:SiteConnection",
        {"psk": PSK},
        "urn:pulumi:demo::flexible-recovery::x::conn",
        "conn",
        opts,
        None,
    )
    seen: list[str] = []
    vpn_psk_secret(args, lambda msg, urn=None: seen.append(msg))
    assert len(seen) == 1 and "not a secret" in seen[0]


# --- address groups ------------------------------------------------------------------------------

ADDRESSES = "demo-space-client-networks"


def with_address_group(addresses: list[str]) -> list[Res]:
    """The nominal stack with its SSH rule admitting an address group instead of a prefix."""
    group = Res(
        "openstack:networking/addressGroupV2:AddressGroupV2",
        ADDRESSES,
        {"name": "demo-client-networks", "addresses": addresses},
        parent="demo-space",
    )
    out = [group]
    for r in nominal():
        if r.name == SSH_RULE:
            inputs = {k: v for k, v in r.inputs.items() if k != "remoteIpPrefix"}
            r = dataclasses.replace(
                r,
                inputs={**inputs, "remoteAddressGroupId": UNKNOWN_STRING},
                depends_on=(*r.depends_on, ADDRESSES),
            )
        out.append(r)
    return out


def test_admin_port_through_an_address_group_of_the_clients_networks_passes():
    assert run(with_address_group(["192.168.10.0/24", "192.168.20.0/24"])) == []


def test_admin_port_through_an_address_group_holding_the_world_fails():
    v = only(run(with_address_group(["192.168.10.0/24", "0.0.0.0/0"])))
    assert (v.policy, v.resource) == ("no-admin-ports-open-to-world", SSH_RULE)
    assert f"ingress from address group {ADDRESSES!r}, which holds 0.0.0.0/0, opens 22 (SSH)" in v.message


def test_admin_port_through_an_address_group_the_stack_does_not_create_fails():
    resources = [r for r in with_address_group(["10.0.0.0/8"]) if r.name != ADDRESSES]
    v = only(run(resources))
    assert (v.policy, v.resource) == ("no-admin-ports-open-to-world", SSH_RULE)
    assert "an address group this stack does not create (its addresses cannot be checked)" in v.message


# --- quotas --------------------------------------------------------------------------------------


def run_with_quotas(resources: list[Res], quotas: dict[str, int] | None) -> list[Violation]:
    config = policy_config(failover=False, servers=servers(), quotas=quotas)
    return list(check_resources(resources, stack="demo", config=config).violations)


def spread(n_groups: int, rules_per_group: int) -> list[Res]:
    """The nominal stack with ``n_groups`` more groups of ``rules_per_group`` rules each."""
    out = nominal()
    for g in range(n_groups):
        name = f"demo-space-sg-role{g}"
        out.append(
            Res("openstack:networking/secGroup:SecGroup", name, {"name": f"demo-role{g}"}, "demo-space")
        )
        for i in range(rules_per_group):
            out.append(
                Res(
                    "openstack:networking/secGroupRule:SecGroupRule",
                    f"{name}-in-tcp-{1000 + i}",
                    {
                        "direction": "ingress",
                        "protocol": "tcp",
                        "portRangeMin": 1000 + i,
                        "portRangeMax": 1000 + i,
                        "remoteIpPrefix": "192.168.10.0/24",
                        "securityGroupId": UNKNOWN_STRING,
                    },
                    parent="demo-space",
                    depends_on=(name,),
                )
            )
    return out


def test_a_stack_within_neutrons_default_quotas_passes():
    # 1 + 8 groups declared + the default group = 10; 2 + 8*9 rules + 4 + 2*9 = 96 <= 100
    assert run_with_quotas(spread(8, 9), None) == []


def test_one_group_over_neutrons_default_quota_fails_naming_quota_need_limit_and_fix():
    v = only(run_with_quotas(spread(9, 1), None))
    assert (v.policy, v.level, v.resource) == ("recovery-space-within-quotas", "mandatory", "demo")
    assert v.message.startswith(
        "quota security_group: the stack needs 11 (10 groups declared + the project's 'default' group) "
        "and the project allows 10; raise the project's security_group quota to at least 11"
    )
    assert "record it in the stack's quotas.security_group" in v.message


def test_rules_count_the_default_groups_and_the_new_groups_own_rules():
    # 2 + 9*9 = 83 declared + 4 + 2*10 = 107 > 100, though 83 alone would fit
    v = only(run_with_quotas(spread(9, 9), {"security_group": 20}))
    assert v.message.startswith("quota security_group_rule: the stack needs 107 (83 rules declared + 4 of")
    assert "the project allows 100" in v.message


def test_recorded_quotas_replace_the_defaults_and_minus_one_is_unlimited():
    assert run_with_quotas(spread(30, 10), {"security_group": -1, "security_group_rule": 400}) == []
    v = only(run_with_quotas(nominal(), {"security_group": 1}))
    assert "needs 2" in v.message and "allows 1" in v.message


def test_ports_count_router_interfaces_server_ports_and_dhcp_ports():
    extra = [
        Res("openstack:networking/subnet:Subnet", "demo-space-subnet-a", {"enableDhcp": True}, "demo-space"),
        Res("openstack:networking/subnet:Subnet", "demo-space-subnet-b", {"enableDhcp": False}, "demo-space"),
        Res("openstack:networking/routerInterface:RouterInterface", "demo-space-rif-a", {}, "demo-space"),
        Res("openstack:networking/routerInterface:RouterInterface", "demo-space-rif-b", {}, "demo-space"),
        Res("openstack:networking/port:Port", "demo-srv-port-0", {}, "demo-space"),
    ]
    v = only(run_with_quotas(nominal() + extra, {"subnet": 1}))
    assert v.message.startswith("quota subnet: the stack needs 2 (subnets declared) and the project allows 1")
    vs = run_with_quotas(nominal() + extra, {"port": 3, "subnet": 2})
    assert [x.message.split(";")[0] for x in vs] == [
        "quota port: the stack needs 4 (2 router interfaces + 1 server ports + 1 DHCP ports) and the "
        "project allows 3"
    ]
