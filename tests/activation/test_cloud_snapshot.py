"""The cloud side of ``drctl protect``: each recovered server's volumes are snapshotted, turned
into an image, downloaded (streamed) and backed up, and everything made for it is deleted on every
path. The cloud is faked at the openstacksdk boundary (a small connection class that keeps the
volumes' bytes and what was created); the download itself also runs against the real local Glance."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from types import SimpleNamespace

import openstack.exceptions
import pytest

from drctl.activation.protection import protect
from drctl.activation.targets.cloud import GlanceImages
from drctl.activation.targets.cloud_errors import CloudError, CloudOperationFailed
from drctl.activation.targets.cloud_snapshot import CloudSnapshots, download_image
from drctl.repo.repository import open_repository
from tests.activation.test_activation import PASSWORD
from tests.activation.test_activation import project as project
from tests.activation.test_protection import disaster as disaster


class FakeCloud:
    """openstacksdk's ``Connection`` as CloudSnapshots uses it: ``compute``, ``block_storage`` and
    ``image`` are this object. ``live`` holds what was created and not deleted yet."""

    def __init__(self, servers: dict[str, list[bytes]], *, fail: str = "", leak: str = "") -> None:
        self.volumes: dict[str, bytes] = {}
        self.attached: dict[str, list[SimpleNamespace]] = {}
        for name, disks in servers.items():
            for i, data in enumerate(disks):
                vid = f"vol-{name}-{i}"
                self.volumes[vid] = data
                self.attached.setdefault(name, []).append(
                    SimpleNamespace(device=f"/dev/vd{'abc'[i]}", volume_id=vid)
                )
        self.snapshots: dict[str, bytes] = {}
        self.images: dict[str, bytes] = {}
        self.live: set[str] = set()
        self.fail, self.leak = fail, leak  # an operation that fails; a deletion that fails
        self.chunk_sizes: list[int] = []
        self.compute = self.block_storage = self.image = self

    def _maybe_fail(self, op: str) -> None:
        if op == self.fail:
            raise openstack.exceptions.HttpException(message=f"{op} refused")

    # compute
    def find_server(self, name, ignore_missing=True):
        return SimpleNamespace(id=f"srv-{name}", name=name) if name in self.attached else None

    def volume_attachments(self, server):
        return list(self.attached[server.name])

    # block storage
    def get_volume(self, vid):
        data = self.volumes[vid]
        return SimpleNamespace(id=vid, size=max(1, len(data) >> 30))

    def create_snapshot(self, *, volume_id, name, force):
        assert force  # the volume is attached and in use
        self._maybe_fail("create_snapshot")
        sid = f"snap-{uuid.uuid4().hex[:6]}"
        self.snapshots[sid] = self.volumes[volume_id]
        self.live.add(sid)
        return SimpleNamespace(id=sid)

    def wait_for_status(self, res, status, failures=None, wait=None):
        return res

    def create_volume(self, *, snapshot_id, size, name):
        vid = f"tmp-{uuid.uuid4().hex[:6]}"
        self.volumes[vid] = self.snapshots[snapshot_id]
        self.live.add(vid)
        return SimpleNamespace(id=vid)

    def upload_volume_to_image(self, volume, image_name, *, disk_format, container_format):
        assert disk_format == "raw"
        iid = f"img-{uuid.uuid4().hex[:6]}"
        self.images[iid] = self.volumes[volume.id]
        self.live.add(iid)
        return {"image_id": iid}

    def delete_volume(self, volume, ignore_missing=True):
        self._leak("delete_volume")
        self.live.discard(volume.id)

    def wait_for_delete(self, res, wait=None):
        return res

    def delete_snapshot(self, sid, ignore_missing=True):
        assert not any(v.startswith("tmp-") for v in self.live), "a snapshot deleted before its volume"
        self._leak("delete_snapshot")
        self.live.discard(sid)

    def _leak(self, op):
        if op == self.leak:
            raise openstack.exceptions.HttpException(message=f"{op} refused")

    # image
    def get_image(self, iid):
        return SimpleNamespace(id=iid, status="active")

    def download_image(self, image, *, stream, output, chunk_size):
        assert stream and isinstance(output, io.IOBase)  # streamed into the file, never held whole
        self._maybe_fail("download_image")
        data = self.images[image.id]
        self.chunk_sizes.append(chunk_size)
        for i in range(0, len(data), chunk_size):
            output.write(data[i : i + chunk_size])

    def delete_image(self, iid, ignore_missing=True):
        self.live.discard(iid)


def _protect_cloud(disaster, cloud, **kw):
    proj, tmp, _, _ = disaster
    work = tmp / "downloads"
    work.mkdir(exist_ok=True)
    source = CloudSnapshots(cloud, "demo", work)
    result = protect(
        "demo",
        tmp / "state",
        lambda storage: open_repository(storage, PASSWORD),
        project_dir=proj,
        source_factory=lambda active, cfg, state: source,
        **kw,
    )
    return result, work


def _changed(restore_dir, server):
    data = bytearray((restore_dir / f"{server}-system.raw").read_bytes())
    data[2 << 20 : (2 << 20) + 11] = b"cloud write"
    return bytes(data)


def test_each_volume_is_snapshotted_downloaded_backed_up_and_everything_removed(disaster):
    _, _, _, restore_dir = disaster
    cloud = FakeCloud({s: [_changed(restore_dir, s)] for s in ("dns01", "web01")})
    result, work = _protect_cloud(disaster, cloud)
    assert result.exit_code == 0
    for s in result.servers:
        r = s.outcome.record
        assert r.result == "ok" and r.bytes_read == 4 << 20
        assert r.bytes_new == 1 << 20  # deduplicated against the point it was restored from
    assert cloud.live == set() and list(work.iterdir()) == []
    assert cloud.chunk_sizes == [1 << 20, 1 << 20]


@pytest.mark.parametrize("fail", ["create_snapshot", "download_image"])
def test_a_failing_step_fails_the_job_with_its_record_and_leaves_nothing_behind(disaster, fail):
    _, _, _, restore_dir = disaster
    cloud = FakeCloud({"web01": [_changed(restore_dir, "web01")]}, fail=fail)
    result, work = _protect_cloud(disaster, cloud, servers=("web01",))
    (s,) = result.servers
    assert isinstance(s.error, CloudError) and result.exit_code == s.error.exit_code != 0
    assert (
        "snapshotting volume vol-web01-0" if fail == "create_snapshot" else "downloading image"
    ) in s.error.message
    assert cloud.live == set() and list(work.iterdir()) == []


def test_a_snapshot_that_cannot_be_deleted_is_named_with_the_command_to_remove_it(disaster):
    _, _, _, restore_dir = disaster
    cloud = FakeCloud({"web01": [_changed(restore_dir, "web01")]}, leak="delete_snapshot")
    result, _ = _protect_cloud(disaster, cloud, servers=("web01",))
    (s,) = result.servers
    assert isinstance(s.error, CloudError)
    assert (
        "could not delete snapshot snap-" in s.error.message
        and "openstack volume snapshot delete" in s.error.message
    )
    assert [x for x in cloud.live if not x.startswith("snap-")] == []


def test_a_missing_server_or_missing_volumes_are_named(disaster):
    _, _, _, restore_dir = disaster
    result, _ = _protect_cloud(disaster, FakeCloud({"web01": [b""]}), servers=("dns01",))
    assert isinstance(result.servers[0].error, CloudOperationFailed)
    assert "no recovered server named dns01" in result.servers[0].error.message
    two = FakeCloud({"web01": [b"a", b"b"]})
    result, _ = _protect_cloud(disaster, two, servers=("web01",))
    assert "has 2 volume(s) attached, its plan 1 disk(s) (system)" in result.servers[0].error.message


@pytest.mark.integration
def test_the_download_streams_a_real_glance_image_into_a_private_file(openstack, tmp_path):
    conn = openstack.connect()
    data = os.urandom(3 * (1 << 20) + 77)
    src = tmp_path / "disk.raw"
    src.write_bytes(data)
    image_id = GlanceImages(conn=conn).upload(
        f"protect-{uuid.uuid4().hex[:8]}", src, disk_format="raw", properties={}
    )
    try:
        out = tmp_path / "downloaded.raw"
        assert download_image(conn, image_id, out) == len(data)
        assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
        assert oct(out.stat().st_mode)[-3:] == "600"
    finally:
        conn.image.delete_image(image_id, ignore_missing=True)
    missing = tmp_path / "missing.raw"
    with pytest.raises(CloudError, match=f"downloading image {image_id}"):
        download_image(conn, image_id, missing)
    assert not missing.exists()
