"""The ``local`` activation target: the restored disk images boot under QEMU in the run's
sandbox (one network namespace, one bridge per plan subnet, production IPs), and each server's
checks run from inside that namespace. This is also how ``backup-tested`` servers get their
yearly restore test without cloud cost."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from drctl.activation.engine import RestoredDisk
from drctl.activation.targets.sandbox import Sandbox
from drctl.activation.verify.checks import run_checks_subprocess
from drctl.plan.model import Server
from drctl.runs.model import CheckResult


class LocalTarget:
    name = "local"

    def __init__(self, sandbox: Sandbox, deadline_for: Callable[[Server], datetime]) -> None:
        self.sandbox = sandbox
        self.deadline_for = deadline_for

    @property
    def namespace(self) -> str:
        """The run's network namespace: the recovery subnets live there (the NCA lab attaches to it)."""
        return self.sandbox.namespace

    @property
    def image_ids(self) -> dict[str, str]:
        """Nothing is uploaded: the restored files stay under the run's restore directory."""
        return {}

    def stage_disk(self, server: Server, disk: RestoredDisk) -> None:
        """Nothing to upload: QEMU boots the restored file (through a throw-away overlay)."""

    def start_server(self, server: Server, disks: Sequence[RestoredDisk]) -> None:
        by_name = {d.disk: Path(d.path) for d in disks}
        data = [(d.name, by_name[d.name]) for d in server.data_disks]
        guest = self.sandbox.start_server(server, by_name[server.boot_disk.name], data_disks=data)
        self.sandbox.wait_ssh(guest, self.deadline_for(server))

    def verify(self, server: Server) -> list[CheckResult]:
        return run_checks_subprocess(
            self.sandbox.ssh_url(server), server.checks, self.deadline_for(server), prefix=self.sandbox.prefix
        )
