"""The ``cloud`` activation target: restored images go to the image service, the servers are
materialised into the client's Pulumi stack (failover flag + recorded images, applied with
``pulumi up`` through the Automation API), then each server is waited for.

Three small interfaces keep the I/O at the edges (and make the orchestration testable here,
where neither the Pulumi CLI nor a cloud exists):

- :class:`ImageService`: upload a disk image, delete it (openstacksdk: :class:`GlanceImages`);
- :class:`StackEngine`: apply the activation config and return the stack outputs
  (:class:`PulumiAutomationStack`);
- :class:`ServerWaiter`: wait until a materialised server is ACTIVE (:class:`NovaServers`).

Servers are added to the stack's activation scope one dependency level at a time: a server is
materialised only when its upstream servers passed their checks (the engine calls
:meth:`CloudTarget.start_server` at that moment). Concurrent calls are merged into one
``pulumi up`` because a stack takes one update at a time.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

from drctl.activation.engine import RestoredDisk
from drctl.activation.targets.cloud_errors import CloudError, openstack_error, pulumi_error
from drctl.errors import ToolMissing
from drctl.paths import PROJECT
from drctl.plan.model import Server
from drctl.runs.model import CheckResult

log = logging.getLogger(__name__)

T = TypeVar("T")


class ImageService(Protocol):
    def upload(self, name: str, path: Path, *, disk_format: str, properties: Mapping[str, str]) -> str:
        """Upload and wait until the image is active; returns its id."""

    def delete(self, image_id: str) -> None: ...


class StackEngine(Protocol):
    def apply(
        self,
        *,
        failover: bool,
        servers: Sequence[str],
        images: Mapping[str, str],
        data_images: Mapping[str, Mapping[str, str]],
        restore_point: str,
    ) -> Mapping[str, object]:
        """Write the activation block into the stack config and run ``pulumi up``."""


class ServerWaiter(Protocol):
    def wait_active(self, server_id: str, *, timeout_s: int) -> None: ...


class CloudTarget:
    name = "cloud"

    def __init__(
        self,
        stack: str,
        images: ImageService,
        engine: StackEngine,
        waiter: ServerWaiter,
        *,
        restore_point: str = "latest",
        deadline_for: Callable[[Server], datetime] | None = None,
        ssh_identity_file: str | None = None,
    ) -> None:
        self.stack, self.images, self.engine, self.waiter = stack, images, engine, waiter
        self.restore_point = restore_point
        self.deadline_for = deadline_for or (lambda s: datetime.now(UTC) + timedelta(seconds=s.rto_s))
        # The operators reach recovered servers through the site VPN (or a bastion): checks run
        # over SSH to the server's production address with the operators' key.
        self.ssh_identity_file = ssh_identity_file or os.environ.get(
            "DRCTL_CLOUD_SSH_KEY", str(Path.home() / ".ssh" / "id_ed25519")
        )
        self._image_ids: dict[str, str] = {}  # server -> image of its boot disk
        self._data_image_ids: dict[str, dict[str, str]] = {}  # server -> disk -> image
        self._scope: list[str] = []
        self._applied: set[str] = set()
        self._lock = threading.Lock()  # guards the dicts
        self._up_lock = threading.Lock()  # one `pulumi up` at a time
        self._outputs: Mapping[str, object] = {}

    @property
    def namespace(self) -> None:
        """No local network namespace: users reach the recovery space through their site's VPN."""
        return None

    def stage_disk(self, server: Server, disk: RestoredDisk) -> None:
        """Upload one restored disk of ``server`` as an image: the boot disk's becomes the instance's
        boot volume, each data disk's a volume attached after it (plan order)."""
        boot = disk.disk == server.boot_disk.name
        name = (
            f"{self.stack}-{server.name}-{disk.point_id}"
            if boot
            else f"{self.stack}-{server.name}-{disk.disk}-{disk.point_id}"
        )
        image_id = self.images.upload(
            name,
            Path(disk.path),
            disk_format="raw",
            properties={
                "drctl_stack": self.stack,
                "drctl_server": server.name,
                "drctl_disk": disk.disk,
                "drctl_restore_point": disk.point_id,
            },
        )
        with self._lock:
            if boot:
                self._image_ids[server.name] = image_id
            else:
                self._data_image_ids.setdefault(server.name, {})[disk.disk] = image_id

    def start_server(self, server: Server, disks: Sequence[RestoredDisk]) -> None:
        with self._lock:
            if server.name not in self._image_ids:
                raise CloudError(f"no uploaded image for server {server.name}: its boot disk was not staged")
            staged = self._data_image_ids.get(server.name, {})
            missing = [d.name for d in server.data_disks if d.name not in staged]
            if missing:
                raise CloudError(
                    f"no uploaded image for disk(s) {', '.join(missing)} of server {server.name}: "
                    "every disk is restored and staged before the server starts"
                )
            if server.name not in self._scope:
                self._scope.append(server.name)
        with self._up_lock:
            if server.name not in self._applied:
                with self._lock:
                    scope, images = list(self._scope), dict(self._image_ids)
                    data_images = {s: dict(d) for s, d in self._data_image_ids.items() if s in scope and d}
                log.info("pulumi up for stack %s, servers in scope: %s", self.stack, ", ".join(scope))
                self._outputs = self.engine.apply(
                    failover=True,
                    servers=scope,
                    images=images,
                    data_images=data_images,
                    restore_point=self.restore_point,
                )
                self._applied.update(scope)
        ids = self._outputs.get("recovered_servers", {})
        if not isinstance(ids, Mapping) or server.name not in ids:
            raise CloudError(
                f"stack {self.stack} did not export an instance for {server.name} "
                "(output recovered_servers); check `pulumi stack output`"
            )
        self.waiter.wait_active(str(ids[server.name]), timeout_s=server.rto_s)

    def verify(self, server: Server) -> list[CheckResult]:
        from drctl.activation.verify.checks import run_checks

        url = f"paramiko://root@{server.nics[0].ip}?ssh_identity_file={self.ssh_identity_file}"
        return run_checks(url, server.checks, self.deadline_for(server))

    @property
    def image_ids(self) -> dict[str, str]:
        """Every image this run uploaded (``server`` for boot disks, ``server/disk`` for data
        disks): what the activation records and ``deactivate`` deletes."""
        with self._lock:
            return {
                **self._image_ids,
                **{f"{s}/{d}": i for s, disks in self._data_image_ids.items() for d, i in disks.items()},
            }

    def deactivate(self, image_ids: Mapping[str, str] | None = None) -> None:
        """Back to nominal: failover off (the engine removes the servers and nothing else), then
        the uploaded images (this run's, or those recorded by the activation) are deleted."""
        with self._up_lock:
            self.engine.apply(failover=False, servers=[], images={}, data_images={}, restore_point="")
        for image_id in list((image_ids if image_ids is not None else self.image_ids).values()):
            self.images.delete(image_id)
        with self._lock:
            self._image_ids.clear()
            self._data_image_ids.clear()


def openstack_errors() -> tuple[type[Exception], ...]:
    """What openstacksdk raises: its own errors and keystoneauth's (connection, auth, catalog)."""
    import keystoneauth1.exceptions
    import openstack.exceptions

    return (openstack.exceptions.SDKException, keystoneauth1.exceptions.ClientException)


def connect_cloud(cloud: str | None) -> Any:
    import openstack

    try:
        return openstack.connect(cloud=cloud)
    except openstack_errors() as e:
        raise openstack_error(e, f"connecting to cloud {cloud or '(from OS_* variables)'}") from e


class GlanceImages:
    """ImageService over openstacksdk (clouds.yaml / OS_CLOUD). ``conn`` is an openstacksdk
    Connection (default: from the environment)."""

    def __init__(self, cloud: str | None = None, *, conn: Any = None) -> None:
        self.conn = conn if conn is not None else connect_cloud(cloud)

    def upload(self, name: str, path: Path, *, disk_format: str, properties: Mapping[str, str]) -> str:
        # create_image's extra keywords (typed Any) become image properties.
        extra: dict[str, Any] = dict(properties)
        try:
            image = self.conn.image.create_image(
                name=name,
                filename=str(path),
                disk_format=disk_format,
                container_format="bare",
                wait=True,
                **extra,
            )
            image = self.conn.image.wait_for_status(image, "active", failures=["killed"], wait=3600)
        except openstack_errors() as e:
            raise openstack_error(e, f"uploading image {name} from {path}") from e
        return image.id

    def delete(self, image_id: str) -> None:
        try:
            self.conn.image.delete_image(image_id, ignore_missing=True)
        except openstack_errors() as e:
            raise openstack_error(e, f"deleting image {image_id}") from e


class NovaServers:
    """ServerWaiter over openstacksdk. ``conn`` as for :class:`GlanceImages`."""

    def __init__(self, cloud: str | None = None, *, conn: Any = None) -> None:
        self.conn = conn if conn is not None else connect_cloud(cloud)

    def wait_active(self, server_id: str, *, timeout_s: int) -> None:
        try:
            server = self.conn.compute.get_server(server_id)
            self.conn.compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], wait=timeout_s)
        except openstack_errors() as e:
            raise openstack_error(
                e, f"waiting up to {timeout_s}s (its RTO) for server {server_id} to be ACTIVE"
            ) from e


class PulumiAutomationStack:
    """StackEngine over the Automation API; needs the Pulumi CLI on PATH. ``workspace_stack`` is
    an automation ``Stack`` (default: created or selected in ``work_dir``)."""

    def __init__(self, stack: str, work_dir: Path, *, workspace_stack: Any = None) -> None:
        from pulumi import automation as auto

        self.name = stack
        self.auto = auto
        if workspace_stack is not None:
            self.stack = workspace_stack
            return
        if shutil.which("pulumi") is None:
            raise ToolMissing(
                "the cloud target needs the Pulumi CLI (https://www.pulumi.com/docs/install/) "
                "on PATH; use --target local to drill without a cloud"
            )
        self.stack = self._run(
            "stack select", lambda: auto.create_or_select_stack(stack_name=stack, work_dir=str(work_dir))
        )

    def _run(self, step: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except (self.auto.errors.CommandError, self.auto.errors.InvalidVersionError, FileNotFoundError) as e:
            raise pulumi_error(e, self.name, step) from e

    def apply(
        self,
        *,
        failover: bool,
        servers: Sequence[str],
        images: Mapping[str, str],
        data_images: Mapping[str, Mapping[str, str]],
        restore_point: str,
    ) -> Mapping[str, object]:
        cv = self.auto.ConfigValue
        block = f"{PROJECT}:activation"
        # Start from a clean activation block: a shorter scope must not keep old entries.
        if block in self._run("config", self.stack.get_all_config):
            self._run("config rm", lambda: self.stack.remove_config(block, path=True))
        config = activation_config(
            PROJECT,
            failover=failover,
            servers=servers,
            images=images,
            data_images=data_images,
            restore_point=restore_point,
            value=lambda v: cv(value=v),
        )
        self._run("config set-all", lambda: self.stack.set_all_config(config, path=True))
        self._run("up", lambda: self.stack.up(on_output=lambda line: log.info("pulumi: %s", line.rstrip())))
        outputs = self._run("stack output", self.stack.outputs)
        return {k: v.value for k, v in outputs.items()}


def activation_config(
    project: str,
    *,
    failover: bool,
    servers: Sequence[str],
    images: Mapping[str, str],
    restore_point: str,
    data_images: Mapping[str, Mapping[str, str]] | None = None,
    value=lambda v: v,
) -> dict:
    """The stack-config entries (path syntax) an activation writes: what the stack program reads."""
    cfg = {
        f"{project}:failover": value("true" if failover else "false"),
        f"{project}:activation.restore_point": value(restore_point),
    }
    for i, name in enumerate(servers):
        cfg[f"{project}:activation.servers[{i}]"] = value(name)
    for name, image_id in images.items():
        cfg[f"{project}:activation.images.{name}"] = value(image_id)
    for name, disks in (data_images or {}).items():
        for disk, image_id in disks.items():
            cfg[f"{project}:activation.data_images.{name}.{disk}"] = value(image_id)
    return cfg
