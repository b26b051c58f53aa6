"""What an activation target is: the interface :class:`drctl.activation.activation.Activation` and
the engine use, satisfied by :class:`~drctl.activation.targets.local.LocalTarget` (QEMU sandbox)
and :class:`~drctl.activation.targets.cloud.CloudTarget` (the client's OpenStack project), and by
the fakes of the tests. mypy checks that both targets satisfy it where the default target factory
returns them.

A run calls, for every in-scope server: :meth:`Target.stage_disk` once per restored disk (from the
restore workers), then :meth:`Target.start_server` when its disks are restored and its upstream
servers are available, then :meth:`Target.verify`. Teardown is returned by the target factory next
to the target (a drill tears down, an activation keeps the servers until ``drctl deactivate``).
Errors a target expects (a guest that does not boot, a cloud that refuses) are raised as
:class:`drctl.errors.DrctlError` subclasses: they fail that server only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from drctl.activation.engine import RestoredDisk
from drctl.plan.model import Server
from drctl.runs.model import CheckResult

DeadlineFn = Callable[[Server], datetime]  # when a server's checks must have passed (its RTO budget)


class Target(Protocol):
    @property
    def namespace(self) -> str | None:
        """The network namespace holding the recovered subnets, where a drill attaches the NCA lab
        to prove the users' reconnection; None when the target has none (the cloud)."""
        ...

    @property
    def image_ids(self) -> Mapping[str, str]:
        """Images this run uploaded (``server`` or ``server/disk`` -> image id), recorded for
        ``drctl deactivate``; empty when the target uploads nothing."""
        ...

    def stage_disk(self, server: Server, disk: RestoredDisk) -> None:
        """Make one restored disk of ``server`` usable by the target (e.g. upload it as an image)."""
        ...

    def start_server(self, server: Server, disks: Sequence[RestoredDisk]) -> None:
        """Boot ``server`` from its restored ``disks`` and wait until it runs."""
        ...

    def verify(self, server: Server) -> Sequence[CheckResult]:
        """Run the plan's checks of ``server`` until they pass or its deadline; one result each."""
        ...
