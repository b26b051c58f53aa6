"""The one dependency graph (drctl.plan.graph): levels and cycles, also on plans far longer than a
recursive walk survives, and what `drctl validate` says about them."""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from drctl.errors import EXIT_INVALID, InvalidInput
from drctl.plan.graph import DependencyCycle, dependency_levels, find_cycles
from drctl.plan.rules import MAX_CYCLES_REPORTED, semantic_problems

DATA = Path(__file__).resolve().parents[1] / "data" / "plans"
CHAIN = 5000


def chain_plan(n: int = CHAIN, *, dependants_first: bool = False) -> dict[str, Any]:
    """A valid plan of ``n`` servers, each depending on the one before it (s0000 boots first),
    listed from s0000 on, or from the last one back (a depth-first walk then goes ``n`` deep)."""
    doc = yaml.safe_load((DATA / "cycle.yaml").read_text())
    model = doc["servers"][0]
    doc["sites"][0]["subnets"] = [{"name": "lan", "cidr": "10.20.0.0/16", "gateway": "10.20.0.1"}]
    net = ipaddress.ip_network("10.20.0.0/16")
    doc["servers"] = [
        {
            **model,
            "name": f"s{i:04d}",
            "nics": [{"subnet": "paris/lan", "ip": str(net[10 + i])}],
            "boot": {"group": 1, "depends_on": [f"s{i - 1:04d}"] if i else []},
        }
        for i in range(n)
    ]
    if dependants_first:
        doc["servers"].reverse()
    return doc


def depend(doc: dict[str, Any], name: str, *upstreams: str) -> None:
    server = next(s for s in doc["servers"] if s["name"] == name)
    server["boot"]["depends_on"] = [*server["boot"]["depends_on"], *upstreams]


def problems_within(doc: dict[str, Any], seconds: float) -> list[str]:
    start = time.perf_counter()
    found = [f"{where}: {message}" for where, message in semantic_problems(doc)]
    elapsed = time.perf_counter() - start
    assert elapsed < seconds, f"the plan rules took {elapsed:.2f} s"
    return found


@pytest.mark.parametrize("dependants_first", [False, True])
def test_a_5000_server_chain_is_valid_and_checked_in_well_under_a_second(dependants_first: bool) -> None:
    assert problems_within(chain_plan(dependants_first=dependants_first), 1.0) == []


def test_a_cycle_inside_a_long_chain_is_reported_once_naming_its_members() -> None:
    doc = chain_plan()
    depend(doc, "s0100", "s0102")  # s0102 already depends on s0101, which depends on s0100
    assert problems_within(doc, 1.0) == [
        "servers[100].boot.depends_on: dependency cycle s0100 -> s0102 -> s0101 -> s0100"
    ]


def test_a_cycle_through_the_whole_chain_starts_at_its_first_server() -> None:
    doc = chain_plan()
    depend(doc, "s0000", f"s{CHAIN - 1:04d}")
    (problem,) = problems_within(doc, 1.0)
    where, _, message = problem.partition(": ")
    members = message.removeprefix("dependency cycle ").split(" -> ")
    assert where == "servers[0].boot.depends_on"
    assert members[:3] == ["s0000", "s4999", "s4998"] and members[-1] == "s0000"
    assert len(members) == CHAIN + 1 and set(members) == {f"s{i:04d}" for i in range(CHAIN)}


def test_cycles_sharing_a_server_are_each_reported() -> None:
    doc = chain_plan(6)
    depend(doc, "s0001", "s0002")
    depend(doc, "s0003", "s0005")
    depend(doc, "s0002", "s0002")
    assert problems_within(doc, 1.0) == [
        "servers[1].boot.depends_on: dependency cycle s0001 -> s0002 -> s0001",
        "servers[2].boot.depends_on: dependency cycle s0002 -> s0002",
        "servers[3].boot.depends_on: dependency cycle s0003 -> s0005 -> s0004 -> s0003",
    ]


def test_the_list_of_cycles_is_bounded_and_says_so() -> None:
    doc = chain_plan(MAX_CYCLES_REPORTED + 5)
    for s in doc["servers"]:
        s["boot"]["depends_on"] = [s["name"]]
    found = problems_within(doc, 1.0)
    assert found[:MAX_CYCLES_REPORTED] == [
        f"servers[{i}].boot.depends_on: dependency cycle s{i:04d} -> s{i:04d}"
        for i in range(MAX_CYCLES_REPORTED)
    ]
    assert found[MAX_CYCLES_REPORTED:] == [
        f"servers: more dependency cycles than the {MAX_CYCLES_REPORTED} listed: "
        "break these first, then validate again"
    ]


def test_levels_of_a_long_chain_and_upstreams_outside_the_graph() -> None:
    chain = {f"s{i}": [f"s{i - 1}"] if i else ["elsewhere"] for i in reversed(range(CHAIN))}
    start = time.perf_counter()
    levels = dependency_levels(chain)
    assert time.perf_counter() - start < 1.0
    assert list(levels) == list(chain)  # the graph's order
    assert levels["s0"] == 0 and levels[f"s{CHAIN - 1}"] == CHAIN - 1
    assert dependency_levels({"dns": [], "db": ["dns"], "app": ["db", "dns", "db"], "files": []}) == {
        "dns": 0,
        "db": 1,
        "app": 2,
        "files": 0,
    }


def test_levels_refuse_a_cycle_naming_its_members_in_depends_on_order() -> None:
    graph = {"dns": [], "web": ["app"], "app": ["db"], "db": ["dns", "web"]}
    with pytest.raises(DependencyCycle) as exc:
        dependency_levels(graph)
    assert exc.value.cycle == ["web", "app", "db", "web"]
    assert exc.value.message == ("dependency cycle: web -> app -> db -> web (remove one of these depends_on)")
    assert isinstance(exc.value, InvalidInput) and exc.value.exit_code == EXIT_INVALID
    assert find_cycles(graph) == [["web", "app", "db", "web"]]
    assert find_cycles({"a": ["b"], "b": []}) == []
