"""The sandbox for real: demo disks (built once, then cached) booted with QEMU in a run's namespace.

Needs root, iproute2, qemu-system-x86, qemu-utils, and for the first image build mmdebstrap,
extlinux and the Debian mirror; without them these tests FAIL unless DRCTL_ALLOW_SKIP=1.
The images live in the shared cache ($DRCTL_STATE_DIR/images, else .state/images): CI builds
them once (``python -m drctl.demo.images build``), every later run reuses them.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import UTC
from pathlib import Path

import pytest

from drctl.activation.targets.sandbox import NS_PREFIX, OWNER_DIR, Sandbox, cleanup_stale, socket_dir
from drctl.agent.qmp import QemuControlError, Qmp
from drctl.demo.images import build_demo_images
from drctl.netns import list_namespaces
from drctl.plan.load import load_plan
from drctl.processes import wait_until
from tests.support.interrupts import sigint_default

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PLAN_PATH = REPO / "recovery_plans" / "demo.yaml"
BOOT_TIMEOUT_S = 420  # ~25 s alone; several minutes when the 2 cores are shared with other guests

# Runs inside the namespace: one DNS A query over UDP, prints the addresses answered.
DNS_QUERY = textwrap.dedent(r"""
    import socket, struct, sys
    name, server = sys.argv[1], sys.argv[2]
    q = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.sendto(q, (server, 53))
    data = s.recv(1024)
    answers, i, ips = struct.unpack(">H", data[6:8])[0], len(q), []
    for _ in range(answers):
        i += 2 if data[i] & 0xC0 == 0xC0 else data.index(b"\0", i) + 1 - i
        rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", data[i:i + 10])
        i += 10
        if rtype == 1:
            ips.append(socket.inet_ntoa(data[i:i + rdlen]))
        i += rdlen
    print(" ".join(ips))
""")

# Runs inside the namespace: PostgreSQL's SSLRequest; a PostgreSQL server answers one byte, S or N.
PG_PROBE = textwrap.dedent(r"""
    import socket, struct, sys
    with socket.create_connection((sys.argv[1], 5432), timeout=5) as s:
        s.sendall(struct.pack(">II", 8, 80877103))
        print(s.recv(1).decode())
""")


def _require_tools() -> None:
    missing = [
        t
        for t in ("ip", "qemu-system-x86_64", "qemu-img", "mmdebstrap", "extlinux", "mkfs.ext4")
        if shutil.which(t) is None
    ]
    reason = None
    if os.geteuid() != 0:
        reason = "the sandbox needs root (network namespaces, taps, loop mounts)"
    elif missing:
        reason = f"missing tools {missing}: apt-get install --no-install-recommends qemu-system-x86 qemu-utils mmdebstrap extlinux"
    if reason:
        if os.environ.get("DRCTL_ALLOW_SKIP") == "1":
            pytest.skip(reason)
        pytest.fail(reason, pytrace=False)


@pytest.fixture(scope="module")
def plan():
    return load_plan(PLAN_PATH)


@pytest.fixture(scope="module")
def images(plan):
    _require_tools()
    return build_demo_images(plan, servers=["dns01", "db01"])


def _poll(attempt, budget_s: float) -> subprocess.CompletedProcess:
    """Repeat ``attempt`` (a command in the namespace) until it exits 0 or the budget is spent."""
    end = time.monotonic() + budget_s
    while True:
        result = attempt()
        if result.returncode == 0 or time.monotonic() > end:
            return result
        time.sleep(2)


def _run_id() -> str:
    return "t" + uuid.uuid4().hex[:10]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _processes_using(path: Path) -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if str(path).encode() in (p / "cmdline").read_bytes():
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


def _assert_nothing_left(ns: str, run_dir: Path, pids: list[int]) -> None:
    assert ns not in list_namespaces(NS_PREFIX), f"namespace {ns} left behind"
    assert not Path(f"/run/netns/{ns}").exists()
    assert not (OWNER_DIR / f"{ns}.owner").exists()
    assert [p for p in pids if _alive(p)] == [], "QEMU still running"
    assert _processes_using(run_dir) == [], "a process still uses the run directory"
    assert list(run_dir.glob("*.qcow2")) == [], "overlay left behind"
    assert not socket_dir(ns).exists(), "QMP/QGA sockets left behind"


def test_two_guests_boot_answer_on_their_production_ips_and_leave_nothing(plan, images, tmp_path):
    dns, db = plan.server("dns01"), plan.server("db01")
    sb = Sandbox(_run_id(), plan, state_dir=tmp_path, ssh_identity_file=images.ssh_identity_file)
    raw_before = images.images["db01"].stat().st_mtime
    with sb:
        guests = [sb.start_server(dns, images.images["dns01"]), sb.start_server(db, images.images["db01"])]
        pids = [g.pid for g in guests]
        for g in guests:
            sb.wait_ssh(g, timeout_s=BOOT_TIMEOUT_S)
            assert g.ssh_ready_at > g.boot_started_at
        # From inside the namespace, as the verification runs: dns01 resolves db01 by name ...
        answer = _poll(
            lambda: sb.exec([sys.executable, "-c", DNS_QUERY, "db01.demo.lan", dns.nics[0].ip], timeout=30),
            120,
        )
        assert answer.stdout.split() == [db.nics[0].ip], answer.stderr
        # ... and db01's PostgreSQL answers on its production address (port of the plan's check).
        assert any(c.kind == "port" and c.spec["port"] == 5432 for c in db.checks)
        # SSH answers first; PostgreSQL may still be starting, so poll as the verification does.
        pg = _poll(lambda: sb.exec([sys.executable, "-c", PG_PROBE, db.nics[0].ip], timeout=30), 120)
        assert pg.stdout.strip() in ("S", "N"), pg.stderr
        # Nothing can leave the namespace: no default route, no link but lo, the bridge and the taps,
        # no forwarding. (Checked on the configuration: never by sending packets from the host.)
        routes = sb.exec(["ip", "route", "show"]).stdout
        assert "default" not in routes and routes.split()[0] == "192.168.10.0/24"
        links = {line.split()[0].split("@")[0] for line in sb.exec(["ip", "-br", "link"]).stdout.splitlines()}
        assert links == {"lo", "br0", *(t for g in guests for t in g.taps)}
        assert sb.exec(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == "0"
        assert sb.ssh_url(db) == f"paramiko://root@192.168.10.20?ssh_identity_file={images.ssh_identity_file}"
    _assert_nothing_left(sb.namespace, sb.run_dir, pids)
    sb.teardown()  # idempotent
    assert images.images["db01"].stat().st_mtime == raw_before, "the guest wrote to the restored disk itself"


def test_data_disks_are_attached_after_the_boot_disk_through_overlays(plan, images, tmp_path):
    """A server with a data disk (a database volume, a file share) sees it as vdb, with its content,
    and the guest's writes go to the overlay, never into the restored file."""
    from datetime import datetime, timedelta

    from drctl.activation.verify.checks import run_checks_subprocess
    from drctl.plan.model import Check

    dns = plan.server("dns01")
    marker = b"drctl-data-disk-marker"
    data = tmp_path / "dns01-data.raw"
    with open(data, "wb") as f:
        f.write(marker)
        f.truncate(64 * 1024 * 1024)
    before = data.read_bytes()[:4096], data.stat().st_mtime
    sb = Sandbox(_run_id(), plan, state_dir=tmp_path, ssh_identity_file=images.ssh_identity_file)
    with sb:
        g = sb.start_server(dns, images.images["dns01"], data_disks=[("data", data)])
        assert (sb.run_dir / "dns01-data.qcow2").exists()
        sb.wait_ssh(g, timeout_s=BOOT_TIMEOUT_S)
        checks = [
            Check("command", "test $(cat /sys/block/vdb/size) -eq 131072"),
            Check("command", f"head -c {len(marker)} /dev/vdb | grep -q {marker.decode()}"),
            Check("command", "echo overwritten | dd of=/dev/vdb conv=fsync status=none"),
        ]
        results = run_checks_subprocess(
            sb.ssh_url(dns), checks, datetime.now(UTC) + timedelta(seconds=120), prefix=sb.prefix
        )
        assert [r.ok for r in results] == [True, True, True], [r.detail for r in results]
        # The guest's monitor: running, its disks the drives vda (boot) and vdb (data) on overlays.
        assert g.drives == ("vda", "vdb") and oct(sb.socket_dir.stat().st_mode & 0o777) == "0o700"
        with Qmp(g.qmp_socket) as qmp:
            assert qmp.command("query-status")["status"] == "running"
            files = {b["device"]: b["inserted"]["file"] for b in qmp.command("query-block")}
        assert files == {"vda": str(sb.run_dir / "dns01.qcow2"), "vdb": str(sb.run_dir / "dns01-data.qcow2")}
        assert g.qga_socket.is_socket()
        pid = g.pid
    _assert_nothing_left(sb.namespace, sb.run_dir, [pid])
    assert (data.read_bytes()[:4096], data.stat().st_mtime) == before, "the guest wrote to the restored disk"


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from drctl.plan.load import load_plan
    from drctl.activation.targets.sandbox import Sandbox
    plan = load_plan(sys.argv[1])
    sb = Sandbox(sys.argv[2], plan, state_dir=Path(sys.argv[3]))
    try:
        with sb:
            g = sb.start_server(plan.server("dns01"), Path(sys.argv[4]))
            print(g.pid, sb.run_dir, flush=True)
            time.sleep(600)
    except KeyboardInterrupt:
        sys.exit(130)
""")


CHILD_START_S = 300  # a Python start, the namespace and QEMU's launch; minutes on a loaded 2-core host
CHILD_TEARDOWN_S = 180  # the teardown: QEMU gets 5 s to stop, then SIGKILL; the namespace removed


@pytest.fixture
def sandbox_child(tmp_path):
    """Start a child process that runs a sandbox with dns01 booting: returns (child, QEMU pid, run
    directory, namespace). Whatever happens in the test, nothing of the child's run is left: a
    child still running at the end is killed and its namespace, QEMU and overlays are removed."""
    started: list[tuple[subprocess.Popen, str]] = []

    def start(plan_path: Path, disk: Path) -> tuple[subprocess.Popen, int, Path, str]:
        run_id = _run_id()
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(plan_path), run_id, str(tmp_path), str(disk)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=sigint_default,  # the child takes SIGINT even if pytest inherited it ignored
        )
        started.append((child, NS_PREFIX + run_id))
        ready, _, _ = select.select([child.stdout], [], [], CHILD_START_S)
        line = child.stdout.readline().split() if ready else []
        if not line:
            child.kill()
            pytest.fail(
                f"the sandbox child did not start dns01 within {CHILD_START_S} s: {child.stderr.read()}"
            )
        return child, int(line[0]), Path(line[1]), NS_PREFIX + run_id

    yield start
    for child, ns in started:
        if child.poll() is None:
            child.kill()  # SIGKILL: its own teardown does not run, cleanup_stale does it
        child.wait(timeout=30)
        child.stdout.close()
        child.stderr.close()
        cleanup_stale(ns, state_dir=tmp_path)


def _qemu_running(qmp_socket: Path) -> bool:
    """True once QEMU answers on its monitor that the guest's CPUs run (the boot is under way)."""
    try:
        with Qmp(qmp_socket) as qmp:
            return qmp.command("query-status")["status"] == "running"
    except QemuControlError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_a_run_mid_boot_leaves_nothing(images, sandbox_child, sig):
    child, qemu_pid, run_dir, ns = sandbox_child(PLAN_PATH, images.images["dns01"])
    # Interrupt once QEMU runs the guest (still booting: SSH comes tens of seconds later).
    wait_until(lambda: _qemu_running(socket_dir(ns) / "dns01.qmp"), CHILD_START_S, "QEMU to run dns01")
    assert _alive(qemu_pid) and ns in list_namespaces()
    child.send_signal(sig)
    try:
        assert child.wait(timeout=CHILD_TEARDOWN_S) == 130, child.stderr.read()
    except subprocess.TimeoutExpired:
        pytest.fail(f"the child did not finish its teardown within {CHILD_TEARDOWN_S} s after {sig.name}")
    _assert_nothing_left(ns, run_dir, [qemu_pid])


def test_cleanup_stale_removes_what_a_killed_run_left(images, sandbox_child, tmp_path):
    child, qemu_pid, run_dir, ns = sandbox_child(PLAN_PATH, images.images["dns01"])
    child.kill()  # SIGKILL: no teardown runs
    child.wait(timeout=30)
    assert _alive(qemu_pid) and ns in list_namespaces()
    assert cleanup_stale(ns, state_dir=tmp_path) == [ns]
    _assert_nothing_left(ns, run_dir, [qemu_pid])


def test_cleanup_stale_leaves_a_live_run_alone(plan, tmp_path):
    _require_tools()
    with Sandbox(_run_id(), plan, state_dir=tmp_path) as sb:
        assert cleanup_stale(sb.namespace) == []  # owned by this (live) process
        assert sb.namespace in list_namespaces()


def test_waiting_for_ssh_ends_at_once_when_qemu_exits_and_names_the_budget_otherwise(plan, tmp_path):
    """The SSH wait without a guest: a stand-in for QEMU that exits ends it at once with its
    status; one that runs but never answers ends it when the budget is spent."""
    from datetime import datetime

    from drctl.activation.targets.sandbox import Guest, GuestFailed

    _require_tools()
    with Sandbox(_run_id(), plan, state_dir=tmp_path) as sb:

        def guest(argv: list[str]) -> Guest:
            serial = tmp_path / "serial.log"
            serial.write_text("Booting the kernel\nKernel panic - not syncing\n")
            return Guest(
                server="dns01",
                ips=("192.168.10.10",),  # nothing answers there: no guest in this namespace
                process=subprocess.Popen(argv),
                disk=tmp_path / "none.qcow2",
                serial_log=serial,
                taps=(),
                ram_mb=1,
                vcpus=1,
                boot_started_at=datetime.now(UTC),
            )

        started = time.monotonic()
        with pytest.raises(GuestFailed, match="QEMU exited with 3 while booting") as e:
            sb.wait_ssh(guest(["sh", "-c", "sleep 0.5; exit 3"]), timeout_s=120)
        assert time.monotonic() - started < 30 and "Kernel panic" in e.value.message
        silent = guest(["sleep", "60"])
        with pytest.raises(GuestFailed, match=r"no SSH answer on 192\.168\.10\.10:22 within 2 s"):
            sb.wait_ssh(silent, timeout_s=2)
        assert silent.running()  # the wait gave up; stopping the guest is the teardown's job
        silent.process.kill()
        silent.process.wait()
