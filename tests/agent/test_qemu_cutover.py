"""The failback's cut-over on a real QEMU process (monitor, block layer; no guest OS): finding a
kept run's guest disks (:func:`running_guest_disks`), quiescing the VM for its last backup
(:func:`paused_for_cutover`: freeze, then pause; resumed and thawed on failure) and stopping it
(:func:`quit_vm`). The guest agent is the faked boundary, as in test_qemu; the booted guest is
proven in tests/activation/test_failback_e2e.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from drctl.activation.targets.sandbox import NS_PREFIX, GuestDisk, running_guest_disks, socket_dir
from drctl.agent.qemu import QemuSnapshotFailed, paused_for_cutover, quit_vm, raw_view, vm_status
from drctl.agent.qmp import Qmp
from drctl.processes import run
from tests.agent.test_qemu import GuestAgentStandIn, MiB

pytestmark = pytest.mark.integration


@pytest.fixture
def kept_run(tmp_path):
    """A kept local run of stack demo as the activation leaves it: its record, the restored raw
    disk, the sandbox's qcow2 overlay on it, and a running QEMU with ``dns01.qmp``/``dns01.qga``."""
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    run_id = "u" + uuid.uuid4().hex[:10]
    state = tmp_path / "state"
    restores = state / "restores" / run_id
    overlays = state / "sandbox" / run_id
    restores.mkdir(parents=True)
    overlays.mkdir(parents=True)
    (state / "active").mkdir()
    (state / "active" / "demo.json").write_text(
        json.dumps({"run_id": run_id, "target": "local", "mode": "disaster", "restore_dir": str(restores)})
    )
    raw = restores / "dns01-system.raw"
    raw.write_bytes(b"\x44" * (4 * MiB))
    overlay = overlays / "dns01.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(raw), str(overlay)], timeout=60)
    sockets = socket_dir(NS_PREFIX + run_id)
    sockets.mkdir(parents=True, mode=0o700)
    qmp, qga = sockets / "dns01.qmp", sockets / "dns01.qga"
    agent = GuestAgentStandIn(qga)
    proc = subprocess.Popen(
        [
            "qemu-system-x86_64",
            *("-machine", "q35", "-accel", "tcg", "-nodefaults", "-display", "none"),
            *("-qmp", f"unix:{qmp},server=on,wait=off"),
            *("-drive", f"file={overlay},if=virtio,format=qcow2,id=vda"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while vm_status(qmp) != "running":
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "QEMU did not start"
        time.sleep(0.1)
    yield {
        "state": state,
        "qmp": qmp,
        "qga": qga,
        "agent": agent,
        "proc": proc,
        "raw": raw,
        "overlay": overlay,
    }
    proc.kill()
    proc.wait()
    agent.close()
    shutil.rmtree(sockets, ignore_errors=True)


def test_the_kept_run_s_guest_disks_are_read_from_its_qemu(kept_run):
    k = kept_run
    got = running_guest_disks(k["state"], "demo")
    assert got == {
        "dns01": [
            GuestDisk("dns01", "system", "vda", k["overlay"], "qcow2", k["raw"], k["qmp"], k["qga"]),
        ]
    }
    quit_vm(k["qmp"])
    assert k["proc"].wait(timeout=30) == 0
    assert running_guest_disks(k["state"], "demo") == {}  # a stopped guest is no longer listed


def test_the_cutover_freezes_then_pauses_and_leaves_the_vm_quiet_for_its_stop(kept_run):
    k = kept_run
    with paused_for_cutover(k["qmp"], k["qga"]) as cut_over:
        assert k["agent"].frozen and vm_status(k["qmp"]) == "paused"
        with raw_view(k["overlay"], "qcow2", k["overlay"].parent) as copy:
            assert copy.read_bytes() == b"\x44" * (4 * MiB)  # the whole chain, as raw bytes
        assert not list(k["overlay"].parent.glob("*.drctl-*"))
    assert cut_over.tzinfo is not None
    assert k["agent"].frozen and vm_status(k["qmp"]) == "paused"  # stays quiet until stopped
    # A resumed attempt takes the paused VM as it is (its agent cannot answer while paused).
    calls = len(k["agent"].calls)
    with paused_for_cutover(k["qmp"], k["qga"]):
        assert len(k["agent"].calls) == calls
    quit_vm(k["qmp"])
    assert vm_status(k["qmp"]) is None and k["proc"].wait(timeout=30) == 0


def test_a_failed_last_backup_resumes_and_thaws_the_guest(kept_run):
    k = kept_run
    with pytest.raises(RuntimeError, match="backup failed"), paused_for_cutover(k["qmp"], k["qga"]):
        raise RuntimeError("backup failed")
    assert vm_status(k["qmp"]) == "running" and not k["agent"].frozen
    assert [
        c for c in k["agent"].calls if c.startswith("guest-fsfreeze-") and c != "guest-fsfreeze-status"
    ] == [
        "guest-fsfreeze-freeze",
        "guest-fsfreeze-thaw",
    ]


def test_a_guest_without_its_agent_is_named_and_keeps_running(kept_run):
    k = kept_run
    k["agent"].close()
    Path(k["qga"]).unlink()
    quiesce = paused_for_cutover(k["qmp"], k["qga"])
    with pytest.raises(QemuSnapshotFailed, match="could not be quiesced .* or use --shutdown"), quiesce:
        pass
    assert vm_status(k["qmp"]) == "running"


def _guest_write(qmp: Path, pattern: int, offset: int, length: int) -> None:
    """Write through the VM's disk device, as the guest would."""
    with Qmp(qmp) as q:
        q.command(
            "human-monitor-command", {"command-line": f'qemu-io vda "write -P {pattern} {offset} {length}"'}
        )


@pytest.mark.parametrize("shutdown", [False, True], ids=["freeze", "shutdown"])
def test_the_last_backup_moves_only_the_changes_and_holds_every_write(
    kept_run, tmp_path, monkeypatch, shutdown
):
    from drctl.activation import failback_local
    from drctl.activation.failback_local import FailbackRequest, LocalSteps
    from drctl.repo.backup import backup_disk
    from drctl.repo.crypto import KdfParams
    from drctl.repo.repository import init_repository
    from drctl.repo.restore import restore_disk
    from drctl.stack.config import load_stack
    from drctl.storage.local import LocalDirStorage
    from tests.conftest import demo_project

    k = kept_run
    LocalDirStorage(tmp_path / "repo").create()
    repo = init_repository(
        LocalDirStorage(tmp_path / "repo"),
        b"cut-over test password",
        chunk_size=MiB,
        kdf=KdfParams(n=2**12, r=8, p=1),
    )
    restored_from = backup_disk(repo, k["raw"], server="dns01", disk="system").point
    cfg = load_stack("demo", demo_project(tmp_path, repository=str(tmp_path / "repo"), reports=str(tmp_path)))
    _guest_write(k["qmp"], 0x55, MiB, MiB)  # a change made in disaster mode
    monkeypatch.setattr(failback_local, "SHUTDOWN_TIMEOUT_S", 2.0)  # no OS to obey the power button
    req = FailbackRequest(stack="demo", requested_by="Alice Martin", site_targets=tmp_path, shutdown=shutdown)
    active = json.loads((k["state"] / "active" / "demo.json").read_text())
    guests = running_guest_disks(k["state"], "demo")
    steps = LocalSteps(cfg, req, repo, k["state"], active, guests, lambda kind, d: None, "fb")
    dns = cfg.plan.server("dns01")

    result = steps.sync(dns)
    assert result.method == ("shutdown" if shutdown else "freeze")
    assert vm_status(k["qmp"]) == (None if shutdown else "paused") and steps.quiet(dns)
    point = result.points["system"]
    assert point["id"] != restored_from.id and point["size"] == 4 * MiB
    assert 0 < result.bytes_moved < 2 * MiB  # one changed chunk of four
    out = tmp_path / "back.raw"
    restore_disk(repo, server="dns01", disk="system", point=point["id"], out=out)
    assert out.read_bytes() == b"\x44" * MiB + b"\x55" * MiB + b"\x44" * (2 * MiB)
    steps.stop(dns)
    assert vm_status(k["qmp"]) is None and k["proc"].wait(timeout=30) == 0
