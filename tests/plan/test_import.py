"""``drctl plan import``: openstacksdk runs for real against a local HTTP stand-in of the protected
cloud (keystone, compute, network, block storage on 127.0.0.1) serving responses in the APIs'
own JSON (tests/plan/data/openstack/); the draft is checked as a user reads it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from drctl.cli import main
from drctl.plan.load import check_document
from tests.activation.openstack_stub import OpenStackStub

DATA = Path(__file__).parent / "data" / "openstack"


def _recorded(name: str) -> dict:
    return json.loads((DATA / name).read_text())


@pytest.fixture
def cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenStackStub]:
    """The protected site's cloud, named ``prod`` in a clouds.yaml of its own."""
    stub = OpenStackStub()
    stub.services.update({"network": "/network", "block-storage": "/volume/v3/p"})
    stub.serve_auth()
    stub.routes[("GET", "/network")] = (
        200,
        {
            "versions": [
                {
                    "id": "v2.0",
                    "status": "CURRENT",
                    "links": [{"rel": "self", "href": f"{stub.url}/network/v2.0/"}],
                }
            ]
        },
        {},
    )
    stub.routes[("GET", "/volume")] = (
        200,
        {
            "versions": [
                {
                    "id": "v3.0",
                    "status": "CURRENT",
                    "version": "3.70",
                    "min_version": "3.0",
                    "links": [{"rel": "self", "href": f"{stub.url}/volume/v3/"}],
                }
            ]
        },
        {},
    )
    for prefix, name in (
        ("/compute/v2.1/servers/detail", "servers_detail.json"),
        ("/volume/v3/p/volumes/detail", "volumes_detail.json"),
        ("/network/v2.0/ports", "ports.json"),
        ("/network/v2.0/networks", "networks.json"),
        ("/network/v2.0/subnets", "subnets.json"),
    ):
        stub.routes[("GET", prefix)] = (200, _recorded(name), {})
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(
        yaml.safe_dump(
            {
                "clouds": {
                    "prod": {
                        "auth": {
                            "auth_url": f"{stub.url}/v3",
                            "username": "operator",
                            "password": "stub-password",
                            "project_name": "demo",
                            "user_domain_name": "Default",
                            "project_domain_name": "Default",
                        },
                        "region_name": "RegionOne",
                    }
                }
            }
        )
    )
    for var in ("OS_CLOUD", "OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    yield stub
    stub.close()


def test_the_draft_holds_what_the_cloud_shows_and_todos_for_the_rest(cloud, tmp_path, capsys) -> None:
    out = tmp_path / "draft.yaml"
    assert main(["plan", "import", "--cloud", "prod", "--site", "Lyon DC", "--out", str(out)]) == 0
    assert "drafted 2 servers" in capsys.readouterr().err
    doc = yaml.safe_load(out.read_text())
    site = doc["sites"][0]
    assert site["name"] == "lyon-dc"
    assert site["subnets"] == [{"name": "prod-lan-v4", "cidr": "10.20.0.0/24", "gateway": "10.20.0.1"}]
    db, web = doc["servers"]
    assert db["name"] == "db-01" and web["name"] == "web-front"
    assert db["flavor"] == {"vcpus": 2, "ram_mb": 8192}
    # booted from its volume: that volume is the boot disk, the other one a data disk
    assert db["disks"] == [
        {"name": "system", "size_gb": 40, "boot": True},
        {"name": "pg-data", "size_gb": 200},
    ]
    assert web["disks"] == [{"name": "system", "size_gb": 20, "boot": True}]  # the flavor's root disk
    assert db["nics"] == [{"subnet": "lyon-dc/prod-lan-v4", "ip": "10.20.0.21"}]  # IPv6 left out
    assert web["nics"] == [{"subnet": "lyon-dc/prod-lan-v4", "ip": "10.20.0.50"}]
    # every server's class, RPO/RTO, dependencies and checks: TODOs that validate refuses
    problems = {p.where: p.message for p in check_document(doc, "draft.yaml")}
    for i in (0, 1):
        for field in ("class", "rpo", "rto", "boot.depends_on", "checks", "os.family"):
            assert problems[f"servers[{i}].{field}"].startswith("still a TODO"), field
    assert problems["sites[0].peer_address"].startswith("still a TODO")
    # only TODOs: what was imported is a valid plan shape
    assert all(m.startswith("still a TODO") for m in problems.values()), problems
    assert ("GET", "/compute/v2.1/servers/detail") in cloud.requests


def test_the_draft_goes_to_stdout_and_a_new_file_only(cloud, tmp_path, capsys) -> None:
    assert main(["plan", "import", "--cloud", "prod"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# Plan drafted by `drctl plan import --cloud prod`")
    assert yaml.safe_load(text)["sites"][0]["name"] == "prod"
    existing = tmp_path / "plan.yaml"
    existing.write_text("mine\n")
    assert main(["plan", "import", "--cloud", "prod", "--out", str(existing)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert existing.read_text() == "mine\n"


def test_an_unknown_cloud_names_clouds_yaml(cloud, capsys) -> None:
    assert main(["plan", "import", "--cloud", "staging"]) == 1
    err = capsys.readouterr().err
    assert "--cloud staging: no such cloud in clouds.yaml" in err and "Traceback" not in err


def test_refused_credentials_are_exit_14_naming_the_cloud(cloud, capsys) -> None:
    cloud.routes[("POST", "/v3/auth/tokens")] = (401, {"error": {"code": 401, "message": "bad password"}}, {})
    assert main(["plan", "import", "--cloud", "prod"]) == 14
    err = capsys.readouterr().err
    assert "cloud prod" in err and "credentials" in err and "stub-password" not in err


def test_an_unreachable_cloud_is_exit_14(cloud, capsys) -> None:
    cloud.close()
    assert main(["plan", "import", "--cloud", "prod"]) == 14
    assert "cannot reach the OpenStack API" in capsys.readouterr().err


def test_project_picks_the_project_the_token_is_scoped_to(cloud, capsys) -> None:
    assert main(["plan", "import", "--cloud", "prod", "--project", "erp-prod"]) == 0
    auth = [json.loads(b) for m, p, b in cloud.bodies if (m, p) == ("POST", "/v3/auth/tokens")]
    assert auth[-1]["auth"]["scope"]["project"]["name"] == "erp-prod"
