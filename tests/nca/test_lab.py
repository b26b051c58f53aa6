"""The NCA bundle with the real daemons: dnsmasq's and strongSwan's own parsers on every rendered
bundle, and the namespace lab end to end (success, proposal mismatch, interruption, leftovers).

Needs root, strongswan-charon, strongswan-swanctl, libcharon-extra-plugins, dnsmasq-base and
iproute2: the tests FAIL without them unless DRCTL_ALLOW_SKIP=1.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from drctl.nca.lab import LabError, NcaLab
from drctl.nca.labrun import PREFIX, check_swanctl_conf, cleanup_leftovers
from drctl.nca.render import NcaRenderError, render_bundle, render_cloud_endpoint
from drctl.netns import list_namespaces
from drctl.plan.model import plan_from_dict
from drctl.processes import run
from tests.support.events import result_of
from tests.support.sandbox_standin import need_lab, sandbox_standin

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PSK = "lab-only-psk-0123456789abcdef"
ENDPOINT = "198.51.100.1"


@pytest.fixture(scope="module", autouse=True)
def lab_tools() -> None:
    need_lab()


def load_doc(name: str) -> dict:
    return yaml.safe_load((ROOT / "recovery_plans" / f"{name}.yaml").read_text())


def our_namespaces() -> set[str]:
    return {ns for ns in list_namespaces() if ns.startswith(PREFIX)}


def renderable_sites() -> list[tuple[str, str]]:
    out = []
    for client in ("demo", "acme"):
        plan = plan_from_dict(load_doc(client))
        for site in plan.sites:
            try:
                render_bundle(plan, site.name, PSK, ENDPOINT)
            except NcaRenderError:
                continue  # refused plans are covered by tests/nca/test_render.py
            out.append((client, site.name))
    return out


@pytest.mark.parametrize(("client", "site"), renderable_sites())
def test_daemons_parse_every_rendered_bundle(tmp_path: Path, client: str, site: str) -> None:
    plan = plan_from_dict(load_doc(client))
    bundle = render_bundle(plan, site, PSK, ENDPOINT)
    conf = tmp_path / "dnsmasq.conf"
    conf.write_text(bundle["dnsmasq.conf"])
    test = run(["dnsmasq", "--test", "-C", str(conf)], check=False, timeout=30)
    assert test.returncode == 0, test.stderr
    assert "syntax check OK" in test.stderr + test.stdout
    listed = check_swanctl_conf(bundle["swanctl.conf"])
    assert f"{client}-{site}: IKEv2" in listed
    assert f"{site}-recovery: TUNNEL" in listed
    cloud = check_swanctl_conf(render_cloud_endpoint(plan, site, PSK, ENDPOINT))
    assert f"local:  {ENDPOINT}" in cloud


def test_strongswan_parse_check_refuses_a_broken_config() -> None:
    bundle = render_bundle(plan_from_dict(load_doc("demo")), "paris", PSK, ENDPOINT)
    broken = bundle["swanctl.conf"].replace(
        "proposals = aes256-sha256-modp2048", "proposals = aes256-sha257-modp2048", 1
    )
    with pytest.raises(LabError, match="invalid value for: proposals"):
        check_swanctl_conf(broken)


def test_lab_demo_paris_end_to_end() -> None:
    plan = plan_from_dict(load_doc("demo"))
    before = our_namespaces()
    lab = NcaLab(plan=plan, site_name="paris", psk=PSK)
    started = time.monotonic()
    with lab:
        lab.start()
        ns = lab.ns.name("")
        assert {f"{ns}site", f"{ns}cloud", f"{ns}ws", f"{ns}srv"} <= our_namespaces()
        pids = [p.popen.pid for p in lab.ns.processes]
        lab.probe_all()
    steps = {s.step: s for s in lab.steps}
    assert [s.step for s in lab.steps] == [
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
    assert all(s.ok for s in lab.steps), [s.as_dict() for s in lab.steps]
    # Exactly the declared proposals (aes-256/sha256/group14), seen in charon's own SA listing.
    assert "AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048 on both sides" in steps["tunnel"].detail
    assert "192.168.20.0/24 === 192.168.10.0/24" in steps["tunnel"].detail
    assert steps["pfs-rekey"].detail == "CHILD_SA rekeyed with PFS MODP_2048"
    lease = lab.lease
    assert 100 <= int(lease["ip"].rsplit(".", 1)[1]) <= 199 and lease["ip"].startswith("192.168.20.")
    assert lease["router"] == ["192.168.20.1"] and lease["dns"] == ["192.168.20.1"]
    assert lease["domain"] == "demo.lan"
    assert steps["dns"].detail.startswith("app01.demo.lan -> 192.168.10.30")
    assert "3/3 echo replies from 192.168.10.30" in steps["icmp"].detail
    assert steps["tcp"].detail == "GET http://192.168.10.30:8080/ -> 200"
    assert time.monotonic() - started < 60
    # Nothing left behind: namespaces, daemons, run directory.
    assert our_namespaces() == before
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_lab_proposal_mismatch_fails_naming_it() -> None:
    plan = plan_from_dict(load_doc("demo"))
    doc = copy.deepcopy(load_doc("demo"))
    doc["sites"][0]["vpn"] = {"encryption": "aes-128"}  # the cloud keeps the stack's aes-256
    before = our_namespaces()
    lab = NcaLab(plan=plan, site_name="paris", psk=PSK, site_plan=plan_from_dict(doc))
    with pytest.raises(LabError) as e, lab:
        lab.start()
        lab.probe_all()
    assert e.value.exit_code == 20
    assert "failed at step 'tunnel'" in e.value.message
    assert "proposal mismatch (NO_PROPOSAL_CHOSEN)" in e.value.message
    assert "offers IKE:AES_CBC_128/" in e.value.message and "accepts only IKE:AES_CBC_256/" in e.value.message
    assert [s.step for s in lab.steps if not s.ok] == ["tunnel"]
    assert our_namespaces() == before


def drctl(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "DRCTL_VPN_PSK": PSK}
    return subprocess.Popen(
        [sys.executable, "-m", "drctl.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_cli_json_and_mismatch_exit_code(tmp_path: Path) -> None:
    doc = load_doc("demo")
    doc["sites"][0]["vpn"] = {"encryption": "aes-128"}
    edited = tmp_path / "demo-aes128.yaml"
    edited.write_text(yaml.safe_dump(doc))
    proc = drctl("nca", "test", "demo", "--site", "paris", "--site-plan", str(edited), "--json")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 20, err
    report = result_of(out)  # the test ran to its end: its result, then exit 20 and the message
    assert report["ok"] is False and report["failed_step"] == "tunnel"
    assert {"step", "ok", "seconds", "detail"} == set(report["steps"][0])
    assert "drctl: NCA test of site paris failed at step 'tunnel': proposal mismatch" in err
    assert PSK not in out + err


def test_cli_sigterm_tears_everything_down() -> None:
    before = our_namespaces()
    proc = drctl("nca", "test", "demo", "--site", "paris")
    deadline = time.monotonic() + 20
    while not (our_namespaces() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    created = our_namespaces() - before
    assert created, "the lab never created its namespaces"
    time.sleep(0.5)  # let it get into its daemons
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not (our_namespaces() & created)


def test_cleanup_removes_leftovers_of_dead_runs_only(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    for run_id, owner in (("dead00", dead.pid), ("live00", os.getpid())):
        d = tmp_path / f"{PREFIX}{run_id}-x"
        d.mkdir()
        (d / "owner.pid").write_text(str(owner))
        run(["ip", "netns", "add", f"{PREFIX}{run_id}-site"], timeout=30)
    try:
        removed = cleanup_leftovers(root=tmp_path)
        assert removed == [f"{PREFIX}dead00-site"]
        assert f"{PREFIX}live00-site" in list_namespaces()
        assert not (tmp_path / f"{PREFIX}dead00-x").exists()
        assert (tmp_path / f"{PREFIX}live00-x").exists()
    finally:
        for run_id in ("dead00", "live00"):
            run(["ip", "netns", "del", f"{PREFIX}{run_id}-site"], check=False, timeout=30)


def test_lab_attaches_to_an_existing_cloud_namespace(tmp_path: Path) -> None:
    """The drill's API: the sandbox namespace (bridge with the subnet's gateway, guests on it)
    plays the recovery space; the lab plugs its VPN endpoint in and leaves the namespace as found."""
    from drctl.nca.lab import ProbeTarget

    with sandbox_standin(tmp_path, "catalogue from db01", tag="l") as (sandbox, _):
        links_before = run(["ip", "-n", sandbox, "-o", "link"], timeout=30).stdout.count("\n")
        lab = NcaLab(
            plan=plan_from_dict(load_doc("demo")),
            site_name="paris",
            psk=PSK,
            target=ProbeTarget("app01", "192.168.10.30", 8080, "/", "catalogue from db01"),
        )
        with lab:
            lab.start(cloud_ns=sandbox)
            assert f"{lab.ns.name('cloud')}" not in list_namespaces()
            lab.probe_all()
        assert all(s.ok for s in lab.steps), [s.as_dict() for s in lab.steps]
        assert {s.step: s.detail for s in lab.steps}[
            "tcp"
        ] == "GET http://192.168.10.30:8080/ -> 200, page contains 'catalogue from db01'"
        # The sandbox is still there, with its own links only, and no IPsec routing left behind.
        assert sandbox in list_namespaces()
        assert run(["ip", "-n", sandbox, "-o", "link"], timeout=30).stdout.count("\n") == links_before
        assert "lookup 220" not in run(["ip", "-n", sandbox, "rule"], timeout=30).stdout


def test_lab_refuses_a_cloud_namespace_without_the_gateways() -> None:
    sandbox = f"drtest-{os.getpid()}-bare"
    run(["ip", "netns", "add", sandbox], timeout=30)
    try:
        lab = NcaLab(plan=plan_from_dict(load_doc("demo")), site_name="paris", psk=PSK)
        with pytest.raises(LabError, match=r"missing paris/lan gateway 192\.168\.10\.1"), lab:
            lab.start(cloud_ns=sandbox)
        assert sandbox in list_namespaces()
    finally:
        run(["ip", "netns", "del", sandbox], check=False, timeout=30)


def test_lab_pfs_group_mismatch_fails() -> None:
    """The plan's one ``pfs`` is the IKE DH group and the ESP PFS group (Neutron's IKE and IPsec
    policies): a site on group15 against a cloud on group14 must fail, not fall back."""
    doc = copy.deepcopy(load_doc("demo"))
    doc["sites"][0]["vpn"] = {"pfs": "group15"}
    lab = NcaLab(
        plan=plan_from_dict(load_doc("demo")), site_name="paris", psk=PSK, site_plan=plan_from_dict(doc)
    )
    with pytest.raises(LabError) as e, lab:
        lab.start()
        lab.probe_all()
    assert "failed at step 'tunnel': proposal mismatch (NO_PROPOSAL_CHOSEN)" in e.value.message
    assert "offers IKE:AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_3072" in e.value.message
    assert "accepts only IKE:AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048" in e.value.message
