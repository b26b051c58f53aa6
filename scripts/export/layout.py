"""Where each part of an export goes, and the checksum file: pure functions over names and bytes.

An export directory::

    README.txt            how to use every file without drctl (rendered from templates/README.txt.j2)
    SHA256SUMS            `sha256sum -c SHA256SUMS` checks every other file
    export.json           index: images (server, disk, restore point, date, size), reports
    images/<server>/<disk>.<qcow2|raw>                    latest point of each disk
    images/<server>/<disk>-<YYYYmmddTHHMMSSZ>-<id8>.<ext>  every point (--all-points)
    plan/<plan file>      the recovery plan as the stack uses it
    stack/settings.json   the stack's settings without any secret (names of the omitted ones listed)
    reports/<run id>/summary.json, report.html, report.sig   signed run reports (drills, activations)
    reports/report-signing.pub                             the operator's public key (PEM, Ed25519)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from drctl.repo.manifest import Manifest

PARTIAL = ".partial"
SUMS = "SHA256SUMS"
INDEX = "export.json"
README = "README.txt"
# A database base backup (``drctl wal base``) is a pg_basebackup tar stream, not a disk: a .tar file.
TAR_DISKS = frozenset({"pgbase"})


def image_name(point: Manifest, fmt: str, *, dated: bool) -> PurePosixPath:
    """The image's path inside the export."""
    ext = "tar" if point.disk in TAR_DISKS else fmt
    stem = point.disk
    if dated:
        stamp = point.created.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        stem = f"{point.disk}-{stamp}-{point.id[:8]}"
    return PurePosixPath("images", point.server, f"{stem}.{ext}")


def image_format(point: Manifest, fmt: str) -> str:
    return "raw" if point.disk in TAR_DISKS else fmt


def select(points: Iterable[Manifest], *, all_points: bool) -> list[Manifest]:
    """Every point, or the newest of each (server, disk); in (server, disk, time) order."""
    ordered = sorted(points, key=lambda p: (p.server, p.disk, p.created))
    if all_points:
        return ordered
    latest: dict[tuple[str, str], Manifest] = {}
    for p in ordered:
        latest[(p.server, p.disk)] = p
    return list(latest.values())


def sha256_file(path: Path, block: int = 4 * 1024 * 1024) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def sums_text(root: Path) -> str:
    """``sha256sum`` format (``<hex>  <path>``, paths relative to ``root``, sorted) over every file
    below ``root`` except the sums file itself."""
    lines = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if rel != SUMS:
                lines.append(f"{sha256_file(path)}  {rel}\n")
    return "".join(sorted(lines, key=lambda line: line.split("  ", 1)[1]))


def stamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
