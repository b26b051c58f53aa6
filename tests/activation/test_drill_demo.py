"""The demo client's drill, end to end and for real: the demo disk images (cached build) backed up
into an encrypted repository on the real SeaweedFS, then `drctl drill` restores them, boots them
under QEMU in a sandbox namespace, verifies every plan check and writes the signed report.

Slow (guests under software emulation); part of the suite all the same, CI runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drctl.demo.images.builder import build_demo_images, default_images_dir
from drctl.demo.wal_archive import LATE_ITEM, archive_demo_wal, record_disk_base
from drctl.plan.load import load_plan
from drctl.repo.backup import backup_disk
from drctl.repo.repository import init_repository
from drctl.storage.s3 import S3Storage
from drctl.storage.s3_client import create_bucket
from drctl.wal.history import check_wal
from tests.conftest import demo_project
from tests.support.events import read_events
from tests.support.interrupts import sigint_default

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
DRCTL = str(REPO_ROOT / ".venv" / "bin" / "drctl")
PASSWORD = "demo client password, held by the client only"


@pytest.fixture(scope="module")
def demo_vault(seaweed_server, tmp_path_factory):
    """A project whose demo stack points at fresh buckets, with every demo server backed up, and
    a broken db01 (its database service masked) backed up as a later point."""
    tmp = tmp_path_factory.mktemp("drill")
    bucket = f"drill-{os.getpid()}-{int(time.time())}"
    client = seaweed_server.client()
    create_bucket(client, bucket, object_lock=False)
    create_bucket(client, f"{bucket}-reports", object_lock=False)
    plan = load_plan(REPO_ROOT / "recovery_plans" / "demo.yaml")
    images = build_demo_images(plan, images_dir=default_images_dir())
    broken = build_demo_images(plan, images_dir=default_images_dir(), servers=["db01"], broken=["db01"])
    repo = init_repository(S3Storage(bucket, "repo", client), PASSWORD.encode())
    points = {}
    for s in plan.servers:
        points[s.name] = backup_disk(repo, images.images[s.name], server=s.name, disk="system").point
    # db01's PostgreSQL runs on after its disk point, commits an item and archives its WAL
    # (drctl wal push), as `drctl demo prepare` does.
    wal = archive_demo_wal(
        images.images["db01"],
        server="db01",
        repo_url=f"s3://{bucket}/repo",
        password=PASSWORD.encode(),
        images_dir=default_images_dir(),
        env=seaweed_server.env,
    )
    # That disk point is the base the archive replays onto: `drctl wal check` finds it complete.
    base = record_disk_base(repo, "db01", points["db01"].id)
    report = check_wal(repo, "db01")
    assert base.kind == "disk" and not report.problems and not report.gaps, report.summary()
    time.sleep(1.1)
    good_until = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    time.sleep(1.1)  # the broken point is strictly newer: `latest` picks it, `good_until` does not
    broken_point = backup_disk(repo, broken.images["db01"], server="db01", disk="system").point
    (tmp / "password").write_text(PASSWORD + "\n")
    os.chmod(tmp / "password", 0o600)
    env = {**os.environ, **seaweed_server.env, "DRCTL_STATE_DIR": str(tmp / "state")}
    # The sandbox logs in with the key baked into the images.
    (tmp / "state").mkdir()
    os.symlink(default_images_dir(), tmp / "state" / "images")
    return {
        "project": demo_project(tmp, repository=f"s3://{bucket}/repo", reports=f"s3://{bucket}-reports"),
        "tmp": tmp,
        "env": env,
        "points": points,
        "wal": wal,
        "broken_point": broken_point,
        "good_until": good_until,
        "plan": plan,
        "client": client,
        "reports_bucket": f"{bucket}-reports",
    }


def _drill(v, *extra: str, timeout: int = 1500) -> tuple[int, list[dict], str]:
    argv = [
        DRCTL,
        "drill",
        "demo",
        "--target",
        "local",
        "--requested-by",
        "Alice Martin",
        "--password-file",
        str(v["tmp"] / "password"),
        "--project-dir",
        str(v["project"]),
        "--max-wait",
        "420",
        "--json",
        *extra,
    ]
    proc = subprocess.run(argv, env=v["env"], capture_output=True, text=True, timeout=timeout)
    lines = read_events(proc.stdout) if proc.stdout else []
    assert not lines or lines[-1]["event"] == "result", f"exit {proc.returncode}: {lines[-1:]}"
    return proc.returncode, lines, proc.stderr


def _nothing_left(run_id: str) -> None:
    assert (
        f"drsb-{run_id}" not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    )
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert run_id not in ps, [
        line for line in ps.splitlines() if run_id in line
    ]  # QEMU args name the run dir


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_demo_drill_every_server_ok_in_dependency_order(demo_vault):
    v = demo_vault
    code, lines, err = _drill(v, "--point", v["good_until"])
    summary = lines[-1] if lines else {}
    assert "servers" in summary, f"exit {code}; stderr: {err[-3000:]}"
    status = {s["name"]: s["status"] for s in summary["servers"]}
    assert status == dict.fromkeys(["dns01", "db01", "app01", "files01", "web01"], "ok"), err[-3000:]
    assert code == 0 and "Traceback" not in err
    by_name = {s["name"]: s for s in summary["servers"]}
    assert {n: s["restore_point"] for n, s in by_name.items()} == {n: p.id for n, p in v["points"].items()}
    # Each server booted only after every server it depends on had passed its checks.
    for server in v["plan"].servers:
        for dep in server.depends_on:
            assert _ts(by_name[server.name]["boot_started_at"]) >= _ts(by_name[dep]["verified_at"])
    # web01's page comes from app01, which reads db01: the cross-server check passed.
    web_checks = {c["check"]: c for c in by_name["web01"]["checks"]}
    assert any("catalogue from db01" in name and c["ok"] for name, c in web_checks.items())
    # db01 replayed its archived WAL: the item committed after its disk point is there, and its
    # achieved RPO is the age of the last archived segment, not of the disk point.
    db = by_name["db01"]
    assert any(LATE_ITEM[0] in c["check"] and c["ok"] for c in db["checks"]), db["checks"]
    assert db["log_segment"] == v["wal"].segment
    assert _ts(db["restore_point_at"]) < _ts(db["log_recovered_to"]) < _ts(summary["started_at"])
    assert db["rpo_achieved_s"] == pytest.approx(
        (_ts(summary["started_at"]) - _ts(db["log_recovered_to"])).total_seconds(), abs=0.01
    )
    assert db["rpo_achieved_s"] < db["disk_point_age_s"]
    assert [e for e in lines if e["event"] == "log-staged"] and all(
        by_name[n]["log_segment"] is None for n in by_name if n != "db01"
    )
    assert 0 < summary["first_available_s"] <= summary["last_available_s"]
    # The signed report is stored and verifies; nothing of the run is left.
    verify = subprocess.run(
        [DRCTL, "report", "verify", summary["run_id"]], env=v["env"], capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stderr
    _nothing_left(summary["run_id"])
    assert not (v["tmp"] / "state" / "restores" / summary["run_id"]).exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_drill_leaves_nothing_behind(demo_vault, signum):
    v = demo_vault
    argv = [
        DRCTL,
        "drill",
        "demo",
        "--target",
        "local",
        "--requested-by",
        "Alice Martin",
        "--password-file",
        str(v["tmp"] / "password"),
        "--project-dir",
        str(v["project"]),
        "--json",
    ]
    proc = subprocess.Popen(
        argv,
        env=v["env"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_default,
    )
    run_id = None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        event = json.loads(line)
        run_id = run_id or event.get("run_id")
        if event.get("event") == "boot-started":
            break
    time.sleep(3)  # QEMU is running in the sandbox now
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    events = read_events("".join(seen) + out)
    assert events[0]["event"] == "run-started" and events[-1]["event"] == "error"
    assert events[-1]["exit_code"] == 130
    _nothing_left(run_id)
    assert not (v["tmp"] / "state" / "restores" / run_id).exists()
    listing = v["client"].list_objects_v2(Bucket=v["reports_bucket"], Prefix="locks/")
    assert listing.get("KeyCount", 0) == 0  # the activation lock was released


def test_demo_drill_with_a_broken_database_fails_its_branch_only(demo_vault):
    v = demo_vault
    code, lines, err = _drill(v)
    summary = lines[-1] if lines else {}
    assert "servers" in summary, f"exit {code}; stderr: {err[-3000:]}"
    status = {s["name"]: s["status"] for s in summary["servers"]}
    assert status == {
        "dns01": "ok",
        "db01": "failed",
        "app01": "not-started",
        "files01": "ok",
        "web01": "not-started",
    }, err[-3000:]
    assert code == 20
    app = next(s for s in summary["servers"] if s["name"] == "app01")
    assert "upstream server db01 is failed" in app["reason"]
    _nothing_left(summary["run_id"])
