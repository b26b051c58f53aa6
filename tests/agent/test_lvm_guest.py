"""The agent inside a real Debian guest, on LVM, run by the systemd timer ``drctl agent units`` renders.

dns01 of the demo images boots in the sandbox with a data disk (LVM: vg0/data, ext4, a writer
appending checksummed records) and this project's agent bundle on a second disk. The guest reaches
the test's SeaweedFS on the host's loopback only through the sandbox network (a relay on the
bridge's gateway address: ``tests/support/store_relay.py``). Its timer (schedule compressed to one
minute) runs a full ``lvm-snapshot`` job while the writer writes; its signed record is verified,
the snapshot is removed, and the restored volume passes ``e2fsck`` and holds no torn record. Then
a 4 MB snapshot under a write loop overflows during a second job: it fails, its signed record says
so, no point is written and the snapshot is removed.

Slow (one boot under software emulation and two agent jobs in it: ~4 min on 2 cores).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from drctl.activation.targets.sandbox import Sandbox
from drctl.agent.records import generate_agent_key
from drctl.demo.images import build_demo_images
from drctl.demo.images.agent_bundle import build_agent_bundle, install_command
from drctl.demo.images.builder import default_images_dir
from drctl.plan.load import load_plan
from drctl.processes import run, wait_until
from drctl.repo.repository import init_repository
from drctl.repo.restore import restore_disk
from drctl.storage.s3 import S3Storage
from drctl.storage.s3_client import create_bucket
from tests.activation.test_sandbox_integration import BOOT_TIMEOUT_S, PLAN_PATH, _require_tools
from tests.agent.test_qemu_guest import WRITER, _check_records
from tests.support.store_relay import store_relay

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PASSWORD = "lvm guest test password"
CONFIG = "/etc/drctl/dns01.agent.yaml"
# As an operator would: with the agent's environment (the store's address and credentials).
STATUS = f"set -a; . /etc/drctl/agent-dns01.env; drctl agent status --config {CONFIG} --json"
SSH_OPTS = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes")


def _ssh(sb: Sandbox, ip: str, command: str, *, input: bytes | None = None, check: bool = True, timeout=300):
    proc = subprocess.run(
        [*sb.prefix, "ssh", "-i", str(sb.ssh_identity_file), *SSH_OPTS, f"root@{ip}", command],
        input=input or b"",
        capture_output=True,
        timeout=timeout,
    )
    if check:
        assert proc.returncode == 0, (command, proc.stdout.decode(errors="replace"), proc.stderr.decode())
    return proc


def _journal(sb: Sandbox, ip: str) -> str:
    out = _ssh(
        sb,
        ip,
        "systemctl list-timers --all --no-pager; systemctl status --no-pager drctl-agent-dns01-full.service; "
        "journalctl --no-pager -n 60 -u drctl-agent-dns01-full.service",
        check=False,
    )
    return out.stdout.decode(errors="replace") + out.stderr.decode(errors="replace")


def _points(env: dict, url: str) -> list[dict]:
    drctl = str(Path(sys.executable).with_name("drctl"))
    proc = subprocess.run(
        [drctl, "snapshots", url, "--server", "dns01", "--json"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])["snapshots"]


def test_the_agent_backs_up_a_live_lv_from_its_timer_and_fails_an_overflowed_snapshot(
    seaweed_server, tmp_path
):
    _require_tools()
    plan = load_plan(PLAN_PATH)
    # The demo flavor's 256 MB leave too little beside dnsmasq and the writer for the agent's
    # parallel reads (it was OOM-killed there): this guest gets 1 GB.
    dns = dataclasses.replace(plan.server("dns01"), ram_mb=1024)
    ip = dns.nics[0].ip
    gateway = next(s.gateway for s in plan.subnets if s.ref == dns.nics[0].subnet)
    images = build_demo_images(plan, servers=["dns01"])
    bundle = build_agent_bundle(default_images_dir())
    agent_disk = tmp_path / "agent.ext4"
    run(["mkfs.ext4", "-q", "-d", str(bundle), str(agent_disk), "200M"], timeout=300)
    data_disk = tmp_path / "data.raw"
    with open(data_disk, "wb") as f:
        f.truncate(256 * 1024 * 1024)

    client = seaweed_server.client()
    bucket = f"lvm-{uuid.uuid4().hex[:12]}"
    create_bucket(client, bucket, object_lock=False)
    url = f"s3://{bucket}/repo"
    repo = init_repository(S3Storage(bucket, "repo", client), PASSWORD.encode())
    env = {**os.environ, **seaweed_server.env, "DRCTL_PASSWORD": PASSWORD}
    key = tmp_path / "dns01.agent-key"
    generate_agent_key(key)
    config = {
        "format": "drctl-agent-v1",
        "client": plan.client.id,
        "stack": "demo",
        "server": "dns01",
        "repository": url,
        "state_dir": "/var/lib/drctl-agent/dns01",
        "key": "/etc/drctl/dns01.agent-key",
        "disks": [
            {"name": "data", "path": "/dev/vg0/data", "method": "lvm-snapshot", "snapshot_size": "64M"}
        ],
        "schedule": [{"type": "full", "every_s": 60}],
    }
    guest_env = "".join(
        f"{k}={v}\n"
        for k, v in {
            **seaweed_server.env,
            "AWS_ENDPOINT_URL": f"http://{gateway}:8333",
            "DRCTL_PASSWORD": PASSWORD,
        }.items()
    )
    port = urlparse(seaweed_server.endpoint).port
    sandbox = {"state_dir": tmp_path, "ssh_identity_file": images.ssh_identity_file, "ram_cap_mb": 1024}

    with Sandbox("l" + uuid.uuid4().hex[:10], plan, **sandbox) as sb:
        g = sb.start_server(
            dns, images.images["dns01"], data_disks=[("data", data_disk), ("agent", agent_disk)]
        )
        with store_relay(sb, gateway, port, 8333, tmp_path / "s3.sock"):
            sb.wait_ssh(g, timeout_s=BOOT_TIMEOUT_S)
            # The volume, its file system and the writer; the agent from its disk; its config.
            _ssh(
                sb,
                ip,
                "set -e; pvcreate -q /dev/vdb; vgcreate -q vg0 /dev/vdb; lvcreate -q -y -L 128M -n data vg0; "
                "mkfs.ext4 -q /dev/vg0/data; mkdir -p /srv/data /mnt/agent; mount /dev/vg0/data /srv/data; "
                f"mount -o ro /dev/vdc /mnt/agent; tar -C /mnt/agent -c . | ({install_command()}); "
                "umount /mnt/agent; install -d -m 0700 /etc/drctl",
            )
            for path, content in (
                (CONFIG, yaml.safe_dump(config).encode()),
                ("/etc/drctl/dns01.agent-key", key.read_bytes()),
                ("/etc/drctl/agent-dns01.env", guest_env.encode()),
                ("/root/writer.py", WRITER.encode()),
            ):
                _ssh(sb, ip, f"umask 077; cat > {path}", input=content)
            _ssh(
                sb,
                ip,
                "setsid python3 /root/writer.py /srv/data/records.dat </dev/null >/dev/null 2>&1 & "
                f"drctl agent units --config {CONFIG} --out /etc/systemd/system --drctl /usr/local/bin/drctl "
                "&& systemctl daemon-reload && systemctl start drctl-agent-dns01-full.timer",
            )

            # The timer fires within a minute (+ its randomized delay); the job writes one point.
            def first_point() -> bool:
                if len(_points(env, url)) == 1:
                    return True
                failed = _ssh(sb, ip, "systemctl is-failed drctl-agent-dns01-full.service", check=False)
                assert failed.returncode != 0, _journal(sb, ip)
                return False

            try:
                wait_until(first_point, 300, "the timer's first agent job", interval=10)
            except Exception as e:
                raise AssertionError(_journal(sb, ip)) from e
            _ssh(sb, ip, "systemctl stop drctl-agent-dns01-full.timer")
            wait_until(
                lambda: (
                    _ssh(sb, ip, "systemctl is-active drctl-agent-dns01-full.service", check=False).returncode
                    != 0
                ),
                300,
                "the end of the job",
                interval=5,
            )
            ok = json.loads(_ssh(sb, ip, STATUS).stdout.splitlines()[-1])
            assert [(j["result"], j["trust"], j["type"]) for j in ok["jobs"]] == [
                ("ok", "verified", "full")
            ], ok

            # The job's snapshot is gone: the volume group holds the data volume only.
            assert _ssh(sb, ip, "lvs --noheadings -o lv_name vg0").stdout.decode().split() == ["data"]
            _ssh(sb, ip, "pkill -f '/root/[w]riter.py'; rm -f /srv/data/records.dat; sync")  # backed up

            # A snapshot smaller than what is written during the job overflows: failed, no point.
            _ssh(sb, ip, f"sed -i 's/snapshot_size: 64M/snapshot_size: 4M/' {CONFIG}")
            _ssh(
                sb,
                ip,
                "setsid sh -c 'echo $$ > /root/churn.pid; while true; do dd if=/dev/zero of=/srv/data/churn "
                "bs=1M count=32 conv=fsync status=none; rm -f /srv/data/churn; done' "
                "</dev/null >/dev/null 2>&1 & sleep 2; test -s /root/churn.pid",
            )
            job = _ssh(sb, ip, "systemctl start drctl-agent-dns01-full.service", check=False)
            _ssh(sb, ip, "pkill -P $(cat /root/churn.pid); kill $(cat /root/churn.pid)", check=False)
            assert job.returncode != 0, _journal(sb, ip)
            status = json.loads(_ssh(sb, ip, STATUS).stdout.splitlines()[-1])
            failed = status["jobs"][0]
            # A real overflow invalidates the snapshot under the read (I/O errors): the agent asks
            # lvs and reports the overflow, not a bare read error.
            assert (failed["result"], failed["trust"]) == ("failed", "verified"), failed
            assert failed["error_class"] == "SnapshotOverflow", failed
            assert len(_points(env, url)) == 1
            assert _ssh(sb, ip, "lvs --noheadings -o lv_name vg0").stdout.decode().split() == ["data"]

    restored = tmp_path / "data-restored.raw"
    restore_disk(repo, server="dns01", disk="data", out=restored)
    fsck = subprocess.run(["e2fsck", "-fn", str(restored)], capture_output=True, text=True, timeout=300)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    data = subprocess.run(
        ["debugfs", "-R", "cat /records.dat", str(restored)], capture_output=True, timeout=300, check=True
    ).stdout
    assert _check_records(data) > 0
