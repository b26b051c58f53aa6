"""The shipped plans hold what the service asks of them, read through the model others build on."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from drctl.plan.load import SCHEMA_PATH, load_plan
from drctl.plan.model import Plan

ROOT = Path(__file__).resolve().parents[2]


def depth(plan: Plan) -> int:
    """Longest chain of servers along depends_on (a server alone is 1)."""
    memo: dict[str, int] = {}

    def d(name: str) -> int:
        if name not in memo:
            memo[name] = 1 + max((d(x) for x in plan.server(name).depends_on), default=0)
        return memo[name]

    return max(d(s.name) for s in plan.servers)


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_demo_is_five_small_linux_servers_at_stable_addresses() -> None:
    plan = load_plan(ROOT / "recovery_plans" / "demo.yaml")
    assert plan.client.id == "demo" and plan.client.name == "Demo SARL"
    assert {s.name: s.nics[0].ip for s in plan.servers} == {
        "dns01": "192.168.10.10",
        "db01": "192.168.10.20",
        "app01": "192.168.10.30",
        "files01": "192.168.10.40",
        "web01": "192.168.10.50",
    }
    for s in plan.servers:
        assert s.os_family == "linux" and s.vcpus == 1 and 256 <= s.ram_mb <= 512
        assert [d.boot for d in s.disks] == [True] and 1 <= s.boot_disk.size_gb <= 2
    assert {s.name: s.protection for s in plan.servers} == {
        "dns01": "dr",
        "db01": "dr",
        "app01": "dr",
        "files01": "backup-tested",
        "web01": "dr",
    }
    assert plan.server("web01").depends_on == ("app01",)
    assert set(plan.server("app01").depends_on) == {"db01", "dns01"}
    assert plan.server("db01").depends_on == ("dns01",)
    assert depth(plan) == 4  # dns01 -> db01 -> app01 -> web01
    # web01's page must carry what app01 reads from db01: the check crosses servers.
    web_http = [c.spec for c in plan.server("web01").checks if c.kind == "http"]
    app_http = [c.spec for c in plan.server("app01").checks if c.kind == "http"]
    assert web_http[0]["contains"] == app_http[0]["contains"]
    assert any(c.can_activate for c in plan.contacts)
    assert plan.default_scope() == ("dns01", "db01", "app01", "files01", "web01")


def test_acme_covers_the_larger_client_case() -> None:
    plan = load_plan(ROOT / "recovery_plans" / "acme.yaml")
    assert len(plan.servers) >= 12 and len(plan.sites) == 3
    assert {s.os_family for s in plan.servers} >= {"windows", "linux"}
    assert {s.protection for s in plan.servers} == {"dr", "backup-tested", "backup-only"}
    assert depth(plan) >= 3
    peers = [site.peer_address for site in plan.sites]
    assert all(p.startswith(("198.51.100.", "203.0.113.", "192.0.2.")) for p in peers)
    # SQL Server with the service description's schedule: daily incremental, hourly
    # differential, logs every 15 minutes -> RPO 15m.
    sql = plan.server("sql01")
    assert sql.os_family == "windows"
    steps = {b.type: b.every_s for b in sql.backup}
    assert steps["incremental"] == 86400 and steps["differential"] == 3600 and steps["log"] == 900
    assert sql.rpo_s == 900
    # The two domain controllers never share a hypervisor.
    assert [s.name for s in plan.servers if s.anti_affinity == "domain-controllers"] == ["dc01", "dc02"]
    # Lille's override is parsed into the model and still strong.
    lille = next(s for s in plan.sites if s.name == "lille").vpn
    assert (lille.ike_version, lille.encryption, lille.integrity, lille.pfs) == (
        "v2",
        "aes-256",
        "sha384",
        "group19",
    )
    assert (lille.ike_lifetime_s, lille.ipsec_lifetime_s) == (8 * 3600, 3600)
    lyon = next(s for s in plan.sites if s.name == "lyon").vpn
    assert lyon.pfs == "group14" and lyon.encryption == "aes-256"
    # A non-critical check stays non-critical in the model (a failure there is a warning).
    agent = [c for c in sql.checks if c.spec == "SQLSERVERAGENT"]
    assert len(agent) == 1 and agent[0].critical is False
    assert plan.server("dc01").roles == ("ad", "dns", "rdp")
