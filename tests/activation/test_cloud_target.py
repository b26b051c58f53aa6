"""The cloud target's orchestration, with the image service, the stack engine and the server
waiter faked at their interfaces (no cloud and no Pulumi CLI here)."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import UTC, datetime

import pytest

from drctl.activation.engine import RestoredDisk, run_servers
from drctl.activation.targets.cloud import CloudError, CloudTarget, PulumiAutomationStack, activation_config
from drctl.errors import ToolMissing
from drctl.plan.model import BackupStep, Check, Disk, Nic, Server
from drctl.runs.model import CheckResult as CheckOutcome


def server(name, deps=()):
    return Server(
        name=name,
        os_family="linux",
        os_version="12",
        protection="dr",
        vcpus=1,
        ram_mb=512,
        disks=(Disk("system", 1, True), Disk("data", 5)),
        nics=(Nic("p/lan", "10.0.0.5"),),
        boot_group=1,
        depends_on=deps,
        backup=(BackupStep("full", 86400),),
        rpo_s=86400,
        rto_s=600,
        checks=(Check("port", 22),),
    )


class FakeImages:
    def __init__(self):
        self.uploaded, self.deleted = {}, []

    def upload(self, name, path, *, disk_format, properties):
        self.uploaded[name] = (str(path), disk_format, dict(properties))
        return f"img-{properties['drctl_server']}-{properties['drctl_disk']}"

    def delete(self, image_id):
        self.deleted.append(image_id)


class FakeEngine:
    def __init__(self, export_missing=(), apply_s=0.0):
        self.applies = []
        self.export_missing = set(export_missing)
        self.apply_s = apply_s

    def apply(self, *, failover, servers, images, data_images, restore_point):
        time.sleep(self.apply_s)  # a `pulumi up` takes a while: callers queue meanwhile
        self.applies.append(
            {
                "failover": failover,
                "servers": list(servers),
                "images": dict(images),
                "data_images": {s: dict(d) for s, d in data_images.items()},
            }
        )
        return {"recovered_servers": {s: f"id-{s}" for s in servers if s not in self.export_missing}}


class FakeWaiter:
    def __init__(self):
        self.waited = []

    def wait_active(self, server_id, *, timeout_s):
        self.waited.append((server_id, timeout_s))


def restored(s, disk):
    return RestoredDisk(s.name, disk, f"/restore/{s.name}-{disk}.raw", "pt1", datetime.now(UTC))


def test_servers_are_added_to_the_stack_one_dependency_level_at_a_time():
    plan = [server("db"), server("app", ("db",)), server("web", ("app",))]
    images, engine, waiter = FakeImages(), FakeEngine(), FakeWaiter()
    target = CloudTarget("demo", images, engine, waiter, restore_point="pt1")

    def restore(s, disk):
        r = restored(s, disk)
        target.stage_disk(s, r)
        return r

    runs = run_servers(
        plan, restore=restore, start=target.start_server, verify=lambda s: [CheckOutcome("port 22", True, "")]
    )
    assert all(r.status == "ok" for r in runs.values())
    # Every disk becomes an image; each carries the stack, server, disk and restore point.
    assert sorted(images.uploaded) == [
        "demo-app-data-pt1",
        "demo-app-pt1",
        "demo-db-data-pt1",
        "demo-db-pt1",
        "demo-web-data-pt1",
        "demo-web-pt1",
    ]
    assert images.uploaded["demo-db-data-pt1"][2] == {
        "drctl_stack": "demo",
        "drctl_server": "db",
        "drctl_disk": "data",
        "drctl_restore_point": "pt1",
    }
    # The scope grows in plan order and every apply has the failover flag and the images: the boot
    # disks' for the instances, the data disks' for their volumes.
    assert [a["servers"] for a in engine.applies] == [["db"], ["db", "app"], ["db", "app", "web"]]
    assert all(a["failover"] for a in engine.applies)
    assert engine.applies[-1]["images"] == {
        "db": "img-db-system",
        "app": "img-app-system",
        "web": "img-web-system",
    }
    assert engine.applies[-1]["data_images"] == {s: {"data": f"img-{s}-data"} for s in ("db", "app", "web")}
    assert engine.applies[0]["data_images"] == {"db": {"data": "img-db-data"}}
    assert waiter.waited == [("id-db", 600), ("id-app", 600), ("id-web", 600)]


def test_concurrent_starts_share_one_update():
    images, engine, waiter = FakeImages(), FakeEngine(apply_s=0.3), FakeWaiter()
    target = CloudTarget("demo", images, engine, waiter)
    servers = [server(f"s{i}") for i in range(4)]
    for s in servers:
        target.stage_disk(s, restored(s, "system"))
        target.stage_disk(s, restored(s, "data"))
    gate = threading.Barrier(4)

    def go(s):
        gate.wait()
        target.start_server(s, [])

    threads = [threading.Thread(target=go, args=(s,)) for s in servers]
    [t.start() for t in threads]
    [t.join() for t in threads]
    # Callers that queue behind a running update share the next one instead of one update each.
    assert len(engine.applies) in (1, 2)
    assert sorted(engine.applies[-1]["servers"]) == ["s0", "s1", "s2", "s3"]


def test_missing_output_or_image_is_a_named_error():
    target = CloudTarget("demo", FakeImages(), FakeEngine(export_missing={"db"}), FakeWaiter())
    with pytest.raises(CloudError, match="no uploaded image for server db"):
        target.start_server(server("db"), [])
    target.stage_disk(server("db"), restored(server("db"), "system"))
    with pytest.raises(CloudError, match="no uploaded image for disk\\(s\\) data of server db"):
        target.start_server(server("db"), [])
    target.stage_disk(server("db"), restored(server("db"), "data"))
    with pytest.raises(CloudError, match="did not export an instance for db"):
        target.start_server(server("db"), [])


def test_deactivate_turns_failover_off_and_deletes_images():
    images, engine = FakeImages(), FakeEngine()
    target = CloudTarget("demo", images, engine, FakeWaiter())
    target.stage_disk(server("db"), restored(server("db"), "system"))
    target.stage_disk(server("db"), restored(server("db"), "data"))
    target.start_server(server("db"), [])
    assert target.image_ids == {
        "db": "img-db-system",
        "db/data": "img-db-data",
    }  # what the activation records
    target.deactivate()
    assert engine.applies[-1] == {"failover": False, "servers": [], "images": {}, "data_images": {}}
    assert sorted(images.deleted) == ["img-db-data", "img-db-system"]


def test_activation_config_uses_the_stack_program_keys():
    cfg = activation_config(
        "flexible-recovery",
        failover=True,
        servers=["db", "app"],
        images={"db": "i1", "app": "i2"},
        data_images={"db": {"data": "i3"}},
        restore_point="2026-11-26T02:00:00Z",
    )
    assert cfg == {
        "flexible-recovery:failover": "true",
        "flexible-recovery:activation.restore_point": "2026-11-26T02:00:00Z",
        "flexible-recovery:activation.servers[0]": "db",
        "flexible-recovery:activation.servers[1]": "app",
        "flexible-recovery:activation.images.db": "i1",
        "flexible-recovery:activation.images.app": "i2",
        "flexible-recovery:activation.data_images.db.data": "i3",
    }


def test_automation_needs_the_pulumi_cli(tmp_path):
    if shutil.which("pulumi") is None:
        with pytest.raises(ToolMissing, match="needs the Pulumi CLI"):
            PulumiAutomationStack("demo", tmp_path)
    else:  # pragma: no cover - only where the CLI exists
        pytest.skip(
            "Pulumi CLI present: the real stack update is exercised by `drctl activate --target cloud`"
        )
