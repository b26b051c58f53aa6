"""The ``qemu`` method on a real booted guest: the demo image's dns01 runs in the sandbox (on its
qcow2 overlay over the raw disk, as a drill runs it) with the real qemu-guest-agent, and keeps
writing checksummed records while its disk is frozen, snapshotted, thawed, backed up into an
encrypted repository and merged back. The restored disk passes ``e2fsck``, holds no torn record,
boots and passes dns01's plan checks.

Slow (two boots under software emulation, ~3-5 min on 2 cores). Needs what the sandbox tests need.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from drctl.activation.targets.sandbox import Sandbox
from drctl.activation.verify.checks import run_checks_subprocess
from drctl.agent.qemu import qemu_snapshot
from drctl.agent.qmp import Qmp
from drctl.demo.images import build_demo_images
from drctl.demo.images.disk import PART_OFFSET
from drctl.plan.load import load_plan
from drctl.processes import run, wait_until
from drctl.repo.backup import backup_disk
from drctl.repo.repository import init_repository
from drctl.repo.restore import restore_disk
from drctl.runs.model import server_outcome, utc_now
from drctl.storage.local import LocalDirStorage
from tests.activation.test_sandbox_integration import BOOT_TIMEOUT_S, PLAN_PATH, _require_tools

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RECORD = 4096
RECORDS = "/root/records.dat"
# In the guest: append 4 KiB records (sequence, payload, sha256 of both) as fast as it can, one
# write() each, and count them in records.count. A record cut by the snapshot would be torn.
WRITER = (
    "import hashlib, os, sys\n"
    "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)\n"
    "n = 0\n"
    "while True:\n"
    "    body = n.to_bytes(8, 'big') + os.urandom(4056)\n"
    "    os.write(fd, body + hashlib.sha256(body).digest())\n"
    "    n += 1\n"
    "    if n % 64 == 0:\n"
    "        open(sys.argv[1] + '.count.new', 'w').write(str(n))\n"
    "        os.replace(sys.argv[1] + '.count.new', sys.argv[1] + '.count')\n"  # never read half-written
)


def _ssh(sb: Sandbox, ip: str, command: str, *, timeout: float = 60, input: str | None = None) -> str:
    proc = sb.exec(
        [
            "ssh",
            *("-i", str(sb.ssh_identity_file)),
            *("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"),
            f"root@{ip}",
            command,
        ],
        timeout=timeout,
        input=input,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _written(sb: Sandbox, ip: str) -> int:
    return int(_ssh(sb, ip, f"cat {RECORDS}.count 2>/dev/null || echo 0").strip())


def _check_records(data: bytes) -> int:
    """Every record whole and in sequence: the count, or an assertion naming the first bad one."""
    assert len(data) % RECORD == 0, f"a torn record at the end: {len(data)} bytes"
    for i in range(len(data) // RECORD):
        rec = data[i * RECORD : (i + 1) * RECORD]
        assert int.from_bytes(rec[:8], "big") == i, f"record {i} out of sequence"
        assert hashlib.sha256(rec[:-32]).digest() == rec[-32:], f"record {i} torn"
    return len(data) // RECORD


def _fsck_and_read(raw: Path, path: str) -> tuple[subprocess.CompletedProcess, str, bytes]:
    """e2fsck -fn of the image's root partition, its superblock's features, and the file at
    ``path`` in it (debugfs)."""
    dev = run(
        ["losetup", "--find", "--show", "--read-only", "--offset", str(PART_OFFSET), str(raw)], timeout=60
    ).stdout.strip()
    try:
        fsck = subprocess.run(["e2fsck", "-fn", dev], capture_output=True, text=True, timeout=300)
        header = run(["dumpe2fs", "-h", dev], timeout=60).stdout
        features = next(ln for ln in header.splitlines() if ln.startswith("Filesystem features:"))
        data = subprocess.run(
            ["debugfs", "-R", f"cat {path}", dev], capture_output=True, timeout=300, check=True
        ).stdout
    finally:
        run(["losetup", "--detach", dev], timeout=60, check=False)
    return fsck, features, data


def test_a_running_guest_is_backed_up_consistent_and_its_restore_boots(tmp_path):
    _require_tools()
    plan = load_plan(PLAN_PATH)
    dns = plan.server("dns01")
    ip = dns.nics[0].ip
    images = build_demo_images(plan, servers=["dns01"])
    (tmp_path / "repo").mkdir()
    repo = init_repository(LocalDirStorage(tmp_path / "repo"), b"guest backup test password")
    sandbox = {"state_dir": tmp_path, "ssh_identity_file": images.ssh_identity_file, "ram_cap_mb": 512}

    with Sandbox("q" + uuid.uuid4().hex[:10], plan, **sandbox) as sb:
        g = sb.start_server(dns, images.images["dns01"])
        sb.wait_ssh(g, timeout_s=BOOT_TIMEOUT_S)
        _ssh(sb, ip, "systemctl is-active qemu-guest-agent || systemctl start qemu-guest-agent")
        _ssh(
            sb,
            ip,
            f"cat > /root/writer.py && (setsid python3 /root/writer.py {RECORDS} </dev/null >/dev/null 2>&1 &)",
            input=WRITER,
        )
        wait_until(lambda: _written(sb, ip) >= 256, 120, "the guest's first records", interval=1)
        overlay_before = sorted(sb.run_dir.glob("*.qcow2"))
        disk = {"qmp_socket": g.qmp_socket, "guest_agent_socket": g.qga_socket, "device": "vda"}
        with qemu_snapshot(disk) as source:
            at_snapshot = _written(sb, ip)
            result = backup_disk(repo, source, server="dns01", disk="system")
            during = _written(sb, ip)
        assert during > at_snapshot, "the guest stopped writing during the backup"
        # The overlay is merged back: the VM writes to the sandbox's own overlay again, nothing left.
        with Qmp(g.qmp_socket) as qmp:
            assert qmp.command("query-status")["status"] == "running"
            active = {b["device"]: b["inserted"]["file"] for b in qmp.command("query-block")}
        assert active == {"vda": str(sb.run_dir / "dns01.qcow2")}
        assert sorted(sb.run_dir.glob("*.qcow2")) == overlay_before
        assert list(sb.run_dir.glob("*.drctl-*")) == []
        assert _written(sb, ip) > during  # still running, still writing
        _ssh(sb, ip, f"pkill -f '/root/[w]riter.py'; sync; test -s {RECORDS}")

    restored = tmp_path / "dns01-restored.raw"
    restore_disk(repo, server="dns01", point=result.point.id, out=restored)
    fsck, features, data = _fsck_and_read(restored, RECORDS)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    # Frozen, not merely crash-consistent: a freeze empties the journal (a live copy needs recovery).
    assert "needs_recovery" not in features, features
    assert _check_records(data) >= 256

    with Sandbox("r" + uuid.uuid4().hex[:10], plan, **sandbox) as sb:
        g = sb.start_server(dns, restored)
        sb.wait_ssh(g, timeout_s=BOOT_TIMEOUT_S)
        results = run_checks_subprocess(
            sb.ssh_url(dns),
            dns.checks,
            utc_now() + timedelta(seconds=240),
            prefix=sb.prefix,
            python=sys.executable,
        )
        assert server_outcome(results) == "ok", [(r.check, r.ok, r.detail) for r in results]
