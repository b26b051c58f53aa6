"""The program under the mock runtime: what `drctl preview` shows a user, checked against the plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drctl.components.security_rules import groups_of, role_groups
from drctl.stack.config import StackConfigInvalid, load_stack
from drctl.stack.preview import SECRET_SIG_KEY, _run_program, is_secret, preview_stack, program_config

REPO_ROOT = Path(__file__).resolve().parents[2]

INSTANCE = "openstack:compute/instance:Instance"
CONTAINER = "openstack:objectstorage/container:Container"
SUBNET = "openstack:networking/subnet:Subnet"
RULE = "openstack:networking/secGroupRule:SecGroupRule"
SECGROUP = "openstack:networking/secGroup:SecGroup"
ADMIN_PORTS = {22, 3389, 5985, 5986, 1433, 3306, 5432}


@pytest.fixture(scope="module")
def cfg():
    return load_stack("demo")


@pytest.fixture(scope="module")
def nominal():
    return preview_stack("demo")


@pytest.fixture(scope="module")
def failover():
    return preview_stack("demo", failover=True)


@pytest.fixture(scope="module")
def web_only():
    return preview_stack("demo", failover=True, servers=["web01"])


def _server_of(resource_name: str) -> str:
    return resource_name.split("-")[1]  # srv-<server>-...


def test_nominal_mode_has_vault_space_vpn_and_no_instance(nominal):
    types = {r.type for r in nominal.resources}
    assert {
        "flexrecovery:index:BackupVault",
        "flexrecovery:index:RecoverySpace",
        "flexrecovery:index:SiteVpn",
        "openstack:vpnaas/siteConnection:SiteConnection",
    } <= types
    assert nominal.of_type(INSTANCE) == []
    assert not nominal.of_type("flexrecovery:index:RecoveredServer")


def test_failover_adds_one_instance_per_in_scope_server_in_plan_order(failover, cfg):
    instances = failover.of_type(INSTANCE)
    assert sorted(r.inputs["name"] for r in instances) == sorted(cfg.plan.default_scope())
    for inst in instances:
        server = cfg.plan.server(inst.inputs["name"])
        waited = {_server_of(d) for d in inst.depends_on if d.startswith("srv-")} - {server.name}
        assert waited == set(server.depends_on), server.name
        assert inst.inputs["metadata"]["client"] == "demo"
        assert inst.inputs["metadata"]["restore_point"] == "preview-restore-point"
        assert inst.inputs["imageId"] == f"preview-image-{server.name}"
        assert inst.inputs["blockDevices"][0]["uuid"] == inst.inputs["imageId"]
        port = failover.get(f"srv-{server.name}-port-0")
        assert port.inputs["fixedIps"][0]["ipAddress"] == server.nics[0].ip
        groups = groups_of(server.name, role_groups(cfg.plan))  # base first, then its roles
        assert port.inputs["securityGroupIds"] == [f"space-sg-{g}-id" for g in groups]
    assert any("preview-image-<server>" in n for n in failover.notes)


def test_partial_scope_adds_only_that_servers_resources(nominal, web_only):
    added = {r.name for r in web_only.resources} - {r.name for r in nominal.resources}
    assert added == {"srv-web01", "srv-web01-port-0", "srv-web01-instance"}
    # app01 is not restored: web01 waits for no other recovered server.
    assert not [d for d in web_only.get("srv-web01-instance").depends_on if d.startswith("srv-app01")]


def test_turning_failover_off_removes_the_servers_and_nothing_else(nominal, failover):
    on = {r.name: r for r in failover.resources}
    for r in nominal.resources:
        assert r.name in on, r.name
        assert on[r.name].inputs == r.inputs, r.name
    assert all(n.startswith("srv-") for n in set(on) - {r.name for r in nominal.resources})


def test_vault_containers_private_versioned_protected_and_untouched(nominal, failover):
    for graph in (nominal, failover):
        containers = graph.of_type(CONTAINER)
        assert sorted(c.inputs["name"] for c in containers) == ["demo-backups", "demo-reports"]
        for c in containers:
            assert c.protect and c.inputs["versioning"] is True
            assert "containerRead" not in c.inputs and "containerWrite" not in c.inputs
            assert c.inputs["metadata"]["client"] == "demo"
    assert [c.inputs for c in nominal.of_type(CONTAINER)] == [c.inputs for c in failover.of_type(CONTAINER)]


def test_recovery_subnets_have_the_plan_cidr_gateway_and_pool(nominal, cfg):
    by_cidr = {r.inputs["cidr"]: r for r in nominal.of_type(SUBNET)}
    restored = {n.subnet for s in cfg.plan.servers for n in s.nics}
    assert set(by_cidr) == {cfg.plan.subnet(ref).cidr for ref in restored}
    for ref in restored:
        sn = cfg.plan.subnet(ref)
        got = by_cidr[sn.cidr].inputs
        assert got["gatewayIp"] == sn.gateway
        assert got.get("allocationPools", []) == (
            [{"start": sn.dhcp.start, "end": sn.dhcp.end}] if sn.dhcp else []
        )


def test_rules_only_on_own_groups_and_nothing_admin_open_to_the_world(nominal, cfg):
    own = {f"{g.name}-id" for g in nominal.of_type(SECGROUP)}
    assert all(g.inputs["deleteDefaultRules"] is True for g in nominal.of_type(SECGROUP))
    (addresses,) = nominal.of_type("openstack:networking/addressGroupV2:AddressGroupV2")
    assert addresses.inputs["addresses"] == [str(sn.network) for sn in cfg.plan.subnets]
    for rule in nominal.of_type(RULE):
        assert rule.inputs["securityGroupId"] in own
        if rule.inputs.get("remoteIpPrefix") in ("0.0.0.0/0", "::/0"):
            assert rule.inputs.get("portRangeMin") not in ADMIN_PORTS, rule.name
        else:  # every other rule admits exactly the client's networks
            assert rule.inputs["remoteAddressGroupId"] == f"{addresses.name}-id", rule.name


def test_vpn_is_strong_explicit_and_its_psk_a_secret(nominal, cfg):
    ike = nominal.get("vpn-paris-ike").inputs
    assert (ike["ikeVersion"], ike["encryptionAlgorithm"], ike["authAlgorithm"], ike["pfs"]) == (
        "v2",
        "aes-256",
        "sha256",
        "group14",
    )
    conn = nominal.get("vpn-paris-connection").inputs
    assert is_secret(conn["psk"]) and conn["psk"]["value"] == cfg.psk("paris")
    assert conn["dpds"] == [{"action": "restart", "interval": 30, "timeout": 120}]
    assert conn["peerAddress"] == cfg.plan.sites[0].peer_address


def test_no_secret_reaches_the_json_output(failover, cfg):
    text = json.dumps(failover.to_json())
    assert SECRET_SIG_KEY not in text and "[secret]" in text
    for psk in cfg.psks.values():
        assert psk not in text
    assert failover.to_json(redact=False) != failover.to_json()


def test_nca_bundle_is_a_secret_stack_output(nominal, cfg):
    bundles = nominal.outputs["nca_bundles"]
    assert is_secret(bundles)
    files = bundles["value"]["paris"]
    assert {"swanctl.conf", "dnsmasq.conf"} <= set(files)
    assert "198.51.100.1" in files["swanctl.conf"]


def test_real_run_without_a_recorded_image_stops_naming_the_server(cfg):
    config, secret_keys, _ = program_config(cfg, failover=True, servers=["db01"])
    import contextvars

    program = REPO_ROOT / "stacks/__main__.py"
    config["flexible-recovery:activation"] = json.dumps(
        {"servers": ["db01"], "images": {}, "restore_point": "snap1"}
    )
    with pytest.raises(StackConfigInvalid, match="no restore image for server db01"):
        contextvars.Context().run(_run_program, "demo", program, config, secret_keys)
    config["flexible-recovery:activation"] = json.dumps({"servers": ["db01"], "images": {"db01": "img"}})
    with pytest.raises(StackConfigInvalid, match="activation.restore_point is empty while failover is on"):
        contextvars.Context().run(_run_program, "demo", program, config, secret_keys)


def test_data_disks_become_volumes_from_their_recorded_images_after_the_boot_volume():
    """A database server comes back with its data disk, not only its system disk."""
    import contextvars

    acme = load_stack("acme")
    pg = acme.plan.server("pg01")
    data_disks = [d for d in pg.disks if not d.boot]
    assert data_disks, "acme's pg01 has a data disk"
    config, secret_keys, _ = program_config(acme, failover=True, servers=["pg01"])
    program = REPO_ROOT / "stacks/__main__.py"
    activation = {"servers": ["pg01"], "images": {"pg01": "img-boot"}, "restore_point": "snap1"}
    config["flexible-recovery:activation"] = json.dumps(activation)
    with pytest.raises(
        StackConfigInvalid, match=f"no restore image for disk\\(s\\) {data_disks[0].name} of server pg01"
    ):
        contextvars.Context().run(_run_program, "acme", program, config, secret_keys)
    activation["data_images"] = {"pg01": {d.name: f"img-{d.name}" for d in data_disks}}
    config["flexible-recovery:activation"] = json.dumps(activation)
    records, _ = contextvars.Context().run(_run_program, "acme", program, config, secret_keys)
    (inst,) = [r for r in records if r.type == INSTANCE]
    devices = inst.inputs["blockDevices"]
    assert [(d["uuid"], d["bootIndex"], d["volumeSize"]) for d in devices] == (
        [("img-boot", 0, pg.boot_disk.size_gb)] + [(f"img-{d.name}", -1, d.size_gb) for d in data_disks]
    )
    assert all(d["destinationType"] == "volume" and d["deleteOnTermination"] for d in devices)
