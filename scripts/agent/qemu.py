"""The ``qemu`` consistency method: a quiet copy of a running VM's disk, taken from the hypervisor.

The guest never stops. Through the VM's monitor (QMP) and its guest agent (QGA):

1. ``guest-fsfreeze-freeze``: the guest flushes and freezes its file systems;
2. ``blockdev-snapshot-sync``: QEMU creates a new qcow2 overlay and the VM writes there from now on;
3. ``guest-fsfreeze-thaw`` at once (always, also when step 2 failed): the freeze lasts a second;
4. the now-quiet previous image (the *base*) is backed up;
5. ``block-commit`` of the overlay back into the base (an active commit: wait until the job is
   ready, ``block-job-complete``), then the overlay file is deleted.

On every failure path the guest is thawed and the VM keeps running on a consistent chain: before
step 2 nothing changed; after it, a failed commit leaves the VM on overlay -> base (both intact,
the error names the overlay, which must not be deleted by hand).

What gets backed up: a raw base is read as it is (no copy). A qcow2 base (e.g. the sandbox's
overlay over a restored raw disk) is converted to a temporary sparse raw file beside the overlay
with ``qemu-img convert -U`` (reading the frozen chain while QEMU holds it read-only). Cost: one
extra sequential read and write of the disk's allocated data and that much free space for the
duration of the backup. Chosen over an NBD export of the frozen node because it needs no NBD
client in drctl and no kernel module, and the backup reader stays the one that reads files.

The disk's configuration (the agent config's disk entry, :mod:`drctl.agent.config`):

``qmp_socket``
    path of the VM's QMP Unix socket (``-qmp unix:PATH,server=on,wait=off``); the agent opens it
    twice (snapshot, commit), not for the whole backup.
``guest_agent_socket``
    path of the host side of the guest agent's virtio-serial channel
    (``-chardev socket,path=PATH,server=on,wait=off,id=qga0`` +
    ``-device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0``).
``device`` (optional)
    the disk as QMP names it: the drive id (``query-block``'s ``device``, e.g. ``vda`` in the
    sandbox), its qdev id, or its node name. Without it, the drive whose image chain holds
    ``path`` (the disk's image file) is the one.
``overlay_dir`` (optional)
    where the overlay (and a qcow2 base's raw copy) are created; default: beside the base image.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drctl.agent.qmp import GuestAgent, QemuControlError, Qmp
from drctl.errors import InvalidInput
from drctl.processes import run

log = logging.getLogger(__name__)

FREEZE_TIMEOUT_S = 60.0  # the guest flushes its page cache before it answers
COMMIT_TIMEOUT_S = 3600.0  # writes made during the backup are merged back; bounded by their size


class QemuSnapshotFailed(QemuControlError):
    """The ``qemu`` consistency step failed (freeze, snapshot, copy or commit of a VM's disk)."""


@dataclass(frozen=True)
class QemuDisk:
    """One VM disk to back up with the ``qemu`` method (fields: see the module docstring)."""

    qmp_socket: Path
    guest_agent_socket: Path
    device: str | None = None
    path: Path | None = None
    overlay_dir: Path | None = None

    @property
    def label(self) -> str:
        return self.device or str(self.path)

    @classmethod
    def from_config(cls, cfg: Any) -> QemuDisk:
        """From the agent's disk config (an object or a mapping carrying the fields)."""
        if isinstance(cfg, QemuDisk):
            return cfg

        def get(name: str) -> Any:
            return cfg.get(name) if isinstance(cfg, Mapping) else getattr(cfg, name, None)

        missing = [n for n in ("qmp_socket", "guest_agent_socket") if not get(n)]
        if not (get("device") or get("path")):
            missing.append("device (or the disk's path)")
        if missing:
            raise InvalidInput(
                f"disk {get('name') or '?'}: consistency method 'qemu' needs {', '.join(missing)} in the "
                "agent config (the VM's QMP socket, its guest agent socket, the drive)"
            )

        def as_path(name: str) -> Path | None:
            return Path(get(name)) if get(name) else None

        return cls(
            Path(get("qmp_socket")),
            Path(get("guest_agent_socket")),
            str(get("device")) if get("device") else None,
            as_path("path"),
            as_path("overlay_dir"),
        )


@dataclass(frozen=True)
class _Chain:
    node: str  # the node the device writes to
    filename: str
    fmt: str


def _chain_files(image: dict[str, Any]) -> Iterator[str]:
    while image:
        yield image.get("filename", "")
        image = image.get("backing-image") or {}


def _active(qmp: Qmp, disk: QemuDisk) -> _Chain:
    """The node ``disk``'s drive writes to now."""
    wanted = str(disk.path.resolve()) if disk.path else None
    for blk in qmp.command("query-block"):
        ins = blk.get("inserted")
        if not ins:
            continue
        if disk.device is not None:
            found = disk.device in (blk.get("device"), blk.get("qdev"), ins.get("node-name"))
        else:
            found = wanted in (ins.get("file"), *_chain_files(ins.get("image", {})))
        if found:
            return _Chain(ins["node-name"], ins["file"], ins["image"]["format"])
    raise QemuSnapshotFailed(
        f"the VM behind {disk.qmp_socket} has no disk {disk.label!r} (query-block): set device to a "
        "drive id, qdev id or node name the VM has, or path to its image file"
    )


def _job_status(qmp: Qmp, job: str) -> dict[str, Any] | None:
    return next((j for j in qmp.command("query-jobs") if j.get("id") == job), None)


def _freeze_and_snapshot(
    disk: QemuDisk, base: _Chain, overlay: Path, snap_node: str
) -> tuple[bool, QemuControlError | None]:
    """Freeze, snapshot, thaw (always, also after a freeze that failed or timed out): (whether the
    snapshot was taken, the error of the first failed step)."""
    snapped, error = False, None
    try:
        with GuestAgent(disk.guest_agent_socket) as qga:
            frozen = qga.command("guest-fsfreeze-freeze", timeout=FREEZE_TIMEOUT_S)
        log.info("qemu %s: guest froze %s file system(s)", disk.label, frozen)
        with Qmp(disk.qmp_socket) as qmp:
            qmp.command(
                "blockdev-snapshot-sync",
                {
                    "node-name": base.node,
                    "snapshot-file": str(overlay),
                    "snapshot-node-name": snap_node,
                    "format": "qcow2",
                    "mode": "absolute-paths",
                },
            )
        snapped = True
    except QemuControlError as e:
        error = e
    finally:
        try:
            _thaw(disk)
        except QemuControlError as e:
            error = error or e
    return snapped, error


def _thaw(disk: QemuDisk) -> None:
    # A fresh session each time: after a failed or timed-out freeze the old one may hold its reply.
    for attempt in (1, 2):
        try:
            with GuestAgent(disk.guest_agent_socket) as qga:
                qga.command("guest-fsfreeze-thaw", timeout=FREEZE_TIMEOUT_S)
                if qga.command("guest-fsfreeze-status") == "thawed":
                    log.info("qemu %s: guest thawed", disk.label)
                    return
        except QemuControlError:
            if attempt == 2:
                raise
    raise QemuControlError(f"the guest agent at {disk.guest_agent_socket} still reports frozen file systems")


def _commit(disk: QemuDisk, base: _Chain, overlay: Path, snap_node: str) -> None:
    job = f"drctl-commit-{snap_node}"
    keep = (
        f"the VM keeps running on the overlay {overlay} over {base.filename} (a consistent chain); "
        "do not delete the overlay: merge it later with QMP block-commit, or restart the VM on it"
    )
    try:
        with Qmp(disk.qmp_socket) as qmp:
            qmp.command(
                "block-commit",
                {"job-id": job, "device": snap_node, "base-node": base.node, "auto-dismiss": False},
            )
            end = time.monotonic() + COMMIT_TIMEOUT_S
            completing = False
            while True:
                st = _job_status(qmp, job)
                if st is None:
                    raise QemuSnapshotFailed(f"the commit job {job} vanished; {keep}")
                if st["status"] == "ready" and not completing:
                    qmp.command("block-job-complete", {"device": job})
                    completing = True
                elif st["status"] == "concluded":
                    qmp.command("job-dismiss", {"id": job})
                    if st.get("error"):
                        raise QemuSnapshotFailed(f"committing {overlay} failed: {st['error']}; {keep}")
                    break
                if time.monotonic() > end:
                    raise QemuSnapshotFailed(
                        f"committing {overlay} took over {COMMIT_TIMEOUT_S:.0f} s; {keep}"
                    )
                time.sleep(0.05)
            now = _active(qmp, disk)
            if now.node != base.node:
                raise QemuSnapshotFailed(f"after the commit the VM writes to {now.filename}; {keep}")
    except QemuSnapshotFailed:
        raise
    except QemuControlError as e:
        raise QemuSnapshotFailed(f"{e}; {keep}") from e
    overlay.unlink(missing_ok=True)
    log.info("qemu %s: overlay committed back into %s and removed", disk.label, base.filename)


def _in_use(disk: QemuDisk, overlay: Path) -> bool:
    try:
        with Qmp(disk.qmp_socket) as qmp:
            return _active(qmp, disk).filename == str(overlay)
    except QemuControlError:
        return True  # cannot tell: keep it


@contextlib.contextmanager
def _raw_view(base: _Chain, workdir: Path, tag: str) -> Iterator[Path]:
    if base.fmt == "raw":
        yield Path(base.filename)
        return
    copy = workdir / f"{Path(base.filename).name}.drctl-{tag}.raw"
    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # the guest's data: private
    os.close(fd)
    try:
        run(
            ["qemu-img", "convert", "-U", "-f", base.fmt, "-O", "raw", base.filename, str(copy)],
            what=f"copying the frozen {base.fmt} image {base.filename} to raw",
            timeout=None,
            error=QemuSnapshotFailed,
        )
        yield copy
    finally:
        copy.unlink(missing_ok=True)


@contextlib.contextmanager
def qemu_snapshot(disk_cfg: Any) -> Iterator[Path]:
    """Freeze, snapshot and thaw the VM's disk; yields a raw file holding its quiet content, and
    merges the writes made meanwhile back when the ``with`` block ends (on every path)."""
    disk = QemuDisk.from_config(disk_cfg)
    with Qmp(disk.qmp_socket) as qmp:
        base = _active(qmp, disk)
        busy = [j["id"] for j in qmp.command("query-jobs") if j.get("status") != "concluded"]
        if busy:
            raise QemuSnapshotFailed(
                f"the VM behind {disk.qmp_socket} runs block job(s) {', '.join(busy)}: "
                "wait until they end, then run the job again"
            )
    if not Path(base.filename).is_file():
        raise QemuSnapshotFailed(
            f"disk {disk.label} of the VM behind {disk.qmp_socket} is {base.filename!r}, not a "
            "local image file: the qemu method backs up file-backed disks only"
        )
    tag = secrets.token_hex(4)
    workdir = disk.overlay_dir or Path(base.filename).parent
    overlay = workdir / f"{Path(base.filename).name}.drctl-{tag}.qcow2"
    snap_node = f"drctl-snap-{tag}"
    snapped, e = _freeze_and_snapshot(disk, base, overlay, snap_node)
    if e is not None:
        if snapped:
            _commit(disk, base, overlay, snap_node)  # back to the chain as it was
            raise QemuSnapshotFailed(
                f"the guest of the VM behind {disk.qmp_socket} may still be frozen (thaw failed: {e}); "
                "run guest-fsfreeze-thaw through its guest agent now; the overlay was committed back"
            ) from e
        if overlay.exists() and not _in_use(disk, overlay):
            overlay.unlink()  # QEMU created it, then refused to use it
        raise QemuSnapshotFailed(
            f"snapshot of disk {disk.label} (VM behind {disk.qmp_socket}) failed; the VM's "
            f"disk chain is unchanged: {e}"
        ) from e
    log.info("qemu %s: the VM now writes to %s; backing up %s", disk.label, overlay, base.filename)
    try:
        with _raw_view(base, workdir, tag) as source:
            yield source
    finally:
        _commit(disk, base, overlay, snap_node)


@contextlib.contextmanager
def raw_view(image: Path, fmt: str, workdir: Path) -> Iterator[Path]:
    """A raw file holding the content of ``image`` (its whole backing chain for a qcow2): the file
    itself when raw, else a private temporary copy in ``workdir``, removed on exit."""
    with _raw_view(_Chain("", str(image), fmt), Path(workdir), secrets.token_hex(4)) as path:
        yield path


@contextlib.contextmanager
def paused_for_cutover(qmp_socket: Path, qga_socket: Path) -> Iterator[datetime]:
    """The last backup of a VM before it is stopped for good (a failback's cut-over): the guest's
    file systems are frozen through its agent, then its vCPUs are paused (QEMU drains every write in
    flight), so its disks are quiet and nothing is written to them any more. Yields the moment the
    VM was paused (its data's cut-over time). On an exception the VM is resumed and thawed (it keeps
    serving); on success it stays paused and frozen: the caller stops it (:func:`quit_vm`).

    Re-entrant after an interrupted attempt: an already frozen guest or paused VM is taken as is."""
    frozen_here = False
    try:
        # Paused already: an earlier attempt quiesced it (its guest agent cannot answer now).
        if vm_status(qmp_socket) != "paused":
            with GuestAgent(qga_socket) as qga:
                if qga.command("guest-fsfreeze-status") != "frozen":
                    frozen_here = True
                    n = qga.command("guest-fsfreeze-freeze", timeout=FREEZE_TIMEOUT_S)
                    log.info("cut-over: the guest behind %s froze %s file system(s)", qga_socket, n)
            with Qmp(qmp_socket) as qmp:
                qmp.command("stop")
                status = qmp.command("query-status")
                if status.get("status") != "paused":
                    raise QemuSnapshotFailed(f"the VM behind {qmp_socket} did not pause: {status}")
        paused_at = datetime.now(UTC)
    except QemuControlError as e:
        if frozen_here:
            _thaw(QemuDisk(qmp_socket, qga_socket, device="-"))
        raise QemuSnapshotFailed(
            f"the VM behind {qmp_socket} could not be quiesced for its last backup: {e}; it keeps "
            "running unchanged (check its guest agent: `systemctl status qemu-guest-agent` in the "
            "guest), or use --shutdown"
        ) from e
    try:
        yield paused_at
    except BaseException:
        with contextlib.suppress(QemuControlError):
            with Qmp(qmp_socket) as qmp:
                qmp.command("cont")
            _thaw(QemuDisk(qmp_socket, qga_socket, device="-"))
        raise


def vm_status(qmp_socket: Path) -> str | None:
    """The VM's run state (``running``, ``paused``...), or None when its QEMU no longer answers."""
    try:
        with Qmp(qmp_socket, timeout=10) as qmp:
            return str(qmp.command("query-status").get("status"))
    except QemuControlError:
        return None


def quit_vm(qmp_socket: Path, *, timeout_s: float = 60.0) -> None:
    """End the VM's QEMU process (``quit``) and wait until its monitor is gone."""
    # A QEMU that exits answers nothing more.
    with contextlib.suppress(QemuControlError), Qmp(qmp_socket, timeout=10) as qmp:
        qmp.command("quit")
    end = time.monotonic() + timeout_s
    while vm_status(qmp_socket) is not None:
        if time.monotonic() > end:
            raise QemuSnapshotFailed(f"the VM behind {qmp_socket} still answers {timeout_s:.0f} s after quit")
        time.sleep(0.2)
