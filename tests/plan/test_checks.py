"""Semantic and schema checks of recovery plans: each bad plan yields exactly the problem a user
must read, with the field path; several problems come out together."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from drctl.errors import InvalidInput
from drctl.plan.load import PlanInvalid, check_document, load_plan, restore_point_gap

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "plans"
DEMO = ROOT / "recovery_plans" / "demo.yaml"


def demo_doc() -> dict[str, Any]:
    return yaml.safe_load(DEMO.read_text())


def problems_of(doc: Any) -> list[str]:
    return [f"{p.where}: {p.message}" for p in check_document(doc, "plan.yaml")]


def server(doc: dict, name: str) -> dict:
    return next(s for s in doc["servers"] if s["name"] == name)


# ---- the fixtures in tests/data/plans: one problem each, exact line --------------------------

FIXTURES = {
    "cycle.yaml": ["servers[0].boot.depends_on: dependency cycle a -> b -> c -> a"],
    "unknown_dependency.yaml": ["servers[1].boot.depends_on: unknown server ghost"],
    "ip_outside_subnet.yaml": [
        "servers[2].nics[0].ip: 10.0.0.5 is outside subnet paris/lan (192.168.10.0/24)"
    ],
    "ip_in_dhcp_range.yaml": [
        "servers[1].nics[0].ip: 192.168.10.150 is in the DHCP range 192.168.10.100-192.168.10.199 "
        "of subnet paris/lan: give servers addresses outside it"
    ],
    "duplicate_ip.yaml": [
        "servers[1].nics[0].ip: 192.168.10.10 is already used by a (servers[0].nics[0].ip)"
    ],
    "rpo_unreachable.yaml": [
        "servers[0].rpo: 4h cannot be met: the backup schedule leaves up to 1d between restore points "
        "(most frequent: incremental every 1d); back up more often or raise the RPO"
    ],
    "overlapping_subnets.yaml": [
        "sites[1].subnets[0].cidr: 192.168.10.128/25 overlaps subnet paris/lan (192.168.10.0/24)"
    ],
    "no_activating_contact.yaml": [
        "contacts: no contact can activate the plan: set can_activate: true on at least one "
        "(the Flexible Recovery team calls one of them back before any activation)"
    ],
    "schema_type_error.yaml": ["servers[0].flavor.vcpus: 'two' is not of type 'integer'"],
    "yaml_syntax_error.yaml": [
        "line 6, column 8: YAML syntax error: expected ',' or '}', but got ':' "
        "(while parsing a flow mapping started at line 5)"
    ],
}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_bad_fixture_reports_exactly_its_problem(name: str) -> None:
    path = DATA / name
    with pytest.raises(PlanInvalid) as exc:
        load_plan(path)
    assert [str(p) for p in exc.value.problems] == [f"{path}: {line}" for line in FIXTURES[name]]
    assert isinstance(exc.value, InvalidInput) and exc.value.exit_code == 1


def test_every_problem_of_one_file_is_reported_together() -> None:
    with pytest.raises(PlanInvalid) as exc:
        load_plan(DATA / "many_problems.yaml")
    got = {f"{p.where}: {p.message}" for p in exc.value.problems}
    expected = {
        "servers[1].flavour: unknown field (did you mean flavor?)",
        "servers[1].flavor: required field is missing",
        "sites[0].vpn.encryption: 'aes256' is not one of ['aes-128', 'aes-192', 'aes-256']",
        "client.timezone: unknown time zone 'Europe/Pariss' (use an IANA name such as Europe/Paris)",
        "sites[0].subnets[0].dhcp: the DHCP range starts after it ends (192.168.10.199 > 192.168.10.100)",
        "servers[0].disks: 2 boot disks (system, data): mark exactly one disk with boot: true",
        "servers[0].nics[0].ip: 192.168.10.1 is the gateway of subnet paris/lan (192.168.10.0/24)",
        "servers[0].checks: a server of class dr needs at least one check (its restore is verified by them)",
        "servers[0].backup.schedule: no full backup: incremental, differential and log backups need a "
        "full one to restore from",
        "servers[1].nics[0].subnet: unknown subnet paris/wan (known: paris/lan)",
        "servers[1].checks[0]: a check needs exactly one of port, service, http, command, file "
        "(found: port, service)",
        "servers[1].rpo: 30m cannot be met: the backup schedule leaves up to 1h between restore points "
        "(most frequent: log every 1h); back up more often or raise the RPO",
        "servers[0].boot.group: group 1 boots before group 2 of b, which a depends on (use group 2 or later)",
        "servers[0].boot.depends_on: dependency cycle a -> b -> a",
    }
    assert got == expected
    assert len(exc.value.problems) == len(expected)
    # The exception's message (what other commands print) carries every line too.
    for p in exc.value.problems:
        assert str(p) in exc.value.message


# ---- one field changed in the (valid) demo plan ---------------------------------------------


def _mutations() -> list[tuple[str, Any, list[str]]]:
    def gw_outside(d):
        d["sites"][0]["subnets"][0]["gateway"] = "192.168.11.1"

    def dhcp_end_outside(d):
        d["sites"][0]["subnets"][1]["dhcp"]["end"] = "192.168.21.10"

    def gateway_in_dhcp(d):
        d["sites"][0]["subnets"][1]["gateway"] = "192.168.20.150"

    def cidr_host_bits(d):
        d["sites"][0]["subnets"][1]["cidr"] = "192.168.20.5/24"

    def dup_server(d):
        d["servers"][4]["name"] = "db01"

    def dup_subnet(d):
        d["sites"][0]["subnets"][1]["name"] = "lan"

    def dup_site(d):
        d["sites"].append(
            {
                "name": "paris",
                "peer_address": "198.51.100.7",
                "subnets": [{"name": "lan", "cidr": "10.9.0.0/24", "gateway": "10.9.0.1"}],
            }
        )

    def same_peer(d):
        d["sites"].append(
            {
                "name": "lyon",
                "peer_address": "203.0.113.10",
                "subnets": [{"name": "lan", "cidr": "10.9.0.0/24", "gateway": "10.9.0.1"}],
            }
        )

    def group_too_early(d):
        server(d, "web01")["boot"]["group"] = 2

    def self_dep(d):
        server(d, "files01")["boot"]["depends_on"] = ["files01"]

    def network_ip(d):
        server(d, "web01")["nics"][0]["ip"] = "192.168.10.0"

    def broadcast_ip(d):
        server(d, "web01")["nics"][0]["ip"] = "192.168.10.255"

    def no_boot_disk(d):
        server(d, "db01")["disks"][0]["boot"] = False

    def dr_without_checks(d):
        del server(d, "app01")["checks"]

    def tested_without_checks(d):  # only dr requires checks
        del server(d, "files01")["checks"]

    def lonely_anti_affinity(d):
        server(d, "dns01")["placement"] = {"anti_affinity": "dns"}

    def typo(d):
        server(d, "db01")["rpo_"] = server(d, "db01").pop("rpo")

    def bad_duration(d):
        server(d, "db01")["rto"] = "2 hours"

    def activator_without_phone(d):
        del d["contacts"][0]["phone"]

    def vpn_unknown(d):
        d["sites"][0]["vpn"] = {"pfs": "group1"}

    def vpn_short_lifetime(d):
        d["sites"][0]["vpn"] = {"ipsec_lifetime": "30s"}

    def vpn_weak_but_known(d):  # the policy pack, not the plan check, stops weak values
        d["sites"][0]["vpn"] = {
            "ike_version": "v1",
            "encryption": "aes-128",
            "integrity": "sha1",
            "pfs": "group5",
        }

    def bad_ip_text(d):
        server(d, "db01")["nics"][0]["ip"] = "192.168.10.300"

    return [
        (
            "gateway-outside",
            gw_outside,
            ["sites[0].subnets[0].gateway: 192.168.11.1 is outside subnet paris/lan (192.168.10.0/24)"],
        ),
        (
            "dhcp-outside",
            dhcp_end_outside,
            ["sites[0].subnets[1].dhcp.end: 192.168.21.10 is outside subnet paris/users (192.168.20.0/24)"],
        ),
        (
            "gateway-in-dhcp",
            gateway_in_dhcp,
            [
                "sites[0].subnets[1].gateway: 192.168.20.150 is in the DHCP range 192.168.20.100-192.168.20.199"
            ],
        ),
        (
            "host-bits",
            cidr_host_bits,
            ["sites[0].subnets[1].cidr: 192.168.20.5/24 has host bits set: the network is 192.168.20.0/24"],
        ),
        ("dup-server", dup_server, ["servers[4].name: duplicate server name db01 (first at servers[1])"]),
        (
            "dup-subnet",
            dup_subnet,
            [
                "sites[0].subnets[1].name: duplicate subnet name lan in site paris (first at sites[0].subnets[0])"
            ],
        ),
        ("dup-site", dup_site, ["sites[1].name: duplicate site name paris (first at sites[0])"]),
        (
            "same-peer",
            same_peer,
            ["sites[1].peer_address: 203.0.113.10 is already the peer address of site paris"],
        ),
        (
            "group-too-early",
            group_too_early,
            [
                "servers[4].boot.group: group 2 boots before group 3 of app01, which web01 depends on (use group 3 or later)"
            ],
        ),
        ("self-dependency", self_dep, ["servers[3].boot.depends_on: dependency cycle files01 -> files01"]),
        (
            "network-ip",
            network_ip,
            [
                "servers[4].nics[0].ip: 192.168.10.0 is the network address of subnet paris/lan (192.168.10.0/24)"
            ],
        ),
        (
            "broadcast-ip",
            broadcast_ip,
            [
                "servers[4].nics[0].ip: 192.168.10.255 is the broadcast address of subnet paris/lan (192.168.10.0/24)"
            ],
        ),
        (
            "no-boot-disk",
            no_boot_disk,
            ["servers[1].disks: no boot disk: mark exactly one disk with boot: true"],
        ),
        (
            "dr-no-checks",
            dr_without_checks,
            [
                "servers[2].checks: a server of class dr needs at least one check (its restore is verified by them)"
            ],
        ),
        ("tested-no-checks", tested_without_checks, []),
        (
            "anti-affinity-alone",
            lonely_anti_affinity,
            [
                "servers[0].placement.anti_affinity: anti-affinity group dns has only dns01: it needs at least two servers"
            ],
        ),
        (
            "typo",
            typo,
            [
                "servers[1].rpo: required field is missing",
                "servers[1].rpo_: unknown field (did you mean rpo?)",
            ],
        ),
        (
            "duration",
            bad_duration,
            ["servers[1].rto: '2 hours' is not a duration such as 30s, 15m, 24h, 7d or 1w"],
        ),
        (
            "activator-no-phone",
            activator_without_phone,
            [
                "contacts[0].phone: Alice Martin can activate the plan but has no phone: the team calls back by phone before an activation"
            ],
        ),
        (
            "vpn-unknown",
            vpn_unknown,
            [
                "sites[0].vpn.pfs: 'group1' is not one of ['group2', 'group5', 'group14', 'group15', 'group16', 'group17', 'group18', 'group19', 'group20', 'group21', 'group22', 'group23', 'group24', 'group25', 'group26', 'group27', 'group28', 'group29', 'group30', 'group31']"
            ],
        ),
        (
            "vpn-lifetime",
            vpn_short_lifetime,
            ["sites[0].vpn.ipsec_lifetime: 30s is shorter than the 60s minimum of Neutron VPNaaS"],
        ),
        ("vpn-weak-known", vpn_weak_but_known, []),
        ("bad-ip-text", bad_ip_text, ["servers[1].nics[0].ip: '192.168.10.300' is not an IPv4 address"]),
    ]


@pytest.mark.parametrize("case", _mutations(), ids=lambda c: c[0])
def test_one_changed_field_gives_exactly_one_problem(case) -> None:
    _, mutate, expected = case
    doc = copy.deepcopy(demo_doc())
    mutate(doc)
    assert sorted(problems_of(doc)) == sorted(expected)


def test_demo_has_no_problem_before_mutation() -> None:
    assert problems_of(demo_doc()) == []


# ---- parsing edge cases ----------------------------------------------------------------------


def test_duplicate_yaml_key_is_reported_with_both_lines(tmp_path: Path) -> None:
    text = DEMO.read_text().replace("    rpo: 15m\n", "    rpo: 15m\n    rpo: 1h\n", 1)
    line = text.splitlines().index("    rpo: 1h") + 1
    f = tmp_path / "dup.yaml"
    f.write_text(text)
    with pytest.raises(PlanInvalid) as exc:
        load_plan(f)
    assert [str(p) for p in exc.value.problems] == [
        f"{f}: line {line}, column 5: YAML syntax error: duplicate key 'rpo' (first at line {line - 1})"
    ]


@pytest.mark.parametrize("text, kind", [("", "empty"), ("- a\n- b\n", "list")])
def test_a_plan_must_be_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(PlanInvalid) as exc:
        load_plan(f)
    assert [p.message for p in exc.value.problems] == [
        f"a plan is a YAML mapping (client, contacts, sites, servers), not {kind}"
    ]


def test_missing_file_is_an_invalid_input_naming_the_file(tmp_path: Path) -> None:
    f = tmp_path / "nope.yaml"
    with pytest.raises(PlanInvalid) as exc:
        load_plan(f)
    assert [str(p) for p in exc.value.problems] == [
        f"{f}: (file): cannot read the plan: No such file or directory"
    ]


def test_every_missing_required_field_is_named_once() -> None:
    doc = demo_doc()
    del doc["client"], doc["sites"]
    s = server(doc, "web01")
    del s["flavor"], s["rpo"], s["rto"]
    found = problems_of(doc)
    missing = [p for p in found if p.endswith("required field is missing")]
    assert missing == [
        "client: required field is missing",
        "sites: required field is missing",
        "servers[4].flavor: required field is missing",
        "servers[4].rpo: required field is missing",
        "servers[4].rto: required field is missing",
    ]
    assert len(found) == len(set(found)), "no problem is reported twice"


@pytest.mark.parametrize(
    "text, where, reason",
    [
        ("client: {id: a}\nclient: {id: b}\n", "line 2, column 1", "duplicate key 'client'"),
        ("? [a]\n: 1\n", "line 1, column 3", "a key must be plain text"),
        ("client:\n  1: x\n", "line 2, column 3", "key '1' is read as int, not text; quote it"),
        ("servers: " + "[" * 200 + "]" * 200 + "\n", "line 1, column ", "nested more than 64 levels"),
    ],
)
def test_yaml_a_plan_cannot_use_is_one_located_problem(
    tmp_path: Path, text: str, where: str, reason: str
) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(PlanInvalid) as exc:
        load_plan(f)
    [p] = exc.value.problems
    assert p.file == str(f) and p.where.startswith(where) and reason in p.message


def test_a_directory_or_an_oversized_file_is_named_not_read(tmp_path: Path) -> None:
    with pytest.raises(PlanInvalid) as exc:
        load_plan(tmp_path)
    assert [p.message for p in exc.value.problems] == [
        "cannot read the plan: it is a directory; give the path of the plan file itself"
    ]
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(11 * 1024 * 1024)
    with pytest.raises(PlanInvalid) as exc:
        load_plan(big)
    assert "it is 11.0 MiB, a plan is at most 10.0 MiB" in exc.value.problems[0].message


# ---- the RPO rule ----------------------------------------------------------------------------

H, D = 3600, 86400


@pytest.mark.parametrize(
    "steps, gap",
    [
        ([("full", 7 * D), ("incremental", D)], D),  # nightly incrementals
        ([("full", D), ("log", 15 * 60)], 15 * 60),  # logs every 15 min
        ([("full", 7 * D), ("incremental", D), ("differential", H), ("log", 15 * 60)], 15 * 60),
        ([("full", 7 * D)], 7 * D),  # fulls only
        ([("full", D), ("incremental", 7 * D)], D),  # the full is the most frequent
        ([("incremental", D), ("log", 900)], None),  # nothing to restore from
    ],
)
def test_restore_point_gap(steps, gap) -> None:
    assert restore_point_gap(steps) == gap


def test_rpo_equal_to_the_gap_is_met() -> None:
    doc = demo_doc()
    server(doc, "dns01")["rpo"] = "1d"  # full 7d + incremental 1d: a restore point every day
    assert problems_of(doc) == []
    server(doc, "dns01")["rpo"] = "23h"
    assert problems_of(doc) == [
        "servers[0].rpo: 23h cannot be met: the backup schedule leaves up to 1d "
        "between restore points (most frequent: incremental every 1d); back up "
        "more often or raise the RPO"
    ]


def test_dhcp_range_may_not_take_the_broadcast_address() -> None:
    doc = demo_doc()
    doc["sites"][0]["subnets"][1]["dhcp"]["end"] = "192.168.20.255"
    assert problems_of(doc) == [
        "sites[0].subnets[1].dhcp: the DHCP range 192.168.20.100-192.168.20.255 includes "
        "the network or broadcast address of subnet paris/users (192.168.20.0/24)"
    ]


# ---- backup.retention (applied by the agent after each successful job) -------------------------


def test_backup_retention_is_read_into_the_model(tmp_path) -> None:
    doc = demo_doc()
    server(doc, "db01")["backup"]["retention"] = {"keep_daily": 7, "keep_weekly": 4}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(doc))
    plan = load_plan(path)
    assert plan.server("db01").retention.as_dict() == {"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 0}
    assert plan.server("web01").retention is None


@pytest.mark.parametrize(
    ("retention", "problem"),
    [
        ({"keep_daily": -1}, "servers[1].backup.retention.keep_daily: -1 is less than the minimum of 0"),
        (
            {"keep_yearly": 2},
            "servers[1].backup.retention.keep_yearly: unknown field (did you mean keep_daily?)",
        ),
        ({}, "servers[1].backup.retention: {} should be non-empty"),
    ],
)
def test_a_bad_backup_retention_is_reported_with_its_field(retention: dict, problem: str) -> None:
    doc = demo_doc()
    server(doc, "db01")["backup"]["retention"] = retention
    assert any(p.startswith(problem) for p in problems_of(doc)), problems_of(doc)
