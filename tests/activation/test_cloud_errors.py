"""Pulumi and OpenStack errors become drctl errors with their exit codes where they enter the cloud
target, and none is swallowed.

- Pulumi: the Automation API's ``Stack`` is replaced at its seam (``workspace_stack``) by a fake
  that raises the API's real exceptions, built by its own classifier from CLI output.
- OpenStack: openstacksdk runs for real against an unreachable port and against a stand-in of the
  cloud's HTTP API on 127.0.0.1 (tests/activation/openstack_stub.py)."""

from __future__ import annotations

import socket

import pytest
from pulumi.automation import ConfigValue
from pulumi.automation._cmd import CommandResult
from pulumi.automation.errors import create_command_error

from drctl.activation.targets.cloud import CloudTarget, GlanceImages, NovaServers, PulumiAutomationStack
from drctl.activation.targets.cloud_errors import (
    CloudAccessDenied,
    CloudOperationFailed,
    CloudUnreachable,
    StackBusy,
    StackMissing,
)
from tests.activation.openstack_stub import OpenStackStub
from tests.activation.test_cloud_target import FakeImages, FakeWaiter, restored, server

PROJECT_BLOCK = "flexible-recovery:activation"


def command_error(stdout: str = "", stderr: str = "", code: int = 255):
    """The exception the Automation API raises for this CLI output (its own classifier)."""
    return create_command_error(CommandResult(stdout=stdout, stderr=stderr, code=code))


class FakeWorkspaceStack:
    """The Automation API ``Stack`` at its interface: config calls, ``up``, ``outputs``; raises
    ``fail[step]`` at that step."""

    def __init__(self, config=None, fail=None):
        self.config = dict(config or {})
        self.fail = dict(fail or {})
        self.calls: list[str] = []

    def _step(self, step):
        self.calls.append(step)
        if step in self.fail:
            raise self.fail[step]

    def get_all_config(self):
        self._step("get_all_config")
        return self.config

    def remove_config(self, key, *, path=False):
        self._step("remove_config")
        self.config.pop(key, None)

    def set_all_config(self, config, *, path=False):
        self._step("set_all_config")
        self.config.update(config)

    def up(self, on_output=None):
        self._step("up")

    def outputs(self):
        self._step("outputs")
        return {"recovered_servers": ConfigValue(value={"db": "id-db"})}


def engine(ws):
    return PulumiAutomationStack("demo", None, workspace_stack=ws)


def apply(eng):
    return eng.apply(failover=True, servers=["db"], images={"db": "img"}, data_images={}, restore_point="pt1")


def test_a_failed_update_is_exit_20_with_the_cli_error_lines():
    ws = FakeWorkspaceStack(
        fail={
            "up": command_error(
                stdout="Updating (demo)\n  openstack:compute:Instance db creating\n"
                "error: 1 error occurred: Quota exceeded for instances: Requested 1, but already used 10",
                stderr="",
            )
        }
    )
    with pytest.raises(CloudOperationFailed) as e:
        apply(engine(ws))
    assert e.value.exit_code == 20
    msg = e.value.message
    assert msg.startswith("`pulumi up` of stack demo failed (error: 1 error occurred: Quota exceeded")
    assert "pulumi stack history --stack demo" in msg


def test_a_cloud_the_update_cannot_reach_is_exit_14():
    ws = FakeWorkspaceStack(
        fail={
            "up": command_error(
                stdout="error: Error creating OpenStack compute client: Post "
                '"https://keystone.example:5000/v3/auth/tokens": dial tcp 10.0.0.5:5000: connect: '
                "connection refused"
            )
        }
    )
    with pytest.raises(CloudUnreachable) as e:
        apply(engine(ws))
    assert e.value.exit_code == 14 and "could not reach the cloud" in e.value.message


def test_refused_credentials_during_the_update_are_exit_14():
    ws = FakeWorkspaceStack(
        fail={
            "up": command_error(
                stdout="error: Authentication failed: The request you have made requires authentication."
            )
        }
    )
    with pytest.raises(CloudAccessDenied) as e:
        apply(engine(ws))
    assert e.value.exit_code == 14 and "OS_CLOUD" in e.value.message


def test_another_update_in_progress_is_exit_11():
    ws = FakeWorkspaceStack(
        fail={"up": command_error(stderr="error: [409] Conflict: Another update is currently in progress.")}
    )
    with pytest.raises(StackBusy) as e:
        apply(engine(ws))
    assert e.value.exit_code == 11 and "pulumi cancel --stack demo" in e.value.message


def test_a_missing_stack_is_invalid_input_with_the_next_step():
    ws = FakeWorkspaceStack(
        fail={"get_all_config": command_error(stderr="error: no stack named 'demo' found")}
    )
    with pytest.raises(StackMissing) as e:
        apply(engine(ws))
    assert e.value.exit_code == 1 and "pulumi stack init demo" in e.value.message


def test_removing_the_old_activation_block_is_not_swallowed():
    ws = FakeWorkspaceStack(
        config={PROJECT_BLOCK: ConfigValue(value='{"servers": ["db", "app"]}')},
        fail={
            "remove_config": command_error(
                stderr="error: could not write Pulumi.demo.yaml: permission denied"
            )
        },
    )
    with pytest.raises(
        CloudOperationFailed, match="`pulumi config rm` of stack demo failed .*permission denied"
    ):
        apply(engine(ws))
    assert ws.calls == ["get_all_config", "remove_config"]  # nothing applied on top of the old block


def test_no_old_activation_block_means_nothing_to_remove():
    ws = FakeWorkspaceStack(config={"flexible-recovery:plan": ConfigValue(value="recovery_plans/demo.yaml")})
    outputs = apply(engine(ws))
    assert ws.calls == ["get_all_config", "set_all_config", "up", "outputs"]
    assert ws.config["flexible-recovery:activation.images.db"].value == "img"
    assert outputs == {"recovered_servers": {"db": "id-db"}}


def test_the_target_passes_the_translated_error_on():
    ws = FakeWorkspaceStack(fail={"up": command_error(stdout="error: update failed")})
    target = CloudTarget("demo", FakeImages(), engine(ws), FakeWaiter())
    db = server("db")
    target.stage_disk(db, restored(db, "system"))
    target.stage_disk(db, restored(db, "data"))
    with pytest.raises(CloudOperationFailed) as e:
        target.start_server(db, [])
    assert e.value.exit_code == 20


# -- OpenStack ------------------------------------------------------------------------------------


@pytest.fixture
def cloud():
    stub = OpenStackStub()
    yield stub
    stub.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_cloud_is_exit_14_naming_the_operation(cloud, tmp_path):
    conn = cloud.connect(auth_url=f"http://127.0.0.1:{closed_port()}/v3")
    image = tmp_path / "db-system.raw"
    image.write_bytes(b"disk")
    with pytest.raises(CloudUnreachable) as e:
        GlanceImages(conn=conn).upload("demo-db-pt1", image, disk_format="raw", properties={})
    assert e.value.exit_code == 14
    assert e.value.message.startswith(
        f"uploading image demo-db-pt1 from {image}: cannot reach the OpenStack API"
    )
    assert "stub-password" not in e.value.message
    with pytest.raises(CloudUnreachable, match="waiting up to 60s .* for server abc"):
        NovaServers(conn=conn).wait_active("abc", timeout_s=60)


def test_refused_credentials_are_exit_14(cloud):
    cloud.routes[("POST", "/v3/auth/tokens")] = (
        401,
        {
            "error": {
                "code": 401,
                "title": "Unauthorized",
                "message": "The request you have made requires authentication.",
            }
        },
        {},
    )
    with pytest.raises(CloudAccessDenied) as e:
        NovaServers(conn=cloud.connect()).wait_active("abc", timeout_s=60)
    assert e.value.exit_code == 14 and "refused the credentials (401" in e.value.message


def test_no_cloud_configuration_is_exit_14_with_what_to_set(tmp_path, monkeypatch):
    for name in [n for n in __import__("os").environ if n.startswith("OS_")]:
        monkeypatch.delenv(name)
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds: {}\n")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    with pytest.raises(CloudAccessDenied) as e:
        GlanceImages(cloud="acme-recovery")
    assert e.value.exit_code == 14
    assert "connecting to cloud acme-recovery" in e.value.message and "OS_CLOUD" in e.value.message


def test_a_server_in_error_is_a_failed_step_exit_20(cloud):
    cloud.serve_auth()
    cloud.routes[("GET", "/compute/v2.1/servers/abc")] = (
        200,
        {"server": {"id": "abc", "name": "db", "status": "ERROR", "fault": {"message": "No valid host"}}},
        {},
    )
    with pytest.raises(CloudOperationFailed) as e:
        NovaServers(conn=cloud.connect()).wait_active("abc", timeout_s=60)
    assert e.value.exit_code == 20
    assert "server abc to be ACTIVE: failed" in e.value.message and "ERROR" in e.value.message


def test_a_server_not_active_within_its_rto_is_a_failed_step_exit_20(cloud):
    cloud.serve_auth()
    cloud.routes[("GET", "/compute/v2.1/servers/abc")] = (
        200,
        {"server": {"id": "abc", "name": "db", "status": "BUILD"}},
        {},
    )
    with pytest.raises(
        CloudOperationFailed, match=r"waiting up to 1s \(its RTO\) for server abc .*timed out"
    ):
        NovaServers(conn=cloud.connect()).wait_active("abc", timeout_s=1)


def test_an_image_service_answering_503_is_unreachable_exit_14(cloud, tmp_path):
    cloud.serve_auth()
    cloud.routes[("GET", "/image/v2")] = (503, {"message": "Service Unavailable"}, {})
    cloud.routes[("POST", "/image/v2")] = (503, {"message": "Service Unavailable"}, {})
    image = tmp_path / "db-system.raw"
    image.write_bytes(b"disk")
    with pytest.raises(CloudUnreachable) as e:
        GlanceImages(conn=cloud.connect()).upload("demo-db-pt1", image, disk_format="raw", properties={})
    assert e.value.exit_code == 14 and "the cloud's API failed (503" in e.value.message
    assert ("POST", "/v3/auth/tokens") in cloud.requests  # it did get that far, for real
