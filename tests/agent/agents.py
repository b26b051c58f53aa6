"""A real agent config and key for tests (what `drctl agent config` writes, without a stack)."""

from __future__ import annotations

from pathlib import Path

from drctl.agent import records
from drctl.agent.config import AgentConfig, DiskConfig, Hooks, ScheduleEntry, write_config


def make_agent(
    where: Path,
    repository: str,
    disks: dict[str, str | DiskConfig],
    *,
    server: str = "db01",
    hooks: Hooks | None = None,
    retention: dict[str, int] | None = None,
) -> Path:
    """Write ``<where>/<server>.agent.yaml`` and its key; returns the config's path."""
    where.mkdir(parents=True, exist_ok=True)
    key = where / f"{server}.agent-key"
    if not key.exists():
        records.generate_agent_key(key)
    cfg = AgentConfig(
        client="demo",
        stack="demo",
        server=server,
        repository=repository,
        state_dir=where / "state",
        key=key,
        disks=tuple(d if isinstance(d, DiskConfig) else DiskConfig(name, d) for name, d in disks.items()),
        hooks=hooks or Hooks(),
        schedule=(ScheduleEntry("full", 7 * 86400), ScheduleEntry("incremental", 86400)),
        retention=retention or {},
    )
    return write_config(cfg, where / f"{server}.agent.yaml")
