"""Plan checks run with testinfra against real local things (local:// host), with retries."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from drctl.activation.verify.checks import VerificationError, run_checks, run_checks_subprocess
from drctl.errors import InvalidInput
from drctl.runs.model import outcome_reason, server_outcome, utc_now, verified_at


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


@pytest.fixture
def web(tmp_path):
    """A real HTTP server on 127.0.0.1 serving a page like app01's."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_text("<h1>catalogue from db01</h1>\n")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def listen_later(port: int, delay: float) -> subprocess.Popen:
    code = (
        "import socket, time\n"
        f"time.sleep({delay})\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(60)\n"
    )
    return subprocess.Popen([sys.executable, "-c", code])


def deadline_in(seconds: float):
    return utc_now() + timedelta(seconds=seconds)


def test_every_kind_passes_against_real_local_things(web, tmp_path):
    marker = tmp_path / "share" / "README.txt"
    marker.parent.mkdir()
    marker.write_text("welcome to the share\n")
    url = f"http://127.0.0.1:{web}/"
    checks = [
        {"port": web},
        {"port": {"port": web, "host": "127.0.0.1"}},
        {"http": {"url": url, "status": 200, "contains": "catalogue from db01"}},
        {"command": f"test -s {marker}"},
        {"file": str(marker)},
        {"file": {"path": str(marker), "contains": "welcome"}},
    ]
    t0 = time.monotonic()
    results = run_checks("local://", checks, deadline_in(20), interval=0.2)
    assert time.monotonic() - t0 < 10
    assert [r.ok for r in results] == [True] * 6, [r.detail for r in results]
    assert results[0].check == f"port {web}"
    assert results[0].detail == f"listening on tcp://127.0.0.1:{web}"
    assert results[1].detail == f"tcp://127.0.0.1:{web} is listening"
    assert results[2].detail == "HTTP 200, body contains 'catalogue from db01'"
    assert results[3].detail == "exit 0"
    assert results[5].detail == f"{marker} exists and contains 'welcome'"
    assert all(r.attempts == 1 and r.started_at <= r.ended_at for r in results)
    assert server_outcome(results) == "ok"
    assert verified_at(results) == max(r.ended_at for r in results)
    # the same page judged from the verifier's side (inside the sandbox namespace, in the product)
    via = run_checks("local://", [checks[2]], deadline_in(10), http_via="verifier")
    assert via[0].ok and via[0].detail == "HTTP 200, body contains 'catalogue from db01'"


def test_wrong_status_or_body_fails_with_what_was_seen(web):
    url = f"http://127.0.0.1:{web}/"
    for via in ("host", "verifier"):
        res = run_checks(
            "local://",
            [
                {"http": {"url": url + "missing", "status": 200}},
                {"http": {"url": url, "status": 200, "contains": "orders from db02"}},
            ],
            deadline_in(1.0),
            interval=0.3,
            http_via=via,
        )
        assert "HTTP 404 (expected 200)" in res[0].detail
        assert "HTTP 200 but the body lacks 'orders from db02'" in res[1].detail
        assert server_outcome(res) == "failed" and verified_at(res) is None
    closed = f"http://127.0.0.1:{free_port()}/"
    res = run_checks("local://", [{"http": {"url": closed}}], deadline_in(0.5), interval=0.2)
    assert res[0].detail.startswith("curl exit 7")  # connection refused, seen by curl on the host


def test_a_server_that_starts_listening_after_2_s_is_ok(tmp_path):
    port = free_port()
    proc = listen_later(port, 2.0)
    try:
        t0 = time.monotonic()
        res = run_checks("local://", [{"port": port}], deadline_in(20), interval=0.25)
        waited = time.monotonic() - t0
    finally:
        proc.kill()
        proc.wait()
    assert res[0].ok, res[0].detail
    assert res[0].attempts >= 3
    assert 1.5 <= waited < 10
    assert (res[0].ended_at - res[0].started_at).total_seconds() >= 1.5
    assert server_outcome(res) == "ok"


def test_a_port_that_never_listens_fails_at_the_deadline_with_detail():
    port = free_port()
    t0 = time.monotonic()
    res = run_checks("local://", [{"port": port}, {"command": "true"}], deadline_in(2.0), interval=0.25)
    waited = time.monotonic() - t0
    assert 1.9 <= waited < 6
    assert not res[0].ok and res[1].ok
    assert res[0].detail.startswith(f"nothing listens on tcp port {port} (failed after ")
    assert "deadline reached" in res[0].detail
    assert res[0].attempts >= 4 and res[1].attempts == 1  # passed checks are not re-run
    assert server_outcome(res) == "failed"
    assert outcome_reason(res) == f"critical check(s) failed: port {port}"


def test_only_a_non_critical_failure_gives_a_warning_without_waiting_for_the_deadline(tmp_path):
    port = free_port()
    t0 = time.monotonic()
    res = run_checks(
        "local://",
        [{"command": "echo ready"}, {"port": port, "critical": False}],
        deadline_in(60),
        interval=0.2,
        noncritical_grace_s=1.0,
    )
    waited = time.monotonic() - t0
    assert waited < 5, "a non-critical check must not hold the server until its RTO deadline"
    assert res[0].ok and res[0].detail == "exit 0: ready"
    assert not res[1].ok and not res[1].critical and "grace for non-critical checks over" in res[1].detail
    assert server_outcome(res) == "warning"
    assert verified_at(res) == res[0].ended_at
    assert outcome_reason(res) == f"non-critical check(s) failed: port {port}"


def test_failing_command_reports_exit_code_and_output():
    res = run_checks("local://", [{"command": "echo 'db not ready' >&2; exit 3"}], deadline_in(0.3))
    assert res[0].detail.startswith("exit 3: db not ready")


def test_service_check_reports_a_stopped_service():
    res = run_checks("local://", [{"service": "drctl-no-such-service"}], deadline_in(0.3))
    assert not res[0].ok
    assert res[0].detail.startswith("service drctl-no-such-service is not running")


@pytest.mark.skipif(
    not Path("/run/systemd/system").is_dir(),
    reason="this machine does not run systemd (PID 1 is not systemd), so testinfra's service "
    "module cannot see a running service on local://; the sandbox tests run service "
    "checks against real guests",
)
def test_service_check_sees_a_running_service():  # pragma: no cover - needs systemd
    res = run_checks("local://", [{"service": "systemd-journald"}], deadline_in(5))
    assert res[0].ok


def test_cli_in_a_subprocess_as_the_sandbox_runs_it(web, tmp_path):
    port = free_port()
    checks = [
        {"port": web},
        {"http": {"url": f"http://127.0.0.1:{web}/", "contains": "catalogue"}},
        {"port": port, "critical": False},
    ]
    res = run_checks_subprocess("local://", checks, deadline_in(20), interval=0.2, noncritical_grace_s=0.5)
    assert [r.ok for r in res] == [True, True, False]
    assert server_outcome(res) == "warning"
    failed = run_checks_subprocess("local://", [{"port": port}], deadline_in(1), interval=0.3)
    assert not failed[0].ok and "deadline reached" in failed[0].detail
    with pytest.raises(VerificationError, match="could not run"):
        run_checks_subprocess("local://", [{"port": web}], deadline_in(1), python="/bin/false")
    with pytest.raises(InvalidInput, match="password"):
        run_checks_subprocess("paramiko://root:hunter2@192.168.10.30", [{"port": 22}], deadline_in(1))
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "drctl.activation.verify",
            "--host-url",
            "local://",
            "--checks-json",
            '[{"port": 99999}]',
            "--deadline",
            "1",
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "port 99999 out of range" in bad.stderr
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "drctl.activation.verify",
            "--host-url",
            "local://",
            "--checks-json",
            f'[{{"port": {port}}}]',
            "--deadline",
            "0.5",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 20 and '"outcome": "failed"' in out.stdout


def test_bad_host_url_is_an_input_error():
    with pytest.raises(InvalidInput, match="nosuch://"):
        run_checks("nosuch://x", [{"command": "true"}], deadline_in(1))


def test_no_proxy_is_used_for_local_http(web, monkeypatch):
    # An HTTP(S)_PROXY in the environment must not route sandbox checks elsewhere.
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    for via in ("host", "verifier"):
        res = run_checks(
            "local://", [{"http": {"url": f"http://127.0.0.1:{web}/"}}], deadline_in(5), http_via=via
        )
        assert res[0].ok, (via, res[0].detail)


def test_generated_testinfra_module_runs_under_pytest(web, tmp_path):
    from drctl.activation.verify.checks import render_testinfra_module

    closed = free_port()
    module = tmp_path / "test_app01.py"
    module.write_text(
        render_testinfra_module(
            "app01",
            [
                {"port": web},
                {
                    "http": {
                        "url": f"http://127.0.0.1:{web}/",
                        "status": 200,
                        "contains": "catalogue from db01",
                    }
                },
                {"port": closed, "critical": False},
            ],
            filename=module.name,
        )
    )
    ok = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hosts=local://", str(module)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stdout[-3000:]
    assert "2 passed, 1 xfailed" in ok.stdout
    module.write_text(render_testinfra_module("app01", [{"port": closed}], filename=module.name))
    bad = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hosts=local://", str(module)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert bad.returncode == 1 and f"nothing listens on tcp port {closed}" in bad.stdout


@pytest.fixture
def netns():
    """A network namespace of this test (only its loopback), removed afterwards."""
    import shutil

    if os.geteuid() != 0 or shutil.which("ip") is None:
        if os.environ.get("DRCTL_ALLOW_SKIP") == "1":
            pytest.skip("needs root and iproute2 to create a network namespace")
        pytest.fail("needs root and iproute2 (ip netns) to create a network namespace")
    name = f"drctl-vt-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_checks_run_inside_a_network_namespace_as_the_sandbox_does(netns, tmp_path):
    (tmp_path / "index.html").write_text("catalogue from db01\n")
    port = free_port()
    server = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        checks = [{"port": port}, {"http": {"url": f"http://127.0.0.1:{port}/", "contains": "catalogue"}}]
        inside = run_checks_subprocess(
            "local://",
            checks,
            deadline_in(20),
            interval=0.2,
            prefix=["ip", "netns", "exec", netns],
            http_via="verifier",
        )
        assert [r.ok for r in inside] == [True, True], [r.detail for r in inside]
        # the same server is invisible from the host's own network
        outside = run_checks("local://", checks, deadline_in(0.5), interval=0.2, http_via="verifier")
        assert [r.ok for r in outside] == [False, False]
    finally:
        server.terminate()
        server.wait(timeout=10)
