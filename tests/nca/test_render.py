"""NCA bundle rendering (pure): what the appliance gets, and every plan it must refuse."""

from __future__ import annotations

import base64
import copy
import re
import stat
from pathlib import Path

import jinja2
import pytest
import yaml

from drctl.nca.render import NcaRenderError, _env, render_bundle, render_cloud_endpoint, write_bundle
from drctl.plan.model import plan_from_dict
from drctl.private_files import UnsafeOutput

ROOT = Path(__file__).resolve().parents[2]
PSK = "correct-horse-battery-staple-42"
ENDPOINT = "198.51.100.1"


@pytest.fixture(scope="module")
def demo_doc() -> dict:
    return yaml.safe_load((ROOT / "recovery_plans" / "demo.yaml").read_text())


def plan_of(doc: dict):
    return plan_from_dict(doc)


def setting(conf: str, key: str) -> list[str]:
    """Every value of ``key = value`` in a swanctl.conf."""
    return [m.group(1).strip() for m in re.finditer(rf"^\s*{re.escape(key)} = (.*)$", conf, re.M)]


def lines(conf: str, prefix: str) -> list[str]:
    return [line for line in conf.splitlines() if line.startswith(prefix)]


def test_demo_bundle_files_and_tunnel(demo_doc: dict) -> None:
    bundle = render_bundle(plan_of(demo_doc), "paris", PSK, ENDPOINT)
    assert sorted(bundle) == ["README.txt", "dnsmasq.conf", "nca.env", "swanctl.conf"]
    conf = bundle["swanctl.conf"]
    assert setting(conf, "version") == ["2"]
    assert setting(conf, "remote_addrs") == [ENDPOINT]
    # The plan's defaults aes-256 / sha256 / group14 are, in strongSwan's words, aes256-sha256-modp2048;
    # exactly one proposal each, and never the "default" keyword that would add weaker fallbacks.
    assert setting(conf, "proposals") == ["aes256-sha256-modp2048"]
    assert setting(conf, "esp_proposals") == ["aes256-sha256-modp2048"]
    assert "default" not in " ".join(setting(conf, "proposals") + setting(conf, "esp_proposals"))
    # Users' LAN on the site side, the server LAN restored in the cloud on the other.
    assert setting(conf, "local_ts") == ["192.168.20.0/24"]
    assert setting(conf, "remote_ts") == ["192.168.10.0/24"]
    assert setting(conf, "start_action") == ["start"]
    assert setting(conf, "dpd_delay") == ["30s"]
    # Lifetimes: 8 h IKE and 1 h IPsec, rekeyed before expiry (margin = min(9 min, 10 %)).
    assert setting(conf, "rekey_time") == [f"{28800 - 540}s", f"{3600 - 360}s"]
    assert setting(conf, "over_time") == ["540s"]
    assert setting(conf, "life_time") == ["3600s"]
    assert setting(conf, "id") == ["203.0.113.10", ENDPOINT]


def test_psk_is_in_the_secrets_section_only(demo_doc: dict) -> None:
    bundle = render_bundle(plan_of(demo_doc), "paris", PSK, ENDPOINT)
    conf = bundle["swanctl.conf"]
    secret = setting(conf, "secret")
    assert len(secret) == 1 and secret[0].startswith("0s")
    assert base64.b64decode(secret[0][2:]).decode() == PSK
    assert conf.index("secrets {") < conf.index("secret = ")
    for name in ("dnsmasq.conf", "nca.env", "README.txt"):
        assert PSK not in bundle[name] and secret[0] not in bundle[name]


def test_psk_with_quotes_and_braces_survives(demo_doc: dict) -> None:
    psk = 'a"b}c{d e\\f#g;h=i-jklmnopqrst'
    conf = render_bundle(plan_of(demo_doc), "paris", psk, ENDPOINT)["swanctl.conf"]
    assert base64.b64decode(setting(conf, "secret")[0][2:]).decode() == psk


def test_dnsmasq_serves_users_lan_and_recovered_names(demo_doc: dict) -> None:
    conf = render_bundle(plan_of(demo_doc), "paris", PSK, ENDPOINT)["dnsmasq.conf"]
    assert lines(conf, "interface=") == ["interface=lan0"]
    assert lines(conf, "dhcp-range=") == [
        "dhcp-range=set:users,192.168.20.100,192.168.20.199,255.255.255.0,12h"
    ]
    assert "dhcp-option=tag:users,option:router,192.168.20.1" in conf
    assert "dhcp-option=tag:users,option:dns-server,192.168.20.1" in conf
    assert lines(conf, "domain=") == ["domain=demo.lan"]
    # The five servers of demo.yaml, at their addresses in the recovery space.
    assert lines(conf, "host-record=") == [
        "host-record=dns01.demo.lan,dns01,192.168.10.10",
        "host-record=db01.demo.lan,db01,192.168.10.20",
        "host-record=app01.demo.lan,app01,192.168.10.30",
        "host-record=files01.demo.lan,files01,192.168.10.40",
        "host-record=web01.demo.lan,web01,192.168.10.50",
    ]
    # Nothing leaks upstream: no resolv.conf, no server= line.
    assert "no-resolv" in conf.splitlines()
    assert not lines(conf, "server=")


def test_env_and_readme_name_the_addresses(demo_doc: dict) -> None:
    bundle = render_bundle(plan_of(demo_doc), "paris", PSK, ENDPOINT)
    env = dict(
        line.split("=", 1) for line in bundle["nca.env"].splitlines() if line and not line.startswith("#")
    )
    assert env["NCA_PUBLIC_ADDRESS"] == "203.0.113.10"
    assert env["NCA_VPN_ENDPOINT"] == ENDPOINT
    assert env["NCA_LAN_ADDRESSES"] == '"192.168.20.1/24"'
    assert env["NCA_RECOVERY_SUBNETS"] == '"192.168.10.0/24"'
    assert "0600" in bundle["README.txt"]


def test_recovery_vpn_address_is_the_remote_identity(demo_doc: dict) -> None:
    conf = render_bundle(plan_of(demo_doc), "paris", PSK, ENDPOINT, recovery_vpn_address="192.0.2.7")[
        "swanctl.conf"
    ]
    assert setting(conf, "remote_addrs") == [ENDPOINT]
    assert setting(conf, "id") == ["203.0.113.10", "192.0.2.7"]


def test_network_model(demo_doc: dict) -> None:
    plan = plan_of(demo_doc)
    assert [sn.ref for sn in plan.recovery_subnets()] == ["paris/lan"]
    assert [sn.ref for sn in plan.user_subnets(plan.sites[0])] == ["paris/users"]


@pytest.mark.parametrize(
    ("vpn", "proposal"),
    [
        ({"encryption": "aes-128", "integrity": "sha1", "pfs": "group5"}, "aes128-sha1-modp1536"),
        ({"encryption": "aes-192", "integrity": "sha384", "pfs": "group15"}, "aes192-sha384-modp3072"),
        ({"encryption": "aes-256", "integrity": "sha512", "pfs": "group16"}, "aes256-sha512-modp4096"),
        ({"pfs": "group19"}, "aes256-sha256-ecp256"),
        ({"pfs": "group20"}, "aes256-sha256-ecp384"),
        ({"pfs": "group21"}, "aes256-sha256-ecp521"),
    ],
)
def test_algorithm_names_map_to_strongswan_keywords(demo_doc: dict, vpn: dict, proposal: str) -> None:
    doc = copy.deepcopy(demo_doc)
    doc["sites"][0]["vpn"] = vpn
    conf = render_bundle(plan_of(doc), "paris", PSK, ENDPOINT)["swanctl.conf"]
    assert setting(conf, "proposals") == [proposal]
    assert setting(conf, "esp_proposals") == [proposal]


def test_cloud_endpoint_mirrors_the_site(demo_doc: dict) -> None:
    conf = render_cloud_endpoint(plan_of(demo_doc), "paris", PSK, ENDPOINT)
    assert setting(conf, "local_addrs") == [ENDPOINT]
    assert setting(conf, "local_ts") == ["192.168.10.0/24"]
    assert setting(conf, "remote_ts") == ["192.168.20.0/24"]
    assert setting(conf, "id") == [ENDPOINT, "203.0.113.10"]
    assert setting(conf, "start_action") == ["none"]
    assert setting(conf, "proposals") == ["aes256-sha256-modp2048"]


# --- refusals ----------------------------------------------------------------------------------


def refused(doc: dict, psk: str = PSK, endpoint: str = ENDPOINT, site: str = "paris") -> str:
    with pytest.raises(NcaRenderError) as e:
        render_bundle(plan_of(doc), site, psk, endpoint)
    assert e.value.exit_code == 1
    return e.value.message


def users_subnet(doc: dict) -> dict:
    return next(sn for sn in doc["sites"][0]["subnets"] if sn["name"] == "users")


def test_short_psk_refused(demo_doc: dict) -> None:
    msg = refused(demo_doc, psk="x" * 19)
    assert "sites.paris" in msg and "19 characters" in msg and "at least 20" in msg
    render_bundle(plan_of(demo_doc), "paris", "x" * 20, ENDPOINT)  # the limit itself is accepted


def test_users_lan_overlapping_a_recovery_subnet_refused(demo_doc: dict) -> None:
    doc = copy.deepcopy(demo_doc)
    sn = users_subnet(doc)
    sn.update(
        cidr="192.168.10.128/25",
        gateway="192.168.10.129",
        dhcp={"start": "192.168.10.200", "end": "192.168.10.250"},
    )
    msg = refused(doc)
    assert "sites.paris.subnets.users.cidr" in msg
    assert "overlaps the recovery subnet paris/lan (192.168.10.0/24)" in msg


def test_dhcp_range_outside_subnet_refused(demo_doc: dict) -> None:
    doc = copy.deepcopy(demo_doc)
    users_subnet(doc)["dhcp"] = {"start": "192.168.20.100", "end": "192.168.21.20"}
    msg = refused(doc)
    assert "sites.paris.subnets.users.dhcp.end: 192.168.21.20 is outside 192.168.20.0/24" in msg


def test_dhcp_range_reversed_or_holding_the_gateway_refused(demo_doc: dict) -> None:
    doc = copy.deepcopy(demo_doc)
    users_subnet(doc)["dhcp"] = {"start": "192.168.20.199", "end": "192.168.20.100"}
    assert "start 192.168.20.199 is after end 192.168.20.100" in refused(doc)
    users_subnet(doc)["dhcp"] = {"start": "192.168.20.1", "end": "192.168.20.100"}
    assert "the gateway 192.168.20.1 (the NCA itself) is inside the DHCP range" in refused(doc)


def test_dhcp_on_a_server_subnet_refused(demo_doc: dict) -> None:
    doc = copy.deepcopy(demo_doc)
    lan = next(sn for sn in doc["sites"][0]["subnets"] if sn["name"] == "lan")
    lan["dhcp"] = {"start": "192.168.10.100", "end": "192.168.10.199"}
    msg = refused(doc)
    assert "sites.paris.subnets.lan.dhcp: paris/lan holds servers (dns01, db01, app01, files01, web01)" in msg
    assert "separate users subnet" in msg


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("encryption", "aes-256-gcm"),
        ("encryption", "blowfish"),
        ("integrity", "md5"),
        ("pfs", "group24"),
        ("pfs", "modp2048"),
        ("ike_version", "v3"),
    ],
)
def test_unknown_algorithm_refused(demo_doc: dict, field: str, value: str) -> None:
    doc = copy.deepcopy(demo_doc)
    doc["sites"][0]["vpn"] = {field: value}
    msg = refused(doc)
    assert f"sites.paris.vpn.{field}: unknown value {value!r}; use one of" in msg


def test_every_problem_reported_at_once(demo_doc: dict) -> None:
    doc = copy.deepcopy(demo_doc)
    doc["sites"][0]["vpn"] = {"encryption": "des"}
    users_subnet(doc)["dhcp"] = {"start": "192.168.20.100", "end": "192.168.30.1"}
    msg = refused(doc, psk="short", endpoint="not-an-ip")
    for part in ("5 characters", "vpn.encryption", "dhcp.end", "'not-an-ip' is not an IP address"):
        assert part in msg


def test_unknown_site_refused(demo_doc: dict) -> None:
    assert "site 'lyon' is not in the plan of client demo (sites: paris)" in refused(demo_doc, site="lyon")


def test_site_without_users_lan_refused(demo_doc: dict) -> None:
    doc = copy.deepcopy(demo_doc)
    doc["sites"][0]["subnets"] = [sn for sn in doc["sites"][0]["subnets"] if sn["name"] != "users"]
    assert "no users subnet" in refused(doc)


def test_templates_are_strict() -> None:
    with pytest.raises(jinja2.UndefinedError):
        _env().get_template("nca-swanctl.conf.j2").render({})


def test_write_bundle_is_private(tmp_path: Path, demo_doc: dict) -> None:
    out = tmp_path / "bundle"
    out.mkdir(mode=0o755)
    (out / "swanctl.conf").write_text("old")
    (out / "swanctl.conf").chmod(0o644)
    (out / "frr.conf").write_text("left by an earlier bundle of a site with MPLS")
    bundle = render_bundle(plan_of(demo_doc), "paris", PSK, ENDPOINT)
    with pytest.raises(UnsafeOutput, match="is not empty.*pass --force"):
        write_bundle(bundle, out)
    assert (out / "swanctl.conf").read_text() == "old"
    written = write_bundle(bundle, out, force=True)
    assert sorted(p.name for p in written) == sorted(bundle)
    assert sorted(p.name for p in out.iterdir()) == sorted(bundle), "replaced whole, not merged"
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text() == bundle[path.name]
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"], "no temporary directory left"


def test_swanctl_pretty_listing_is_read() -> None:
    from drctl.nca.swan import established_ike, expected_sa, installed_child, parse_pretty

    listing = """list-sa event {
  demo-paris {
    state = ESTABLISHED
    encr-alg = AES_CBC
    encr-keysize = 256
    child-sas {
      paris-recovery-1 {
        state = INSTALLED
        packets-out = 3
        local-ts = [
          192.168.20.0/24
        ]
      }
    }
  }
}
list-sas reply {
}
"""
    ike = established_ike(parse_pretty(listing))
    assert ike["encr-keysize"] == "256"
    child = installed_child(ike)
    assert child["packets-out"] == "3" and child["local-ts"] == ["192.168.20.0/24"]
    assert expected_sa("aes128-sha384-ecp256") == {
        "encr-alg": "AES_CBC",
        "encr-keysize": "128",
        "integ-alg": "HMAC_SHA2_384_192",
        "prf-alg": "PRF_HMAC_SHA2_384",
        "dh-group": "ECP_256",
    }
