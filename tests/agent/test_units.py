"""`drctl agent units`: one timer per schedule entry, checked by systemd itself
(`systemd-analyze verify`, which needs no running systemd)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from drctl.agent.units import timer_schedule
from drctl.cli import main
from tests.agent.agents import make_agent

DRCTL = str(Path(sys.executable).parent / "drctl")
needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="apt-get install systemd")


def _verify(files: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", *map(str, files)], capture_output=True, text=True, timeout=120
    )


def _agent(tmp_path: Path, schedule: list[dict]) -> Path:
    cfg = make_agent(tmp_path / "agent", "s3://demo-vault/repo", {"system": "/dev/vg0/db"})
    doc = yaml.safe_load(cfg.read_text())
    doc["schedule"] = schedule
    cfg.write_text(yaml.safe_dump(doc))
    return cfg


@pytest.mark.parametrize(
    ("every_s", "lines"),
    [
        (900, ["OnCalendar=*-*-* *:00/15:00"]),
        (3600, ["OnCalendar=*-*-* 00/1:00:00"]),
        (6 * 3600, ["OnCalendar=*-*-* 00/6:00:00"]),
        (86400, ["OnCalendar=*-*-* 00:00:00"]),
        (7 * 86400, ["OnCalendar=Sun *-*-* 00:00:00"]),
        (3 * 86400, ["OnBootSec=900s", "OnUnitActiveSec=259200s"]),
        (5400, ["OnBootSec=900s", "OnUnitActiveSec=5400s"]),
    ],
)
def test_intervals_map_to_timer_settings(every_s, lines):
    assert timer_schedule(every_s) == lines


@needs_systemd
def test_units_pass_systemd_analyze_verify_and_run_the_plan_schedule(tmp_path, capsys):
    cfg = _agent(
        tmp_path,
        [
            {"type": "full", "every_s": 7 * 86400},
            {"type": "incremental", "every_s": 86400},
            {"type": "differential", "every_s": 3 * 86400},
            {"type": "log", "every_s": 900},
        ],
    )
    out = tmp_path / "units"
    command = "pass show 'drctl/db01 repo'"
    assert (
        main(
            [
                "agent",
                "units",
                "--config",
                str(cfg),
                "--out",
                str(out),
                "--drctl",
                DRCTL,
                "--password-command",
                command,
            ]
        )
        == 0
    )
    stdout, stderr = capsys.readouterr()
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        f"drctl-agent-db01-{t}.{kind}"
        for t in ("full", "incremental", "differential", "prune")
        for kind in ("service", "timer")
    )
    assert "log every 15m: not rendered" in stderr and "WAL archiver" in stderr
    verified = _verify(sorted(out.iterdir()))
    assert verified.returncode == 0, verified.stdout + verified.stderr

    full = (out / "drctl-agent-db01-full.service").read_text()
    assert f"ExecStart={DRCTL} agent run --config {cfg.resolve()} --type full --password-command " in full
    assert "\"pass show 'drctl/db01 repo'\"" in full
    assert "# Not rendered: log every 15m" in full
    timer = (out / "drctl-agent-db01-full.timer").read_text()
    for line in (
        "OnCalendar=Sun *-*-* 00:00:00",
        "Persistent=true",
        "RandomizedDelaySec=3600",
        "Unit=drctl-agent-db01-full.service",
    ):
        assert line in timer.splitlines()
    assert "--type prune" in (out / "drctl-agent-db01-prune.service").read_text()
    assert "OnUnitActiveSec=259200s" in (out / "drctl-agent-db01-differential.timer").read_text()
    for path in out.iterdir():
        assert path.stat().st_mode & 0o777 == 0o644  # systemd reads them; they hold no secret


@needs_systemd
def test_verify_catches_a_broken_unit_so_the_check_above_means_something(tmp_path, capsys):
    cfg = _agent(tmp_path, [{"type": "full", "every_s": 86400}])
    out = tmp_path / "units"
    assert main(["agent", "units", "--config", str(cfg), "--out", str(out), "--drctl", DRCTL]) == 0
    timer = out / "drctl-agent-db01-full.timer"
    timer.write_text(timer.read_text().replace("OnCalendar=*-*-* 00:00:00", "OnCalendar=every tuesdayish"))
    assert _verify(sorted(out.iterdir())).returncode != 0


def test_units_print_to_stdout_without_out_and_never_hold_the_password(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DRCTL_PASSWORD", "units-secret-password")
    cfg = _agent(tmp_path, [{"type": "full", "every_s": 86400}])
    assert (
        main(
            [
                "agent",
                "units",
                "--config",
                str(cfg),
                "--drctl",
                DRCTL,
                "--password-file",
                "/etc/drctl/pw 100%",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "### drctl-agent-db01-full.service" in text and "### drctl-agent-db01-prune.timer" in text
    assert '--password-file "/etc/drctl/pw 100%%"' in text  # quoted, % escaped for systemd
    assert "units-secret-password" not in text
    assert "EnvironmentFile=-/etc/drctl/agent-db01.env" in text
