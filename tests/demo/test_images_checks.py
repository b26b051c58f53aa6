"""The demo plan's own checks pass on the demo images, and fail on a broken image.

Every server of ``recovery_plans/demo.yaml`` boots in one sandbox (in its plan order), then its
checks run with the product's verifier (``drctl.activation.verify``, testinfra over SSH) from inside the
namespace, exactly as a drill runs them. Slow (five guests under software emulation: ~1-3 min
on 2 cores); the images come from the shared cache. Needs what test_sandbox_integration needs.
"""

from __future__ import annotations

import sys
import uuid
from datetime import timedelta

import pytest

from drctl.activation.targets.sandbox import Sandbox
from drctl.activation.verify.checks import run_checks_subprocess
from drctl.demo.images import build_demo_images
from drctl.demo.wal_archive import LATE_ITEM
from drctl.plan.load import load_plan
from drctl.runs.model import server_outcome, utc_now
from tests.activation.test_sandbox_integration import BOOT_TIMEOUT_S, PLAN_PATH, _require_tools

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CHECK_BUDGET_S = 240


@pytest.fixture(scope="module")
def plan():
    return load_plan(PLAN_PATH)


def _image_checks(server) -> tuple:
    """The server's checks a bare image can pass: not db01's read of the item committed after its
    disk point, which only the replay of its archived WAL brings (tests/activation/test_drill_demo.py)."""
    return tuple(c for c in server.checks if not (c.kind == "command" and LATE_ITEM[0] in c.spec))


def _verify(sb: Sandbox, server) -> list:
    deadline = utc_now() + timedelta(seconds=CHECK_BUDGET_S)
    return run_checks_subprocess(
        sb.ssh_url(server),
        _image_checks(server),
        deadline,
        prefix=sb.prefix,
        python=sys.executable,
        interval=2.0,
        noncritical_grace_s=20.0,
    )


def test_every_check_of_the_demo_plan_passes_on_its_image(plan, tmp_path):
    _require_tools()
    images = build_demo_images(plan)
    order = sorted(plan.servers, key=lambda s: s.boot_group)
    outcomes = {}
    with Sandbox(
        "c" + uuid.uuid4().hex[:10], plan, state_dir=tmp_path, ssh_identity_file=images.ssh_identity_file
    ) as sb:
        guests = {s.name: sb.start_server(s, images.images[s.name]) for s in order}
        for s in order:
            sb.wait_ssh(guests[s.name], timeout_s=BOOT_TIMEOUT_S)
        for s in order:
            results = _verify(sb, s)
            outcomes[s.name] = (server_outcome(results), [(r.check, r.ok, r.detail) for r in results])
    assert {name: o for name, (o, _) in outcomes.items()} == {s.name: "ok" for s in plan.servers}, outcomes


def test_a_broken_image_fails_its_service_check(plan, tmp_path):
    _require_tools()
    images = build_demo_images(plan, servers=["db01"], broken=["db01"])
    assert "-broken-" in images.images["db01"].name
    db = plan.server("db01")
    with Sandbox(
        "b" + uuid.uuid4().hex[:10], plan, state_dir=tmp_path, ssh_identity_file=images.ssh_identity_file
    ) as sb:
        guest = sb.start_server(db, images.images["db01"])
        sb.wait_ssh(guest, timeout_s=BOOT_TIMEOUT_S)  # the server itself boots ...
        deadline = utc_now() + timedelta(seconds=20)  # ... but PostgreSQL never comes: no long wait
        results = run_checks_subprocess(sb.ssh_url(db), db.checks, deadline, prefix=sb.prefix, interval=2.0)
    by_check = {r.check: r.ok for r in results}
    assert server_outcome(results) == "failed"
    assert by_check == {c.describe(): False for c in db.checks}, results
    assert {"port 5432", "service postgresql@15-main"} < set(by_check)
