"""Running a command in a sandbox guest from the tests, over SSH inside the run's namespace."""

from __future__ import annotations

import subprocess
from pathlib import Path


def ssh_in_namespace(ns: str, ip: str, key: Path, command: str, *, timeout: int = 120) -> str:
    """``command`` as root on the guest at ``ip`` inside namespace ``ns`` (key ``key``); its stdout.
    A failure fails the test with ssh's stderr."""
    proc = subprocess.run(
        [
            *("ip", "netns", "exec", ns, "ssh", "-i", str(key)),
            *("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"),
            f"root@{ip}",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
