"""The namespace helper the sandbox and the NCA lab share, on real network namespaces (root).

Traffic stays inside the namespaces the test creates (no uplink, no route out)."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path

import pytest

from drctl.errors import DrctlError
from drctl.netns import NamespaceError, Netns, add_veth, list_namespaces
from drctl.processes import process_alive, wait_until

pytestmark = pytest.mark.integration


class OwnError(DrctlError):
    """The error class of the namespace's user (the sandbox's, the lab's)."""

    exit_code = 42


@pytest.fixture
def names():
    """Fresh namespace names (not drsb-/drnca-: no concurrent cleanup may take them for its own),
    all removed whatever happens."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        reason = "network namespaces need root and iproute2"
        if os.environ.get("DRCTL_ALLOW_SKIP") == "1":
            pytest.skip(reason)
        pytest.fail(reason, pytrace=False)
    made: list[str] = []

    def new(role: str) -> str:
        made.append(f"drtest-{uuid.uuid4().hex[:8]}-{role}")
        return made[-1]

    yield new
    for name in made:
        Netns(name).remove(grace_s=0.5)


def test_bridge_tap_and_veth_carry_traffic_between_our_namespaces(names):
    router, host = Netns(names("router"), OwnError), Netns(names("host"), OwnError)
    router.create()
    host.create()
    assert {router.name, host.name} <= set(list_namespaces("drtest-"))
    assert router.run(["ip", "-br", "link"], timeout=10).stdout.split()[0] == "lo"
    assert "UNKNOWN" in router.run(["ip", "-br", "link", "show", "lo"], timeout=10).stdout  # lo is up

    router.add_bridge("br0", "10.77.0.1/24")
    router.add_tap("tap0", "br0")
    add_veth(router, "veth-host", host, "eth0")
    router.ip("link", "set", "veth-host", "master", "br0", "up")
    host.ip("addr", "add", "10.77.0.20/24", "dev", "eth0")
    host.ip("link", "set", "eth0", "up")

    links = router.ip("-o", "link", "show", "master", "br0").stdout
    assert "tap0" in links and "veth-host" in links
    assert "10.77.0.1/24" in router.ip("-o", "-4", "addr", "show", "br0").stdout
    ping = [sys.executable, "-m", "drctl.nca.probe", "ping", "--dest", "10.77.0.1", "--count", "2"]
    answered = wait_until(
        lambda: host.run(ping, timeout=30, check=False).returncode == 0, 20, "an echo reply over the bridge"
    )
    assert answered


def test_a_failed_step_raises_the_users_error_naming_the_step_and_ip_s_complaint(names):
    ns = Netns(names("err"), OwnError)
    ns.create()
    ns.add_bridge("br0")
    with pytest.raises(OwnError) as e:
        ns.add_bridge("br0", what="creating the bridge of lan")
    assert e.value.exit_code == 42
    assert e.value.message.startswith("creating the bridge of lan failed: ip exited with status 2:")
    assert "exists" in e.value.message
    with pytest.raises(NamespaceError, match=f"creating the network namespace {ns.name} failed"):
        Netns(ns.name).create()  # it exists: refused, and the existing one is untouched
    assert ns.exists() and "br0" in ns.ip("-o", "link").stdout


def test_a_spawned_daemon_logs_to_its_file_and_is_stopped_with_the_namespace(names, tmp_path):
    ns = Netns(names("daemons"))
    ns.create()
    log = tmp_path / "daemon.log"
    # A daemon that ignores SIGTERM: only the SIGKILL after the grace stops it.
    stubborn = ns.spawn(["sh", "-c", "trap '' TERM; echo started; exec sleep 300"], log_path=log)
    polite = ns.spawn(["sleep", "300"], log_path=None)
    wait_until(lambda: "started" in log.read_text(), 10, "the daemon's first log line")
    assert os.getsid(stubborn.pid) == stubborn.pid  # its own session: Ctrl-C reaches drctl only
    assert {stubborn.pid, polite.pid} <= set(ns.pids())

    ns.kill_processes(grace_s=0.5)
    assert stubborn.wait(timeout=10) == -9 and polite.wait(timeout=10) == -15
    assert ns.pids() == []
    ns.remove()
    assert not ns.exists() and not Path(f"/run/netns/{ns.name}").exists()
    ns.remove()  # removing it again is not an error


def test_private_run_gives_a_daemon_its_own_run_directory(names, tmp_path):
    ns = Netns(names("run"))
    ns.create()
    private = tmp_path / "run"
    proc = ns.spawn(["sh", "-c", "touch /run/i-was-here"], log_path=tmp_path / "out", private_run=private)
    assert proc.wait(timeout=30) == 0, (tmp_path / "out").read_text()
    assert (private / "i-was-here").exists() and not Path("/run/i-was-here").exists()


def test_processes_left_in_a_removed_namespace_are_gone(names):
    ns = Netns(names("stray"))
    ns.create()
    stray = ns.spawn(["sleep", "300"], log_path=None)
    ns.remove(grace_s=2)
    stray.wait(timeout=10)
    assert not process_alive(stray.pid) and not ns.exists()
