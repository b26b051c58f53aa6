"""``drctl protect`` around a real disaster activation (real encrypted repository in a local
directory, real restores, the hypervisor faked at the target interface as in test_activation): the
recovered servers' disks are handed to the job by an injected source (a changed copy of the
restored file, read as the ``none`` method reads it), so what is checked here is the command's own
work: refusals, only the changed chunks uploaded, signed records that ``drctl status`` trusts, the
report signed again with the points, and the units on the plan's schedule."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from drctl.activation.protection import (
    AgentKeyMismatch,
    GuestNotRunning,
    NotInDisaster,
    protect,
)
from drctl.activation.protection_units import unit_files
from drctl.activation.targets.sandbox import NoActiveRun
from drctl.agent import records
from drctl.agent.config import DiskConfig
from drctl.agent.consistency import ConsistentSource
from drctl.cli import main
from drctl.repo.backup import backup_disk
from drctl.repo.errors import WrongPassword
from drctl.repo.points import load_readable_points
from drctl.repo.repository import open_repository
from drctl.repo.restore import restore_disk
from drctl.runs.store import RunStore
from drctl.stack.config import load_stack
from drctl.status.collect import status_of
from drctl.storage.local import LocalDirStorage
from tests.activation.test_activation import PASSWORD, FakeTarget, run
from tests.activation.test_activation import project as project

DISASTER = {"mode": "disaster", "yes": True, "override_window": True, "reason": "site lost"}


class ChangedDisks:
    """The ProtectionSource of the tests: each server's disk is its restored file with one 4 KiB
    block changed (what the guest wrote since), read as it is; ``down`` servers are not running."""

    def __init__(self, restore_dir: Path, down=()) -> None:
        self.restore_dir, self.down, self.read = restore_dir, set(down), []

    def disks(self, server):
        if server.name in self.down:
            raise GuestNotRunning(f"server {server.name} is not running")
        path = self.restore_dir / f"{server.name}-system.raw"
        with open(path, "r+b") as f:
            f.seek(1 << 20)
            f.write(b"written during the disaster".ljust(4096, b"!"))
        return [DiskConfig("system", str(path))]

    @contextlib.contextmanager
    def consistent_source(self, disk):
        self.read.append(disk.path)
        yield ConsistentSource(disk.path)


@pytest.fixture
def disaster(project):
    """A disaster activation of dns01 and web01, restored from 4 MiB points (four 1 MiB chunks)."""
    proj, tmp, images = project
    repo = open_repository(LocalDirStorage(tmp / "vault" / "repo"), PASSWORD)
    for name in ("dns01", "web01"):
        img = tmp / f"{name}-big.img"
        img.write_bytes(os.urandom(4 << 20))
        backup_disk(repo, img, server=name, disk="system")
        images[name] = img.read_bytes()
    _, summary, _ = run(project, {**DISASTER, "servers": ("dns01", "web01")}, FakeTarget(images))
    active = json.loads((tmp / "state" / "active" / "demo.json").read_text())
    return proj, tmp, summary, Path(active["restore_dir"])


def _protect(proj, tmp, source, **kw):
    repo_store = LocalDirStorage(tmp / "vault" / "repo")
    return protect(
        "demo",
        tmp / "state",
        lambda storage: open_repository(storage, PASSWORD),
        project_dir=proj,
        source_factory=lambda active, cfg, state: source,
        **kw,
    ), repo_store


def test_each_recovered_server_gets_a_deduplicated_point_a_trusted_record_and_a_report_line(disaster):
    proj, tmp, summary, restore_dir = disaster
    source = ChangedDisks(restore_dir)
    result, store = _protect(proj, tmp, source)
    assert result.exit_code == 0 and [s.server for s in result.servers] == ["dns01", "web01"]
    repo = open_repository(store, PASSWORD)
    for s in result.servers:
        r = s.outcome.record
        point = r.points["system"]
        assert point != summary.server(s.server).restore_point  # a new restore point
        # Only the changed chunk moved: one 1 MiB chunk of the 4 MiB disk.
        assert r.bytes_read == 4 << 20 and r.bytes_new == 1 << 20, r
        assert 0.9 * (1 << 20) < r.bytes_uploaded < 1.1 * (1 << 20), r
        out = tmp / f"{s.server}-back.raw"
        restore_disk(repo, server=s.server, disk="system", point=point, out=out)
        assert out.read_bytes() == (restore_dir / f"{s.server}-system.raw").read_bytes()

    # The records are signed by each server's agent key, recorded in the stack: status trusts them.
    cfg = load_stack("demo", proj)
    assert set(cfg.values["agent_keys"]) == {"dns01", "web01"}
    for key in ("dns01", "web01"):
        assert (
            oct((tmp / "state" / "protect" / "demo" / "keys" / f"{key}.agent-key").stat().st_mode)[-3:]
            == "600"
        )
    (state,) = status_of(["demo"], project_dir=proj, state_dir=tmp / "state")
    web = next(s for s in state.servers if s.name == "web01")
    assert web.last_job.job_id == result.servers[1].outcome.record.job_id and web.last_job.result == "ok"
    assert web.disks[0].point == result.servers[1].outcome.record.points["system"]
    assert web.disks[0].source == "record" and not web.untrusted

    # The run's report lists them, signed again.
    stored = RunStore(tmp / "state").find(summary.run_id)
    assert RunStore(tmp / "state").verify(stored.path)
    assert [(p.server, p.points["system"]) for p in stored.summary.protection] == [
        (s.server, s.outcome.record.points["system"]) for s in result.servers
    ]
    html = stored.html_path.read_text()
    assert 'id="protection"' in html and result.servers[0].outcome.record.points["system"] in html
    # The copy in the report container is the new one too.
    remote = LocalDirStorage(tmp / "vault" / "reports")
    assert any(k.endswith(f"{summary.run_id}/summary.json") for k in (o.key for o in remote.list("")))

    # A second job adds to the list; nothing changed: nothing uploaded beyond the manifest.
    again, _ = _protect(proj, tmp, ChangedDisks(restore_dir), servers=("web01",), job_type="full")
    assert again.servers[0].outcome.record.type == "full"
    assert again.servers[0].outcome.record.bytes_uploaded == 0
    assert len(RunStore(tmp / "state").find(summary.run_id).summary.protection) == 3


def test_a_server_that_is_not_running_fails_alone_with_its_signed_record(disaster):
    proj, tmp, _, restore_dir = disaster
    result, store = _protect(proj, tmp, ChangedDisks(restore_dir, down={"dns01"}))
    assert result.exit_code == 20
    assert isinstance(result.servers[0].error, GuestNotRunning)
    assert result.servers[1].outcome.record.result == "ok"
    cfg = load_stack("demo", proj)
    keys = {"dns01": records.parse_public_key(cfg.values["agent_keys"]["dns01"], where="test")}
    (stored,) = records.read(store, records.list_keys(store, "dns01"), keys)
    assert stored.trusted and stored.record.result == "failed"
    assert stored.record.error_class == "GuestNotRunning"


def test_no_active_run_or_a_test_run_is_refused_before_anything_is_read(project, capsys):
    proj, tmp, images = project
    source = ChangedDisks(tmp)
    with pytest.raises(NoActiveRun, match="has no active run"):
        _protect(proj, tmp, source)
    run(
        project,
        {"mode": "test", "servers": ("web01",), "override_window": True, "reason": "r"},
        FakeTarget(images),
    )
    with pytest.raises(NotInDisaster, match="not a disaster activation"):
        _protect(proj, tmp, source)
    assert source.read == []
    code = main(["protect", "demo", "--state-dir", str(tmp / "state"), "--project-dir", str(proj)])
    assert code == 1
    err = capsys.readouterr().err
    assert "not a disaster activation" in err and "Traceback" not in err


def test_servers_outside_the_run_are_refused(disaster):
    proj, tmp, _, restore_dir = disaster
    with pytest.raises(Exception, match="db01 not recovered by run"):
        _protect(proj, tmp, ChangedDisks(restore_dir), servers=("db01",))


def test_a_key_that_is_not_the_recorded_one_is_refused_and_nothing_is_backed_up(disaster):
    proj, tmp, _, restore_dir = disaster
    keys = tmp / "keys"
    keys.mkdir()
    records.generate_agent_key(keys / "web01.agent-key")
    other = records.generate_agent_key(tmp / "other.key")
    stack_file = proj / "stacks" / "Pulumi.demo.yaml"
    doc = yaml.safe_load(stack_file.read_text())
    doc["config"]["flexible-recovery:agent_keys"] = {"web01": records.public_key_text(other.public_key())}
    stack_file.write_text(yaml.safe_dump(doc))
    source = ChangedDisks(restore_dir)
    result, _ = _protect(proj, tmp, source, servers=("web01",), key_dir=keys)
    assert isinstance(result.servers[0].error, AgentKeyMismatch) and result.exit_code == 1
    assert "would read as forged" in result.servers[0].error.message and source.read == []
    # A recorded key whose private half is not at hand: named, with the next step.
    shutil.rmtree(keys)
    result, _ = _protect(proj, tmp, source, servers=("web01",), key_dir=keys)
    assert "pass --agent-keys DIR" in result.servers[0].error.message


def test_units_run_protect_on_each_recovered_server_s_plan_schedule(disaster, tmp_path):
    proj, tmp, _, _ = disaster
    files, _ = unit_files(
        "demo", tmp / "state", "/usr/local/bin/drctl", project_dir=proj, password_file="/etc/drctl/pw"
    )
    cfg = load_stack("demo", proj)
    for name in ("dns01", "web01"):
        for entry in cfg.plan.server(name).backup:
            if entry.type == "log":
                continue
            service = files[f"drctl-protect-demo-{name}-{entry.type}.service"]
            assert f"protect demo --servers {name} --type {entry.type}" in service
            assert (
                "--password-file /etc/drctl/pw" in service
                and "Persistent=true" in files[f"drctl-protect-demo-{name}-{entry.type}.timer"]
            )
    assert not any("prune" in n or "db01" in n for n in files)
    if shutil.which("systemd-analyze") is None:
        pytest.skip("apt-get install systemd")
    out = tmp_path / "units"
    out.mkdir()
    drctl = tmp_path / "drctl"
    drctl.write_text("#!/bin/sh\n")
    drctl.chmod(0o755)
    files, _ = unit_files("demo", tmp / "state", str(drctl), project_dir=proj)
    for name, text in files.items():
        (out / name).write_text(text)
    check = subprocess.run(
        ["systemd-analyze", "verify", *map(str, sorted(out.iterdir()))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr
    assert "DRCTL_PASSWORD=" not in "".join(files.values())  # from the environment file, never a unit


def test_a_wrong_password_stops_at_the_first_server_with_its_record(disaster):
    proj, tmp, _, restore_dir = disaster
    source = ChangedDisks(restore_dir)
    with pytest.raises(WrongPassword):
        protect(
            "demo",
            tmp / "state",
            lambda storage: open_repository(storage, b"not the client's password"),
            project_dir=proj,
            source_factory=lambda active, cfg, state: source,
        )
    store = LocalDirStorage(tmp / "vault" / "repo")
    assert records.list_keys(store, "web01") == []  # not tried: it would fail the same way
    cfg = load_stack("demo", proj)
    keys = {"dns01": records.parse_public_key(cfg.values["agent_keys"]["dns01"], where="test")}
    (stored,) = records.read(store, records.list_keys(store, "dns01"), keys)
    assert stored.trusted and stored.record.error_class == "WrongPassword"


def test_backups_during_a_disaster_never_forget_the_points_from_before_it(disaster):
    """The plan keeps one daily point; the disaster's backups still leave the pre-disaster point
    (the last known-good state) in the repository."""
    proj, tmp, summary, restore_dir = disaster
    plan = proj / "recovery_plans" / "demo.yaml"
    text = plan.read_text()
    marker = "backup: {schedule: [{type: full, every: 7d}, {type: incremental, every: 1d}]}"
    assert marker in text
    plan.write_text(text.replace(marker, marker[:-1] + ", retention: {keep_daily: 1}}"))

    def web01_points() -> set[str]:
        repo = open_repository(LocalDirStorage(tmp / "vault" / "repo"), PASSWORD)
        return {p.id for p in load_readable_points(repo).points if p.server == "web01"}

    before = web01_points()
    assert summary.server("web01").restore_point in before
    for _ in range(2):
        result, store = _protect(proj, tmp, ChangedDisks(restore_dir), servers=("web01",))
        assert result.exit_code == 0 and result.servers[0].outcome.retention == ""
    after = web01_points()
    assert before < after and len(after) == len(before) + 2
