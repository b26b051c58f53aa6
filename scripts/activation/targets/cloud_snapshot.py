"""Backing up a recovered server of the cloud target while it runs (``drctl protect``).

The recovered servers boot from volumes (:mod:`drctl.components.recovered_server`: one boot volume,
one volume per data disk, attached in plan order). For each disk, in Cinder's own way of reading a
volume in use:

1. ``create_snapshot(force=True)`` of the attached volume (crash-consistent: what a power cut
   would leave; the server keeps running);
2. a temporary volume from that snapshot, uploaded to the image service as a raw image
   (``os-volume_upload_image``);
3. the image downloaded to a private (0600) file, streamed in chunks (never held in memory),
   which the backup then reads like any disk image (dedup against the restore point the volume
   was created from: only the changed chunks are uploaded);
4. image, temporary volume and snapshot deleted on every path (the first failure is the one
   reported; a clean-up failure after a good backup names what is left and how to delete it).

openstacksdk is the boundary: :class:`CloudSnapshots` takes a ``Connection`` (tests pass a small
fake one). Every openstacksdk error is translated where it enters
(:func:`drctl.activation.targets.cloud_errors.openstack_error`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from drctl.activation.targets.cloud_errors import CloudError, CloudOperationFailed, openstack_error
from drctl.agent.config import DiskConfig
from drctl.agent.consistency import ConsistentSource
from drctl.plan.model import Server

log = logging.getLogger(__name__)

WAIT_S = 3600  # a snapshot, a volume from it, an upload: bounded by the disk's size
DOWNLOAD_CHUNK = 1 << 20
METHOD = "cinder-snapshot"  # what the job's disk-started events name as the disk's consistency step


def _errors() -> tuple[type[Exception], ...]:
    from drctl.activation.targets.cloud import openstack_errors

    return openstack_errors()


def download_image(conn: Any, image_id: str, out: Path) -> int:
    """Stream image ``image_id`` into a new private file ``out``; returns the bytes written. The
    image service's checksum is verified by openstacksdk while streaming."""
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            image = conn.image.get_image(image_id)
            conn.image.download_image(image, stream=True, output=f, chunk_size=DOWNLOAD_CHUNK)
            f.flush()
            os.fsync(f.fileno())
            return f.tell()
    except _errors() as e:
        out.unlink(missing_ok=True)
        raise openstack_error(e, f"downloading image {image_id} to {out}") from e
    except BaseException:
        out.unlink(missing_ok=True)
        raise


class CloudSnapshots:
    """The recovered servers' volumes, read through snapshots (see the module docstring).
    ``workdir`` receives the downloaded images for the time of one disk's backup."""

    def __init__(self, conn: Any, stack: str, workdir: Path) -> None:
        self.conn, self.stack, self.workdir = conn, stack, Path(workdir)

    def disks(self, server: Server) -> list[DiskConfig]:
        """One entry per plan disk of ``server``: the attached volume (in device order) as ``path``."""
        try:
            found = self.conn.compute.find_server(server.name, ignore_missing=True)
            if found is None:
                raise CloudOperationFailed(
                    f"stack {self.stack}: no recovered server named {server.name} in the cloud; "
                    "is the disaster activation still running (`pulumi stack output recovered_servers`)?"
                )
            attached = sorted(self.conn.compute.volume_attachments(found), key=lambda a: str(a.device))
        except _errors() as e:
            raise openstack_error(e, f"listing the volumes of recovered server {server.name}") from e
        names = [server.boot_disk.name, *(d.name for d in server.data_disks)]
        if len(attached) != len(names):
            raise CloudOperationFailed(
                f"recovered server {server.name} has {len(attached)} volume(s) attached, its plan "
                f"{len(names)} disk(s) ({', '.join(names)}): attach them as the activation did"
            )
        return [
            DiskConfig(name, f"/cinder/{a.volume_id}", method=METHOD)
            for name, a in zip(names, attached, strict=True)
        ]

    @contextlib.contextmanager
    def consistent_source(self, disk: DiskConfig) -> Iterator[ConsistentSource]:
        """Snapshot, temporary volume, image, download; yields the downloaded file. Removes all of
        them when the ``with`` block ends, on every path."""
        volume_id = disk.path.removeprefix("/cinder/")
        tag = f"drctl-protect-{disk.name}-{secrets.token_hex(4)}"
        bs, image_api = self.conn.block_storage, self.conn.image
        made: list[tuple[str, str]] = []  # (kind, id), removed in reverse order
        out = self.workdir / f"{tag}.raw"
        step = f"snapshotting volume {volume_id} (disk {disk.name})"
        try:
            try:
                volume = bs.get_volume(volume_id)
                snap = bs.create_snapshot(volume_id=volume_id, name=tag, force=True)
                made.append(("snapshot", snap.id))
                bs.wait_for_status(snap, "available", failures=["error"], wait=WAIT_S)
                step = f"creating a volume from snapshot {snap.id} (disk {disk.name})"
                temp = bs.create_volume(snapshot_id=snap.id, size=volume.size, name=tag)
                made.append(("volume", temp.id))
                bs.wait_for_status(temp, "available", failures=["error"], wait=WAIT_S)
                step = f"uploading volume {temp.id} to an image (disk {disk.name})"
                up = bs.upload_volume_to_image(temp, tag, disk_format="raw", container_format="bare")
                image_id = str(up["image_id"])
                made.append(("image", image_id))
                image_api.wait_for_status(
                    image_api.get_image(image_id), "active", failures=["killed"], wait=WAIT_S
                )
                # "uploading" until Cinder has handed the image over; only then can it be deleted
                bs.wait_for_status(temp, "available", failures=["error"], wait=WAIT_S)
            except _errors() as e:
                raise openstack_error(e, step) from e
            size = download_image(self.conn, image_id, out)
            log.info(
                "disk %s: volume %s downloaded through image %s (%d bytes)",
                disk.name,
                volume_id,
                image_id,
                size,
            )
            yield ConsistentSource(str(out))
        except BaseException as e:
            out.unlink(missing_ok=True)
            self._remove(made, failing=e)
            raise
        out.unlink(missing_ok=True)
        self._remove(made, failing=None)

    def _remove(self, made: list[tuple[str, str]], *, failing: BaseException | None) -> None:
        """Delete what :meth:`consistent_source` made, newest first; every deletion is attempted."""
        bs = self.conn.block_storage
        left = []
        for kind, ident in reversed(made):
            try:
                if kind == "image":
                    self.conn.image.delete_image(ident, ignore_missing=True)
                elif kind == "volume":  # gone before its snapshot: a snapshot with a volume stays
                    volume = bs.get_volume(ident)
                    bs.delete_volume(volume, ignore_missing=True)
                    bs.wait_for_delete(volume, wait=WAIT_S)
                else:
                    bs.delete_snapshot(ident, ignore_missing=True)
            except _errors() as e:
                left.append(f"{kind} {ident} ({e})")
        if not left:
            return
        message = (
            f"stack {self.stack}: the protection job could not delete {'; '.join(left)}; delete "
            "them with `openstack image delete`, `openstack volume delete`, `openstack volume snapshot delete`"
        )
        if failing is not None:
            log.error("%s", message)  # the job's own error is the one reported
            return
        raise CloudError(message)
