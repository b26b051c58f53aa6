"""``drctl failback``'s rules without QEMU: the orchestration (:func:`run_failback`) with its side
effects injected (ordering, partial failback, an interruption at every step then a resume, a site
check that fails); the refusals of the command on real activation records (a real encrypted
repository on a local directory, the hypervisor faked at the target interface as in
test_deactivation); the restore on site for real (image file, NAS directory, block device); and
``drctl deactivate`` accepting a completed failback, and only for the servers that came home."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from drctl.activation.activation import Activation, ActivationRequest
from drctl.activation.deactivation import DisasterChangesAtRisk, deactivate
from drctl.activation.engine import ServerRun
from drctl.activation.failback import FailbackRefused, SiteCheckFailed, SyncResult, run_failback
from drctl.activation.failback_local import FailbackRequest, LocalSteps, failback
from drctl.activation.failback_sites import SiteTarget, SiteTargetsInvalid, load_site_targets
from drctl.activation.failback_state import FailbackState
from drctl.activation.guards import NotAuthorised
from drctl.cli import main
from drctl.errors import EXIT_RUN_FAILED
from drctl.plan.load import load_plan
from drctl.repo.backup import backup_disk
from drctl.repo.crypto import KdfParams
from drctl.repo.repository import init_repository, open_repository
from drctl.runs.model import CheckResult, ServerStatus, utc_now
from drctl.stack.config import load_stack
from drctl.storage.local import LocalDirStorage
from tests.activation.test_deactivation import FakeTarget
from tests.conftest import demo_project

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = b"correct horse battery staple"
PLAN = load_plan(ROOT / "recovery_plans" / "demo.yaml")
DNS, DB = PLAN.server("dns01"), PLAN.server("db01")


class Interrupted(BaseException):
    """Stands for Ctrl-C or a killed process in the middle of a step."""


class FakeSteps:
    """Records each step that completed; ``fail_at`` (step, server) raises instead of doing it;
    ``failing_checks``: server -> the check that fails on site."""

    def __init__(self, *, fail_at=None, failing_checks=None, quiet=True):
        self.done: list[tuple] = []
        self.fail_at, self.failing_checks, self.is_quiet = fail_at, failing_checks or {}, quiet

    def _step(self, *what):
        if self.fail_at is not None and what[:2] == self.fail_at:
            raise Interrupted(what)
        self.done.append(what)

    def sync(self, server):
        self._step("sync", server.name)
        now = utc_now()
        return SyncResult(
            now, "freeze", {"system": {"id": f"p-{server.name}", "created": now.isoformat(), "size": 9}}, 7
        )

    def quiet(self, server):
        return self.is_quiet

    def stop(self, server):
        self._step("stop", server.name)

    def restore(self, server, target, point_id):
        assert point_id == f"p-{server.name}"
        self._step("restore", server.name, target.disk)

    def verify(self, servers, images):
        self._step("verify", None, tuple(s.name for s in servers))
        runs = {}
        for s in servers:
            assert images[s.name] == {"system": Path(f"/site/{s.name}.raw")}
            now = utc_now()
            bad = self.failing_checks.get(s.name)
            checks = [
                CheckResult(c.describe(), c.describe() != bad, "observed", True, 1, now, now)
                for c in s.checks
            ]
            ok = bad is None
            runs[s.name] = ServerRun(
                s,
                status=ServerStatus.OK if ok else ServerStatus.FAILED,
                boot_started_at=now - timedelta(seconds=30),
                verified_at=now if ok else None,
                checks=checks,
            )
        return runs

    def release(self, server):
        self._step("release", server.name)

    def deactivate(self):
        self._step("deactivate", None)

    def report(self, state, servers):
        self._step("report", None)
        return "/state/runs/demo/fb"


def _targets(*servers):
    return {s.name: [SiteTarget(s.name, "system", "image", Path(f"/site/{s.name}.raw"))] for s in servers}


def _run(tmp_path, steps, scope=(DNS, DB), remaining=frozenset()):
    return _run_with(FailbackState(tmp_path, "demo", "r1"), steps, scope, remaining)


def _run_with(state, steps, scope, remaining=frozenset()):
    return run_failback(list(scope), _targets(*scope), state, steps, remaining_after=set(remaining))


def test_each_server_is_synced_then_stopped_before_anything_lands_on_site_and_released_last(tmp_path):
    steps = FakeSteps()
    events = []
    state = FailbackState(tmp_path, "demo", "r1")
    out = run_failback(
        [DNS, DB], _targets(DNS, DB), state, steps, remaining_after=set(), emit=lambda k, d: events.append(k)
    )
    assert steps.done == [
        ("sync", "dns01"),
        ("stop", "dns01"),
        ("sync", "db01"),
        ("stop", "db01"),
        ("restore", "dns01", "system"),
        ("restore", "db01", "system"),
        ("verify", None, ("dns01", "db01")),
        ("release", "dns01"),
        ("release", "db01"),
        ("report", None),
        ("deactivate", None),
    ]
    assert out.deactivated and out.report == "/state/runs/demo/fb"
    servers = {s["name"]: s for s in out.to_dict()["servers"]}
    assert servers["db01"]["bytes_moved"] == 7 and servers["db01"]["points"] == {"system": "p-db01"}
    assert events[0] == "failback-started" and events[-2:] == ["report", "servers-released"]
    # Kept on disk, private: what deactivate and a resume read.
    on_disk = json.loads(state.path.read_text())
    assert set(on_disk["servers"]["db01"]) == {"synced", "stopped", "restored", "verified", "released"}
    assert oct(state.path.stat().st_mode & 0o777) == "0o600"


def test_a_partial_failback_releases_only_its_servers_and_keeps_the_run_active(tmp_path):
    steps = FakeSteps()
    out = _run(tmp_path, steps, scope=(DNS,), remaining={"db01"})
    assert ("deactivate", None) not in steps.done and not out.deactivated
    assert {s for step, s, *_ in steps.done} == {"dns01", None}
    state = FailbackState(tmp_path, "demo", "r1")
    assert state.servers_done("released") == {"dns01"}
    # db01 later: the same record, the run deactivated with the last server.
    steps = FakeSteps()
    assert _run(tmp_path, steps, scope=(DB,)).deactivated
    assert ("sync", "dns01") not in steps.done and ("sync", "db01") in steps.done


STEPS = [
    ("sync", "db01"),
    ("stop", "dns01"),
    ("restore", "db01"),
    ("verify", None),
    ("release", "db01"),
    ("report", None),
    ("deactivate", None),
]


@pytest.mark.parametrize("fail_at", STEPS, ids=lambda s: "-".join(x for x in s if x))
def test_a_failback_interrupted_at_any_step_resumes_with_only_what_is_missing(tmp_path, fail_at):
    first = FakeSteps(fail_at=fail_at)
    with pytest.raises(Interrupted):
        _run(tmp_path, first)
    second = FakeSteps()
    out = _run(tmp_path, second)
    done = first.done + second.done
    for name in ("dns01", "db01"):
        for step in ("sync", "stop", "release"):
            assert done.count((step, name)) == 1, (step, name, done)
        assert done.count(("restore", name, "system")) == 1
    assert done.count(("deactivate", None)) == 1 and out.deactivated
    assert done.count(("report", None)) == 1
    verified = [d for d in done if d[0] == "verify"]
    assert sorted(n for d in verified for n in d[2]) == ["db01", "dns01"]  # each proven once


def test_a_guest_that_ran_on_after_its_last_backup_is_synchronised_again(tmp_path):
    with pytest.raises(Interrupted):
        _run(tmp_path, FakeSteps(fail_at=("stop", "dns01")))
    again = FakeSteps(quiet=False)  # someone resumed the paused guest meanwhile
    _run(tmp_path, again)
    assert again.done[:2] == [("sync", "dns01"), ("stop", "dns01")]


def test_a_failing_site_check_stops_before_any_release_and_the_rerun_resumes_there(tmp_path):
    steps = FakeSteps(failing_checks={"db01": "port 5432"})
    with pytest.raises(SiteCheckFailed) as e:
        _run(tmp_path, steps)
    assert e.value.exit_code == EXIT_RUN_FAILED == 20
    assert "on the original site, db01: failed check(s): port 5432 (observed)" in e.value.message
    assert "The recovery space is kept" in e.value.message and "`drctl failback demo`" in e.value.message
    assert not [d for d in steps.done if d[0] in ("release", "deactivate", "report")]
    state = FailbackState(tmp_path, "demo", "r1")
    assert state.servers_done("verified") == {"dns01"} and state.servers_done("released") == set()
    fixed = FakeSteps()
    _run(tmp_path, fixed)
    assert fixed.done[0] == ("verify", None, ("db01",))  # nothing synced nor restored again
    assert [d[0] for d in fixed.done] == ["verify", "release", "release", "report", "deactivate"]


# -- the site targets file --------------------------------------------------------------------------


def test_site_targets_name_every_problem_with_file_and_field(tmp_path):
    f = tmp_path / "targets.yaml"
    f.write_text("servers:\n  dns01: {system: /nonexistent-dir/dns01.raw, data: /x}\n  web01: /tmp/web.raw\n")
    with pytest.raises(SiteTargetsInvalid) as e:
        load_site_targets(f, {"dns01": ["system"], "db01": ["system"]})
    msg = e.value.message
    assert f"{f}: servers.web01: not a server of this failback" in msg
    assert f"{f}: servers.db01: missing" in msg
    assert f"{f}: servers.dns01.data: dns01 has no disk data" in msg
    assert f"{f}: servers.dns01.system: directory /nonexistent-dir does not exist" in msg


def test_site_target_kinds_follow_what_is_at_the_path(tmp_path):
    (tmp_path / "nas").mkdir()
    f = tmp_path / "targets.json"
    f.write_text(json.dumps({"servers": {"dns01": str(tmp_path / "dns01.raw"), "db01": {"system": "nas"}}}))
    got = load_site_targets(f, {"dns01": ["system"], "db01": ["system"]})
    assert got["dns01"][0].kind == "image" and got["dns01"][0].image_path == tmp_path / "dns01.raw"
    assert got["db01"][0].kind == "directory"
    assert got["db01"][0].image_path == tmp_path / "nas" / "db01-system.raw"  # relative to the file


# -- the command on real activation records ---------------------------------------------------------


@pytest.fixture
def project(tmp_path):
    proj = demo_project(
        tmp_path, repository=str(tmp_path / "vault" / "repo"), reports=str(tmp_path / "vault" / "reports")
    )
    store = LocalDirStorage(tmp_path / "vault" / "repo")
    store.create()
    LocalDirStorage(tmp_path / "vault" / "reports").create()
    repo = init_repository(store, PASSWORD, chunk_size=1 << 20, kdf=KdfParams(n=2**12, r=8, p=1))
    for name in ("dns01", "db01"):
        img = tmp_path / f"{name}.img"
        img.write_bytes(os.urandom(3 << 20))
        backup_disk(repo, img, server=name, disk="system")
    return proj, tmp_path


def _activate(project, mode):
    proj, tmp = project
    req = ActivationRequest(
        stack="demo",
        mode=mode,
        target="local",
        requested_by="Alice Martin",
        servers=("dns01", "db01"),
        override_window=True,
        reason="exercise",
        yes=True,
    )
    act = Activation(
        req,
        password=PASSWORD,
        state_dir=tmp / "state",
        project_dir=proj,
        target_factory=lambda a, deadline_for: (FakeTarget(), lambda: None),
    )
    return act.execute().run_id


def _failback(project, targets, **kw):
    proj, tmp = project
    req = FailbackRequest(
        stack="demo", requested_by=kw.pop("requested_by", "Alice Martin"), site_targets=targets, **kw
    )
    return failback(req, password=PASSWORD, state_dir=tmp / "state", project_dir=proj)


def test_failback_refuses_without_a_disaster_run(project):
    proj, tmp = project
    with pytest.raises(FailbackRefused, match="no active run"):
        _failback(project, tmp / "t.yaml")
    _activate(project, "test")
    with pytest.raises(FailbackRefused, match="test-mode activation: production never moved"):
        _failback(project, tmp / "t.yaml")
    record = tmp / "state" / "active" / "demo.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "mode": "disaster", "target": "cloud"}))
    with pytest.raises(
        FailbackRefused, match="runs on the cloud target: drctl fails back from the local target only"
    ):
        _failback(project, tmp / "t.yaml")


def test_failback_checks_requester_servers_and_targets_before_touching_anything(project, capsys, monkeypatch):
    proj, tmp = project
    monkeypatch.setenv("DRCTL_PASSWORD", PASSWORD.decode())
    run_id = _activate(project, "disaster")
    with pytest.raises(NotAuthorised):
        _failback(project, tmp / "t.yaml", requested_by="Bruno Petit")
    with pytest.raises(FailbackRefused, match="--servers: web01 not to fail back in run"):
        _failback(project, tmp / "t.yaml", servers=("web01",))
    (tmp / "t.yaml").write_text("servers:\n  dns01: /nonexistent-dir/dns01.raw\n")
    code = main(
        ["failback", "demo", "--to", str(tmp / "t.yaml"), "--requested-by", "Alice Martin"]
        + ["--state-dir", str(tmp / "state"), "--project-dir", str(proj)]
    )
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"drctl: {tmp / 't.yaml'}: servers.dns01.system: directory /nonexistent-dir does not exist" in err
    assert "servers.db01: missing" in err
    assert (tmp / "state" / "active" / "demo.json").exists()
    assert not (tmp / "state" / "failback" / "demo" / f"{run_id}.json").exists()
    # An image target that already exists is refused before any guest is touched.
    (tmp / "nas").mkdir()
    (tmp / "nas" / "db01-system.raw").write_bytes(b"the site's old disk")
    (tmp / "t.yaml").write_text(f"servers:\n  dns01: {tmp / 'dns01.raw'}\n  db01: {tmp / 'nas'}\n")
    with pytest.raises(SiteTargetsInvalid, match=r"servers.db01.system: .*db01-system.raw already exists"):
        _failback(project, tmp / "t.yaml")
    assert (tmp / "nas" / "db01-system.raw").read_bytes() == b"the site's old disk"
    assert not FailbackState(tmp / "state", "demo", run_id).servers_done("synced")


def _steps(project, run_id):
    proj, tmp = project
    cfg = load_stack("demo", proj)
    repo = open_repository(LocalDirStorage(tmp / "vault" / "repo"), PASSWORD)
    active = json.loads((tmp / "state" / "active" / "demo.json").read_text())
    req = FailbackRequest(stack="demo", requested_by="Alice Martin", site_targets=tmp / "t.yaml")
    return LocalSteps(cfg, req, repo, tmp / "state", active, {}, lambda k, d: None, "fb1"), repo


def _point(repo, server):
    from drctl.repo.points import find_point

    return find_point(repo, server, "system")


def test_the_restore_on_site_writes_verified_images_and_never_over_another_file(project):
    proj, tmp = project
    steps, repo = _steps(project, _activate(project, "disaster"))
    (tmp / "nas").mkdir()
    p = _point(repo, "db01")
    steps.restore(DB, SiteTarget("db01", "system", "directory", tmp / "nas"), p.id)
    assert (tmp / "nas" / "db01-system.raw").read_bytes() == (tmp / "db01.img").read_bytes()
    assert oct((tmp / "nas" / "db01-system.raw").stat().st_mode & 0o777) == "0o600"
    (tmp / "site.raw").write_bytes(b"someone else's image")
    with pytest.raises(SiteTargetsInvalid, match="site.raw already exists; remove it or give another target"):
        steps.restore(DNS, SiteTarget("dns01", "system", "image", tmp / "site.raw"), _point(repo, "dns01").id)
    assert (tmp / "site.raw").read_bytes() == b"someone else's image"
    # Interrupted after its verified restore, before the rename: the resume only renames.
    staged = tmp / ".dns01.raw.drctl-failback"
    shutil.copy(tmp / "dns01.img", staged)
    steps.restore(DNS, SiteTarget("dns01", "system", "image", tmp / "dns01.raw"), "no-such-point")
    assert (tmp / "dns01.raw").read_bytes() == (tmp / "dns01.img").read_bytes() and not staged.exists()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("losetup"), reason="a loop device needs root")
def test_the_restore_on_site_onto_a_block_device_is_read_back(project):
    proj, tmp = project
    steps, repo = _steps(project, _activate(project, "disaster"))
    backing = tmp / "device.img"
    backing.write_bytes(bytes(4 << 20))
    dev = subprocess.run(
        ["losetup", "--find", "--show", str(backing)], capture_output=True, text=True, check=True
    )
    device = Path(dev.stdout.strip())
    try:
        steps.restore(DB, SiteTarget("db01", "system", "device", device), _point(repo, "db01").id)
        with open(device, "rb") as f:
            assert f.read(3 << 20) == (tmp / "db01.img").read_bytes()
    finally:
        subprocess.run(["losetup", "--detach", str(device)], check=False)
    assert list((tmp / "state" / "failback").rglob("*.raw")) == []  # the staging copy is gone


def test_deactivate_accepts_a_completed_failback_and_only_for_the_servers_back(project):
    proj, tmp = project
    run_id = _activate(project, "disaster")
    state = FailbackState(tmp / "state", "demo", run_id)
    state.mark("dns01", "released")
    with pytest.raises(DisasterChangesAtRisk, match=r"recovered servers \(db01 not failed back\)"):
        deactivate("demo", tmp / "state", project_dir=proj)
    assert (tmp / "state" / "active" / "demo.json").exists()
    state.mark("db01", "released")
    result = deactivate("demo", tmp / "state", project_dir=proj)
    assert result["run_id"] == run_id and "discarded" not in result
    assert not (tmp / "state" / "active" / "demo.json").exists()
    assert list((tmp / "state" / "runs" / "demo" / run_id).glob("deactivation-*.json")) == []


def test_the_failback_report_is_signed_and_says_what_was_proven(project):
    from drctl.activation.failback_report import failback_summary
    from drctl.runs.store import RunStore

    proj, tmp = project
    run_id = _activate(project, "disaster")
    state = FailbackState(tmp / "state", "demo", run_id)
    _run_with(state, FakeSteps(), (DNS,))
    summary = failback_summary(
        load_stack("demo", proj), "Alice Martin", state, [DNS], "20261130T080000Z-fb0001"
    )
    store = RunStore(tmp / "state", LocalDirStorage(tmp / "vault" / "reports"))
    stored = store.record(summary)
    store.verify(stored.path)
    html = stored.html_path.read_text()
    assert "Failback report" in html and "failback: return to nominal on the original site" in html
    (note,) = [n for n in summary.notes if n.startswith("dns01:")]
    assert "data cut-over " in note and "7 bytes moved by the final synchronisation" in note
    assert note.endswith("changes made in the recovery space since activation: all present on site")
    assert summary.server("dns01").restore_point == "p-dns01" and summary.server("dns01").available
    assert (
        tmp / "vault" / "reports" / "reports" / "demo" / "20261130T080000Z-fb0001" / "report.sig"
    ).exists()
