"""`drctl preflight`: the network findings against the real Neutron (quotas shrunk in the test, no
external network, a Neutron without VPNaaS); compute, volume and flavor findings against recorded
Nova/Cinder responses at the HTTP boundary."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import yaml

from drctl.cli import main
from drctl.errors import EXIT_PREFLIGHT
from drctl.stack.cloud_inventory import run_preflight
from tests.stack.openstack_project import CLOUD, ClientProject, client_project
from tests.support.nova_cinder import ComputeVolumeAnswers, NovaCinderStub

pytestmark = pytest.mark.integration


@pytest.fixture
def stub() -> Iterator[NovaCinderStub]:
    s = NovaCinderStub()
    yield s
    s.close()


@pytest.fixture
def client(openstack, stub, tmp_path, monkeypatch) -> ClientProject:
    c = client_project(openstack, stub, tmp_path)
    for k, v in c.env().items():
        monkeypatch.setenv(k, v)
    return c


def preflight_json(client: ClientProject, capsys, *extra: str) -> tuple[int, dict]:
    code = main(["preflight", "demo", "--json", "--project-dir", str(client.project_dir), *extra])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in lines] == ["result"], lines
    return code, lines[0]


def by_resource(result: dict) -> dict[str, dict]:
    return {f["resource"]: f for f in result["findings"]}


def test_a_project_with_default_quotas_holds_the_demo_client(client, capsys):
    code, result = preflight_json(client, capsys, "--cloud", CLOUD)
    assert code == 0, result
    assert result["ok"] is True and result["blocking"] == 0
    assert result["project_id"] == client.project_id
    found = by_resource(result)
    # demo: 5 groups + the project's `default` one, 44 rules + default's 4, 10 groups allowed
    assert found["security_group"] == {
        "check": "network-quota",
        "resource": "security_group",
        "need": 6,
        "have": 10,
        "status": "ok",
        "fix": None,
    }
    assert found["security_group_rule"]["need"] == 48 and found["security_group_rule"]["have"] == 100
    assert found["cores"]["need"] == 5 and found["instances"]["need"] == 5
    assert found[f"external network {client.external_network}"]["status"] == "ok"
    assert found["VPN service (Neutron vpnaas)"]["status"] == "ok"
    assert {f["check"] for f in result["findings"]} >= {
        "network-quota",
        "compute-quota",
        "volume-quota",
        "flavor",
        "external-network",
        "vpn",
        "image-service",
    }


def test_neutron_quotas_too_small_block_with_what_to_raise(client, capsys):
    client.conn.network.update_quota(client.project_id, security_group=4, security_group_rule=30, router=0)
    code = main(["preflight", "demo", "--project-dir", str(client.project_dir)])
    out, err = capsys.readouterr()
    assert code == EXIT_PREFLIGHT
    assert "BLOCKING security_group: needs 6, has 4" in out
    assert "BLOCKING security_group_rule: needs 48, has 30" in out
    assert "BLOCKING router: needs 1, has 0" in out
    assert f"openstack quota set --secgroups 6 {client.project_id}" in out
    assert "blocking finding(s)" in err and "Traceback" not in err


def test_a_deployed_space_counts_as_the_stack_s_own_not_twice(client, capsys):
    """With the recovery space's groups already in the project, the same quota still suffices."""
    net = client.conn.network
    net.update_quota(client.project_id, security_group=6)
    for name in ("demo-app01", "demo-db01", "demo-dns01", "demo-files01", "demo-web01"):
        net.create_security_group(name=name, project_id=client.project_id)
    code, result = preflight_json(client, capsys)
    found = by_resource(result)["security_group"]
    assert (code, found["status"], found["need"], found["have"]) == (0, "ok", 5, 5)


def test_no_external_network_blocks(openstack, stub, tmp_path, monkeypatch, capsys):
    c = client_project(openstack, stub, tmp_path, external=False)
    for k, v in c.env().items():
        monkeypatch.setenv(k, v)
    code, result = preflight_json(c, capsys)
    assert code == EXIT_PREFLIGHT
    f = by_resource(result)[f"external network {c.external_network}"]
    assert (f["status"], f["have"]) == ("blocking", "missing")
    assert "openstack network list --external" in f["fix"]


def test_a_network_that_is_not_external_blocks(client, capsys):
    client.conn.network.update_network(
        client.conn.network.find_network(client.external_network), is_router_external=False
    )
    code, result = preflight_json(client, capsys)
    f = by_resource(result)[f"external network {client.external_network}"]
    assert (code, f["status"], f["have"]) == (EXIT_PREFLIGHT, "blocking", "not external")


def test_a_neutron_without_vpnaas_blocks(openstack, stub, tmp_path, monkeypatch, capsys):
    c = client_project(openstack, stub, tmp_path, without_vpnaas=True)
    for k, v in c.env().items():
        monkeypatch.setenv(k, v)
    code, result = preflight_json(c, capsys)
    assert code == EXIT_PREFLIGHT
    f = by_resource(result)["VPN service (Neutron vpnaas)"]
    assert (f["status"], f["have"]) == ("blocking", "missing")
    assert "vpnaas service plugin" in f["fix"]


# -- compute, volume, flavors: Nova and Cinder at the HTTP boundary --------------------------------


def test_compute_and_volume_quotas_too_small_block(client, stub, capsys):
    # demo: 5 servers on m1.tiny (1 vCPU, 512 MB): 5 instances, 5 cores, 2560 MB; 5 disks, 7 GB
    stub.serve(
        ComputeVolumeAnswers(
            instances=(10, 7), cores=(20, 18), ram_mb=(4096, 2048), volumes=(10, 2), gigabytes=(100, 95)
        )
    )
    code, result = preflight_json(client, capsys)
    found = by_resource(result)
    assert code == EXIT_PREFLIGHT
    assert (found["instances"]["need"], found["instances"]["have"], found["instances"]["status"]) == (
        5,
        3,
        "blocking",
    )
    assert (found["cores"]["have"], found["cores"]["status"]) == (2, "blocking")
    assert (found["ram (MB)"]["need"], found["ram (MB)"]["have"]) == (2560, 2048)
    assert found["volumes"]["status"] == "ok"
    assert (found["gigabytes"]["have"], found["gigabytes"]["status"]) == (5, "blocking")
    assert "openstack quota set --cores" in found["cores"]["fix"]
    needs = {name: f["need"] for name, f in found.items() if f["check"] == "volume-quota"}
    assert needs["volumes"] == 5 and needs["gigabytes"] == 7
    assert ("GET", "/compute/v2.1/limits") in stub.requests
    assert ("GET", "/volume/v3/limits") in stub.requests


def test_a_missing_or_smaller_flavor_blocks_naming_the_server(client, stub, capsys):
    stub.serve(ComputeVolumeAnswers(flavors={"m1.small": (1, 2048)}))
    code, result = preflight_json(client, capsys)
    flavors = [f for f in result["findings"] if f["check"] == "flavor"]
    assert code == EXIT_PREFLIGHT
    assert {f["resource"] for f in flavors} == {
        f"flavor m1.tiny (server {s})" for s in ("app01", "db01", "dns01", "files01", "web01")
    }
    assert all(f["status"] == "blocking" and f["have"] == "missing" for f in flavors)
    assert "m1.small" in flavors[0]["fix"]

    stub.serve(ComputeVolumeAnswers(flavors={"m1.tiny": (1, 256)}))
    code, result = preflight_json(client, capsys)
    smaller = {f["resource"]: f for f in result["findings"] if f["check"] == "flavor"}
    # db01 needs 512 MB; the others need 256 MB, which fits, but flavor_map says 512 MB: a warning
    db01 = smaller.pop("flavor m1.tiny (server db01)")
    assert (code, db01["need"], db01["have"], db01["status"]) == (
        EXIT_PREFLIGHT,
        "1 vCPU, 512 MB",
        "1 vCPU, 256 MB",
        "blocking",
    )
    assert {f["status"] for f in smaller.values()} == {"warning"}
    assert "flavor_map says m1.tiny has 1 vCPU, 512 MB" in smaller["flavor m1.tiny (server web01)"]["fix"]
    assert by_resource(result)["ram (MB)"]["need"] == 5 * 256  # the cloud's size, not flavor_map's


def test_a_partial_scope_needs_only_its_servers(client, stub):
    stub.serve(ComputeVolumeAnswers(instances=(10, 8)))
    report = run_preflight("demo", project_dir=client.project_dir, servers=["web01", "db01"])
    found = {f.resource: f for f in report.findings}
    assert (found["instances"].need, found["instances"].status) == (2, "ok")
    assert report.ok


def test_an_unreachable_network_api_is_exit_14_naming_the_project(client, tmp_path, monkeypatch, capsys):
    doc = yaml.safe_load(client.clouds_yaml.read_text())
    doc["clouds"][CLOUD]["network_endpoint_override"] = "http://127.0.0.1:9/"  # nothing listens there
    broken = tmp_path / "broken-clouds.yaml"
    broken.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(broken))
    code = main(["preflight", "demo", "--project-dir", str(client.project_dir)])
    err = capsys.readouterr().err
    assert code == 14
    assert f"project {client.project_id}" in err and "Traceback" not in err


def test_a_cloud_without_compute_or_volume_service_blocks_and_still_checks_the_network(
    openstack, tmp_path, monkeypatch, capsys
):
    c = client_project(openstack, NovaCinderStub(), tmp_path)
    doc = yaml.safe_load(c.clouds_yaml.read_text())
    del (
        doc["clouds"][CLOUD]["compute_endpoint_override"],
        doc["clouds"][CLOUD]["block_storage_endpoint_override"],
    )
    c.clouds_yaml.write_text(yaml.safe_dump(doc))
    for k, v in c.env().items():
        monkeypatch.setenv(k, v)
    code, result = preflight_json(c, capsys)
    found = by_resource(result)
    assert code == EXIT_PREFLIGHT
    assert found["compute service"]["status"] == found["volume service"]["status"] == "blocking"
    assert "not in the cloud's catalog" in found["compute service"]["have"]
    assert not any(f["check"] == "flavor" for f in result["findings"])
    assert found["security_group"]["status"] == "ok"


def test_an_unknown_cloud_name_is_exit_14_naming_it(client, capsys):
    code = main(["preflight", "demo", "--cloud", "no-such-cloud", "--project-dir", str(client.project_dir)])
    err = capsys.readouterr().err
    assert code == 14
    assert "no-such-cloud" in err and "clouds.yaml" in err and "Traceback" not in err
