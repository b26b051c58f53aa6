"""The agent bundle runs on a bare Debian 12 python3 (no venv, no drctl installed), and is cached.

Slow: the first build installs the agent's dependencies from the package index (~40 s)."""

from __future__ import annotations

import os
import subprocess

import pytest

from drctl.demo.images.agent_bundle import build_agent_bundle, install_command

pytestmark = pytest.mark.slow


def test_the_bundle_runs_drctl_on_the_system_python_and_is_built_once(tmp_path):
    bundle = build_agent_bundle(tmp_path / "images")
    assert (bundle / "opt-drctl" / "drctl" / "agent" / "qemu.py").is_file()
    assert not (bundle / "opt-drctl" / "pulumi").exists() and not (bundle / "opt-drctl" / "bin").exists()
    # Installed as a guest gets it: the tar stream through install_command, into a fake root.
    root = tmp_path / "root"
    (root / "usr" / "local" / "bin").mkdir(parents=True)
    script = install_command().replace("/opt/", f"{root}/opt/").replace("/usr/local/", f"{root}/usr/local/")
    (root / "opt").mkdir()
    tar = subprocess.Popen(["tar", "-C", str(bundle), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(["sh", "-c", script], stdin=tar.stdout, check=True)
    assert tar.wait() == 0
    launcher = (
        (root / "usr" / "local" / "bin" / "drctl").read_text().replace("/opt/drctl", f"{root}/opt/drctl")
    )
    proc = subprocess.run(
        ["sh", "-c", launcher.split("\n", 1)[1], "drctl", "snapshots", str(tmp_path / "no-repo")],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 10, proc.stderr  # drctl ran (its repository-missing exit code)
    assert "no repository at" in proc.stderr
    mtime = os.stat(bundle).st_mtime
    assert build_agent_bundle(tmp_path / "images") == bundle and os.stat(bundle).st_mtime == mtime
