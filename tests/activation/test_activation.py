"""A whole activation on a real encrypted repository (local directory store) and real restores,
with the target (hypervisor or cloud) faked at its interface: guards, order, report, lock,
clean-up. The QEMU sandbox itself is exercised by the drill test."""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path

import pytest

from drctl.activation.activation import Activation, ActivationRequest
from drctl.activation.deactivation import deactivate
from drctl.activation.guards import LOCK_KEY, NotAuthorised
from drctl.errors import InvalidInput
from drctl.events import EventStream
from drctl.repo.backup import backup_disk
from drctl.repo.crypto import KdfParams
from drctl.repo.manifest import chunk_key
from drctl.repo.repository import init_repository, open_repository
from drctl.runs.model import CheckResult, utc_now
from drctl.runs.store import RunStore
from drctl.storage.local import LocalDirStorage
from drctl.wal import archive
from drctl.wal.disk_files import Ext4Disk
from tests.conftest import demo_project
from tests.support.events import read_events
from tests.support.pg_disk import CLUSTER, STAGING, make_pg_disk

REPO_ROOT = Path(__file__).resolve().parents[2]
PASSWORD = b"correct horse battery staple"


@pytest.fixture
def project(tmp_path):
    """A copy of the project whose demo stack points at local-directory vault containers."""
    proj = demo_project(
        tmp_path, repository=str(tmp_path / "vault" / "repo"), reports=str(tmp_path / "vault" / "reports")
    )
    repo_store = LocalDirStorage(tmp_path / "vault" / "repo")
    repo_store.create()
    LocalDirStorage(tmp_path / "vault" / "reports").create()
    repo = init_repository(repo_store, PASSWORD, chunk_size=1 << 20, kdf=KdfParams(n=2**12, r=8, p=1))
    images = {}
    for name in ("dns01", "db01", "app01", "files01", "web01"):
        img = tmp_path / f"{name}.img"
        img.write_bytes((name.encode() * 100_000)[: 3 * (1 << 20) + 12345] + os.urandom(1000))
        backup_disk(repo, img, server=name, disk="system")
        images[name] = img.read_bytes()
    return proj, tmp_path, images


class FakeTarget:
    """Records boots; checks fail for the servers in ``broken``. No namespace (no reconnection
    test), no uploaded image: what the Target protocol asks of a target besides its three hooks."""

    namespace = None
    image_ids: dict[str, str] = {}

    def __init__(self, images, broken=()):
        self.images, self.broken = images, set(broken)
        self.started, self.torn_down = [], False
        self.lock = threading.Lock()

    def stage_disk(self, server, disk):
        # The restored file is the backed-up image, bit for bit.
        assert Path(disk.path).read_bytes() == self.images[server.name]

    def start_server(self, server, disks):
        with self.lock:
            self.started.append(server.name)

    def verify(self, server):
        ok = server.name not in self.broken
        now = utc_now()
        return [
            CheckResult(c.describe(), ok, "fine" if ok else "service inactive", c.critical, 1, now, now)
            for c in server.checks
        ]


def run(project, req_kwargs, target):
    proj, tmp, _ = project
    req = ActivationRequest(stack="demo", target="local", requested_by="Alice Martin", **req_kwargs)
    events = []
    act = Activation(
        req,
        password=PASSWORD,
        state_dir=tmp / "state",
        project_dir=proj,
        on_event=lambda k, d: events.append((k, d)),
        target_factory=lambda a, deadline_for: (target, lambda: setattr(target, "torn_down", True)),
    )
    return act, act.execute(), events


def test_drill_restores_boots_in_order_reports_and_cleans_up(project):
    proj, tmp, images = project
    target = FakeTarget(images)
    act, summary, events = run(project, {"mode": "test", "kind": "drill"}, target)
    assert {s.name: s.status for s in summary.servers} == dict.fromkeys(
        ["dns01", "db01", "app01", "files01", "web01"], "ok"
    )
    order = target.started
    assert order.index("dns01") < order.index("db01") < order.index("app01") < order.index("web01")
    assert summary.first_available_s <= summary.last_available_s
    db = summary.server("db01")
    assert db.rpo_target_s == 900 and db.restore_point and db.rpo_achieved_s >= 0
    # Signed report stored locally and uploaded to the report container; lock released.
    store = RunStore(tmp / "state")
    stored = store.find(summary.run_id)
    store.verify(stored.path)
    uploaded = sorted(
        p.name for p in (tmp / "vault" / "reports" / "reports" / "demo" / summary.run_id).iterdir()
    )
    assert uploaded == ["report.html", "report.sig", "summary.json"]
    assert not (tmp / "vault" / "reports" / LOCK_KEY).exists()
    # A drill tears down and deletes the restored images.
    assert target.torn_down
    assert not (tmp / "state" / "restores" / summary.run_id).exists()
    assert events[-1][0] == "report"


def test_each_drill_records_its_forecast_from_the_previous_one(project):
    proj, tmp, images = project
    _, first, _ = run(project, {"mode": "test", "kind": "drill"}, FakeTarget(images))
    # every server's restored bytes are recorded: the next prediction's throughput
    assert all(s.restored_bytes and s.restored_bytes > 0 for s in first.servers)
    assert first.forecast is not None and first.forecast["prediction"]["measured_by"] is None
    _, second, _ = run(project, {"mode": "test", "kind": "drill"}, FakeTarget(images))
    prediction = second.forecast["prediction"]
    assert prediction["measured_by"] == first.run_id and prediction["throughput_measured"] is True
    assert {p["server"] for p in prediction["servers"]} == {s.name for s in second.servers}
    # the vault's objects were listed for the backup space, priced with the stack's table
    cost = second.forecast["cost"]
    assert cost["backup_stored_bytes"] > 0 and cost["activation_per_day"] > 0
    html = RunStore(tmp / "state").find(second.run_id).html_path.read_text()
    assert 'id="prediction"' in html and f"drill {first.run_id}" in html and "EUR per day" in html


def test_json_events_of_a_drill_follow_the_schema(project):
    """What `drctl drill --json` writes: the run's events, then the summary as its result."""
    proj, tmp, images = project
    out = io.StringIO()
    stream = EventStream(out)
    req = ActivationRequest(
        stack="demo", target="local", requested_by="Alice Martin", mode="test", kind="drill"
    )
    target = FakeTarget(images)
    act = Activation(
        req,
        password=PASSWORD,
        state_dir=tmp / "state",
        project_dir=proj,
        on_event=stream.emit,
        target_factory=lambda a, deadline_for: (target, lambda: None),
    )
    summary = act.execute()
    stream.result(summary.to_dict())
    events = read_events(out.getvalue())
    names = [e["event"] for e in events]
    assert names[0] == "run-started" and names[-2:] == ["report", "result"]
    assert events[0]["servers"] == ["dns01", "db01", "app01", "files01", "web01"]
    for name in ("restore-started", "restore-finished", "boot-started", "server-finished"):
        assert sorted(e["server"] for e in events if e["event"] == name) == sorted(events[0]["servers"])
    finished = {e["server"]: e["status"] for e in events if e["event"] == "server-finished"}
    assert finished == dict.fromkeys(events[0]["servers"], "ok")
    result = {k: v for k, v in events[-1].items() if k not in ("event", "time")}
    assert result == summary.to_dict()


def test_failed_server_stops_its_branch_only(project):
    _, _, images = project
    target = FakeTarget(images, broken={"db01"})
    _, summary, _ = run(project, {"mode": "test", "kind": "drill"}, target)
    status = {s.name: s.status for s in summary.servers}
    assert status == {
        "dns01": "ok",
        "db01": "failed",
        "app01": "not-started",
        "files01": "ok",
        "web01": "not-started",
    }
    assert summary.server("app01").reason == "not started: upstream server db01 is failed"
    assert "app01" not in target.started and "web01" not in target.started


def test_partial_activation_keeps_running_until_deactivated(project):
    proj, tmp, images = project
    target = FakeTarget(images)
    _, summary, _ = run(
        project,
        {
            "mode": "test",
            "servers": ("web01",),
            "override_window": True,
            "reason": "test outside hours agreed",
        },
        target,
    )
    assert [s.name for s in summary.servers] == ["web01"]
    assert target.started == ["web01"] and not target.torn_down
    active = json.loads((tmp / "state" / "active" / "demo.json").read_text())
    assert active["run_id"] == summary.run_id and Path(active["restore_dir"]).is_dir()
    result = deactivate("demo", tmp / "state")
    assert result["run_id"] == summary.run_id
    assert not Path(active["restore_dir"]).exists() and not (tmp / "state" / "active" / "demo.json").exists()


def test_unauthorised_requester_restores_nothing(project):
    proj, tmp, images = project
    target = FakeTarget(images)
    req = ActivationRequest(
        stack="demo", mode="test", target="local", requested_by="Bruno Petit", kind="drill"
    )
    act = Activation(
        req,
        password=PASSWORD,
        state_dir=tmp / "state",
        project_dir=proj,
        target_factory=lambda a, d: (target, lambda: None),
    )
    with pytest.raises(NotAuthorised, match="may not activate"):
        act.execute()
    assert target.started == [] and not (tmp / "state" / "restores").exists()


def test_a_second_activation_waits_for_deactivation(project):
    proj, tmp, images = project
    _, first, _ = run(
        project,
        {"mode": "test", "servers": ("dns01",), "override_window": True, "reason": "agreed"},
        FakeTarget(images),
    )
    with pytest.raises(InvalidInput, match=f"still activated by run {first.run_id}.*drctl deactivate demo"):
        run(
            project,
            {"mode": "test", "servers": ("dns01",), "override_window": True, "reason": "agreed"},
            FakeTarget(images),
        )
    deactivate("demo", tmp / "state")
    _, second, _ = run(
        project,
        {"mode": "test", "servers": ("dns01",), "override_window": True, "reason": "agreed"},
        FakeTarget(images),
    )
    assert second.server("dns01").status == "ok"


def test_a_tampered_backup_fails_its_server_and_the_run_exits_13_naming_the_error(project):
    proj, tmp, images = project
    repo = open_repository(LocalDirStorage(tmp / "vault" / "repo"), PASSWORD)
    point = next(p for p in repo.load_points() if p.server == "db01")
    cid = next(c for _, c in point.iter_chunks() if c is not None)
    blob = bytearray(repo.storage.get(chunk_key(cid)))
    blob[len(blob) // 2] ^= 0x40  # one flipped bit in the store, as a writer of the bucket could
    repo.storage.put(chunk_key(cid), bytes(blob))

    target = FakeTarget(images)
    _, summary, _ = run(project, {"mode": "test", "kind": "drill"}, target)
    db = summary.server("db01")
    assert (db.status, db.error, db.exit_code) == ("failed", "ChunkCorrupt", 13)
    assert db.reason.startswith(f"restore failed: ChunkCorrupt: chunk {cid.hex()}")
    status = {s.name: s.status for s in summary.servers}
    assert status == {
        "dns01": "ok",
        "db01": "failed",
        "app01": "not-started",
        "files01": "ok",
        "web01": "not-started",
    }
    assert "db01" not in target.started
    # The tampering decides the exit code (13), not the generic "a server failed" (20) ...
    assert summary.outcome == "failed" and summary.exit_code == 13
    # ... and the signed report a client reads names the error.
    stored = RunStore(tmp / "state").find(summary.run_id)
    assert stored.summary.server("db01").error == "ChunkCorrupt"
    assert json.loads(stored.summary_path.read_text())["exit_code"] == 13
    assert "ChunkCorrupt (exit code 13)" in stored.html_path.read_text()


def test_a_bug_during_the_run_ends_it_with_the_exception_and_cleans_up(project, caplog):
    proj, tmp, images = project

    class BuggyTarget(FakeTarget):
        def stage_disk(self, server, disk):
            if server.name == "db01":
                raise KeyError("volume_id")  # a programming error, not a failure of db01
            super().stage_disk(server, disk)

    target = BuggyTarget(images)
    with pytest.raises(KeyError, match="volume_id"):
        run(project, {"mode": "test", "kind": "drill"}, target)
    assert "server db01: unexpected KeyError; the run stops" in caplog.text
    assert "Traceback (most recent call last)" in caplog.text
    # Torn down, restored images removed, lock released, no report claiming an outcome.
    assert target.torn_down
    assert list((tmp / "state" / "restores").iterdir()) == []
    assert not (tmp / "vault" / "reports" / LOCK_KEY).exists()
    assert not (tmp / "state" / "runs").exists() or not any((tmp / "state" / "runs").rglob("summary.json"))


def test_the_local_and_cloud_targets_offer_what_the_target_protocol_names(tmp_path):
    """mypy checks the signatures where the default factory returns them; this checks the members
    exist and what a run reads from them: the sandbox's namespace, the cloud's uploaded images."""
    from drctl.activation.targets.base import Target
    from drctl.activation.targets.cloud import CloudTarget
    from drctl.activation.targets.local import LocalTarget
    from drctl.activation.targets.sandbox import NS_PREFIX, Sandbox
    from drctl.plan.load import load_plan

    members = {name for name in vars(Target) if not name.startswith("_")}
    assert members == {"namespace", "image_ids", "stage_disk", "start_server", "verify"}
    for cls in (LocalTarget, CloudTarget):
        assert members <= set(dir(cls)), cls
    plan = load_plan(REPO_ROOT / "recovery_plans" / "demo.yaml")
    local = LocalTarget(Sandbox("r1", plan, state_dir=tmp_path), lambda s: utc_now())
    assert (local.namespace, local.image_ids) == (NS_PREFIX + "r1", {})
    cloud = CloudTarget("demo", images=None, engine=None, waiter=None)  # nothing is called on them
    assert (cloud.namespace, cloud.image_ids) == (None, {})


@pytest.fixture
def project_with_wal(project):
    """The project, db01's disk point now a disk holding its PostgreSQL cluster, then WAL archived
    after it (as its archive_command would)."""
    proj, tmp, images = project
    repo = open_repository(LocalDirStorage(tmp / "vault" / "repo"), PASSWORD)
    disk = make_pg_disk(tmp / "db01-disk")
    point = backup_disk(repo, disk, server="db01", disk="system").point
    images["db01"] = disk.read_bytes()
    for name, data in (
        ("000000010000000000000001", b"\x01" * 5000),
        ("000000010000000000000002", b"\x02" * 5000),
    ):
        (tmp / name).write_bytes(data)
        archive.push(repo, "db01", tmp / name, name)
    return project, repo, point


class StagingTarget(FakeTarget):
    """What a booting guest would find on db01's disk."""

    def stage_disk(self, server, disk):
        if server.name != "db01":
            return super().stage_disk(server, disk)
        fs = Ext4Disk(disk.path)
        self.db01_files = {e.name for e in fs.list(CLUSTER)}
        self.db01_wal = sorted(e.name for e in fs.list(STAGING))


def test_a_database_drill_replays_its_archived_wal_and_reports_the_rpo_from_it(project_with_wal):
    project, repo, point = project_with_wal
    target = StagingTarget(project[2])
    _, summary, events = run(project, {"mode": "test", "kind": "drill"}, target)
    assert summary.outcome == "ok"
    assert "recovery.signal" in target.db01_files
    assert target.db01_wal == ["000000010000000000000001", "000000010000000000000002"]
    db = summary.server("db01")
    last = archive.unseal(
        repo, "db01", "000000010000000000000002", repo.storage.get("wal/db01/000000010000000000000002")
    )[0]
    assert (db.restore_point, db.log_segment, db.log_recovered_to) == (
        point.id,
        "000000010000000000000002",
        last,
    )
    assert db.rpo_achieved_s == pytest.approx((summary.started_at - last).total_seconds(), abs=0.001)
    assert db.disk_point_age_s == pytest.approx(
        (summary.started_at - point.created).total_seconds(), abs=0.001
    )
    assert db.rpo_achieved_s < db.disk_point_age_s
    assert all(s.log_segment is None for s in summary.servers if s.name != "db01")
    staged = [d for k, d in events if k == "log-staged"]
    assert staged == [
        {
            "server": "db01",
            "wal_files": 2,
            "last_segment": "000000010000000000000002",
            "recovered_to": last.isoformat(),
        }
    ]
    stored = RunStore(project[1] / "state").find(summary.run_id)
    kept = stored.summary.server("db01").log_recovered_to  # in the signed record, to the millisecond
    assert kept is not None and abs((kept - last).total_seconds()) < 0.001
    assert "last archived WAL segment 000000010000000000000002" in stored.html_path.read_text()


def test_an_explicit_disk_point_is_restored_without_its_wal(project_with_wal):
    project, _, point = project_with_wal
    target = FakeTarget(project[2])  # checks that db01's disk is restored bit for bit: nothing staged
    req = {"mode": "test", "kind": "drill", "servers": ("db01",), "point": point.id}
    _, summary, _ = run(project, req, target)
    db = summary.server("db01")
    assert (db.status, db.restore_point, db.log_segment) == ("ok", point.id, None)
    assert db.rpo_achieved_s == db.disk_point_age_s


def test_a_tampered_wal_segment_fails_the_database_naming_it(project_with_wal):
    project, repo, _ = project_with_wal
    key = "wal/db01/000000010000000000000002"
    blob = bytearray(repo.storage.get(key))
    blob[-5] ^= 0x01
    repo.storage.put(key, bytes(blob))
    _, summary, _ = run(project, {"mode": "test", "kind": "drill"}, StagingTarget(project[2]))
    db = summary.server("db01")
    assert (db.status, db.error, db.exit_code) == ("failed", "WalSegmentCorrupt", 13)
    assert "000000010000000000000002" in db.reason
    assert summary.exit_code == 13
