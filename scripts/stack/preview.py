"""Offline preview: run the real Pulumi program (``stacks/__main__.py``) under the SDK's mock
runtime with a stack's configuration, and record the resource graph the engine would receive.

The Pulumi CLI and the OpenStack provider need a cloud and its credentials, so offline this is how
the program, the golden snapshots and the policy pack are exercised. What the mocks stand in for:

- every resource gets the id ``<name>-id`` and echoes its inputs as outputs;
- ``openstack:networking/getNetwork:getNetwork`` returns ``ext-<name>-id`` for any name;
- a VPN service's ``externalV4Ip`` is ``198.51.100.1`` (a documentation address) so the NCA
  bundle can be rendered;
- with ``failover`` on and no image recorded in ``activation.images`` for an in-scope server, the
  preview (only the preview) supplies ``preview-image-<server>`` (and ``preview-restore-point`` when
  ``activation.restore_point`` is empty) and says so in :attr:`PreviewGraph.notes`. A real
  ``pulumi up`` in that state stops with a config error naming the server / the restore point.
"""

from __future__ import annotations

import contextvars
import copy
import json
import logging
import runpy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drctl import paths
from drctl.paths import PROJECT
from drctl.stack.config import StackConfig, load_stack

log = logging.getLogger(__name__)

SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG_VALUE = "1b47061264138c4ac30d75fd1eb44270"
REDACTED = "[secret]"
PREVIEW_VPN_ADDRESS = "198.51.100.1"
PREVIEW_RESTORE_POINT = "preview-restore-point"
PROGRAM = Path("stacks") / "__main__.py"


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG_KEY) == SECRET_SIG_VALUE


def redact(value: Any) -> Any:
    """A copy of ``value`` with every secret-wrapped value replaced by ``"[secret]"``."""
    if is_secret(value):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def unwrap(value: Any) -> Any:
    """A copy of ``value`` with secrets unwrapped to their plain values (for rules, never printing)."""
    if is_secret(value):
        return unwrap(value.get("value"))
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [unwrap(v) for v in value]
    return value


@dataclass(frozen=True)
class PreviewResource:
    """One resource registration as the engine would receive it."""

    type: str  # type token, e.g. openstack:networking/secGroupRule:SecGroupRule
    name: str  # logical name (unique in the stack)
    inputs: dict[str, Any]  # camelCase wire names; secrets still wrapped in Pulumi's signature dict
    parent: str | None  # parent's logical name; None for children of the stack
    depends_on: tuple[str, ...]  # names of every resource this one waits for (explicit and through inputs)
    protect: bool
    additional_secret_outputs: tuple[str, ...] = ()  # what the real policy pack sees as secret


@dataclass(frozen=True)
class PreviewGraph:
    stack: str
    resources: list[PreviewResource]
    outputs: dict[str, Any] = field(default_factory=dict, repr=False)  # stack outputs; secrets wrapped
    notes: tuple[str, ...] = ()  # what the preview supplied in place of real config (placeholders)

    def get(self, name: str) -> PreviewResource:
        for r in self.resources:
            if r.name == name:
                return r
        raise KeyError(name)

    def of_type(self, type_token: str) -> list[PreviewResource]:
        return [r for r in self.resources if r.type == type_token]

    def children(self, name: str) -> list[PreviewResource]:
        return [r for r in self.resources if r.parent == name]

    def to_json(self, redact: bool = True) -> dict[str, Any]:
        """``{"stack", "resources": [{"type","name","inputs","parent","depends_on"}]}``."""
        clean = globals()["redact"] if redact else (lambda v: v)
        return {
            "stack": self.stack,
            "resources": [
                {
                    "type": r.type,
                    "name": r.name,
                    "inputs": clean(r.inputs),
                    "parent": r.parent,
                    "depends_on": list(r.depends_on),
                }
                for r in self.resources
            ],
        }


def _mock_classes():
    """Built lazily: importing pulumi costs ~1 s, and most drctl commands never need it."""
    import pulumi
    from pulumi.runtime.mocks import MockMonitor

    class OfflineMocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
            outputs = dict(args.inputs)
            outputs.setdefault("name", args.name)
            if args.typ == "openstack:vpnaas/service:Service":
                outputs["externalV4Ip"] = PREVIEW_VPN_ADDRESS
            return f"{args.name}-id", outputs

        def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list | None]:
            if args.token == "openstack:networking/getNetwork:getNetwork":
                name = args.args.get("name", "external")
                return {"id": f"ext-{name}-id", "name": name, "external": True}, []
            return {}, []

    class RecordingMonitor(MockMonitor):
        """Records what ``MockResourceArgs`` leaves out: parent, dependencies, protect."""

        def __init__(self, mocks: OfflineMocks) -> None:
            super().__init__(mocks)
            self.records: list[PreviewResource] = []
            self._names: dict[str, str] = {}  # urn -> logical name

        def RegisterResource(self, request):
            from pulumi.runtime import rpc
            from pulumi.runtime.sync_await import _ensure_event_loop

            response = super().RegisterResource(request)
            if request.type == "pulumi:pulumi:Stack":
                return response
            _ensure_event_loop()
            inputs = rpc.deserialize_properties(request.object, keep_unknowns=True)
            deps: list[str] = []
            for urn in [
                *request.dependencies,
                *(u for pd in request.propertyDependencies.values() for u in pd.urns),
            ]:
                name = self._names.get(urn)
                if name and name not in deps:
                    deps.append(name)
            self._names[response.urn] = request.name
            self.records.append(
                PreviewResource(
                    type=request.type,
                    name=request.name,
                    inputs=_plain(inputs),
                    parent=self._names.get(request.parent),
                    depends_on=tuple(sorted(deps)),
                    protect=bool(request.protect),
                    additional_secret_outputs=tuple(request.additionalSecretOutputs),
                )
            )
            return response

    return OfflineMocks, RecordingMonitor


def _plain(value: Any) -> Any:
    """Inputs as JSON-able data (protobuf structs come back as dicts and lists already)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def program_config(
    cfg: StackConfig, *, failover: bool | None, servers: Sequence[str] | None
) -> tuple[dict[str, str], list[str], list[str]]:
    """The ``<project>:<key>`` strings the CLI would hand the program, with the preview's overrides.

    Returns (config, secret keys, notes)."""
    values = copy.deepcopy(dict(cfg.values))
    notes: list[str] = []
    effective_failover = cfg.failover if failover is None else failover
    values["failover"] = effective_failover
    activation = dict(values.get("activation") or {})
    if servers is not None:
        activation["servers"] = list(servers)
    if effective_failover:
        images = dict(activation.get("images") or {})
        wanted = activation.get("servers") or None
        scope = (
            [s.name for s in cfg.plan.servers if s.name in set(wanted)]
            if wanted
            else list(cfg.plan.default_scope())
        )
        missing = [s for s in scope if s not in images]
        for name in missing:
            images[name] = f"preview-image-{name}"
        if missing:
            notes.append(
                "no restore image recorded for "
                + ", ".join(missing)
                + "; the preview uses placeholder ids preview-image-<server> "
                "(a real `pulumi up` stops until activation.images names them)"
            )
        activation["images"] = images
        data_images = {k: dict(v) for k, v in (activation.get("data_images") or {}).items()}
        placeholders = []
        for name in scope:
            recorded = data_images.setdefault(name, {})
            for disk in cfg.plan.server(name).data_disks:
                if disk.name not in recorded:
                    recorded[disk.name] = f"preview-image-{name}-{disk.name}"
                    placeholders.append(f"{name}/{disk.name}")
        if placeholders:
            notes.append(
                "no restore image recorded for data disk(s) "
                + ", ".join(placeholders)
                + "; the preview uses placeholder ids preview-image-<server>-<disk>"
            )
        activation["data_images"] = {k: v for k, v in data_images.items() if v}
        if not activation.get("restore_point"):
            activation["restore_point"] = PREVIEW_RESTORE_POINT
            notes.append(f"no activation.restore_point recorded; the preview uses {PREVIEW_RESTORE_POINT!r}")
    values["activation"] = activation
    config = {}
    for key, value in values.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = value
        else:
            text = json.dumps(value)
        config[f"{PROJECT}:{key}"] = text
    return config, [f"{PROJECT}:{k}" for k in sorted(cfg.secret_keys)], notes


def _run_program(
    stack: str, program: Path, config: dict[str, str], secret_keys: list[str]
) -> tuple[list[PreviewResource], dict[str, Any]]:
    import pulumi
    from pulumi.runtime.settings import SETTINGS
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    mocks_cls, monitor_cls = _mock_classes()
    mocks = mocks_cls()
    monitor = monitor_cls(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=True, monitor=monitor)
    pulumi.runtime.set_all_config(config, secret_keys)
    SETTINGS.rpc_manager.clear()
    SETTINGS.outputs.clear()

    def run_program() -> None:
        runpy.run_path(str(program), run_name="__main__")

    _sync_await(run_pulumi_func(run_program))

    async def resolve_outputs() -> dict[str, Any]:
        root = pulumi.runtime.get_root_resource()
        out: dict[str, Any] = {}
        for key, value in (getattr(root, "outputs", None) or {}).items():
            o = pulumi.Output.from_input(value)
            v = await o.future()
            out[key] = {SECRET_SIG_KEY: SECRET_SIG_VALUE, "value": v} if await o.is_secret() else v
        return out

    outputs = _sync_await(resolve_outputs())
    return monitor.records, outputs


def preview_stack(
    stack: str,
    *,
    failover: bool | None = None,
    servers: Sequence[str] | None = None,
    project_dir: Path | None = None,
    cfg: StackConfig | None = None,
) -> PreviewGraph:
    """Run ``stacks/__main__.py`` offline for ``stack`` and return the resource graph.

    ``failover`` and ``servers`` override the stack file's ``failover`` and ``activation.servers``.
    ``cfg`` is the stack already loaded by the caller (its secrets opened once, not twice).
    Errors of the stack file, the plan or the program's config checks propagate as the
    :class:`drctl.errors.DrctlError` the program raised."""
    project_dir = project_dir or paths.project_dir()
    reuse = cfg is not None and cfg.stack == stack and cfg.project_dir == project_dir
    cfg = cfg if cfg is not None and reuse else load_stack(stack, project_dir)
    config, secret_keys, notes = program_config(cfg, failover=failover, servers=servers)
    # Each run in an empty context: the SDK keeps its settings, config and root stack in context
    # variables, so previews never see each other's resources.
    records, outputs = contextvars.Context().run(
        _run_program, stack, project_dir / PROGRAM, config, secret_keys
    )
    for note in notes:
        log.info("preview %s: %s", stack, note)
    # Registration order depends on when each Output resolves: sort by name for stable snapshots.
    resources = sorted(records, key=lambda r: r.name)
    return PreviewGraph(stack=stack, resources=resources, outputs=outputs, notes=tuple(notes))
