"""The site router's BGP configuration for MPLS BVPN reconnection (service description 10.2):
rendered from the plan, checked by FRR's own parser, refused at render time when it cannot work."""
from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from drctl.nca import render_bundle
from drctl.plan_checks import load_plan
from drctl.site_bgp import BgpRenderError, frr_parse_errors

REPO = Path(__file__).resolve().parents[1]
ACME = REPO / "recovery_plans" / "acme.yaml"
PSK = "a-long-enough-test-psk-0123456789"


def _vtysh() -> str:
    path = shutil.which("vtysh")
    if path is None:
        reason = "vtysh (Debian package frr) is missing: apt-get install --no-install-recommends frr"
        if os.environ.get("DRCTL_ALLOW_SKIP") == "1":
            pytest.skip(reason)
        pytest.fail(reason, pytrace=False)
    return path


def _frr_errors(text: str) -> list[str]:
    _vtysh()
    errors = frr_parse_errors(text)
    assert errors is not None
    return errors


def _plan_with(tmp_path: Path, edit) -> object:
    doc = yaml.safe_load(ACME.read_text())
    edit(doc["sites"][0]["mpls"])
    path = tmp_path / "acme.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_plan(path)


def test_rendered_config_passes_frrs_parser_and_a_broken_one_does_not(tmp_path):
    frr = render_bundle(load_plan(ACME), "lyon", PSK, "203.0.113.99")["frr.conf"]
    assert _frr_errors(frr) == []
    # The parser really parses: a typo, and an AS number FRR refuses (reported with exit status 0).
    assert any("Unknown command" in e for e in _frr_errors(frr.replace(" weight 200", " weight heavy")))
    assert any("router bgp 0" in e for e in _frr_errors(frr.replace("router bgp 65010", "router bgp 0")))


def test_recovery_routes_preferred_nominal_then_backup_then_vpn(tmp_path):
    plan = load_plan(ACME)
    frr = render_bundle(plan, "lyon", PSK, "203.0.113.99")["frr.conf"]
    weight = dict(re.findall(r"neighbor (\S+) weight (\d+)", frr))
    in_map = dict(re.findall(r"neighbor (\S+) route-map (\S+) in", frr))
    local_pref = dict(re.findall(r"route-map (\S+) permit 10\n match ip address prefix-list DR-RECOVERY\n"
                                 r" set local-preference (\d+)", frr))
    mpls = plan.sites[0].mpls
    order = [mpls.nominal.neighbor, mpls.backup.neighbor, mpls.vpn.neighbor]
    assert [int(weight[n]) for n in order] == [300, 200, 100]
    assert [int(local_pref[in_map[n]]) for n in order] == [300, 200, 100]
    # Accepted from the peers: exactly the recovery subnets. Announced: only what stays on site
    # (lyon's server subnets now live in the recovery space, same CIDRs).
    accepted = re.findall(r"prefix-list DR-RECOVERY seq \d+ permit (\S+)", frr)
    assert accepted == [sn.cidr for sn in plan.recovery_subnets()]
    assert re.findall(r"prefix-list DR-SITE seq \d+ permit (\S+)", frr) == ["10.10.20.0/23"]
    assert re.findall(r"^  network (\S+)", frr, re.M) == ["10.10.20.0/23"]


def test_without_a_backup_access_two_paths_remain_in_order(tmp_path):
    plan = _plan_with(tmp_path, lambda m: m.pop("backup"))
    frr = render_bundle(plan, "lyon", PSK, "203.0.113.99")["frr.conf"]
    assert re.findall(r"neighbor (\S+) weight (\d+)", frr) == [("172.16.0.1", "300"), ("169.254.10.1", "100")]
    assert _frr_errors(frr) == []


def test_a_site_without_mpls_gets_no_router_config():
    assert "frr.conf" not in render_bundle(load_plan(ACME), "lille", PSK, "203.0.113.99")


def test_sessions_that_cannot_work_are_refused_at_render_time_all_at_once(tmp_path):
    def edit(m):
        m["backup"]["neighbor"] = m["nominal"]["neighbor"]   # one session for two paths
        m["vpn"]["neighbor"] = "10.10.10.200"               # inside a recovery subnet
        m["nominal"]["remote_as"] = m["asn"]                  # the provider in the site's AS
    plan = _plan_with(tmp_path, edit)
    with pytest.raises(BgpRenderError) as e:
        render_bundle(plan, "lyon", PSK, "203.0.113.99")
    msg = str(e.value)
    assert e.value.exit_code == 1 and "site lyon" in msg
    assert "sites.lyon.mpls.backup.neighbor: 172.16.0.1 is also the nominal neighbor" in msg
    assert "sites.lyon.mpls.vpn.neighbor: 10.10.10.200 is inside subnet lyon/servers" in msg
    assert "sites.lyon.mpls.nominal.remote_as: 65010 is the site's own AS" in msg


def test_schema_names_a_bad_asn(tmp_path):
    doc = yaml.safe_load(ACME.read_text())
    bad = copy.deepcopy(doc)
    bad["sites"][0]["mpls"]["asn"] = 0
    path = tmp_path / "acme.yaml"
    path.write_text(yaml.safe_dump(bad))
    p = subprocess.run([str(Path(sys.executable).parent / "drctl"), "validate", str(path)],
                       capture_output=True, text=True)
    assert p.returncode == 1 and re.search(r"sites[.\[]0\]?\.mpls\.asn", p.stderr), p.stderr
