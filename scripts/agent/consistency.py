"""Consistency methods: what the agent does to a disk before reading it, and undoes after.

Each method is a context manager taking the disk's :class:`~drctl.agent.config.DiskConfig` and
yielding a :class:`ConsistentSource`: the path to read and, optionally, a check run after the
whole read and before the restore point is written (``backup_disk(check_source=...)``), which
fails the backup when the copy it read cannot be trusted. The clean-up (snapshot removal) runs on
every path out of the ``with`` block.

- ``none``: the path as is (crash-consistent only if the disk is quiet).
- ``lvm-snapshot``: ``lvcreate --snapshot`` of the logical volume, read the snapshot's device
  (``lvs -o lv_path``, ``/dev/VG/SNAP``), then
  ``lvs`` says whether the snapshot overflowed (then the backup fails, no point is written), and
  ``lvremove -f`` removes it whatever happened.
- ``qemu``: agentless, on the hypervisor (:mod:`drctl.agent.qemu`, imported only when used).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass

from drctl.agent.config import METHODS, DiskConfig
from drctl.errors import EXIT_RUN_FAILED, DrctlError, InvalidInput
from drctl.processes import run
from drctl.repo.errors import SourceChanged, SourceUnreadable

log = logging.getLogger(__name__)

LVM_TIMEOUT_S = 120


class SnapshotFailed(DrctlError):
    """A snapshot of a disk could not be taken or removed."""

    exit_code = EXIT_RUN_FAILED


class SnapshotOverflow(SourceChanged):
    """The disk's snapshot overflowed while it was read (its copy is invalid); no point was written."""


@dataclass(frozen=True)
class ConsistentSource:
    """What a consistency method hands to the backup."""

    path: str
    check: Callable[[], None] | None = None


@contextlib.contextmanager
def no_snapshot(disk: DiskConfig) -> Iterator[ConsistentSource]:
    """``none``: read the device or image as it is."""
    yield ConsistentSource(disk.path)


def _lvm(argv: list[str], what: str) -> str:
    return run(argv, timeout=LVM_TIMEOUT_S, what=what, error=SnapshotFailed).stdout


def _fields(text: str) -> list[str]:
    """The values of the one row ``lvs --noheadings --separator '|'`` printed."""
    rows = [line.strip() for line in text.splitlines() if line.strip()]
    if len(rows) != 1:
        raise SnapshotFailed(f"lvs printed {len(rows)} rows where one was expected: {text.strip()[:200]!r}")
    return [f.strip() for f in rows[0].split("|")]


def check_lvm_snapshot(vg: str, snap: str, disk: str) -> None:
    """Fail with :class:`SnapshotOverflow` if the snapshot ``vg/snap`` is invalid or full."""
    out = _lvm(
        ["lvs", "--noheadings", "--separator", "|", "-o", "lv_snapshot_invalid,snap_percent", f"{vg}/{snap}"],
        f"reading the state of snapshot {vg}/{snap} of disk {disk}",
    )
    invalid, percent = (_fields(out) + ["", ""])[:2]
    try:
        full = float(percent.replace(",", ".")) >= 100.0 if percent else False
    except ValueError:
        raise SnapshotFailed(
            f"lvs reported snapshot {vg}/{snap} full at {percent!r}, not a percentage"
        ) from None
    if invalid or full:
        raise SnapshotOverflow(
            f"disk {disk}: LVM snapshot {vg}/{snap} overflowed while it was read ({invalid or percent + ' % full'}): "
            f"the copy is not consistent, no restore point was written; give the snapshot more room "
            f"(snapshot_size in the agent config, free extents in volume group {vg})"
        )


@contextlib.contextmanager
def lvm_snapshot(disk: DiskConfig) -> Iterator[ConsistentSource]:
    """``lvm-snapshot``: a copy-on-write snapshot of the disk's logical volume, removed on every path."""
    vg, lv = _fields(
        _lvm(
            ["lvs", "--noheadings", "--separator", "|", "-o", "vg_name,lv_name", disk.path],
            f"finding the logical volume of disk {disk.name} ({disk.path})",
        )
    )[:2]
    snap = f"{lv}-drctl-{secrets.token_hex(4)}"[:127]
    _lvm(
        ["lvcreate", "--snapshot", "-L", disk.snapshot_size, "-n", snap, disk.path],
        f"creating LVM snapshot {vg}/{snap} of disk {disk.name} ({disk.path})",
    )
    log.info("disk %s: snapshot %s/%s created", disk.name, vg, snap)
    try:
        path = _fields(
            _lvm(
                ["lvs", "--noheadings", "--separator", "|", "-o", "lv_path", f"{vg}/{snap}"],
                f"finding the device of snapshot {vg}/{snap} of disk {disk.name}",
            )
        )[0]
        yield ConsistentSource(path, check=lambda: check_lvm_snapshot(vg, snap, disk.name))
    except SourceUnreadable as e:
        # An overflowed snapshot is invalidated by the kernel: reading it fails with an I/O error
        # before the end-of-read check runs. Say what happened when lvs says so.
        try:
            check_lvm_snapshot(vg, snap, disk.name)
        except SnapshotOverflow as overflow:
            _remove_quietly(vg, snap, disk.name)
            raise overflow from e
        except DrctlError as state:
            log.error("%s", state.message)
        _remove_quietly(vg, snap, disk.name)
        raise
    except BaseException:
        _remove_quietly(vg, snap, disk.name)
        raise
    _remove_snapshot(vg, snap, disk.name)


def _remove_quietly(vg: str, snap: str, disk: str) -> None:
    """Remove the snapshot on a failure path: the job's own error is the one to report."""
    try:
        _remove_snapshot(vg, snap, disk)
    except DrctlError as e:
        log.error("%s", e.message)


def _remove_snapshot(vg: str, snap: str, disk: str) -> None:
    _lvm(
        ["lvremove", "-f", f"{vg}/{snap}"],
        f"removing LVM snapshot {vg}/{snap} of disk {disk} (remove it by hand: `lvremove -f {vg}/{snap}`)",
    )
    log.info("disk %s: snapshot %s/%s removed", disk, vg, snap)


@contextlib.contextmanager
def qemu_method(disk: DiskConfig) -> Iterator[ConsistentSource]:
    """``qemu``: :func:`drctl.agent.qemu.qemu_snapshot` yields the path of the quiet base image."""
    try:
        # imported only when a disk uses it (and by name: the module may be absent from a build)
        qemu_snapshot = importlib.import_module("drctl.agent.qemu").qemu_snapshot
    except (ImportError, AttributeError) as e:
        raise InvalidInput(
            f"disk {disk.name}: consistency method qemu is not available in this drctl ({e}); "
            "use none or lvm-snapshot"
        ) from e
    with qemu_snapshot(disk) as path:
        yield ConsistentSource(os.fspath(path))  # a str or path-like: backup_disk opens it


METHOD_REGISTRY: dict[str, Callable[[DiskConfig], ContextManager[ConsistentSource]]] = {
    "none": no_snapshot,
    "lvm-snapshot": lvm_snapshot,
    "qemu": qemu_method,
}
assert set(METHOD_REGISTRY) == set(METHODS)


def consistent_source(disk: DiskConfig) -> ContextManager[ConsistentSource]:
    """The context manager of the disk's method."""
    try:
        return METHOD_REGISTRY[disk.method](disk)
    except KeyError:
        raise InvalidInput(
            f"disk {disk.name}: consistency method {disk.method!r} is not one of {', '.join(METHODS)}"
        ) from None
