"""`drctl policy` (rule `recovery-space-within-quotas`) and `drctl preflight` say the same thing about
what a recovery space needs in the project: run the policy with every quota at 0 so that it reports
each need, and compare with the preflight's needs of the same graph (plus the project's `default`
group, which the policy always counts and the preflight adds where the project has none yet).
What the real Neutron reports for such a space is checked in test_neutron_accepts_space.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks.plan_generator import write_project
from drctl.policies.dr_rules import PROJECT_DEFAULT_GROUP, QUOTA_TYPES
from drctl.stack.config import load_stack
from drctl.stack.policy import check_resources, policy_config
from drctl.stack.preflight import needs_of
from drctl.stack.preview import preview_stack

ROOT = Path(__file__).resolve().parents[2]


def policy_needs(resources, stack: str) -> dict[str, int]:
    config = policy_config(failover=True, quotas=dict.fromkeys(QUOTA_TYPES, 0))
    report = check_resources(resources, stack=stack, config=config)
    out = {}
    for v in report.violations:
        if v.policy == "recovery-space-within-quotas":
            m = re.match(r"quota (\w+): the stack needs (\d+) \(", v.message)
            assert m, v.message
            out[m[1]] = int(m[2])
    return out


def preflight_needs(resources, stack: str, project: Path, servers=()) -> dict[str, int]:
    settings = load_stack(stack, project).settings
    needs = needs_of(resources, servers, settings).network
    with_default = {q: n + PROJECT_DEFAULT_GROUP.get(q, 0) for q, n in needs.items()}
    return {q: n for q, n in with_default.items() if n}


@pytest.fixture(scope="module")
def bench_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_project(tmp_path_factory.mktemp("bench"), servers=200, sites=4, networks=16)


@pytest.mark.parametrize(("stack", "failover"), [("demo", False), ("demo", True), ("acme", False)])
def test_policy_and_preflight_count_the_clients_space_alike(stack, failover):
    graph = preview_stack(stack, failover=failover, project_dir=ROOT)
    servers = load_stack(stack, ROOT).plan.servers if failover else ()
    counted = policy_needs(graph.resources, stack)
    assert counted == preflight_needs(graph.resources, stack, ROOT, servers)
    assert {"security_group", "security_group_rule", "network", "subnet", "port", "address_group"} <= set(
        counted
    )
    if failover:  # each recovered server's ports count too
        assert counted["port"] > policy_needs(preview_stack(stack, project_dir=ROOT).resources, stack)["port"]


def test_policy_and_preflight_count_a_200_server_space_alike(bench_project):
    graph = preview_stack("bench", project_dir=bench_project)
    counted = policy_needs(graph.resources, "bench")
    assert counted == preflight_needs(graph.resources, "bench", bench_project)
    # sized by roles: well inside Neutron's default 10 groups and 100 rules
    assert counted["security_group"] <= 10 and counted["security_group_rule"] <= 100
