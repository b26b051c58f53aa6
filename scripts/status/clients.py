"""The clients ``drctl status`` looks at: every stack of the project (or those named), each read
without its secrets (monitoring never needs the stack passphrase): the plan, where the vault is,
and the agents' public keys recorded as ``flexible-recovery:agent_keys.<server>``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from drctl import paths
from drctl.agent import records
from drctl.paths import PROJECT
from drctl.plan.load import load_plan_with_notes
from drctl.plan.model import Plan
from drctl.stack.config import (
    STACKS_DIR,
    plan_path,
    project_defaults,
    read_stack_document,
    stack_file,
)
from drctl.stack.settings import StackConfigInvalid, parse_settings

AGENT_KEYS = "agent_keys"


@dataclass(frozen=True)
class ClientSource:
    """What status needs from one stack: its plan, its vault and its agents' public keys."""

    stack: str
    path: Path
    plan: Plan
    vault: str  # the repository URL (status records live beside it, under status/)
    agent_keys: Mapping[str, Ed25519PublicKey] = field(default_factory=dict, repr=False)
    # What the valid plan promises that drctl does not deliver (drctl.plan.notes), said with the status.
    plan_notes: tuple[str, ...] = ()


def stack_names(project_dir: Path | None = None) -> list[str]:
    """Every stack of the project (``stacks/Pulumi.<stack>.yaml``), sorted."""
    project_dir = project_dir or paths.project_dir()
    found = (project_dir / STACKS_DIR).glob("Pulumi.*.yaml")
    return sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in found if p.is_file())


def agent_keys(raw: Any, where: str) -> dict[str, Ed25519PublicKey]:
    """``agent_keys`` of a stack: ``{server: "ed25519:<hex>"}`` (a JSON string as Pulumi hands
    objects to programs is accepted too)."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            raw = None
    if not isinstance(raw, dict):
        raise StackConfigInvalid(
            f"{where}: {PROJECT}:{AGENT_KEYS}: expected server: ed25519:<hex> pairs "
            "(as `drctl agent config` records them)"
        )
    return {
        str(server): records.parse_public_key(str(text), where=f"{where}: {PROJECT}:{AGENT_KEYS}.{server}")
        for server, text in raw.items()
    }


def load_client(stack: str, project_dir: Path | None = None) -> ClientSource:
    """Read one stack file (project defaults included, ``secure:`` values left sealed) and its plan."""
    project_dir = project_dir or paths.project_dir()
    path = stack_file(stack, project_dir)
    doc = read_stack_document(path)
    values: dict[str, Any] = dict(project_defaults(project_dir))
    prefix = f"{PROJECT}:"
    for full_key, raw in (doc.get("config") or {}).items():
        if str(full_key).startswith(prefix):
            values[str(full_key)[len(prefix) :]] = raw
    where = str(path)
    settings = parse_settings(values, where=where)
    plan, notes = load_plan_with_notes(plan_path(project_dir, settings.plan, where))
    return ClientSource(
        stack=stack,
        path=path,
        plan=plan,
        vault=settings.repository_url(plan),
        agent_keys=agent_keys(values.get(AGENT_KEYS), where),
        plan_notes=tuple(f"{n.where}: {n.message}" for n in notes),
    )
