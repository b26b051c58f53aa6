"""RunStore: runs stored locally and in the report bucket; `drctl report` and `drctl runs`."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta

import pytest

from drctl.errors import InvalidInput
from drctl.runs.store import ReportUploadFailed, RunNotFound, RunStore
from drctl.storage import StorageUnavailable, open_storage
from drctl.storage.base import LockSupport
from tests.runs.fixtures import T0, demo_summary
from tests.support.events import error_of, result_of


def test_record_writes_three_files_locally_and_in_the_bucket(tmp_path):
    bucket = tmp_path / "demo-reports"
    bucket.mkdir()
    store = RunStore(tmp_path / "state", open_storage(str(bucket)))
    run = store.record(demo_summary())
    assert run.path == tmp_path / "state" / "runs" / "demo" / "20260203T170100Z-3f9a1c"
    assert sorted(p.name for p in run.path.iterdir()) == ["report.html", "report.sig", "summary.json"]
    remote = bucket / "reports" / "demo" / "20260203T170100Z-3f9a1c"
    for name in ("summary.json", "report.html", "report.sig"):
        assert (remote / name).read_bytes() == (run.path / name).read_bytes()
    assert json.loads(run.summary_path.read_text())["run_id"] == "20260203T170100Z-3f9a1c"
    assert "Demo SARL" in run.html_path.read_text()
    # the operator key was created on first use, private to the operator
    assert (tmp_path / "state" / "keys" / "report-signing.key").stat().st_mode & 0o077 == 0
    assert store.verify(run.path)  # key id
    with pytest.raises(InvalidInput, match="already stored"):
        store.record(demo_summary())


class _DownBucket:
    """The report bucket is unreachable (a boundary fake: the Storage interface, failing)."""

    def describe(self) -> str:
        return "s3://demo-reports"

    def put(self, key, data, *, retain_until=None):
        raise StorageUnavailable("connection refused by 127.0.0.1:1")

    def get(self, key, byte_range=None):  # pragma: no cover - not used
        raise StorageUnavailable("down")

    def exists(self, key):  # pragma: no cover
        return False

    def list(self, prefix=""):  # pragma: no cover
        return iter(())

    def delete(self, key):  # pragma: no cover
        pass

    def lock_support(self):  # pragma: no cover
        return LockSupport(False, "down")


def test_upload_failure_keeps_the_local_copy_and_says_how_to_resend(tmp_path):
    store = RunStore(tmp_path / "state", _DownBucket())
    with pytest.raises(ReportUploadFailed) as e:
        store.record(demo_summary())
    local = tmp_path / "state" / "runs" / "demo" / "20260203T170100Z-3f9a1c"
    assert (local / "report.sig").exists()
    assert str(local) in e.value.message and "s3://demo-reports" in e.value.message
    assert "reports/demo/20260203T170100Z-3f9a1c/summary.json" in e.value.message
    assert "drctl report upload 20260203T170100Z-3f9a1c --to s3://demo-reports`" in e.value.message
    assert e.value.exit_code == 14
    # re-sent later to a bucket that works
    bucket = tmp_path / "b"
    bucket.mkdir()
    keys = RunStore(tmp_path / "state", open_storage(str(bucket))).upload(
        store.find("20260203T170100Z").summary
    )
    assert keys[-1] == "reports/demo/20260203T170100Z-3f9a1c/report.sig"
    assert (bucket / keys[0]).read_bytes() == (local / "summary.json").read_bytes()


def test_list_and_find(tmp_path):
    store = RunStore(tmp_path / "state")
    older = demo_summary(
        run_id="20260101T090000Z-aaaaaa",
        started_at=T0 - timedelta(days=33),
        ended_at=T0 - timedelta(days=33) + timedelta(minutes=5),
    )
    store.record(demo_summary())
    store.record(older)
    store.record(demo_summary(run_id="20260203T180000Z-bbbbbb", stack="acme"))
    assert [r.summary.run_id for r in store.list_runs("demo")] == [
        "20260101T090000Z-aaaaaa",
        "20260203T170100Z-3f9a1c",
    ]
    assert store.list_runs("nobody") == []
    assert store.find("20260203T180000Z-bbbbbb").summary.stack == "acme"
    with pytest.raises(InvalidInput, match="ambiguous"):
        store.find("20260203T1")
    with pytest.raises(RunNotFound, match="drctl runs STACK"):
        store.find("20990101T000000Z")
    with pytest.raises(InvalidInput, match="run id"):
        store.find("../etc")


def _drctl(tmp_path, *args):
    env = {**os.environ, "DRCTL_STATE_DIR": str(tmp_path / "state")}
    env.pop("DRCTL_REPORT_KEY_FILE", None)
    return subprocess.run(
        [sys.executable, "-m", "drctl.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=tmp_path,
    )


def test_cli_report_and_runs(tmp_path):
    store = RunStore(tmp_path / "state")
    store.record(demo_summary())
    ok_run = replace(
        demo_summary(run_id="20260210T080000Z-cccccc", override_reason=None),
        servers=demo_summary().servers[:3],
    )
    store.record(ok_run)

    text = _drctl(tmp_path, "report", "show", "20260203T170100Z-3f9a1c")
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert "first server available after 1 min 02 s, last after 3 min 00 s" in out
    assert "ok 2, warning 1, failed 1, not started 1" in out
    assert "signature valid" in out
    assert "not started: upstream server app01 failed its checks" in out

    js = _drctl(tmp_path, "report", "show", "20260203T170100Z-3f9a1c", "--json")
    doc = result_of(js.stdout)
    assert doc["first_available_s"] == 62.0 and doc["servers"][4]["status"] == "not-started"
    assert doc == demo_summary().to_dict()  # the summary's keys and values, unchanged

    html = _drctl(tmp_path, "report", "export", "20260203T170100Z", "--html", "out/r.html")
    assert html.returncode == 0, html.stderr
    assert "written to out/r.html (signature valid" in html.stdout
    assert (tmp_path / "out" / "r.html").read_bytes() == (
        tmp_path / "state/runs/demo/20260203T170100Z-3f9a1c/report.html"
    ).read_bytes()

    runs = _drctl(tmp_path, "runs", "demo")
    lines = runs.stdout.splitlines()
    assert lines[0].startswith("RUN ID")
    assert lines[1].startswith("20260203T170100Z-3f9a1c") and lines[1].rstrip().endswith("failed")
    assert "2/1/1/1" in lines[1] and "1 min 02 s" in lines[1] and "3 min 00 s" in lines[1]
    assert lines[2].startswith("20260210T080000Z-cccccc") and lines[2].rstrip().endswith("warning")
    listed = result_of(_drctl(tmp_path, "runs", "demo", "--json").stdout)["runs"]
    assert [r["run_id"] for r in listed] == ["20260203T170100Z-3f9a1c", "20260210T080000Z-cccccc"]
    assert listed[1]["counts"] == {"ok": 2, "warning": 1, "failed": 0, "not-started": 0}

    missing = _drctl(tmp_path, "report", "show", "20990101T000000Z-000000")
    assert missing.returncode == 1 and "drctl: no run" in missing.stderr and "Traceback" not in missing.stderr
    missing_js = _drctl(tmp_path, "report", "show", "20990101T000000Z-000000", "--json")
    assert error_of(missing_js.stdout)["error"] == "RunNotFound" and missing_js.returncode == 1

    bucket = tmp_path / "reports-bucket"
    bucket.mkdir()
    sent = _drctl(tmp_path, "report", "upload", "20260210T080000Z", "--to", str(bucket))
    assert sent.returncode == 0, sent.stderr
    assert (
        "uploaded run 20260210T080000Z-cccccc: reports/demo/20260210T080000Z-cccccc/summary.json"
        in sent.stdout
    )
    assert sorted(p.name for p in (bucket / "reports" / "demo" / "20260210T080000Z-cccccc").iterdir()) == [
        "report.html",
        "report.sig",
        "summary.json",
    ]
    no_to = _drctl(tmp_path, "report", "upload", "20260210T080000Z")
    assert no_to.returncode == 2 and "--to" in no_to.stderr

    old_style = _drctl(tmp_path, "report", "20260203T170100Z-3f9a1c")
    assert (
        old_style.returncode == 2 and "choose from 'show', 'verify', 'upload', 'export'" in old_style.stderr
    )


def test_report_export_is_private_and_refuses_planted_paths(tmp_path):
    RunStore(tmp_path / "state").record(demo_summary())
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    (tmp_path / "link.html").symlink_to(victim)
    foreign = tmp_path / "foreign.html"
    foreign.write_text("planted")
    os.chown(foreign, 65534, 65534)

    for name, reason in (("link.html", "is a symbolic link"), ("foreign.html", "belongs to uid 65534")):
        r = _drctl(tmp_path, "report", "export", "20260203T170100Z", "--html", name)
        assert r.returncode == 15 and r.stderr.startswith(f"drctl: {tmp_path / name} ") and reason in r.stderr
        assert "Traceback" not in r.stderr
    assert victim.read_text() == "root's file\n" and foreign.read_text() == "planted"

    mine = tmp_path / "mine.html"
    mine.write_text("an older export")
    mine.chmod(0o644)
    assert _drctl(tmp_path, "report", "export", "20260203T170100Z", "--html", "mine.html").returncode == 0
    assert mine.read_bytes() == next((tmp_path / "state/runs/demo").glob("*/report.html")).read_bytes()
    assert stat.S_IMODE(mine.stat().st_mode) == 0o600
