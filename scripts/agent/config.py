"""The agent's configuration file: what one server's agent backs up, how, when, and where to.

``drctl agent config`` renders it from the recovery plan and the stack; ``drctl agent run`` and
``drctl agent units`` read it. It holds no secret: the repository password comes from
``--password-file``/``--password-command``/``DRCTL_PASSWORD`` and the object store's credentials
from the environment (``AWS_*``), as for ``drctl backup``. Written 0600 all the same (it names
devices and sockets).

Schema (YAML, format ``drctl-agent-v1``; :data:`SCHEMA` is the one contract, every problem is
reported with its field path)::

    format: drctl-agent-v1
    client: demo                     # the plan's client id
    stack: demo                      # the stack it was rendered from
    server: db01                     # the plan's server name
    repository: s3://demo-backups/repo
    state_dir: /var/lib/drctl-agent/db01   # job lock and status-record spool (0700)
    key: /etc/drctl/db01.agent-key   # the agent's Ed25519 signing key (0600)
    disks:                           # every disk of the server in the plan, in plan order
      - name: system
        path: /dev/vg0/system        # block device or image file
        method: none | lvm-snapshot | qemu
        snapshot_size: 1G            # lvm-snapshot only: lvcreate -L (default 1G)
        qmp_socket: /run/vm/db01.qmp         # qemu only: the VM's QMP socket
        guest_agent_socket: /run/vm/db01.qga # qemu only: the guest agent's socket
        device: drive-virtio-disk0   # qemu only, optional: the block device/node name in QEMU
    hooks: {pre: CMD, post: CMD, timeout_s: 300}   # optional; run without a shell
    schedule: [{type: full, every_s: 604800}, ...]  # the plan's, in seconds
    retention: {keep_daily: 7, keep_weekly: 4, keep_monthly: 12}   # optional: the plan's
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from drctl.errors import InvalidInput
from drctl.input_files import load_yaml_file
from drctl.private_files import write_private_file

FORMAT = "drctl-agent-v1"
METHODS = ("none", "lvm-snapshot", "qemu")
DEFAULT_SNAPSHOT_SIZE = "1G"
DEFAULT_HOOK_TIMEOUT_S = 300

_NAME = {"type": "string", "pattern": r"^[a-z][a-z0-9-]{0,62}$"}
_PATH = {"type": "string", "minLength": 1, "pattern": r"^/"}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": [
        "format",
        "client",
        "stack",
        "server",
        "repository",
        "state_dir",
        "key",
        "disks",
        "schedule",
    ],
    "properties": {
        "format": {"const": FORMAT},
        "client": _NAME,
        "stack": {"type": "string", "minLength": 1},
        "server": _NAME,
        "repository": {"type": "string", "minLength": 1},
        "state_dir": _PATH,
        "key": _PATH,
        "disks": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "path", "method"],
                "properties": {
                    "name": _NAME,
                    "path": _PATH,
                    "method": {"enum": list(METHODS)},
                    "snapshot_size": {
                        "type": "string",
                        "pattern": r"^[0-9]+(\.[0-9]+)?[bBsSkKmMgGtTpPeE%]?$",
                    },
                    "qmp_socket": _PATH,
                    "guest_agent_socket": _PATH,
                    "device": {"type": "string", "minLength": 1},
                },
                "allOf": [
                    {
                        "if": {"properties": {"method": {"const": "qemu"}}},
                        "then": {"required": ["qmp_socket", "guest_agent_socket"]},
                        "else": {
                            "not": {
                                "anyOf": [
                                    {"required": [k]} for k in ("qmp_socket", "guest_agent_socket", "device")
                                ]
                            }
                        },
                    },
                    {
                        "if": {"properties": {"method": {"const": "lvm-snapshot"}}},
                        "else": {"not": {"required": ["snapshot_size"]}},
                    },
                ],
            },
        },
        "hooks": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "pre": {"type": "string", "minLength": 1},
                "post": {"type": "string", "minLength": 1},
                "timeout_s": {"type": "integer", "minimum": 1, "maximum": 86400},
            },
        },
        "schedule": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["type", "every_s"],
                "properties": {
                    "type": {"enum": ["full", "incremental", "differential", "log"]},
                    "every_s": {"type": "integer", "minimum": 60},
                },
            },
        },
        "retention": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                k: {"type": "integer", "minimum": 0} for k in ("keep_daily", "keep_weekly", "keep_monthly")
            },
        },
    },
}


class AgentConfigInvalid(InvalidInput):
    """The agent configuration file is invalid (every problem is listed with its field)."""


@dataclass(frozen=True)
class DiskConfig:
    """One disk of the server: where to read it and how to make it consistent first. This is what
    a consistency method receives (``qemu_snapshot(disk_cfg)``)."""

    name: str
    path: str
    method: str = "none"
    snapshot_size: str = DEFAULT_SNAPSHOT_SIZE
    qmp_socket: str | None = None
    guest_agent_socket: str | None = None
    device: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "path": self.path, "method": self.method}
        if self.method == "lvm-snapshot":
            d["snapshot_size"] = self.snapshot_size
        if self.method == "qemu":
            d["qmp_socket"] = self.qmp_socket
            d["guest_agent_socket"] = self.guest_agent_socket
            if self.device:
                d["device"] = self.device
        return d


@dataclass(frozen=True)
class Hooks:
    pre: str | None = None
    post: str | None = None
    timeout_s: int = DEFAULT_HOOK_TIMEOUT_S


@dataclass(frozen=True)
class ScheduleEntry:
    type: str
    every_s: int


@dataclass(frozen=True)
class AgentConfig:
    client: str
    stack: str
    server: str
    repository: str
    state_dir: Path
    key: Path
    disks: tuple[DiskConfig, ...]
    hooks: Hooks = field(default_factory=Hooks)
    schedule: tuple[ScheduleEntry, ...] = ()
    retention: Mapping[str, int] = field(default_factory=dict)
    path: Path | None = None  # the file it was read from

    @property
    def spool_dir(self) -> Path:
        return self.state_dir / "spool"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format": FORMAT,
            "client": self.client,
            "stack": self.stack,
            "server": self.server,
            "repository": self.repository,
            "state_dir": str(self.state_dir),
            "key": str(self.key),
            "disks": [x.to_dict() for x in self.disks],
        }
        hooks: dict[str, Any] = {k: v for k, v in (("pre", self.hooks.pre), ("post", self.hooks.post)) if v}
        if hooks:
            d["hooks"] = {**hooks, "timeout_s": self.hooks.timeout_s}
        d["schedule"] = [{"type": e.type, "every_s": e.every_s} for e in self.schedule]
        if self.retention:
            d["retention"] = dict(self.retention)
        return d


def _problems(doc: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    out = []
    for e in sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path]):
        where = ".".join(str(p) for p in e.absolute_path) or "(top level)"
        if e.validator in ("not", "if", "allOf") and e.absolute_path and "disks" in e.absolute_path:
            what = "qmp_socket/guest_agent_socket/device are for method qemu, snapshot_size for lvm-snapshot"
        else:
            what = e.message
        out.append(f"{where}: {what}")
    if isinstance(doc, dict):
        for i, hook in ((k, (doc.get("hooks") or {}).get(k)) for k in ("pre", "post")):
            if isinstance(hook, str):
                try:
                    shlex.split(hook)
                except ValueError as e:
                    out.append(f"hooks.{i}: {e} (the command is split like a shell would, without one)")
    return out


def parse_config(doc: Any, *, where: str) -> AgentConfig:
    """The typed config of a parsed document; :class:`AgentConfigInvalid` lists every problem."""
    problems = _problems(doc)
    if problems:
        raise AgentConfigInvalid(
            f"{where}: invalid agent config ({len(problems)} problem(s)):\n  "
            + "\n  ".join(problems)
            + "\nrender it again with `drctl agent config STACK --server NAME ...`"
        )
    names = [d["name"] for d in doc["disks"]]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise AgentConfigInvalid(f"{where}: disks: {', '.join(dupes)} listed more than once")
    hooks = doc.get("hooks") or {}
    return AgentConfig(
        client=doc["client"],
        stack=doc["stack"],
        server=doc["server"],
        repository=doc["repository"],
        state_dir=Path(doc["state_dir"]),
        key=Path(doc["key"]),
        disks=tuple(
            DiskConfig(
                name=d["name"],
                path=d["path"],
                method=d["method"],
                snapshot_size=d.get("snapshot_size", DEFAULT_SNAPSHOT_SIZE),
                qmp_socket=d.get("qmp_socket"),
                guest_agent_socket=d.get("guest_agent_socket"),
                device=d.get("device"),
            )
            for d in doc["disks"]
        ),
        hooks=Hooks(hooks.get("pre"), hooks.get("post"), hooks.get("timeout_s", DEFAULT_HOOK_TIMEOUT_S)),
        schedule=tuple(ScheduleEntry(e["type"], e["every_s"]) for e in doc["schedule"]),
        retention=dict(doc.get("retention") or {}),
        path=Path(where),
    )


def load_config(path: str | os.PathLike[str]) -> AgentConfig:
    """Read and validate an agent config file."""
    return parse_config(load_yaml_file(path, what="agent config"), where=os.fspath(path))


def write_config(cfg: AgentConfig, path: str | os.PathLike[str]) -> Path:
    """Write ``cfg`` (0600), after checking it reads back as the same config."""
    parse_config(cfg.to_dict(), where=os.fspath(path))
    header = (
        f"# drctl agent config of server {cfg.server} (stack {cfg.stack}); rendered by `drctl agent config`.\n"
        "# No secret here: the repository password comes from --password-file/--password-command,\n"
        "# the object store's credentials from the environment (AWS_*).\n"
    )
    return write_private_file(path, header + yaml.safe_dump(cfg.to_dict(), sort_keys=False, width=100))


DISK_SPEC = re.compile(r"(?P<name>[^=]+)=(?P<rest>.+)")


def parse_disk_spec(spec: str) -> tuple[str, str, str]:
    """``DISK=PATH[:METHOD]`` -> (disk, path, method); a path may itself hold ``:``."""
    m = DISK_SPEC.fullmatch(spec)
    if not m:
        raise InvalidInput(
            f"--disk {spec!r}: expected DISK=PATH[:METHOD] (METHOD one of {', '.join(METHODS)})"
        )
    path, method = m["rest"], "none"
    head, sep, tail = path.rpartition(":")
    if sep and tail in METHODS:
        path, method = head, tail
    elif sep and re.fullmatch(r"[a-z][a-z-]*", tail):
        raise InvalidInput(f"--disk {spec!r}: method {tail!r} is not one of {', '.join(METHODS)}")
    if not path.startswith("/"):
        raise InvalidInput(f"--disk {spec!r}: the path must be absolute (the agent runs from systemd)")
    return m["name"], path, method
