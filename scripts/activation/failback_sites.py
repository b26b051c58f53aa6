"""Where a failback puts each server's disks on the original site: the ``--to SITE_TARGETS`` file.

A YAML (or JSON) file mapping each server to its on-site target. A server with one disk may give
the target directly; otherwise one target per plan disk::

    servers:
      dns01: /srv/failback/dns01.raw          # an image file to create (it must not exist)
      db01:
        system: /dev/vg0/db01                 # a block device: written in place, read back
      files01:
        system: /mnt/nas/seed/                # a directory (NAS seed): files01-system.raw inside

What a target is follows from what exists at that path: a block device, a directory, else a new
image file whose directory exists. An image file is written by the repository's restore (verified
against the point's digest, resumable) under a hidden name beside it, renamed into place once
verified; a block device gets the verified image copied onto it and read back.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drctl.errors import InvalidInput, LocalIOError
from drctl.input_files import load_yaml_file

COPY_BLOCK = 4 * 1024 * 1024


class SiteTargetsInvalid(InvalidInput):
    """The failback's site targets file does not give a usable target for every disk."""


class SiteWriteFailed(LocalIOError):
    """A restored disk could not be written to its on-site target."""


@dataclass(frozen=True)
class SiteTarget:
    """One disk's place on site. ``kind``: ``image`` (a new file), ``directory`` (a NAS seed: the
    image file ``<server>-<disk>.raw`` inside it) or ``device`` (a block device)."""

    server: str
    disk: str
    kind: str
    path: Path

    @property
    def image_path(self) -> Path:
        """The file the restore writes: the target itself, or the seed file in the directory."""
        if self.kind == "directory":
            return self.path / f"{self.server}-{self.disk}.raw"
        return self.path

    def describe(self) -> str:
        return f"{self.kind} {self.image_path if self.kind != 'device' else self.path}"


def _kind(path: Path) -> str:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "image"
    except OSError as e:
        raise LocalIOError(f"{path}: {e.strerror}") from e
    if stat.S_ISBLK(st.st_mode):
        return "device"
    if stat.S_ISDIR(st.st_mode):
        return "directory"
    return "existing"


def load_site_targets(path: Path, disks: dict[str, list[str]]) -> dict[str, list[SiteTarget]]:
    """The targets of the servers in ``disks`` (server -> its plan disk names), read from ``path``.
    Every problem is reported at once, each naming the file, the field and what to do."""
    doc = load_yaml_file(path, what="site targets file")
    where = str(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("servers"), dict):
        raise SiteTargetsInvalid(
            f"{where}: expected a mapping with a 'servers' mapping (server -> target path, or disk -> "
            "target path); see `drctl failback --help`"
        )
    entries: dict[str, Any] = doc["servers"]
    problems = [
        f"{where}: servers.{name}: not a server of this failback ({', '.join(sorted(disks))})"
        for name in entries
        if name not in disks
    ]
    out: dict[str, list[SiteTarget]] = {}
    for server, names in disks.items():
        entry = entries.get(server)
        field = f"servers.{server}"
        if entry is None:
            problems.append(f"{where}: {field}: missing; give the on-site target of {server}")
            continue
        if isinstance(entry, str):
            if len(names) != 1:
                problems.append(
                    f"{where}: {field}: {server} has disks {', '.join(names)}; give one target per disk"
                )
                continue
            entry = {names[0]: entry}
        if not isinstance(entry, dict):
            problems.append(f"{where}: {field}: expected a path or a mapping disk -> path")
            continue
        extra = [d for d in entry if d not in names]
        problems += [f"{where}: {field}.{d}: {server} has no disk {d} ({', '.join(names)})" for d in extra]
        targets = []
        for disk in names:
            value = entry.get(disk)
            if not isinstance(value, str) or not value.strip():
                problems.append(
                    f"{where}: {field}.{disk}: missing; give a block device, image path or directory"
                )
                continue
            p = Path(value).expanduser()
            if not p.is_absolute():
                p = (path.parent / p).resolve()
            kind = _kind(p)
            if kind == "existing":
                kind = "image"  # a resumed failback finds its own file there (checked when restoring)
            elif kind == "image" and not p.parent.is_dir():
                problems.append(f"{where}: {field}.{disk}: directory {p.parent} does not exist; create it")
                continue
            targets.append(SiteTarget(server, disk, kind, p))
        out[server] = targets
    used: dict[Path, str] = {}
    for server, targets in out.items():
        for t in targets:
            key = t.image_path if t.kind != "device" else t.path
            if key in used:
                problems.append(
                    f"{where}: servers.{server}.{t.disk}: {key} is also the target of {used[key]}"
                )
            used[key] = f"{server}/{t.disk}"
    if problems:
        raise SiteTargetsInvalid("; ".join(problems))
    return out


def write_to_device(image: Path, device: Path) -> int:
    """Copy the verified ``image`` onto the block ``device``, flush it, read it back and compare
    (SHA-256 of both); returns the bytes written. The device must be at least as large."""
    size = image.stat().st_size
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise SiteWriteFailed(f"cannot open the site device {device}: {e.strerror}") from e
    try:
        capacity = os.lseek(fd, 0, os.SEEK_END)
        if capacity < size:
            raise SiteWriteFailed(
                f"site device {device} holds {capacity} bytes, less than the disk's {size}: "
                "give a larger device in the site targets file"
            )
        written = hashlib.sha256()
        with open(image, "rb") as src:
            offset = 0
            while block := src.read(COPY_BLOCK):
                os.pwrite(fd, block, offset)
                written.update(block)
                offset += len(block)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # read back from the device, not the cache
        read = hashlib.sha256()
        offset = 0
        while offset < size:
            block = os.pread(fd, min(COPY_BLOCK, size - offset), offset)
            if not block:
                break
            read.update(block)
            offset += len(block)
    except OSError as e:
        raise SiteWriteFailed(f"writing site device {device}: {e.strerror}; run the failback again") from e
    finally:
        os.close(fd)
    if read.digest() != written.digest():
        raise SiteWriteFailed(
            f"site device {device} reads back different bytes than were written: check the device, "
            "then run the failback again"
        )
    return size
