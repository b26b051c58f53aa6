"""`drctl agent config`: the config rendered from the plan and stack, its key, and bad input."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from drctl.agent import records
from drctl.agent.config import load_config, parse_disk_spec
from drctl.cli import main
from drctl.errors import InvalidInput
from drctl.stack.config import load_stack
from tests.conftest import demo_project


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    proj = demo_project(tmp_path, repository="s3://demo-vault/repo", reports=str(tmp_path / "reports"))
    monkeypatch.setenv("DRCTL_PROJECT_DIR", str(proj))
    for name in ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE"):
        monkeypatch.delenv(name, raising=False)
    return proj


def _config(out: Path, *extra: str, server: str = "db01") -> int:
    return main(["agent", "config", "demo", "--server", server, "--out", str(out), *extra])


def test_config_maps_every_plan_disk_and_records_the_agent_key_in_the_stack(project, tmp_path, capsys):
    plan = project / "recovery_plans" / "demo.yaml"
    old = "backup: {schedule: [{type: full, every: 1d}, {type: log, every: 15m}]}"
    assert old in plan.read_text()
    plan.write_text(
        plan.read_text().replace(old, old[:-1] + ", retention: {keep_daily: 7, keep_monthly: 3}}")
    )
    out = tmp_path / "etc"
    state = tmp_path / "state"
    assert (
        _config(
            out,
            "--disk",
            "system=/dev/vg0/db:lvm-snapshot",
            "--pre-hook",
            "psql -c CHECKPOINT",
            "--state-dir",
            str(state),
        )
        == 0
    )
    cfg_path = out / "db01.agent.yaml"
    key_path = out / "db01.agent-key"
    for path in (cfg_path, key_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cfg = load_config(cfg_path)
    assert (cfg.client, cfg.server, cfg.repository) == ("demo", "db01", "s3://demo-vault/repo")
    assert [(d.name, d.path, d.method, d.snapshot_size) for d in cfg.disks] == [
        ("system", "/dev/vg0/db", "lvm-snapshot", "1G")
    ]
    assert [(e.type, e.every_s) for e in cfg.schedule] == [("full", 86400), ("log", 900)]  # the plan's
    assert cfg.hooks.pre == "psql -c CHECKPOINT" and cfg.state_dir == state and cfg.key == key_path
    assert cfg.retention == {"keep_daily": 7, "keep_weekly": 0, "keep_monthly": 3}
    text = cfg_path.read_text()
    assert "password" not in yaml.safe_load(text) and "BEGIN" not in text
    public = records.public_key_text(records.load_agent_key(key_path).public_key())
    assert load_stack("demo").values["agent_keys"] == {"db01": public}
    assert "agent_keys.db01" in capsys.readouterr().out

    # rendering again (another disk path) keeps the agent's identity
    assert _config(out, "--disk", "system=/dev/vg0/db2", "--state-dir", str(state)) == 0
    assert load_config(cfg_path).disks[0].path == "/dev/vg0/db2"
    assert load_stack("demo").values["agent_keys"] == {"db01": public}


def test_qemu_disks_carry_the_vm_sockets(project, tmp_path):
    out = tmp_path / "etc"
    assert (
        _config(
            out,
            "--disk",
            "system=/var/lib/vm/db01.qcow2:qemu",
            "--qmp-socket",
            "/run/vm/db01.qmp",
            "--guest-agent-socket",
            "/run/vm/db01.qga",
        )
        == 0
    )
    (disk,) = load_config(out / "db01.agent.yaml").disks
    assert (disk.method, disk.qmp_socket, disk.guest_agent_socket) == (
        "qemu",
        "/run/vm/db01.qmp",
        "/run/vm/db01.qga",
    )


@pytest.mark.parametrize(
    ("server", "argv", "message"),
    [
        ("nosuch", ["--disk", "system=/dev/sda"], "the plan has no server 'nosuch'"),
        ("db01", ["--disk", "data=/dev/sdb"], "server db01 has no disk 'data'"),
        ("db01", [], "disk(s) system of the plan are not mapped; add --disk system=PATH[:METHOD]"),
        (
            "db01",
            ["--disk", "system=/dev/sda:zfs-snap"],
            "method 'zfs-snap' is not one of none, lvm-snapshot, qemu",
        ),
        ("db01", ["--disk", "system=dev/sda"], "the path must be absolute"),
        (
            "db01",
            ["--disk", "system=/dev/sda:qemu"],
            "method qemu needs the VM's --qmp-socket and --guest-agent-socket",
        ),
        ("db01", ["--disk", "system=/dev/sda", "--disk", "system=/dev/sdb"], "disk system is mapped twice"),
    ],
)
def test_bad_mappings_are_clear_errors_and_write_nothing(project, tmp_path, capsys, server, argv, message):
    out = tmp_path / "etc"
    assert _config(out, *argv, server=server) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()
    assert "agent_keys" not in load_stack("demo").values


def test_a_colon_in_a_path_is_kept_when_no_method_follows():
    assert parse_disk_spec("system=/dev/disk/by-path/pci-0000:00:1f.2") == (
        "system",
        "/dev/disk/by-path/pci-0000:00:1f.2",
        "none",
    )


def _write(path: Path, doc) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


def test_an_invalid_config_file_lists_every_problem_with_its_field(tmp_path, capsys):
    bad = _write(
        tmp_path / "bad.yaml",
        {
            "format": "drctl-agent-v1",
            "client": "demo",
            "stack": "demo",
            "server": "DB 01",
            "repository": "s3://x/repo",
            "state_dir": "relative/state",
            "key": "/etc/drctl/db01.agent-key",
            "disks": [
                {"name": "system", "path": "/dev/sda", "method": "qemu"},
                {"name": "data", "path": "/dev/sdb", "method": "none", "snapshot_size": "1G"},
            ],
            "hooks": {"pre": "echo 'unterminated"},
            "schedule": [],
        },
    )
    assert main(["agent", "run", "--config", str(bad), "--type", "full"]) == 1
    err = capsys.readouterr().err
    for where in ("server:", "state_dir:", "disks.0:", "disks.1:", "hooks.pre:"):
        assert f"  {where}" in err, where
    assert str(bad) in err and "drctl agent config" in err and "Traceback" not in err


def test_a_config_that_is_not_yaml_names_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("disks: [\n")
    assert main(["agent", "status", "--config", str(bad)]) == 1
    assert str(bad) in capsys.readouterr().err


def test_parse_disk_spec_rejects_a_spec_without_a_path():
    with pytest.raises(InvalidInput, match="expected DISK=PATH"):
        parse_disk_spec("system")
