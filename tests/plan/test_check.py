"""The one Check type (drctl.plan.model.Check): normalised once, described once, the same name in
the plan, the verification, the policy config and the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from drctl.errors import InvalidInput
from drctl.plan.load import load_plan
from drctl.plan.model import Check
from drctl.stack.policy import policy_config
from tests.runs.fixtures import demo_summary

DEMO = Path(__file__).resolve().parents[2] / "recovery_plans" / "demo.yaml"


def test_plan_checks_are_normalised_and_described_as_the_report_shows_them() -> None:
    plan = load_plan(DEMO)
    files = plan.server("files01").checks
    assert [(c.describe(), c.critical) for c in files] == [
        ("file /srv/share/README.txt", True),
        ("service smbd", True),
        ("port 445", False),
    ]
    assert files[2].spec == {"port": 445, "protocol": "tcp", "host": None}
    web = [c.describe() for c in plan.server("web01").checks]
    assert web[2] == "http http://192.168.10.50/ -> 200 containing 'catalogue from db01'"
    # The demo report's check names (tests/runs/fixtures.py) are what the plan's checks describe.
    reported = [s for s in demo_summary().servers if s.checks]
    assert len(reported) == 4
    for server in reported:
        assert [c.check for c in server.checks] == [c.describe() for c in plan.server(server.name).checks]
    # The policy pack gets the same names.
    config = policy_config(failover=False, servers=plan.servers)["dr-servers-have-checks"]
    web01 = next(s for s in config["servers"] if s["name"] == "web01")
    assert web01["checks"] == web


def test_the_plan_form_and_the_constructor_give_the_same_check() -> None:
    assert (
        Check("port", 22) == Check.from_dict({"port": 22}) == Check("port", {"port": 22, "protocol": "tcp"})
    )
    http = Check.from_dict({"http": {"url": "http://10.0.0.5/"}, "critical": False})
    assert http.spec == {"url": "http://10.0.0.5/", "status": 200, "contains": None}
    assert Check(http.kind, http.spec, http.critical) == http  # normalising twice changes nothing
    assert Check.from_dict(http.to_plan_dict()) == http
    assert Check.from_dict({"port": 53, "critical": False}).to_plan_dict() == {
        "port": {"port": 53, "protocol": "tcp", "host": None},
        "critical": False,
    }
    assert (
        Check("port", {"port": 53, "protocol": "udp", "host": "10.0.0.1"}).describe()
        == "port 10.0.0.1:53/udp"
    )
    assert Check("file", {"path": "/srv/ok", "contains": "yes"}).describe() == "file /srv/ok containing 'yes'"


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"port": 70000}, "port 70000 out of range"),
        ({"port": 1, "file": "/x"}, "give exactly one of port, service, http, command, file"),
        ({"ping": "x"}, "give exactly one of"),
        ({"service": ""}, "a service check takes a non-empty string"),
        ({"http": "http://x/"}, "give {url, status, contains}"),
        ({"port": {"port": 22, "protocol": "sctp"}}, "protocol 'sctp': use tcp or udp"),
        ("port 22", "expected an object like"),
    ],
)
def test_a_bad_check_is_an_input_error_naming_it(bad: object, says: str) -> None:
    with pytest.raises(InvalidInput, match="check") as exc:
        Check.from_dict(bad)
    assert says in exc.value.message
