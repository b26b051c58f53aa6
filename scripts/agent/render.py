"""``drctl agent config``: one server's agent config from the recovery plan and the stack, and the
agent's signing key.

Every disk of the server in the plan must be mapped to a device or image (``--disk
DISK=PATH[:METHOD]``); the schedule and retention come from the plan, the repository URL from the
stack. The agent's Ed25519 key is created beside the config (0600; an existing one is kept, so that
rendering the config again does not change the agent's identity) and its public key recorded in the
stack file under ``flexible-recovery:agent_keys.<server>``, where ``drctl status`` finds it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from drctl.agent import records
from drctl.agent.config import (
    DEFAULT_HOOK_TIMEOUT_S,
    DEFAULT_SNAPSHOT_SIZE,
    AgentConfig,
    DiskConfig,
    Hooks,
    ScheduleEntry,
    parse_disk_spec,
    write_config,
)
from drctl.errors import InvalidInput
from drctl.paths import PROJECT
from drctl.stack.config import StackConfig, set_value

log = logging.getLogger(__name__)

DEFAULT_STATE_ROOT = Path("/var/lib/drctl-agent")


@dataclass(frozen=True)
class QemuSockets:
    """The VM's sockets, for the disks whose method is ``qemu`` (one VM per server)."""

    qmp_socket: str | None = None
    guest_agent_socket: str | None = None


@dataclass(frozen=True)
class Rendered:
    config_path: Path
    key_path: Path
    key_created: bool
    public_key: str
    stack_file: Path


def map_disks(
    stack: StackConfig,
    server: str,
    specs: Sequence[str],
    *,
    snapshot_size: str = DEFAULT_SNAPSHOT_SIZE,
    qemu: QemuSockets = QemuSockets(),
    devices: dict[str, str] | None = None,
) -> tuple[DiskConfig, ...]:
    """The ``--disk`` options checked against the plan: every disk of the server mapped once."""
    try:
        plan_server = stack.plan.server(server)
    except KeyError:
        names = ", ".join(s.name for s in stack.plan.servers)
        raise InvalidInput(
            f"stack {stack.stack}: the plan has no server {server!r} (it has {names})"
        ) from None
    plan_disks = [d.name for d in plan_server.disks]
    mapped: dict[str, DiskConfig] = {}
    for spec in specs:
        name, path, method = parse_disk_spec(spec)
        if name not in plan_disks:
            raise InvalidInput(
                f"--disk {spec!r}: server {server} has no disk {name!r} in the plan "
                f"(its disks: {', '.join(plan_disks)})"
            )
        if name in mapped:
            raise InvalidInput(f"--disk {spec!r}: disk {name} is mapped twice")
        if method == "qemu" and not (qemu.qmp_socket and qemu.guest_agent_socket):
            raise InvalidInput(
                f"--disk {spec!r}: method qemu needs the VM's --qmp-socket and --guest-agent-socket"
            )
        mapped[name] = DiskConfig(
            name=name,
            path=path,
            method=method,
            snapshot_size=snapshot_size,
            qmp_socket=qemu.qmp_socket if method == "qemu" else None,
            guest_agent_socket=qemu.guest_agent_socket if method == "qemu" else None,
            device=(devices or {}).get(name) if method == "qemu" else None,
        )
    missing = [d for d in plan_disks if d not in mapped]
    if missing:
        raise InvalidInput(
            f"server {server}: disk(s) {', '.join(missing)} of the plan are not mapped; add "
            + " ".join(f"--disk {d}=PATH[:METHOD]" for d in missing)
        )
    return tuple(mapped[d] for d in plan_disks)


def render(
    stack: StackConfig,
    server: str,
    disks: tuple[DiskConfig, ...],
    out_dir: Path,
    *,
    pre_hook: str | None = None,
    post_hook: str | None = None,
    hook_timeout_s: int = DEFAULT_HOOK_TIMEOUT_S,
    state_dir: Path | None = None,
) -> Rendered:
    """Write ``<out>/<server>.agent.yaml`` and the key ``<out>/<server>.agent-key``; record the key."""
    out_dir = out_dir.resolve()
    plan_server = stack.plan.server(server)
    retention = plan_server.retention.as_dict() if plan_server.retention else {}
    key_path = out_dir / f"{server}.agent-key"
    cfg = AgentConfig(
        client=stack.plan.client.id,
        stack=stack.stack,
        server=server,
        repository=stack.settings.repository_url(stack.plan),
        state_dir=(state_dir or DEFAULT_STATE_ROOT / server).resolve(),
        key=key_path,
        disks=disks,
        hooks=Hooks(pre_hook or None, post_hook or None, hook_timeout_s),
        schedule=tuple(ScheduleEntry(b.type, b.every_s) for b in plan_server.backup),
        retention=retention,
    )
    config_path = out_dir / f"{server}.agent.yaml"
    created = not key_path.exists()
    key = records.generate_agent_key(key_path) if created else records.load_agent_key(key_path)
    public = records.public_key_text(key.public_key())
    write_config(cfg, config_path)
    recorded = stack.values.get("agent_keys", {}) or {}
    previous = recorded.get(server) if isinstance(recorded, dict) else None
    if previous and previous != public:
        log.warning(
            "stack %s: the agent key recorded for %s changes (records signed with the old key are no "
            "longer trusted)",
            stack.stack,
            server,
        )
    path = set_value(stack.stack, f"{PROJECT}:agent_keys.{server}", public, stack.project_dir)
    return Rendered(config_path, key_path, created, public, path)
