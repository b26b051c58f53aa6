"""Files inside a restored raw disk's ext4 file system, read and written with e2fsprogs' ``debugfs``.

Why debugfs and not a loop mount: a restored disk is the client's data; debugfs parses it in a
user-space process instead of handing it to the host kernel's ext4 driver as root, needs no loop
device nor mount point to clean up after a Ctrl-C, and works on the file in place. The file system
is the first Linux partition (MBR type 0x83) of the disk, or the whole disk when it has no
partition table.
"""

from __future__ import annotations

import logging
import re
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from drctl.errors import EXIT_RUN_FAILED, DrctlError
from drctl.processes import run

log = logging.getLogger(__name__)

SECTOR = 512
LINUX_PARTITION = 0x83
DEBUGFS_TIMEOUT = 300.0
# One line of ``ls -p``: /inode/mode/uid/gid/name/size/
_LS_LINE = re.compile(r"^/(\d+)/(\d+)/(\d+)/(\d+)/(.*)/(\d*)/$")


class DiskFilesError(DrctlError):
    """A file in a restored disk's file system could not be read or written."""

    exit_code = EXIT_RUN_FAILED


@dataclass(frozen=True)
class Entry:
    name: str
    mode: int
    uid: int
    gid: int
    size: int

    @property
    def is_dir(self) -> bool:
        return self.mode & 0o170000 == 0o040000


def partition_offset(mbr: bytes) -> int:
    """Byte offset of the file system: the first Linux partition of an MBR disk, else 0."""
    if len(mbr) < SECTOR or mbr[510:512] != b"\x55\xaa":
        return 0
    for i in range(4):
        entry = mbr[446 + 16 * i : 446 + 16 * (i + 1)]
        ptype, start = entry[4], struct.unpack("<I", entry[8:12])[0]
        if ptype == LINUX_PARTITION and start:
            return start * SECTOR
    return 0


class Ext4Disk:
    """The ext4 file system of a raw disk file (paths are absolute paths inside it)."""

    def __init__(self, raw: str | Path) -> None:
        self.raw = Path(raw)
        with open(self.raw, "rb") as f:
            self.offset = partition_offset(f.read(SECTOR))
        self.device = f"{self.raw}?offset={self.offset}" if self.offset else str(self.raw)

    def _debugfs(self, argv: list[str], what: str) -> str:
        proc = run(
            ["debugfs", *argv, self.device],
            what=what,
            timeout=DEBUGFS_TIMEOUT,
            check=False,
            error=DiskFilesError,
        )
        # debugfs exits 0 whatever its commands did: an error is a stderr line other than its banner.
        errors = [
            line
            for line in proc.stderr.splitlines()
            if line.strip() and not line.startswith("debugfs ") and "Using EXT2FS" not in line
        ]
        if proc.returncode != 0 or errors:
            raise DiskFilesError(
                f"{what} in {self.raw}: {'; '.join(errors[:3]) or f'debugfs exit {proc.returncode}'}; "
                "is it an ext4 file system (e2fsck it, or restore it again)?"
            )
        return proc.stdout

    def list(self, path: str) -> list[Entry]:
        """The entries of directory ``path`` (without ``.`` and ``..``); [] if it does not exist."""
        try:
            out = self._debugfs(["-R", f"ls -p {path}"], f"listing {path}")
        except DiskFilesError as e:
            if "File not found" in e.message:
                return []
            raise
        entries = []
        for line in out.splitlines():
            m = _LS_LINE.match(line.strip())
            if m and m[5] not in (".", ".."):
                entries.append(Entry(m[5], int(m[2], 8), int(m[3]), int(m[4]), int(m[6] or 0)))
        return entries

    def read_text(self, path: str) -> str:
        return self._debugfs(["-R", f"cat {path}"], f"reading {path}")

    def write(self, files: dict[str, Path], dirs: tuple[str, ...], *, uid: int, gid: int) -> None:
        """Create ``dirs`` (0700) and copy ``files`` (path in the disk: local file; 0600, replacing an
        existing file), all owned by ``uid``:``gid``, in one debugfs session; every file is then
        listed again and its size and owner checked."""
        parents = {p.rsplit("/", 1)[0] for p in files}
        existing = {f"{parent}/{e.name}" for parent in parents for e in self.list(parent)}
        commands = []
        for d in dirs:
            commands += [f"mkdir {d}", f"sif {d} uid {uid}", f"sif {d} gid {gid}", f"sif {d} mode 040700"]
        for path, local in files.items():
            if path in existing:
                commands.append(f"rm {path}")
            commands += [
                f"write {local} {path}",
                f"sif {path} uid {uid}",
                f"sif {path} gid {gid}",
                f"sif {path} mode 0100600",
            ]
        with tempfile.NamedTemporaryFile("w", prefix="drctl-debugfs-", suffix=".cmd") as script:
            script.write("\n".join(commands) + "\n")
            script.flush()
            self._debugfs(["-w", "-f", script.name], f"writing {len(files)} file(s)")
        for parent in parents:
            found = {e.name: (e.size, e.uid) for e in self.list(parent)}
            for path, local in files.items():
                folder, _, name = path.rpartition("/")
                if folder == parent and found.get(name) != (local.stat().st_size, uid):
                    raise DiskFilesError(f"{path} in {self.raw} does not read back as written")
