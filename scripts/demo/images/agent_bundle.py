"""This project's backup agent, packed for a Debian 12 guest: ``/opt/drctl`` and a ``drctl`` launcher.

The bundle is a wheel of this checkout plus the agent's runtime dependencies, installed with
``pip install --target`` (the guest runs Debian 12's python3.11 like the host, so the host's
binary wheels fit), cached under ``<images>/agent-<key>/`` where the key hashes the wheel's
RECORD (every file's sha256) and the dependency pins. Only what ``drctl agent`` and ``drctl
backup`` import is in it: not Pulumi, openstacksdk, testinfra or SeaweedFS (~80 MB, most of
it botocore's service descriptions).

Why not baked into the demo disks: their cache key would then change with every commit of this
project and all five disks would be rebuilt each time; a guest that needs the agent gets it with
:func:`install_command` (a tar stream over SSH, as a configuration tool would push it).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import logging
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from drctl.demo.images.rootfs import ImageBuildFailed
from drctl.paths import project_dir
from drctl.processes import run

log = logging.getLogger(__name__)

# What the agent imports at run time (storage, repository and its format-2 digest, config schema, the
# units template engine).
AGENT_REQUIREMENTS = ("blake3", "boto3", "cryptography", "jinja2", "jsonschema", "PyYAML", "zstandard")
LAUNCHER = '#!/bin/sh\nPYTHONPATH=/opt/drctl exec /usr/bin/python3 -m drctl.cli "$@"\n'


def _pins() -> list[str]:
    """The host venv's versions of the agent's dependencies (the ones its tests ran with)."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in AGENT_REQUIREMENTS]


def _source_dir() -> Path:
    """Where the wheel is built from: the checkout this drctl runs from (an editable install), which
    a project directory elsewhere (``DRCTL_PROJECT_DIR``: plans and stacks only) need not be; else
    the project directory."""
    checkout = Path(__file__).resolve().parents[3]
    return checkout if (checkout / "pyproject.toml").is_file() else project_dir()


def build_agent_bundle(images_dir: Path) -> Path:
    """The bundle directory (``<images>/agent-<key>/``, with ``opt-drctl/`` and ``drctl``), built
    once per content: a second call with the same code returns the cached one."""
    images_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="drctl-agent-") as tmp:
        run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp, "."],
            what="building a wheel of this project for the agent bundle",
            cwd=_source_dir(),
            timeout=600,
            error=ImageBuildFailed,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as z:
            record = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
            digest = hashlib.sha256(z.read(record) + repr(_pins()).encode()).hexdigest()[:16]
        bundle = images_dir / f"agent-{digest}"
        with open(images_dir / ".agent.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (bundle / "drctl").exists():
                return bundle
            partial = bundle.with_name(bundle.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            log.info("building the agent bundle %s", bundle)
            target = partial / "opt-drctl"
            pip = [sys.executable, "-m", "pip", "install", "-q", "--no-compile", "--target", str(target)]
            # drctl without its own dependency list (Pulumi, openstacksdk... are for the operator's
            # machine), then the agent's dependencies with theirs.
            run(
                [*pip, "--no-deps", str(wheel)],
                what="installing drctl into the agent bundle",
                timeout=300,
                error=ImageBuildFailed,
            )
            run(
                [*pip, *_pins()],
                what="installing the agent's dependencies with pip --target",
                timeout=900,
                error=ImageBuildFailed,
            )
            shutil.rmtree(target / "bin", ignore_errors=True)  # host shebangs; the launcher replaces them
            (partial / "drctl").write_text(LAUNCHER)
            (partial / "drctl").chmod(0o755)
            partial.rename(bundle)
    return bundle


def install_command() -> str:
    """Shell for the guest, reading the bundle as a tar stream on stdin (``tar -C BUNDLE -c .``)."""
    return (
        "rm -rf /opt/drctl.new && mkdir -p /opt/drctl.new && tar -C /opt/drctl.new -x && "
        "rm -rf /opt/drctl && mv /opt/drctl.new/opt-drctl /opt/drctl && "
        "install -m 0755 /opt/drctl.new/drctl /usr/local/bin/drctl && rm -rf /opt/drctl.new"
    )
