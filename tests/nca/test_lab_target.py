"""Which recovered server `drctl nca test` reaches by default: pure, no namespace needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from drctl.nca.lab import LabError, ProbeTarget, default_target
from drctl.plan.load import load_plan

DEMO = Path(__file__).resolve().parents[2] / "recovery_plans" / "demo.yaml"


def test_an_http_check_on_the_servers_own_address_first_then_a_tcp_port() -> None:
    plan = load_plan(DEMO)
    assert default_target(plan) == ProbeTarget("app01", "192.168.10.30", 8080, "/", "catalogue from db01")
    # dns01 has no http check: its first port check (53) is the service reached.
    assert default_target(plan, "dns01") == ProbeTarget("dns01", "192.168.10.10", 53)
    with pytest.raises(LabError, match="--target ghost"):
        default_target(plan, "ghost")
