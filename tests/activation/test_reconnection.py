"""The drill's network and user reconnection: drctl.activation.reconnection.check_sites with the
demo stack's real config and PSK, the real NCA lab (strongSwan, dnsmasq) attached to a namespace
standing in for the sandbox: a bridge holding paris/lan's gateway 192.168.10.1/24, and a "guest"
namespace at app01's production address 192.168.10.30 serving its page on 8080.

The lab tests need root, strongswan-charon, strongswan-swanctl, libcharon-extra-plugins,
dnsmasq-base and iproute2: they FAIL without them unless DRCTL_ALLOW_SKIP=1.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from drctl.activation.reconnection import check_sites, choose_target, describe_probe, sites_with_users
from drctl.nca.labrun import PREFIX
from drctl.netns import list_namespaces
from drctl.plan.model import plan_from_dict
from drctl.processes import run
from drctl.runs.model import RunSummary
from drctl.stack.config import load_stack
from tests.runs.fixtures import demo_summary
from tests.support.sandbox_standin import need_lab, sandbox_standin

ROOT = Path(__file__).resolve().parents[2]
PAGE = "catalogue from db01"  # what app01's http check in recovery_plans/demo.yaml expects
LAB_STEPS = [
    "bundle-check",
    "namespaces",
    "cloud-endpoint",
    "nca-start",
    "tunnel",
    "pfs-rekey",
    "dhcp",
    "dns",
    "icmp",
    "tcp",
    "teardown",
]
ALL_DEMO = {"dns01", "db01", "app01", "files01", "web01"}


def lab_namespaces() -> set[str]:
    return {ns for ns in list_namespaces() if ns.startswith(PREFIX)}


# --- end to end, real lab -----------------------------------------------------------------------


@pytest.mark.integration
def test_drill_reconnects_paris_then_reports_a_wrong_page_as_failed(tmp_path: Path) -> None:
    need_lab()
    cfg = load_stack("demo")
    before = lab_namespaces()
    with sandbox_standin(tmp_path, f"<h1>Demo catalogue</h1><p>{PAGE}</p>") as (sandbox, index):
        links = run(["ip", "-n", sandbox, "-o", "link"], timeout=30).stdout.count("\n")
        started = time.monotonic()
        result = check_sites(cfg, sandbox, ALL_DEMO)
        took = time.monotonic() - started

        assert [r.site for r in result] == ["paris"]
        paris = result[0]
        assert paris.status == "ok", [s.to_dict() for s in paris.steps]
        assert (paris.target, paris.target_ip) == ("app01", "192.168.10.30")
        assert paris.probe == f"app01: GET http://192.168.10.30:8080/ containing '{PAGE}'"
        assert [s.step for s in paris.steps] == LAB_STEPS and all(s.ok for s in paris.steps)
        detail = {s.step: s.detail for s in paris.steps}
        # The demo stack declares aes-256 / sha256 / group14 for paris: negotiated exactly that.
        assert "AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048 on both sides" in detail["tunnel"]
        assert "192.168.20.0/24 === 192.168.10.0/24" in detail["tunnel"]
        assert "in 192.168.20.100-192.168.20.199, router 192.168.20.1, DNS 192.168.20.1" in detail["dhcp"]
        assert detail["dns"].startswith("app01.demo.lan -> 192.168.10.30")
        assert "echo replies from 192.168.10.30" in detail["icmp"]
        assert detail["tcp"] == f"GET http://192.168.10.30:8080/ -> 200, page contains '{PAGE}'"
        assert 0 < paris.seconds <= took + 0.5
        # The sandbox is left as found; the lab's own namespaces are gone.
        assert run(["ip", "-n", sandbox, "-o", "link"], timeout=30).stdout.count("\n") == links
        assert lab_namespaces() == before

        summary = replace(demo_summary(), reconnection=result)
        again = RunSummary.from_json(summary.to_json())
        assert again.reconnection == result and again.reconnection_ok
        assert cfg.psk("paris") not in summary.to_json()

        # The recovered app serves something else: the reconnection fails at the service step,
        # every earlier step still proven, and the run is failed.
        index.write_text("<h1>Maintenance</h1>\n")
        failed = check_sites(cfg, sandbox, ALL_DEMO)[0]
        assert failed.status == "failed"
        assert [s.step for s in failed.steps if not s.ok] == ["tcp"]
        assert [s.step for s in failed.steps] == LAB_STEPS
        assert (
            failed.reason
            == f"step 'tcp' failed: GET http://192.168.10.30:8080/: the page does not contain '{PAGE}'"
        )
        summary = replace(
            demo_summary(servers=tuple(replace(s, status="ok") for s in demo_summary().servers)),
            reconnection=(failed,),
        )
        assert summary.counts()["failed"] == 0 and not summary.reconnection_ok and summary.outcome == "failed"
        assert lab_namespaces() == before
    assert lab_namespaces() == before


# --- no lab run ---------------------------------------------------------------------------------


def test_no_server_available_skips_the_site_with_the_reason() -> None:
    before = lab_namespaces()
    result = check_sites(load_stack("demo"), "drtest-never-created", set())
    assert len(result) == 1
    r = result[0]
    assert (r.site, r.status, r.steps, r.target) == ("paris", "skipped", (), None)
    assert r.reason.startswith("no recovered server is available to reach")
    summary = replace(demo_summary(), reconnection=result)
    assert summary.reconnection_ok  # nothing was proven wrong; the servers' own failure fails the run
    assert summary.reconnection_counts() == {"ok": 0, "failed": 0, "skipped": 1}
    assert lab_namespaces() == before


def test_a_missing_psk_fails_the_site_naming_the_secret_to_set() -> None:
    cfg = replace(load_stack("demo"), psks={})
    before = lab_namespaces()
    r = check_sites(cfg, "drtest-never-created", ALL_DEMO)[0]
    assert r.status == "failed" and r.target == "app01"
    assert [(s.step, s.ok) for s in r.steps] == [("setup", False)]
    assert "vpn_psks has no key for site paris" in r.reason
    assert "drctl stack set-secret demo vpn_psks.paris" in r.reason
    assert lab_namespaces() == before


@pytest.mark.integration
def test_a_namespace_without_the_recovery_gateways_fails_at_the_namespaces_step() -> None:
    need_lab()
    bare = f"drtest-{os.getpid()}-rbare"
    run(["ip", "netns", "add", bare], timeout=30)
    try:
        before = lab_namespaces()
        r = check_sites(load_stack("demo"), bare, ALL_DEMO)[0]
        assert r.status == "failed"
        assert [s.step for s in r.steps] == ["bundle-check", "namespaces", "teardown"]
        assert "missing paris/lan gateway 192.168.10.1" in r.reason
        assert lab_namespaces() == before and bare in list_namespaces()
    finally:
        run(["ip", "netns", "del", bare], check=False, timeout=30)


def demo_plan(edit=None):
    doc = yaml.safe_load((ROOT / "recovery_plans" / "demo.yaml").read_text())
    if edit:
        doc = copy.deepcopy(doc)
        edit(doc)
    return plan_from_dict(doc)


@pytest.mark.parametrize(
    ("available", "expected"),
    [
        # app01's http check is on its own address and expects 200 with the catalogue text.
        (ALL_DEMO, f"app01: GET http://192.168.10.30:8080/ containing '{PAGE}'"),
        # app01 down: web01's page (which app01 builds) is the next http check.
        ({"dns01", "db01", "files01", "web01"}, f"web01: GET http://192.168.10.50:80/ containing '{PAGE}'"),
        # no http check left: the first port check in plan order (dns01's port 53).
        ({"dns01", "files01"}, "dns01: TCP 192.168.10.10:53"),
    ],
)
def test_target_prefers_an_http_page_then_a_port(available: set[str], expected: str) -> None:
    plan = demo_plan()
    assert describe_probe(choose_target(plan, plan.sites[0], available)) == expected


def test_target_without_checks_is_reached_by_name_and_icmp_only() -> None:
    def no_checks(doc):
        for s in doc["servers"]:
            s["checks"] = []

    plan = demo_plan(no_checks)
    t = choose_target(plan, plan.sites[0], {"db01"})
    assert (t.server, t.ip, t.port) == ("db01", "192.168.10.20", None)
    assert "ICMP only" in describe_probe(t)


def test_a_site_without_a_users_lan_is_not_tested() -> None:
    def add_dc_site(doc):
        doc["sites"].append(
            {
                "name": "dc2",
                "peer_address": "198.51.100.77",
                "dns_domain": "demo.lan",
                "subnets": [{"name": "servers", "cidr": "192.168.30.0/24", "gateway": "192.168.30.1"}],
            }
        )

    plan = demo_plan(add_dc_site)
    assert [s.name for s in plan.sites] == ["paris", "dc2"]
    assert [s.name for s in sites_with_users(plan)] == ["paris"]


def test_missing_lab_tools_fail_the_site_with_the_packages_to_install(monkeypatch, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("as non-root the lab refuses earlier (root needed), covered by the same path")
    monkeypatch.setenv("PATH", str(tmp_path))  # swanctl, dnsmasq and ip are nowhere to be found
    r = check_sites(load_stack("demo"), "drtest-never-created", ALL_DEMO)[0]
    assert r.status == "failed"
    assert [(s.step, s.ok) for s in r.steps] == [("setup", False)]  # refused before any namespace
    assert "strongswan-swanctl dnsmasq-base iproute2" in r.reason and "apt-get install" in r.reason
