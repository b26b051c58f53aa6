"""`drctl agent run` and `drctl agent status` against a real SeaweedFS: jobs, their signed status
records, hooks, the job lock, retention, and the failure paths a user meets."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drctl.agent import records
from drctl.agent.config import DiskConfig, Hooks, load_config
from drctl.agent.job import run_job
from drctl.cli import main
from drctl.repo.repository import open_repository, read_config
from drctl.storage import open_storage
from drctl.storage.base import StorageError
from tests.agent import fake_lvm
from tests.agent.agents import make_agent, restored_sha256
from tests.repo.fakes import MiB, make_image
from tests.support.events import read_events

PASSWORD = "agent-test-password-1"
DRCTL = Path(sys.executable).parent / "drctl"


@pytest.fixture
def store(seaweed_s3_plain, monkeypatch, tmp_path):
    """A fresh bucket on SeaweedFS with an initialised repository; the password in the environment."""
    seaweed_s3_plain.apply_env(monkeypatch)
    monkeypatch.setenv("DRCTL_PASSWORD", PASSWORD)
    url = seaweed_s3_plain.url("repo")
    assert main(["repo", "init", url, "--chunk-size", "1"]) == 0
    return seaweed_s3_plain, url


def _stored(target, cfg_path: Path) -> list[records.StoredRecord]:
    cfg = load_config(cfg_path)
    storage = target.storage("repo")
    public = records.load_agent_key(cfg.key).public_key()
    return records.read(storage, records.list_keys(storage, cfg.server), {cfg.server: public})


def _points(target) -> list:
    storage = target.storage("repo")
    read_config(storage)
    return open_repository(storage, PASSWORD.encode()).load_points()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_jobs_back_up_every_disk_and_leave_one_verified_record_each(store, tmp_path, capsys):
    target, url = store
    system = make_image(tmp_path / "system.img", 3 * MiB + 5, seed=1)
    data = make_image(tmp_path / "data.img", 2 * MiB, seed=2)
    cfg = make_agent(tmp_path / "agent", url, {"system": str(system), "data": str(data)})

    assert main(["agent", "run", "--config", str(cfg), "--type", "full"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("system ") and "\ndata " in out  # each disk's restore point id
    assert main(["agent", "run", "--config", str(cfg), "--type", "incremental", "--json"]) == 0
    events = read_events(capsys.readouterr().out)
    assert [e["disk"] for e in events if e["event"] == "disk-finished"] == ["system", "data"]
    result = events[-1]
    assert result["result"] == "ok" and result["record_published"] is True
    assert result["bytes_read"] == 5 * MiB + 5 and result["bytes_uploaded"] == 0  # unchanged: dedup

    stored = _stored(target, cfg)
    assert [s.trust for s in stored] == [records.Trust.VERIFIED] * 2
    assert [s.record.type for s in stored] == ["full", "incremental"]
    points = {p.id: p for p in _points(target)}
    for s in stored:
        assert s.record.result == "ok" and set(s.record.points) == {"system", "data"}
        for disk, source in (("system", system), ("data", data)):
            point = points[s.record.points[disk]]
            out = tmp_path / f"restored-{point.id}"
            assert restored_sha256(target.storage("repo"), PASSWORD.encode(), point, out) == _sha(source)

    assert main(["agent", "status", "--config", str(cfg), "--json"]) == 0
    jobs = read_events(capsys.readouterr().out)[-1]["jobs"]
    assert [(j["type"], j["result"], j["trust"], j["where"]) for j in jobs] == [
        ("incremental", "ok", "verified", "store"),
        ("full", "ok", "verified", "store"),
    ]


def test_a_record_altered_in_the_store_shows_as_forged(store, tmp_path, capsys):
    target, url = store
    cfg = make_agent(tmp_path / "agent", url, {"system": str(make_image(tmp_path / "s.img", MiB))})
    assert main(["agent", "run", "--config", str(cfg), "--type", "full"]) == 0
    storage = target.storage("repo")
    (key,) = records.list_keys(storage, "db01")
    storage.put(key, bytes(storage.get(key)).replace(b'"result": "ok"', b'"result": "failed"'))
    capsys.readouterr()
    assert main(["agent", "status", "--config", str(cfg)]) == 0
    assert "forged" in capsys.readouterr().out


def test_failing_pre_hook_fails_the_job_reads_nothing_and_the_post_hook_still_runs(store, tmp_path, capsys):
    target, url = store
    marker = tmp_path / "post-ran"
    hooks = Hooks(
        pre="sh -c 'echo checkpoint refused >&2; exit 3'", post=f"sh -c 'env > {marker}'", timeout_s=30
    )
    cfg = make_agent(
        tmp_path / "agent", url, {"system": str(make_image(tmp_path / "s.img", MiB))}, hooks=hooks
    )

    assert main(["agent", "run", "--config", str(cfg), "--type", "full"]) == 20
    err = capsys.readouterr().err
    assert "pre-hook" in err and "status 3" in err and "checkpoint refused" in err and "Traceback" not in err
    assert marker.exists() and PASSWORD not in marker.read_text()  # hooks never see the password
    assert _points(target) == []
    (stored,) = _stored(target, cfg)
    assert (stored.record.result, stored.record.error_class) == ("failed", "HookFailed")
    assert stored.record.points == {}


def test_a_hook_that_runs_out_of_time_is_stopped_and_fails_the_job(store, tmp_path, capsys):
    target, url = store
    pidfile = tmp_path / "hook.pid"
    hooks = Hooks(pre=f"sh -c 'echo $$ > {pidfile}; sleep 60'", timeout_s=1)
    cfg = make_agent(
        tmp_path / "agent", url, {"system": str(make_image(tmp_path / "s.img", MiB))}, hooks=hooks
    )
    t0 = time.monotonic()
    assert main(["agent", "run", "--config", str(cfg), "--type", "full"]) == 20
    assert time.monotonic() - t0 < 20
    assert "did not finish within 1 s" in capsys.readouterr().err
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the hook (and its sleep) were stopped, not left behind
    (stored,) = _stored(target, cfg)
    assert stored.record.error_class == "HookFailed" and _points(target) == []


def test_a_second_job_while_one_runs_is_recorded_skipped_and_exits_11(store, tmp_path, capsys):
    target, url = store
    started = tmp_path / "started"
    release = tmp_path / "release"
    hooks = Hooks(pre=f"sh -c 'touch {started}; while [ ! -e {release} ]; do sleep 0.1; done'", timeout_s=60)
    cfg = make_agent(
        tmp_path / "agent", url, {"system": str(make_image(tmp_path / "s.img", MiB))}, hooks=hooks
    )
    first = subprocess.Popen(
        [str(DRCTL), "agent", "run", "--config", str(cfg), "--type", "full"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first job never reached its pre-hook"
            time.sleep(0.1)
        assert main(["agent", "run", "--config", str(cfg), "--type", "incremental", "--json"]) == 11
        out, err = capsys.readouterr()
        assert read_events(out)[-1]["error"] == "JobRunning"
        assert "another agent job still runs" in err
    finally:
        release.touch()
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    stored = _stored(target, cfg)
    assert sorted((s.record.type, s.record.result) for s in stored) == [
        ("full", "ok"),
        ("incremental", "skipped"),
    ]
    assert len(_points(target)) == 1


def test_store_unreachable_fails_the_job_spools_its_record_and_the_next_job_publishes_it(
    store, tmp_path, monkeypatch
):
    target, url = store
    cfg_path = make_agent(tmp_path / "agent", url, {"system": str(make_image(tmp_path / "s.img", MiB))})
    cfg = load_config(cfg_path)

    def open_repo(storage):
        read_config(storage)
        return open_repository(storage, PASSWORD.encode())

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    away = open_storage(url, retry_attempts=1)
    with pytest.raises(StorageError):
        run_job(cfg, "full", open_repo, storage=away)
    spooled = list(cfg.spool_dir.glob("status__db01__*.json"))
    assert len(spooled) == 1 and spooled[0].stat().st_mode & 0o777 == 0o600

    from drctl.agent.history import job_history

    history = job_history(cfg, away)
    assert history.store_error and [(j.where, j.stored.record.result) for j in history.jobs] == [
        ("spool", "failed")
    ]

    target.apply_env(monkeypatch)  # the store is back
    outcome = run_job(cfg, "full", open_repo, storage=open_storage(url))
    assert outcome.record.result == "ok" and not list(cfg.spool_dir.glob("*.json"))
    stored = _stored(target, cfg_path)
    assert [(s.trust, s.record.result, s.record.error_class) for s in stored] == [
        (records.Trust.VERIFIED, "failed", "StorageUnavailable"),
        (records.Trust.VERIFIED, "ok", None),
    ]


def test_retention_of_the_plan_is_applied_after_a_successful_job(store, tmp_path):
    target, url = store
    image = make_image(tmp_path / "s.img", MiB)
    other = make_agent(tmp_path / "other", url, {"system": str(image)}, server="web01")
    assert main(["agent", "run", "--config", str(other), "--type", "full"]) == 0
    cfg = make_agent(tmp_path / "agent", url, {"system": str(image)}, retention={"keep_daily": 1})
    for job_type in ("full", "incremental", "incremental"):
        assert main(["agent", "run", "--config", str(cfg), "--type", job_type]) == 0
    points = _points(target)
    assert sorted(p.server for p in points) == ["db01", "web01"]  # another server's points are not touched
    last = _stored(target, cfg)[-1].record
    assert last.points["system"] == next(p.id for p in points if p.server == "db01")
    assert last.detail["forgotten"] == 1


def test_lvm_snapshot_is_read_then_removed(store, tmp_path, monkeypatch):
    target, url = store
    lvm = fake_lvm.install(tmp_path, monkeypatch)
    origin = make_image(tmp_path / "lv-data", 2 * MiB, seed=4)
    disk = DiskConfig("system", str(origin), "lvm-snapshot", snapshot_size="256M")
    cfg = make_agent(tmp_path / "agent", url, {"system": disk})
    assert main(["agent", "run", "--config", str(cfg), "--type", "full"]) == 0
    calls = lvm.calls()
    assert [c[0] for c in calls] == ["lvs", "lvcreate", "lvs", "lvs", "lvremove"]
    snap = calls[1][calls[1].index("-n") + 1]
    assert calls[1][:4] == ["lvcreate", "--snapshot", "-L", "256M"] and calls[1][-1] == str(origin)
    assert calls[-1] == ["lvremove", "-f", f"vg0/{snap}"]
    assert lvm.snapshots() == []
    (point,) = _points(target)
    assert restored_sha256(target.storage("repo"), PASSWORD.encode(), point, tmp_path / "out") == _sha(origin)


@pytest.mark.parametrize("read", ["reads through", "read fails"])
def test_an_overflowed_snapshot_fails_the_job_and_writes_no_point(store, tmp_path, monkeypatch, capsys, read):
    """The kernel invalidates an overflowed snapshot: its reads then fail (the real guest shows it),
    or the overflow happens after the last read; either way the job says the snapshot overflowed."""
    target, url = store
    lvm = fake_lvm.install(tmp_path, monkeypatch)
    lvm.switch("overflow")
    if read == "read fails":
        lvm.switch("invalidated")
    origin = make_image(tmp_path / "lv-data", 2 * MiB, seed=4)
    cfg = make_agent(tmp_path / "agent", url, {"system": DiskConfig("system", str(origin), "lvm-snapshot")})
    assert main(["agent", "run", "--config", str(cfg), "--type", "full"]) == 15
    err = capsys.readouterr().err
    assert "overflowed" in err and "no restore point was written" in err and "snapshot_size" in err
    assert _points(target) == []
    assert lvm.calls()[-1][0] == "lvremove" and lvm.snapshots() == []
    (stored,) = _stored(target, cfg)
    assert stored.record.error_class == "SnapshotOverflow" and stored.record.points == {}


def test_a_snapshot_that_cannot_be_created_fails_the_job_and_runs_the_post_hook(
    store, tmp_path, monkeypatch, capsys
):
    target, url = store
    lvm = fake_lvm.install(tmp_path, monkeypatch)
    lvm.switch("fail-lvcreate")
    marker = tmp_path / "post-ran"
    cfg = make_agent(
        tmp_path / "agent",
        url,
        {"system": DiskConfig("system", str(make_image(tmp_path / "lv", MiB)), "lvm-snapshot")},
        hooks=Hooks(post=f"touch {marker}"),
    )
    assert main(["agent", "run", "--config", str(cfg), "--type", "full"]) == 20
    assert "insufficient free space" in capsys.readouterr().err
    assert marker.exists() and "lvremove" not in [c[0] for c in lvm.calls()]
    (stored,) = _stored(target, cfg)
    assert stored.record.error_class == "SnapshotFailed"


def test_a_snapshot_that_cannot_be_removed_fails_an_otherwise_good_job(store, tmp_path, monkeypatch, capsys):
    target, url = store
    lvm = fake_lvm.install(tmp_path, monkeypatch)
    lvm.switch("fail-lvremove")
    cfg = make_agent(
        tmp_path / "agent",
        url,
        {"system": DiskConfig("system", str(make_image(tmp_path / "lv", MiB)), "lvm-snapshot")},
    )
    assert main(["agent", "run", "--config", str(cfg), "--type", "full"]) == 20
    err = capsys.readouterr().err
    assert "lvremove -f vg0/" in err and "Logical volume in use" in err
    (stored,) = _stored(target, cfg)
    assert stored.record.result == "failed" and stored.record.error_class == "SnapshotFailed"
    assert set(stored.record.points) == {"system"}  # the point itself was written and is listed


class _DeviceFailsFrom:
    """The read syscalls (``pread``, ``preadv``) of one source device, failing with EIO from
    ``offset`` on, as a disk that vanished mid-read (a dead controller, a detached LUN) fails every
    read. Only reads of that file fail; the job, the backup, the repository and the store are the
    real ones."""

    def __init__(self, device: Path, offset: int) -> None:
        self.device, self.offset = device, offset
        self.read_ok = self.failed = 0
        self._pread, self._preadv = os.pread, os.preadv

    def _read(self, fd: int, offset: int, read):
        mine = os.path.samefile(f"/proc/self/fd/{fd}", self.device)
        if offset >= self.offset and mine:
            self.failed += 1
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        got = read()
        self.read_ok += mine
        return got

    def pread(self, fd: int, length: int, offset: int) -> bytes:
        return self._read(fd, offset, lambda: self._pread(fd, length, offset))

    def preadv(self, fd: int, buffers, offset: int) -> int:
        return self._read(fd, offset, lambda: self._preadv(fd, buffers, offset))


def test_a_device_that_fails_with_eio_mid_read_fails_the_job_with_no_point_and_a_failed_record(
    store, tmp_path, monkeypatch, capsys
):
    target, url = store
    system = make_image(tmp_path / "system.img", 6 * MiB, seed=5)
    data = make_image(tmp_path / "data.img", 2 * MiB, seed=6)
    cfg = make_agent(tmp_path / "agent", url, {"system": str(system), "data": str(data)})
    device = _DeviceFailsFrom(system, 3 * MiB)
    monkeypatch.setattr(os, "pread", device.pread)
    monkeypatch.setattr(os, "preadv", device.preadv)

    assert main(["agent", "run", "--config", str(cfg), "--type", "full"]) == 15  # local I/O
    err = capsys.readouterr().err
    assert f"cannot read backup source {system} at offset {3 * MiB}: Input/output error" in err
    assert "no restore point was written" in err and "Traceback" not in err
    assert device.read_ok == 3 and device.failed == 1  # it failed mid-read, and was not read again
    assert _points(target) == []  # neither the failing disk nor the one after it
    (stored,) = _stored(target, cfg)
    assert stored.trust is records.Trust.VERIFIED
    r = stored.record
    assert (r.result, r.error_class, r.points) == ("failed", "SourceUnreadable", {})
    assert "Input/output error" in (r.error or "")
