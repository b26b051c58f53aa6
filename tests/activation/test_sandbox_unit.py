"""Sandbox parts that need no namespace: MACs, resource caps, run ids, URLs."""

from __future__ import annotations

import re
from datetime import UTC
from pathlib import Path

import pytest

from drctl.activation.targets.sandbox import NS_PREFIX, Sandbox, SandboxError, guest_mac
from drctl.errors import InvalidInput
from drctl.plan.load import load_plan

PLAN = load_plan(Path(__file__).resolve().parents[2] / "recovery_plans" / "demo.yaml")


def test_guest_macs_are_stable_distinct_and_in_qemus_local_range():
    macs = [guest_mac(s.name, i) for s in PLAN.servers for i in range(2)]
    assert len(set(macs)) == len(macs)
    assert all(re.fullmatch(r"52:54:00(:[0-9a-f]{2}){3}", m) for m in macs)
    assert guest_mac("db01", 0) == guest_mac("db01", 0)


def test_ram_and_vcpus_come_from_the_plan_capped_by_the_options(tmp_path):
    db = PLAN.server("db01")  # 512 MB, 1 vCPU in the plan
    assert (
        Sandbox("r1", PLAN, state_dir=tmp_path).ram_mb(db),
        Sandbox("r1", PLAN, state_dir=tmp_path).vcpus(db),
    ) == (512, 1)
    capped = Sandbox("r1", PLAN, state_dir=tmp_path, ram_cap_mb=384, vcpu_cap=1)
    assert capped.ram_mb(db) == 384 and capped.ram_mb(PLAN.server("dns01")) == 256


def test_namespace_and_ssh_url_name_the_run_and_the_production_address(tmp_path):
    sb = Sandbox("demo-20260203T210100Z", PLAN, state_dir=tmp_path)
    assert sb.namespace == NS_PREFIX + "demo-20260203T210100Z"
    assert sb.prefix == ["ip", "netns", "exec", sb.namespace]
    key = tmp_path.resolve() / "images" / "ssh" / "id_ed25519"
    assert sb.ssh_url("web01") == f"paramiko://root@192.168.10.50?ssh_identity_file={key}"


@pytest.mark.parametrize("bad", ["", "a b", "../x", "x" * 80, "-x"])
def test_run_ids_that_cannot_name_a_namespace_are_refused(tmp_path, bad):
    with pytest.raises(InvalidInput, match="run id"):
        Sandbox(bad, PLAN, state_dir=tmp_path)


def test_starting_a_server_before_setup_says_what_to_do(tmp_path):
    sb = Sandbox("r2", PLAN, state_dir=tmp_path)
    with pytest.raises(SandboxError, match="not set up"):
        sb.start_server(PLAN.server("dns01"), tmp_path / "none.raw")


def test_teardown_waits_for_a_start_in_flight_and_no_start_follows_it(tmp_path):
    """Ctrl-C while another thread is launching a guest: the guest launched a moment later must be
    stopped by the teardown, not left running (a real process stands in for QEMU)."""
    import subprocess
    import threading
    import time
    from datetime import datetime

    from drctl.activation.targets.sandbox import Guest

    class SlowStart(Sandbox):
        def _start_server(self, server, disk_path, disk_format, overlay, data_disks):
            time.sleep(0.5)  # overlay, taps... the teardown begins meanwhile
            proc = subprocess.Popen(["sleep", "60"])
            guest = Guest(
                server=server.name,
                ips=(),
                process=proc,
                disk=tmp_path / "x.qcow2",
                serial_log=tmp_path / "serial",
                taps=(),
                ram_mb=1,
                vcpus=1,
                boot_started_at=datetime.now(UTC),
            )
            self.guests[server.name] = guest
            return guest

    sb = SlowStart("r3", PLAN, state_dir=tmp_path)
    started: list[Guest] = []
    t = threading.Thread(
        target=lambda: started.append(sb.start_server(PLAN.server("dns01"), tmp_path / "d.raw"))
    )
    t.start()
    time.sleep(0.1)
    sb.teardown()
    t.join()
    assert started and started[0].process.poll() is not None, "the guest outlived the teardown"
    with pytest.raises(SandboxError, match="being torn down"):
        sb.start_server(PLAN.server("db01"), tmp_path / "d.raw")
