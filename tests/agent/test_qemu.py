"""The ``qemu`` consistency method against a real QEMU process (its monitor, block layer and jobs).

The VM is a real ``qemu-system-x86_64`` with its vCPU stopped (``-S``): the block layer, snapshots
and commit jobs run as in a booted VM, and the test writes through the VM's own disk device with
HMP ``qemu-io`` as the guest would. The guest agent is the one boundary faked here (a stand-in on
the QGA socket that records freeze and thaw); ``tests/agent/test_qemu_guest.py`` runs the real
agent inside a booted Debian guest.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from drctl.agent.qemu import QemuDisk, QemuSnapshotFailed, qemu_snapshot
from drctl.agent.qmp import QemuControlError, Qmp
from drctl.errors import InvalidInput
from drctl.processes import run

pytestmark = pytest.mark.integration
MiB = 1024 * 1024


_AGENTS: list[GuestAgentStandIn] = []


def _agent_of(disk: QemuDisk) -> GuestAgentStandIn:
    """The stand-in serving ``disk``'s guest agent socket."""
    return next(a for a in _AGENTS if a.path == disk.guest_agent_socket)


class GuestAgentStandIn:
    """Speaks the guest agent's protocol on a Unix socket; records freeze/thaw in order."""

    def __init__(self, path: Path, *, fail_freeze: bool = False) -> None:
        self.path, self.fail_freeze = path, fail_freeze
        self.calls: list[str] = []
        self.frozen = False
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(str(path))
        self.srv.listen(4)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            with conn, conn.makefile("rwb") as f:
                for line in f:
                    req = json.loads(line)
                    name, args = req["execute"], req.get("arguments", {})
                    self.calls.append(name)
                    if name == "guest-sync-delimited":
                        f.write(b"\xff" + json.dumps({"return": args["id"]}).encode() + b"\n")
                    elif name == "guest-fsfreeze-freeze" and self.fail_freeze:
                        f.write(b'{"error": {"class": "GenericError", "desc": "fsfreeze: busy"}}\n')
                    elif name == "guest-fsfreeze-freeze":
                        self.frozen = True
                        f.write(b'{"return": 2}\n')
                    elif name == "guest-fsfreeze-thaw":
                        self.frozen = False
                        f.write(b'{"return": 2}\n')
                    elif name == "guest-fsfreeze-status":
                        f.write(
                            json.dumps({"return": "frozen" if self.frozen else "thawed"}).encode() + b"\n"
                        )
                    f.flush()

    def close(self) -> None:
        self.srv.close()


@pytest.fixture
def vm(tmp_path):
    """A QEMU process with one virtio disk ``vda``: factory(image, fmt) -> (QemuDisk, process)."""
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    procs, agents = [], []

    def start(image: Path, fmt: str = "raw", **agent_opts) -> tuple[QemuDisk, subprocess.Popen]:
        qmp, qga = tmp_path / "qmp.sock", tmp_path / "qga.sock"
        agents.append(GuestAgentStandIn(qga, **agent_opts))
        _AGENTS.append(agents[-1])
        p = subprocess.Popen(
            [
                "qemu-system-x86_64",
                *("-machine", "q35", "-accel", "tcg", "-nodefaults", "-display", "none", "-S"),
                *("-qmp", f"unix:{qmp},server=on,wait=off"),
                *("-drive", f"file={image},if=virtio,format={fmt},id=vda"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        procs.append(p)
        deadline = time.monotonic() + 20
        while not qmp.exists():
            assert p.poll() is None, p.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        return QemuDisk(qmp, qga, "vda"), p

    yield start
    for p in procs:
        p.kill()
        p.wait()
    for a in agents:
        a.close()
        _AGENTS.remove(a)


def guest_write(disk: QemuDisk, pattern: int, offset: int, length: int) -> None:
    """Write through the VM's disk device, as the guest would."""
    with Qmp(disk.qmp_socket) as qmp:
        qmp.command(
            "human-monitor-command", {"command-line": f'qemu-io vda "write -P {pattern} {offset} {length}"'}
        )


def active_file(disk: QemuDisk) -> str:
    with Qmp(disk.qmp_socket) as qmp:
        return next(b["inserted"]["file"] for b in qmp.command("query-block") if b["device"] == "vda")


def vm_status(disk: QemuDisk) -> str:
    with Qmp(disk.qmp_socket) as qmp:
        return qmp.command("query-status")["status"]


def test_raw_disk_backed_up_quiet_while_the_vm_writes_to_an_overlay_then_merged_back(vm, tmp_path):
    image = tmp_path / "disk.raw"
    image.write_bytes(b"\0" * (8 * MiB))
    disk, proc = vm(image)
    guest_write(disk, 0x11, 0, MiB)
    with qemu_snapshot(disk) as source:
        assert source == image  # a raw base is read in place, no copy
        overlay = Path(active_file(disk))
        assert overlay != image and overlay.exists() and overlay.parent == tmp_path
        guest_write(disk, 0x22, 0, MiB)  # the VM keeps writing during the backup...
        backed_up = source.read_bytes()
    assert backed_up[:MiB] == b"\x11" * MiB  # ...but the backup sees the frozen state
    assert image.read_bytes()[:MiB] == b"\x22" * MiB  # and the write was merged back
    assert active_file(disk) == str(image)
    assert not overlay.exists()
    assert vm_status(disk) == "prelaunch" and proc.poll() is None  # the VM never stopped


def test_freeze_then_snapshot_then_thaw_before_the_backup_reads(vm, tmp_path):
    image = tmp_path / "disk.raw"
    image.write_bytes(b"\0" * MiB)
    disk, _ = vm(image)
    agent = _agent_of(disk)
    with qemu_snapshot(disk):
        assert not agent.frozen  # thawed before the copy is read
        calls = [c for c in agent.calls if c != "guest-sync-delimited"]
        assert calls[:2] == ["guest-fsfreeze-freeze", "guest-fsfreeze-thaw"]


def test_qcow2_chain_is_backed_up_as_raw_bytes_of_the_frozen_chain(vm, tmp_path):
    base = tmp_path / "restored.raw"
    base.write_bytes(b"\x33" * (4 * MiB))
    top = tmp_path / "run.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(base), str(top)], timeout=30)
    disk, _ = vm(top, "qcow2")
    guest_write(disk, 0x44, MiB, MiB)  # lands in run.qcow2
    with qemu_snapshot(disk) as source:
        assert source.suffix == ".raw" and source.parent == tmp_path
        assert oct(source.stat().st_mode & 0o777) == "0o600"
        guest_write(disk, 0x55, 0, MiB)
        data = source.read_bytes()
    assert data == b"\x33" * MiB + b"\x44" * MiB + b"\x33" * (2 * MiB)
    assert not source.exists()
    assert active_file(disk) == str(top)
    assert base.read_bytes() == b"\x33" * (4 * MiB)  # the restored disk under it untouched
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["restored.raw", "run.qcow2"]


def test_a_failed_backup_still_merges_the_overlay_back(vm, tmp_path):
    image = tmp_path / "disk.raw"
    image.write_bytes(b"\0" * MiB)
    disk, proc = vm(image)
    with pytest.raises(OSError), qemu_snapshot(disk):
        guest_write(disk, 0x66, 0, 4096)
        raise OSError("device vanished mid-read")
    assert active_file(disk) == str(image)
    assert image.read_bytes()[:4096] == b"\x66" * 4096
    assert [p.name for p in tmp_path.glob("*.qcow2")] == []
    assert proc.poll() is None


def test_a_refused_snapshot_thaws_the_guest_and_leaves_the_chain_alone(vm, tmp_path):
    image = tmp_path / "disk.raw"
    image.write_bytes(b"\0" * MiB)
    disk, _ = vm(image)
    agent = _agent_of(disk)
    bad = QemuDisk(disk.qmp_socket, disk.guest_agent_socket, "vda", overlay_dir=tmp_path / "no-such-dir")
    with pytest.raises(QemuSnapshotFailed, match="disk chain is unchanged") as e, qemu_snapshot(bad):
        pytest.fail("no source may be yielded")
    assert "vda" in str(e.value) and str(disk.qmp_socket) in str(e.value)
    assert not agent.frozen and agent.calls[-1] == "guest-fsfreeze-status"
    assert active_file(disk) == str(image)


def test_a_guest_that_cannot_freeze_gets_no_snapshot(vm, tmp_path):
    image = tmp_path / "disk.raw"
    image.write_bytes(b"\0" * MiB)
    disk, _ = vm(image, fail_freeze=True)
    with pytest.raises(QemuSnapshotFailed, match="fsfreeze: busy"), qemu_snapshot(disk):
        pytest.fail("no source may be yielded")
    assert active_file(disk) == str(image)
    assert list(tmp_path.glob("*.qcow2")) == []


def test_unknown_drive_and_missing_sockets_are_named(vm, tmp_path):
    image = tmp_path / "disk.raw"
    image.write_bytes(b"\0" * MiB)
    disk, _ = vm(image)
    with (
        pytest.raises(QemuSnapshotFailed, match="no disk 'vdz'"),
        qemu_snapshot(QemuDisk(disk.qmp_socket, disk.guest_agent_socket, "vdz")),
    ):
        pass
    gone = tmp_path / "gone.sock"
    with pytest.raises(QemuControlError) as e, qemu_snapshot(QemuDisk(gone, disk.guest_agent_socket, "vda")):
        pass
    assert str(gone) in str(e.value) and "agent config" in str(e.value)
    with pytest.raises(InvalidInput, match="disk data: .*guest_agent_socket"):
        QemuDisk.from_config({"name": "data", "qmp_socket": str(disk.qmp_socket), "device": "vda"})
    assert QemuDisk.from_config(
        {"qmp_socket": "/q", "guest_agent_socket": "/g", "device": "vdb", "overlay_dir": "/o"}
    ) == QemuDisk(Path("/q"), Path("/g"), "vdb", None, Path("/o"))


def test_without_a_device_the_drive_holding_the_disk_path_is_snapshotted(vm, tmp_path):
    """The agent config names the disk by its image file; it may sit under a run's qcow2 overlay."""
    base = tmp_path / "restored.raw"
    base.write_bytes(b"\x77" * MiB)
    top = tmp_path / "run.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(base), str(top)], timeout=30)
    disk, _ = vm(top, "qcow2")
    by_path = QemuDisk(disk.qmp_socket, disk.guest_agent_socket, path=base)
    with qemu_snapshot(by_path) as source:
        assert active_file(disk) != str(top)
        assert source.read_bytes() == b"\x77" * MiB
    assert active_file(disk) == str(top)
    with (
        pytest.raises(QemuSnapshotFailed, match="other.raw"),
        qemu_snapshot(QemuDisk(disk.qmp_socket, disk.guest_agent_socket, path=tmp_path / "other.raw")),
    ):
        pass
