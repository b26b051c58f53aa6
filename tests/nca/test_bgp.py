"""The site router's BGP configuration for MPLS BVPN reconnection (service description 10.2):
rendered from the plan, checked by FRR's own parser, refused at render time when it cannot work."""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml

from drctl.nca.bgp import BgpRenderError, frr_parse_errors
from drctl.nca.render import render_bundle
from drctl.plan.load import load_plan
from tests.conftest import server_missing

REPO = Path(__file__).resolve().parents[2]
ACME = REPO / "recovery_plans" / "acme.yaml"
PSK = "a-long-enough-test-psk-0123456789"


def _vtysh() -> str:
    path = shutil.which("vtysh")
    if path is None:
        server_missing("vtysh (Debian package frr) is missing: apt-get install --no-install-recommends frr")
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
    local_pref = dict(
        re.findall(
            r"route-map (\S+) permit 10\n match ip address prefix-list DR-RECOVERY\n"
            r" set local-preference (\d+)",
            frr,
        )
    )
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
        m["backup"]["neighbor"] = m["nominal"]["neighbor"]  # one session for two paths
        m["vpn"]["neighbor"] = "10.10.10.200"  # inside a recovery subnet
        m["nominal"]["remote_as"] = m["asn"]  # the provider in the site's AS

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
    p = subprocess.run(
        [str(Path(sys.executable).parent / "drctl"), "validate", str(path)], capture_output=True, text=True
    )
    assert p.returncode == 1 and re.search(r"sites[.\[]0\]?\.mpls\.asn", p.stderr), p.stderr


# --- the rendered config running in FRR: failover between the three paths --------------------

PE_CONF = """frr defaults traditional
hostname {name}
router bgp {asn}
 bgp router-id {addr}
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor {ce} remote-as {site_asn}
 neighbor {ce} timers connect 1
 address-family ipv4 unicast
{networks}
 exit-address-family
exit
"""


class BgpLab:
    """The site router (the rendered frr.conf) and one provider router per path, each a zebra +
    bgpd pair in its own network namespace of this run, linked by veth pairs."""

    def __init__(self, plan, frr_conf: str) -> None:
        self.tag = "drbgp" + uuid.uuid4().hex[:6]
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.tag}-"))
        self.dir.chmod(0o755)  # the daemons drop to user frr before reading their config
        self.mpls = plan.sites[0].mpls
        self.recovery = [sn.cidr for sn in plan.recovery_subnets()]
        self.names: list[str] = []
        self.frr_conf = frr_conf

    def ns(self, role: str) -> str:
        return f"{self.tag}-{role}"

    def sh(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=check)

    def start(self) -> None:
        ce = self.ns("ce")
        self._namespace(ce)
        peers = {"nominal": self.mpls.nominal, "backup": self.mpls.backup, "vpn": self.mpls.vpn}
        for i, (role, peer) in enumerate(peers.items()):
            pe = self.ns(role)
            self._namespace(pe)
            ce_addr = str(ipaddress.ip_address(peer.neighbor) + 1)
            self.sh(
                "ip", "link", "add", f"ce{i}", "netns", ce, "type", "veth", "peer", "name", "pe", "netns", pe
            )
            self.sh("ip", "-n", ce, "addr", "add", f"{ce_addr}/24", "dev", f"ce{i}")
            self.sh("ip", "-n", ce, "link", "set", f"ce{i}", "up")
            self.sh("ip", "-n", pe, "addr", "add", f"{peer.neighbor}/24", "dev", "pe")
            self.sh("ip", "-n", pe, "link", "set", "pe", "up")
            networks = "\n".join(f"  network {c}" for c in self.recovery)
            self._daemons(
                pe,
                PE_CONF.format(
                    name=pe,
                    asn=peer.remote_as,
                    addr=peer.neighbor,
                    ce=ce_addr,
                    site_asn=self.mpls.asn,
                    networks=networks,
                ),
            )
        self._daemons(ce, self.frr_conf)

    def _namespace(self, ns: str) -> None:
        self.sh("ip", "netns", "add", ns)
        self.names.append(ns)
        self.sh("ip", "-n", ns, "link", "set", "lo", "up")
        run = Path("/var/run/frr") / ns
        run.mkdir(parents=True, exist_ok=True)
        shutil.chown(run, "frr", "frr")

    def _daemons(self, ns: str, conf: str) -> None:
        path = self.dir / f"{ns}.conf"
        path.write_text(conf)
        path.chmod(0o644)
        for daemon, cfg in (("zebra", "/dev/null"), ("bgpd", str(path))):
            self.sh(
                "ip",
                "netns",
                "exec",
                ns,
                f"/usr/lib/frr/{daemon}",
                "-d",
                "-N",
                ns,
                "-f",
                cfg,
                "-i",
                f"/var/run/frr/{ns}/{daemon}.pid",
            )

    def link(self, role: str, up: bool) -> None:
        self.sh("ip", "-n", self.ns(role), "link", "set", "pe", "up" if up else "down")

    def best(self, cidr: str) -> str | None:
        """Next hop of the site router's best BGP path to ``cidr``."""
        out = self.sh("vtysh", "-N", self.ns("ce"), "-c", f"show ip bgp {cidr} json", check=False).stdout
        try:
            paths = json.loads(out).get("paths", [])
        except ValueError:
            return None
        best = [p for p in paths if p.get("bestpath", {}).get("overall")]
        return best[0]["nexthops"][0]["ip"] if best else None

    def kernel_route(self, cidr: str) -> str:
        return self.sh("ip", "-n", self.ns("ce"), "route", "show", cidr).stdout.strip()

    def wait_best(self, want: str, budget_s: float = 60) -> None:
        end = time.monotonic() + budget_s
        while True:
            got = {c: self.best(c) for c in self.recovery}
            if all(v == want for v in got.values()):
                return
            if time.monotonic() > end:
                raise AssertionError(f"best paths {got}, expected all via {want}")
            time.sleep(0.5)

    def close(self) -> None:
        for ns in self.names:
            for daemon in ("bgpd", "zebra"):
                pidfile = Path("/var/run/frr") / ns / f"{daemon}.pid"
                try:
                    os.kill(int(pidfile.read_text().split()[0]), signal.SIGTERM)
                except (OSError, ValueError):
                    pass
        time.sleep(1)
        for ns in self.names:
            for pid in self.sh("ip", "netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
            self.sh("ip", "netns", "delete", ns, check=False)
            shutil.rmtree(Path("/var/run/frr") / ns, ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def test_rendered_router_fails_over_nominal_backup_vpn_and_back_in_real_bgp():
    """Service description 10.2 with FRR itself: the site router runs the rendered frr.conf, three
    provider routers announce the recovery subnets; taking the nominal then the backup access down
    moves every recovery route (BGP best path and kernel route) to the next path, and the nominal
    access coming back takes them back."""
    _vtysh()
    if os.geteuid() != 0 or not Path("/usr/lib/frr/bgpd").exists():
        server_missing("needs root and FRR's daemons (Debian package frr) for network namespaces with bgpd")
    plan = load_plan(ACME)
    lab = BgpLab(plan, render_bundle(plan, "lyon", PSK, "203.0.113.99")["frr.conf"])
    try:
        lab.start()
        m = lab.mpls
        lab.wait_best(m.nominal.neighbor)
        assert f"via {m.nominal.neighbor}" in lab.kernel_route(lab.recovery[0])
        lab.link("nominal", up=False)
        lab.wait_best(m.backup.neighbor, 30)
        assert f"via {m.backup.neighbor}" in lab.kernel_route(lab.recovery[0])
        lab.link("backup", up=False)
        lab.wait_best(m.vpn.neighbor, 30)
        assert f"via {m.vpn.neighbor}" in lab.kernel_route(lab.recovery[0])
        lab.link("nominal", up=True)
        lab.wait_best(m.nominal.neighbor, 60)
    finally:
        lab.close()
    leftovers = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert lab.tag not in leftovers
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert lab.tag not in ps
