"""``drctl demo prepare`` makes its restore points through the agent: one config and one full job
per demo server, each job's signed status record readable by ``drctl agent status``, the agent keys
recorded in the stack file, and the points restorable.

Then db01's PostgreSQL runs on after its disk point and archives its WAL into the repository.

Slow: backs up the five demo disks (images from the shared cache, built on first use)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from drctl.demo.images.builder import build_demo_images, default_images_dir
from drctl.plan.load import load_plan
from tests.conftest import demo_project

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
DRCTL = str(REPO_ROOT / ".venv" / "bin" / "drctl")


def _drctl(*args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([DRCTL, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=1200)


def test_prepare_backs_up_every_demo_server_through_its_agent(tmp_path, seaweed_s3_plain):
    plan = load_plan(REPO_ROOT / "recovery_plans" / "demo.yaml")
    build_demo_images(plan, images_dir=default_images_dir())
    # The bucket, as `drctl local up` creates demo-backups (db01's PostgreSQL archives into it too).
    repo = seaweed_s3_plain.url("repo")
    proj = demo_project(tmp_path, repository=repo, reports=str(tmp_path / "reports"))
    state = tmp_path / "state"
    state.mkdir()
    os.symlink(default_images_dir(), state / "images")
    env = {
        **os.environ,
        **seaweed_s3_plain.env,
        "DRCTL_PROJECT_DIR": str(proj),
        "DRCTL_STATE_DIR": str(state),
    }

    proc = _drctl("demo", "prepare", "--json", env=env, cwd=proj)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    servers = {s.name for s in plan.servers}
    assert result["event"] == "result" and set(result["points"]) == servers == set(result["jobs"])

    agents = state / "demo" / "agents"
    for name in servers:
        config = agents / f"{name}.agent.yaml"
        assert oct(config.stat().st_mode & 0o777) == "0o600"
        assert oct((agents / f"{name}.agent-key").stat().st_mode & 0o777) == "0o600"
    # The stack file now holds each agent's public key, so monitoring trusts their records.
    stack_text = (proj / "stacks" / "Pulumi.demo.yaml").read_text()
    assert all(f"    {name}: " in stack_text for name in servers) and "agent_keys" in stack_text

    status = _drctl(
        "agent", "status", "--config", str(agents / "db01.agent.yaml"), "--json", env=env, cwd=proj
    )
    assert status.returncode == 0, status.stderr
    jobs = json.loads(status.stdout.splitlines()[-1])["jobs"]
    assert [(j["job_id"], j["result"], j["trust"], j["type"]) for j in jobs] == [
        (result["jobs"]["db01"], "ok", "verified", "full")
    ]
    assert jobs[0]["points"] == {"system": result["points"]["db01"]}

    # The point is a real restore point of the image (its sha256 is checked by the restore).
    pw = ["--password-file", result["password_file"]]
    out = tmp_path / "dns01.raw"
    restore = _drctl("restore", repo, "--server", "dns01", *pw, "--out", str(out), env=env, cwd=proj)
    assert restore.returncode == 0, restore.stderr
    assert out.stat().st_size == plan.server("dns01").boot_disk.size_gb * 1024**3

    # db01's PostgreSQL archived its WAL after the disk point: the segment it reported is in the
    # repository, authenticated (`drctl wal fetch`).
    segment = result["wal"]["db01"]["last_segment"]
    fetch = _drctl(
        "wal",
        "fetch",
        "--repo",
        repo,
        "--server",
        "db01",
        *pw,
        segment,
        str(tmp_path / "seg"),
        env=env,
        cwd=proj,
    )
    assert fetch.returncode == 0, fetch.stderr
    assert (tmp_path / "seg").stat().st_size == 16 * 1024**2
    assert set(result["wal"]) == {"db01"}
