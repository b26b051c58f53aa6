"""The shipped alerting rules, checked and unit-tested by Prometheus's own promtool, and fed with the
very metric names and labels ``drctl status --prometheus`` writes."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drctl.status.metrics import exposition
from drctl.status.model import ClientState, DiskBackup, JobInfo, NextTest, ServerState
from tests.conftest import server_missing

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        server_missing("promtool is missing: install Debian's prometheus package (.ci/install-system-deps)")
    return str(tool)


def _run(promtool: str, *args: str) -> str:
    done = subprocess.run([promtool, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_rules_are_valid(promtool) -> None:
    assert "SUCCESS: 7 rules found" in _run(promtool, "check", "rules", "drctl-rules.yml")


def test_the_rules_fire_on_breaching_series_and_stay_quiet_on_the_others(promtool) -> None:
    assert "SUCCESS" in _run(promtool, "test", "rules", "drctl-rules.test.yml")


def test_the_rules_use_only_metrics_drctl_writes_and_the_exposition_is_valid(promtool) -> None:
    server = ServerState(
        "web01",
        "dr",
        86400,
        (DiskBackup("system", None),),
        last_job=JobInfo("j1", "incremental", "failed", datetime.now(UTC)),
        consecutive_failures=2,
    )
    client = ClientState(
        "alpha",
        "alpha",
        "Alpha",
        "s3://b/alpha",
        servers=(server,),
        tests=(NextTest("dr", None, "never-tested", overdue=True),),
    )
    lost = ClientState(
        "delta",
        "delta",
        "Delta",
        "s3://b/delta",
        tests=(NextTest("dr", None, "unknown", overdue=False, problem="run summary X unreadable"),),
        unreadable_runs=("X: not valid JSON",),
    )
    text = exposition([client, lost]).decode()
    written = set(re.findall(r"^(drctl_[a-z_]+)", text, re.M))
    used = set(re.findall(r"\b(drctl_[a-z_]+)", (DEPLOY / "drctl-rules.yml").read_text()))
    assert used <= written, used - written
    assert text.endswith("# EOF\n")  # OpenMetrics
    assert 'drctl_test_due_timestamp_seconds{client="alpha",stack="alpha"} 0.0' in text  # never tested
    assert "# HELP drctl_test_due_timestamp_seconds" in text and "0: never tested" in text
    assert 'drctl_test_due_timestamp_seconds{client="delta"' not in text  # unknown is absent, not 0
    assert 'drctl_run_summaries_unreadable{client="delta",stack="delta"} 1.0' in text
    assert 'drctl_backup_age_seconds{class="dr",client="alpha",server="web01",stack="alpha"} +Inf' in text
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert "error" not in (done.stdout + done.stderr).lower(), done.stdout + done.stderr
