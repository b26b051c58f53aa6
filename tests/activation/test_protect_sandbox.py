"""Disaster mode keeps protecting, for real: dns01 (the demo image) is activated in disaster mode on
the local target and keeps running in the sandbox under QEMU; a file is written in it; `drctl protect`
backs it up through the agent's qemu method without stopping it. The new point restored holds the
file, only the changed chunks were uploaded, the guest still runs (and writes) afterwards, the job's
signed status record is trusted by `drctl status`, and the run's report lists the point.

Slow (one boot under software emulation). Needs what the sandbox tests need.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from drctl.activation.deactivation import DiscardApproval, deactivate
from drctl.activation.targets.sandbox import NS_PREFIX, socket_dir
from drctl.agent.qmp import Qmp
from drctl.demo.images.builder import build_demo_images, default_images_dir
from drctl.plan.load import load_plan
from drctl.repo.backup import backup_disk
from drctl.repo.repository import init_repository, open_repository
from drctl.repo.restore import restore_disk
from drctl.runs.store import RunStore
from drctl.status.collect import status_of
from drctl.storage.local import LocalDirStorage
from tests.activation.test_sandbox_integration import PLAN_PATH, _require_tools
from tests.agent.test_qemu_guest import _fsck_and_read
from tests.conftest import demo_project
from tests.support.events import read_events
from tests.support.netns_ssh import ssh_in_namespace

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
DRCTL = str(REPO_ROOT / ".venv" / "bin" / "drctl")
PASSWORD = "protect test password, held by the client"
CHUNK = 1 << 20
MARKER = f"written in disaster mode {uuid.uuid4().hex}"


def _drctl(env, *argv: str, timeout: int = 1500) -> tuple[int, list[dict], str]:
    proc = subprocess.run([DRCTL, *argv, "--json"], env=env, capture_output=True, text=True, timeout=timeout)
    lines = read_events(proc.stdout) if proc.stdout else []
    return proc.returncode, lines, proc.stderr


def _qemu_pid(run_dir: Path) -> int:
    """The pid of the QEMU process running dns01 of the run (its command line names its overlay)."""
    drive = f"file={run_dir / 'dns01.qcow2'},".encode()
    pids = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and drive in (p / "cmdline").read_bytes():
                pids.append(int(p.name))
        except OSError:
            continue  # a process that just ended
    assert len(pids) == 1, pids
    return pids[0]


def test_a_recovered_guest_is_backed_up_while_it_runs_and_the_point_holds_its_writes(tmp_path):
    _require_tools()
    plan = load_plan(PLAN_PATH)
    dns = plan.server("dns01")
    image = build_demo_images(plan, servers=["dns01"]).images["dns01"]
    vault = tmp_path / "vault"
    LocalDirStorage(vault / "repo").create()
    LocalDirStorage(vault / "reports").create()
    repo = init_repository(LocalDirStorage(vault / "repo"), PASSWORD.encode(), chunk_size=CHUNK)
    restored_from = backup_disk(repo, image, server="dns01", disk="system").point
    proj = demo_project(tmp_path, repository=str(vault / "repo"), reports=str(vault / "reports"))
    state = tmp_path / "state"
    state.mkdir()
    os.symlink(default_images_dir(), state / "images")  # the sandbox logs in with the images' key
    env = {**os.environ, "DRCTL_PASSWORD": PASSWORD, "DRCTL_STATE_DIR": str(state)}
    common = ("--state-dir", str(state), "--project-dir", str(proj))

    code, lines, err = _drctl(
        env,
        *("activate", "demo", "--mode", "disaster", "--target", "local", "--servers", "dns01"),
        *("--requested-by", "Alice Martin", "--yes", "--override-window", "--reason", "site lost (test)"),
        *("--ram-cap", "512", "--max-wait", "420", *common),
    )
    run_id = str(lines[-1].get("run_id")) if lines else ""
    ns = NS_PREFIX + run_id
    qmp = socket_dir(ns) / "dns01.qmp"
    try:  # from here on, whatever fails, the recovery space is removed (the finally below)
        assert code == 0 and lines and lines[-1]["event"] == "result", err[-3000:]
        ip, key = dns.nics[0].ip, state / "images" / "ssh" / "id_ed25519"
        ssh_in_namespace(
            ns, ip, key, "systemctl is-active qemu-guest-agent || systemctl start qemu-guest-agent"
        )
        ssh_in_namespace(ns, ip, key, f"echo '{MARKER}' > /root/protect-marker")
        pid = _qemu_pid(state / "sandbox" / run_id)

        code, lines, err = _drctl(env, "protect", "demo", *common)
        assert code == 0, err[-3000:]
        result = lines[-1]
        assert result["event"] == "result" and result["run_id"] == run_id
        (job,) = result["jobs"]
        assert job["result"] == "ok" and job["record_published"], job
        point = job["points"]["system"]
        assert point != restored_from.id
        # Deduplicated against the point it was restored from: only what the guest changed since
        # its boot moved (logs, journal, the marker), a small share of the 1 GiB disk.
        assert job["bytes_read"] == restored_from.size
        assert 0 < job["bytes_uploaded"] < restored_from.size // 20, job
        print(f"protect: {job['bytes_uploaded']} bytes uploaded of a {job['bytes_read']}-byte disk")

        # The guest never stopped: the same VM runs, on its own overlay again, and still writes.
        assert _qemu_pid(state / "sandbox" / run_id) == pid
        with Qmp(qmp) as q:
            assert q.command("query-status")["status"] == "running"
            files = {b["device"]: b["inserted"]["file"] for b in q.command("query-block")}
        assert files == {"vda": str(state / "sandbox" / run_id / "dns01.qcow2")}
        assert list((state / "sandbox" / run_id).glob("*.drctl-*")) == []
        ssh_in_namespace(ns, ip, key, "echo after > /root/after-protect && sync")

        # The point restored holds the file written in disaster mode, in a clean file system.
        out = tmp_path / "dns01-protected.raw"
        restore_disk(
            open_repository(LocalDirStorage(vault / "repo"), PASSWORD.encode()),
            server="dns01",
            point=point,
            out=out,
        )
        fsck, _, data = _fsck_and_read(out, "/root/protect-marker")
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
        assert data.decode().strip() == MARKER

        # `drctl status` trusts the job's record: signed with dns01's agent key, recorded in the stack.
        (client,) = status_of(["demo"], project_dir=proj, state_dir=state)
        dns_state = next(s for s in client.servers if s.name == "dns01")
        assert dns_state.last_job.job_id == job["job_id"] and dns_state.last_job.result == "ok"
        assert dns_state.disks[0].point == point and dns_state.disks[0].source == "record"
        assert not dns_state.untrusted

        # The run's report lists the point, signed again.
        stored = RunStore(state).find(run_id)
        RunStore(state).verify(stored.path)
        assert [(p.server, p.points["system"]) for p in stored.summary.protection] == [("dns01", point)]
        assert point in stored.html_path.read_text()
    finally:
        if (state / "active" / "demo.json").exists():  # an activation that failed left nothing active
            deactivate(
                "demo",
                state,
                project_dir=proj,
                discard=DiscardApproval(requested_by="Alice Martin", reason="end of the test", yes=True),
            )
    assert ns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert run_id not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    shutil.rmtree(vault, ignore_errors=True)
    assert json.dumps(result).count(PASSWORD) == 0
