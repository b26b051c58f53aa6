"""Shared helpers of the NCA lab and reconnection tests (not a test module: imported by them): the
lab-tools guard and a namespace standing in for a drill's sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from drctl.nca.labrun import LabUnavailable, require_tools
from drctl.netns import Netns, add_veth
from drctl.processes import wait_until


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
    sbx, g = Netns(sandbox), Netns(guest)
    try:
        for ns in (sbx, g):
            ns.create()
        sbx.add_bridge("br-lan", "192.168.10.1/24")
        add_veth(sbx, "tap-app01", g, "eth0")
        sbx.ip("link", "set", "tap-app01", "master", "br-lan", "up")
        g.ip("addr", "add", "192.168.10.30/24", "dev", "eth0")
        g.ip("link", "set", "eth0", "up")
        err = (tmp_path / "http.err").open("w")
        server = subprocess.Popen(
            [
                *g.exec_prefix,
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

        def serving() -> bool:
            assert server is not None and server.poll() is None, (tmp_path / "http.err").read_text()
            probe = g.run(
                [sys.executable, "-m", "drctl.nca.probe", "tcp", "--host", "192.168.10.30", "--port", "8080"],
                check=False,
                timeout=30,
            )
            return probe.returncode == 0

        wait_until(serving, 15, "the stand-in web server of app01")
        # Like the demo guests: a default route through the subnet's gateway (added after the bind,
        # so http.server's reverse lookup fails fast instead of waiting for a resolver).
        g.ip("route", "add", "default", "via", "192.168.10.1")
        yield sandbox, index
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=5)
        for ns in (g, sbx):
            ns.delete()
