"""The base root filesystem shared by every demo server: Debian bookworm built with mmdebstrap.

One directory holds systemd, the cloud kernel, dropbear, the QEMU guest agent, LVM and the
packages of every demo role; each
server's disk is a copy of it with its own configuration (:mod:`drctl.demo.images.roles`). The
packages come from the Debian mirror this machine's apt uses (``/etc/apt/sources.list*``).
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from pathlib import Path

from drctl.errors import EXIT_LOCAL_IO, DrctlError, ToolMissing
from drctl.processes import run

log = logging.getLogger(__name__)

SUITE = "bookworm"
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    "linux-image-cloud-amd64",
    "dropbear",
    "iproute2",
    "procps",
    "curl",
    "python3",
    # What the backup agent's proofs use in a guest: the QEMU guest agent (file system freeze for
    # the hypervisor-side qemu method), LVM (the lvm-snapshot method) and the ext4 tools (fsck).
    "qemu-guest-agent",
    "lvm2",
    "e2fsprogs",
)
ROLE_PACKAGES = ("dnsmasq", "postgresql-15", "python3-psycopg2", "samba", "nginx-light")
# Left out of the disks to keep them small: documentation, and PostgreSQL's JIT (LLVM, ~130 MB)
# which the demo database turns off (jit = off).
PATH_EXCLUDES = (
    "/usr/share/man/*",
    "/usr/share/doc/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
    "/usr/lib/x86_64-linux-gnu/libLLVM-*",
    "/usr/lib/x86_64-linux-gnu/libz3.so*",
    "/usr/lib/postgresql/15/lib/llvmjit*",
    "/usr/lib/postgresql/15/lib/bitcode/*",
)
PATH_INCLUDES = ("/usr/share/locale/locale.alias",)
# Runs inside the new root after the packages are installed (mmdebstrap mounts /dev and /proc).
CUSTOMIZE = (
    "useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin catalogue",
    "rm -f /etc/dropbear/dropbear_*_host_key",  # each server gets its own (builder)
    "mkdir -p /root/.ssh && chmod 700 /root/.ssh",
    "passwd -l root",
    # A small initramfs (virtio drivers only; ext4 is built in): less to unpack and probe under emulation.
    "echo MODULES=list > /etc/initramfs-tools/conf.d/drctl-demo",
    'printf "virtio_pci\\nvirtio_blk\\n" >> /etc/initramfs-tools/modules',
    "update-initramfs -u -k all",
    "apt-get clean && rm -rf /var/lib/apt/lists/*",
)

DEFAULT_MIRRORS = {
    "debian": "http://deb.debian.org/debian",
    "debian-security": "http://deb.debian.org/debian-security",
}


class ImageBuildFailed(DrctlError):
    """Building a demo disk image failed."""

    exit_code = EXIT_LOCAL_IO


def apt_mirrors(sources_dir: Path = Path("/etc/apt")) -> dict[str, str]:
    """The Debian and Debian-security mirror URIs this machine's apt is configured with
    (deb822 ``.sources`` and one-line ``.list`` files), else deb.debian.org."""
    uris: list[str] = []
    files = [
        sources_dir / "sources.list",
        *sorted((sources_dir / "sources.list.d").glob("*.list")),
        *sorted((sources_dir / "sources.list.d").glob("*.sources")),
    ]
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        if f.suffix == ".sources":
            uris += [u for m in re.finditer(r"(?mi)^URIs:\s*(.+)$", text) for u in m.group(1).split()]
        else:
            uris += re.findall(r"(?m)^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text)
    found = dict(DEFAULT_MIRRORS)
    for uri in uris:
        u = uri.rstrip("/")
        if u.endswith("/debian-security"):
            found["debian-security"] = u
        elif u.endswith("/debian"):
            found["debian"] = u
    return found


def base_spec() -> dict[str, object]:
    """Everything that decides the content of the base (its cache key)."""
    return {
        "suite": SUITE,
        "packages": [*BASE_PACKAGES, *ROLE_PACKAGES],
        "excludes": list(PATH_EXCLUDES),
        "includes": list(PATH_INCLUDES),
        "customize": list(CUSTOMIZE),
    }


def base_key() -> str:
    return hashlib.sha256(repr(sorted(base_spec().items())).encode()).hexdigest()[:16]


def mmdebstrap_argv(target: Path, mirrors: dict[str, str]) -> list[str]:
    deb, sec = mirrors["debian"], mirrors["debian-security"]
    argv = [
        "mmdebstrap",
        "--variant=minbase",
        "--mode=root",
        "--format=directory",
        '--aptopt=APT::Install-Recommends "false"',
        f"--include={','.join((*BASE_PACKAGES, *ROLE_PACKAGES))}",
    ]
    argv += [f"--dpkgopt=path-exclude={p}" for p in PATH_EXCLUDES]
    argv += [f"--dpkgopt=path-include={p}" for p in PATH_INCLUDES]
    argv += [f"--customize-hook=chroot \"$1\" sh -c '{cmd}'" for cmd in CUSTOMIZE]
    argv += [
        SUITE,
        str(target),
        f"deb {deb} {SUITE} main",
        f"deb {deb} {SUITE}-updates main",
        f"deb {sec} {SUITE}-security main",
    ]
    return argv


def build_base_rootfs(target: Path, *, log_path: Path) -> None:
    """Build the base into ``target`` (must not exist; written to ``target.partial`` first)."""
    if shutil.which("mmdebstrap") is None:
        raise ToolMissing("mmdebstrap is not installed: apt-get install --no-install-recommends mmdebstrap")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    argv = mmdebstrap_argv(partial, apt_mirrors())
    log.info("building the base root filesystem with mmdebstrap (log: %s)", log_path)
    # No time limit: a first build downloads the Debian packages (minutes, mirror-dependent).
    proc = run(argv, what="mmdebstrap", log_path=log_path, timeout=None, check=False)
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        raise ImageBuildFailed(
            f"mmdebstrap failed (exit {proc.returncode}) building the demo base; is the Debian mirror "
            f"reachable (apt-get update)? Log: {log_path}; last lines: {' | '.join(tail)}"
        )
    partial.rename(target)


def kernel_files(root: Path) -> tuple[str, str]:
    """The kernel and initrd names under ``root/boot`` (the newest if several)."""
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise ImageBuildFailed(
            f"no kernel in {root / 'boot'}: the base root filesystem is incomplete; delete it and build again"
        )
    version = kernels[-1].name.removeprefix("vmlinuz-")
    initrd = root / "boot" / f"initrd.img-{version}"
    if not initrd.exists():
        raise ImageBuildFailed(f"no initrd for kernel {version} in {root / 'boot'}")
    return kernels[-1].name, initrd.name
