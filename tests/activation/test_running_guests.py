"""``running_guest_disks``: the running guests of a stack's active local run, found from the run's
record and asked to QEMU itself. The VM here is a real ``qemu-system-x86_64`` with its vCPU stopped
(``-S``), laid out as the sandbox lays out a guest: drives ``vda``, ``vdb`` on qcow2 overlays in the
run directory over the restored ``<server>-<disk>.raw`` files, its QMP socket in the run's socket
directory. (The booted guest is in test_protect_sandbox.py.)"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import uuid

import pytest

from drctl.activation.targets.sandbox import NS_PREFIX, NoActiveRun, running_guest_disks, socket_dir
from drctl.processes import run

pytestmark = pytest.mark.integration


@pytest.fixture
def kept_run(tmp_path):
    if shutil.which("qemu-system-x86_64") is None:
        pytest.fail("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
    run_id = "t" + uuid.uuid4().hex[:12]
    state, restores, run_dir = (
        tmp_path / "state",
        tmp_path / "restores",
        tmp_path / "state" / "sandbox" / run_id,
    )
    for d in (restores, run_dir, state / "active"):
        d.mkdir(parents=True)
    (state / "active" / "demo.json").write_text(
        json.dumps({"run_id": run_id, "target": "local", "mode": "disaster", "restore_dir": str(restores)})
    )
    sockets = socket_dir(NS_PREFIX + run_id)
    sockets.mkdir(parents=True, mode=0o700)
    drives = []
    for disk, drive in (("system", "vda"), ("data", "vdb")):
        raw = restores / f"web01-{disk}.raw"
        raw.write_bytes(bytes(1 << 20))
        overlay = run_dir / ("web01.qcow2" if disk == "system" else f"web01-{disk}.qcow2")
        run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(raw), str(overlay)], timeout=60
        )
        drives += ["-drive", f"file={overlay},if=virtio,format=qcow2,id={drive}"]
    qmp = sockets / "web01.qmp"
    proc = subprocess.Popen(
        [
            "qemu-system-x86_64",
            *("-machine", "q35", "-accel", "tcg", "-nodefaults", "-display", "none", "-S"),
            *("-qmp", f"unix:{qmp},server=on,wait=off"),
            *drives,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # A guest whose QEMU is gone leaves its socket file behind: it must be skipped, not fail the rest.
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(sockets / "db01.qmp"))
    dead.close()
    try:
        deadline = time.monotonic() + 20
        while not qmp.exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield state, run_id, run_dir, restores, sockets
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(sockets, ignore_errors=True)


def test_the_running_guests_disks_and_sockets_come_from_qemu(kept_run):
    state, _, run_dir, restores, sockets = kept_run
    found = running_guest_disks(state, "demo")
    assert list(found) == ["web01"]  # db01's QEMU does not answer
    system, data = found["web01"]
    assert (system.disk, system.drive, system.image) == ("system", "vda", run_dir / "web01.qcow2")
    assert (data.disk, data.drive, data.image) == ("data", "vdb", run_dir / "web01-data.qcow2")
    assert system.restored == restores / "web01-system.raw"
    assert system.qmp_socket == sockets / "web01.qmp" and system.qga_socket == sockets / "web01.qga"


def test_no_active_run_or_a_cloud_run_is_named(tmp_path):
    with pytest.raises(NoActiveRun, match="stack demo has no active run"):
        running_guest_disks(tmp_path, "demo")
    (tmp_path / "active").mkdir()
    (tmp_path / "active" / "demo.json").write_text(json.dumps({"run_id": "r1", "target": "cloud"}))
    with pytest.raises(NoActiveRun, match="runs on the cloud target"):
        running_guest_disks(tmp_path, "demo")
    (tmp_path / "active" / "demo.json").write_text("{not json")
    with pytest.raises(NoActiveRun, match="is unreadable"):
        running_guest_disks(tmp_path, "demo")
