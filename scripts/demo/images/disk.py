"""A root filesystem directory -> a bootable raw disk: MBR, one ext4 partition, extlinux.

The raw file has the plan's disk size but is sparse (only the content is written). The kernel boots
from the disk itself (SeaBIOS -> MBR -> extlinux), with the console on the serial port.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

from drctl.demo.images.rootfs import ImageBuildFailed, kernel_files
from drctl.errors import ToolMissing
from drctl.processes import run

log = logging.getLogger(__name__)

PART_OFFSET = 1024 * 1024  # the partition starts at 1 MiB (sector 2048)
MBR_CANDIDATES = (Path("/usr/lib/EXTLINUX/mbr.bin"), Path("/usr/lib/syslinux/mbr/mbr.bin"))
TOOLS = {"mkfs.ext4": "e2fsprogs", "losetup": "mount", "extlinux": "extlinux"}
QUICK = 120.0  # seconds for a mount, loop or boot-loader step (copies and mkfs take what they take)


def mbr(boot_code: bytes, start_lba: int, sectors: int) -> bytes:
    """The first sector: ``boot_code`` (extlinux's, <= 440 bytes), then one bootable Linux partition
    (type 0x83) from ``start_lba`` over ``sectors``. CHS fields hold the LBA-only marker."""
    entry = struct.pack("<B3sB3sII", 0x80, b"\xfe\xff\xff", 0x83, b"\xfe\xff\xff", start_lba, sectors)
    return boot_code[:440].ljust(440, b"\0") + b"\0" * 6 + entry + b"\0" * 48 + b"\x55\xaa"


def check_tools() -> Path:
    """Raise :class:`ToolMissing` naming the Debian package of a missing tool; returns mbr.bin."""
    for tool, pkg in TOOLS.items():
        if shutil.which(tool) is None:
            raise ToolMissing(f"{tool} is not installed: apt-get install --no-install-recommends {pkg}")
    for path in MBR_CANDIDATES:
        if path.exists():
            return path
    raise ToolMissing(
        "extlinux's mbr.bin is missing: apt-get install --no-install-recommends extlinux syslinux-common"
    )


@contextlib.contextmanager
def mounted_partition(raw: Path, size: int) -> Iterator[Path]:
    """Loop-mount the partition of ``raw``; always detached again, also on errors and Ctrl-C."""
    dev = run(
        ["losetup", "--find", "--show", "--offset", str(PART_OFFSET), "--sizelimit", str(size), str(raw)],
        what=f"attaching {raw} to a loop device",
        timeout=QUICK,
        error=ImageBuildFailed,
    ).stdout.strip()
    mnt = Path(tempfile.mkdtemp(prefix="drctl-img-"))
    mounted = False
    try:
        run(
            ["mount", "-t", "ext4", dev, str(mnt)],
            what=f"mounting {raw}",
            timeout=QUICK,
            error=ImageBuildFailed,
        )
        mounted = True
        yield mnt
    finally:
        # No time limit here: an exception from the clean-up would hide the one that led to it.
        if mounted:
            run(["umount", str(mnt)], timeout=None, check=False)
        run(["losetup", "--detach", dev], timeout=None, check=False)
        with contextlib.suppress(OSError):
            mnt.rmdir()


def extlinux_conf(kernel: str, initrd: str) -> str:
    return "\n".join(
        [
            "DEFAULT linux",
            "PROMPT 0",
            "TIMEOUT 1",
            "SERIAL 0 115200",
            "",
            "LABEL linux",
            f"  LINUX /boot/{kernel}",
            f"  INITRD /boot/{initrd}",
            # No predictable-name lookups or splash: boot time matters under software emulation.
            "  APPEND root=/dev/vda1 rw console=ttyS0,115200 quiet mitigations=off systemd.show_status=auto",
            "",
        ]
    )


def make_bootable_disk(rootfs: Path, raw: Path, size_bytes: int) -> None:
    """Write ``rootfs`` into a new sparse raw disk ``raw`` of ``size_bytes``."""
    mbr_bin = check_tools()
    kernel, initrd = kernel_files(rootfs)
    fs_size = size_bytes - PART_OFFSET
    raw.unlink(missing_ok=True)
    with open(raw, "wb") as f:
        f.truncate(size_bytes)
    run(
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-L",
            "root",
            "-E",
            f"offset={PART_OFFSET}",
            "-d",
            str(rootfs),
            str(raw),
            f"{fs_size // 1024}k",
        ],
        what=f"writing the root filesystem into {raw} (mkfs.ext4 -d)",
        timeout=None,
        error=ImageBuildFailed,
    )
    with mounted_partition(raw, fs_size) as mnt:
        # extlinux cannot read the sparse files mkfs.ext4 -d writes: rewrite what it loads.
        for name in (kernel, initrd):
            src = mnt / "boot" / name
            tmp = src.with_name(name + ".tmp")
            run(
                ["cp", "--sparse=never", "--preserve=mode,timestamps", str(src), str(tmp)],
                what="copying the kernel",
                timeout=None,
                error=ImageBuildFailed,
            )
            os.replace(tmp, src)
        ext = mnt / "boot" / "extlinux"
        ext.mkdir(exist_ok=True)
        (ext / "extlinux.conf").write_text(extlinux_conf(kernel, initrd))
        run(
            ["extlinux", "--install", str(ext)],
            what="extlinux --install",
            timeout=QUICK,
            error=ImageBuildFailed,
        )
        # Give the replaced blocks back so the raw file stays sparse (best effort: only size is at stake).
        trim = run(["fstrim", str(mnt)], timeout=QUICK, check=False)
        if trim.returncode != 0:
            log.warning("fstrim on %s failed (the image is only larger): %s", raw, trim.stderr.strip())
    with open(raw, "r+b") as f:
        f.write(mbr(mbr_bin.read_bytes(), PART_OFFSET // 512, fs_size // 512))
