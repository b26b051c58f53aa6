"""The cloud target's image path against the real Glance: every restored disk is uploaded as an
image (active, same bytes, tagged with stack, server, disk and restore point), recorded for
`drctl deactivate`, and deleted at deactivation. Pulumi and Nova stay faked at their interfaces."""

from __future__ import annotations

import hashlib
import os
import uuid
from datetime import UTC, datetime

import pytest

from drctl.activation.engine import RestoredDisk
from drctl.activation.targets.cloud import CloudTarget, GlanceImages
from drctl.activation.targets.cloud_errors import CloudOperationFailed
from tests.activation.test_cloud_target import FakeEngine, FakeWaiter, server

pytestmark = pytest.mark.integration


def disk_file(path, size: int) -> tuple[str, str]:
    data = os.urandom(size)
    path.write_bytes(data)
    return str(path), hashlib.sha512(data).hexdigest()


def test_restored_disks_become_glance_images_and_go_at_deactivation(openstack, tmp_path):
    conn = openstack.connect()
    point = uuid.uuid4().hex[:12]  # image names are unique per test run
    srv = server("web")  # a boot disk "system" and a data disk "data"
    engine = FakeEngine()
    target = CloudTarget("demo", GlanceImages(conn=conn), engine, FakeWaiter(), restore_point=point)
    sums = {}
    for disk, size in (("system", 3 * 1024 * 1024 + 5), ("data", 1024 * 1024)):
        path, sums[disk] = disk_file(tmp_path / f"web-{disk}.raw", size)
        target.stage_disk(srv, RestoredDisk("web", disk, path, point, datetime.now(UTC)))

    recorded = dict(target.image_ids)  # what the activation writes into its record
    assert set(recorded) == {"web", "web/data"}
    for key, disk in (("web", "system"), ("web/data", "data")):
        image = conn.image.get_image(recorded[key])
        assert image.status == "active"
        assert image.disk_format == "raw" and image.container_format == "bare"
        assert image.hash_value == sums[disk]  # Glance holds exactly the restored bytes
        assert image.properties["drctl_server"] == "web"
        assert image.properties["drctl_disk"] == disk
        assert image.properties["drctl_restore_point"] == point
    assert conn.image.get_image(recorded["web"]).name == f"demo-web-{point}"

    # `drctl deactivate` builds a new target and passes the recorded ids.
    again = CloudTarget("demo", GlanceImages(conn=conn), engine, FakeWaiter())
    again.deactivate(recorded)
    assert engine.applies[-1]["failover"] is False
    remaining = {i.id for i in conn.image.images()}
    assert not remaining & set(recorded.values())


def test_an_unreadable_restored_disk_is_a_failed_upload_naming_the_image(openstack, tmp_path):
    images = GlanceImages(conn=openstack.connect())
    name = f"demo-web-{uuid.uuid4().hex[:12]}"
    with pytest.raises(CloudOperationFailed) as err:
        images.upload(name, tmp_path / "missing.raw", disk_format="raw", properties={})
    assert name in err.value.message and "missing.raw" in err.value.message
