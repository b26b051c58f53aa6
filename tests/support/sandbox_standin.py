"""Shared helpers of the NCA lab and reconnection tests (not a test module: imported by them): the
lab-tools guard and a namespace standing in for a drill's sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from drctl.netns import LabUnavailable, require_tools, run


def need_lab() -> None:
    """Fail (skip only with DRCTL_ALLOW_SKIP=1) when strongSwan, dnsmasq or iproute2 are missing."""
    try:
        require_tools()
    except LabUnavailable as e:
        if os.environ.get("DRCTL_ALLOW_SKIP") == "1":
            pytest.skip(f"NCA lab unavailable: {e.message}")
        pytest.fail(f"NCA lab unavailable: {e.message} (set DRCTL_ALLOW_SKIP=1 to skip)")


@contextmanager
def sandbox_standin(tmp_path: Path, page: str, tag: str = "r") -> Iterator[tuple[str, Path]]:
    """A namespace shaped like the sandbox's (bridge with the recovery subnet's gateway, no
    uplink) and app01 as a guest behind a veth on the bridge. Yields (namespace, page file);
    removes both namespaces whatever happens. Not named drsb-*: a concurrent drill's stale-sandbox
    cleanup must not take it for one of its own."""
    sandbox, guest = f"drtest-{os.getpid()}-{tag}sbx", f"drtest-{os.getpid()}-{tag}g"
    www = tmp_path / "www"
    www.mkdir()
    index = www / "index.html"
    index.write_text(page + "\n")
    server = None
    try:
        for ns in (sandbox, guest):
            run(["ip", "netns", "add", ns])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "-n", sandbox, "link", "add", "br-lan", "type", "bridge"])
        run(["ip", "-n", sandbox, "addr", "add", "192.168.10.1/24", "dev", "br-lan"])
        run(["ip", "-n", sandbox, "link", "set", "br-lan", "up"])
        run(
            [
                "ip",
                "link",
                "add",
                "tap-app01",
                "netns",
                sandbox,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                guest,
            ]
        )
        run(["ip", "-n", sandbox, "link", "set", "tap-app01", "master", "br-lan", "up"])
        run(["ip", "-n", guest, "addr", "add", "192.168.10.30/24", "dev", "eth0"])
        run(["ip", "-n", guest, "link", "set", "eth0", "up"])
        err = (tmp_path / "http.err").open("w")
        server = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                guest,
                sys.executable,
                "-m",
                "http.server",
                "8080",
                "--bind",
                "192.168.10.30",
                "--directory",
                str(www),
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        deadline = time.monotonic() + 15
        while (
            run(
                [
                    "ip",
                    "netns",
                    "exec",
                    guest,
                    sys.executable,
                    "-m",
                    "drctl.nca.probe",
                    "tcp",
                    "--host",
                    "192.168.10.30",
                    "--port",
                    "8080",
                ],
                check=False,
            ).returncode
            != 0
        ):
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "http.err").read_text()
            time.sleep(0.1)
        # Like the demo guests: a default route through the subnet's gateway (added after the bind,
        # so http.server's reverse lookup fails fast instead of waiting for a resolver).
        run(["ip", "-n", guest, "route", "add", "default", "via", "192.168.10.1"])
        yield sandbox, index
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=5)
        for ns in (guest, sandbox):
            run(["ip", "netns", "del", ns], check=False)
