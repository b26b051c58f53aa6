"""What the console shows, read from the project: the client stacks (``stacks/Pulumi.<stack>.yaml``),
their plans, and the run store with its signed reports. Read-only.

A client is a stack: its URL name, and what ``drctl console user add --client`` takes. The stack is
read without its secrets (the console needs no passphrase). Plans and run lists are cached by the
files' modification times, so a page re-reads only what changed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from drctl import paths
from drctl.errors import DrctlError
from drctl.paths import PROJECT, check_stack_name
from drctl.plan.model import Plan, Server
from drctl.runs.model import RunSummary
from drctl.runs.signing import public_key_path
from drctl.runs.store import RunStore, StoredRun
from drctl.stack.settings import Flavor, StackConfigInvalid, StackSettings, choose_flavor, parse_settings

log = logging.getLogger(__name__)
STACKS_DIR = "stacks"  # drctl.stack.config's; that module (and the plan schema) load at the first page
T = TypeVar("T")


@dataclass(frozen=True)
class ClientInfo:
    """A client stack and its plan; ``error`` says why it could not be read (then plan is None)."""

    stack: str
    plan: Plan | None
    flavors: tuple[Flavor, ...] = ()
    error: str | None = None
    settings: StackSettings | None = None  # the stack's config, secrets left out

    @property
    def name(self) -> str:
        return self.plan.client.name if self.plan else self.stack

    def template(self, server: Server) -> str:
        """The flavor a failover gives the server, with its size (the service's "template")."""
        try:
            f = choose_flavor(server, self.flavors)
        except StackConfigInvalid:
            return f"no flavor fits ({server.vcpus} vCPU, {server.ram_mb} MB)"
        return f"{f.name} ({f.vcpus} vCPU, {f.ram_mb // 1024 if f.ram_mb >= 1024 else f.ram_mb} {'GB' if f.ram_mb >= 1024 else 'MB'})"


@dataclass(frozen=True)
class SignatureCheck:
    """A report's signature as checked on display: ``ok`` True (valid), False (tampered), None
    (not checked: no verification key)."""

    ok: bool | None
    text: str


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


class ProjectData:
    """The clients, plans and runs of one project and state directory, cached by mtime."""

    def __init__(self, project_dir: Path | None = None, state_dir: Path | None = None) -> None:
        self.project_dir = Path(project_dir) if project_dir is not None else paths.project_dir()
        self.store = RunStore(state_dir)
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[Any, Any]] = {}

    def _cached(self, kind: str, name: str, stamp: Any, load: Callable[[], T]) -> T:
        with self._lock:
            hit = self._cache.get((kind, name))
        if hit is not None and hit[0] == stamp:
            return hit[1]
        value = load()
        with self._lock:
            self._cache[(kind, name)] = (stamp, value)
        return value

    # -- clients -------------------------------------------------------------------------------

    def stacks(self) -> list[str]:
        """Every client stack of the project, by name."""
        d = self.project_dir / STACKS_DIR
        names = []
        for p in sorted(d.glob("Pulumi.*.yaml")) if d.is_dir() else []:
            name = p.name[len("Pulumi.") : -len(".yaml")]
            try:
                names.append(check_stack_name(name))
            except DrctlError:
                continue
        return names

    def client(self, stack: str) -> ClientInfo | None:
        """The client stack ``stack``, or None when the project has no such stack."""
        if stack not in self.stacks():
            return None
        path = self.project_dir / STACKS_DIR / f"Pulumi.{stack}.yaml"
        first = self._cached("stack", stack, _mtime(path), lambda: self._plan_file(stack, path))
        if isinstance(first, ClientInfo):
            return first
        plan_file = first
        stamp = (_mtime(path), _mtime(plan_file))
        return self._cached("client", stack, stamp, lambda: self._load_client(stack, path))

    def _plan_file(self, stack: str, path: Path) -> Path | ClientInfo:
        from drctl.stack.config import plan_path

        try:
            return plan_path(self.project_dir, self._settings(path).plan, str(path))
        except DrctlError as e:
            return ClientInfo(stack, None, error=e.message)

    def _settings(self, path: Path) -> StackSettings:
        from drctl.stack.config import project_defaults, read_stack_document

        doc = read_stack_document(path)
        values: dict[str, Any] = dict(project_defaults(self.project_dir))
        for full_key, raw in (doc.get("config") or {}).items():
            key = str(full_key).removeprefix(f"{PROJECT}:")
            if key == str(full_key) or _is_secret(raw):
                continue  # provider keys, and secrets the console never opens
            values[key] = raw
        return parse_settings(values, where=str(path))

    def _load_client(self, stack: str, path: Path) -> ClientInfo:
        from drctl.plan.load import load_plan
        from drctl.stack.config import plan_path

        try:
            settings = self._settings(path)
            plan = load_plan(plan_path(self.project_dir, settings.plan, str(path)))
        except DrctlError as e:
            log.warning("client %s cannot be read: %s", stack, e.message)
            return ClientInfo(stack, None, error=e.message)
        return ClientInfo(stack, plan, settings.flavors, settings=settings)

    # -- runs ------------------------------------------------------------------------------------

    def runs(self, stack: str) -> list[StoredRun]:
        """The stack's stored runs, newest first (a damaged one is left out and logged, the
        others still shown)."""
        d = self.store.runs_dir / stack

        def load() -> list[StoredRun]:
            try:
                runs, unreadable = self.store.read_runs(stack)
            except DrctlError as e:
                log.warning("runs of %s cannot be listed: %s", stack, e.message)
                return []
            for bad in unreadable:
                log.warning("run %s of %s left out: %s: %s", bad.run_id, stack, bad.summary_path, bad.problem)
            return list(reversed(runs))

        return self._cached("runs", stack, _mtime(d), load)

    def run(self, stack: str, run_id: str) -> StoredRun | None:
        """The run ``run_id`` of this stack only (exact id), or None."""
        return next((r for r in self.runs(stack) if r.summary.run_id == run_id), None)

    def signature(self, run: StoredRun) -> SignatureCheck:
        """The run's signature, checked now with the operator's verification key."""
        kp = self.store.key_path()
        if not (public_key_path(kp).exists() or kp.exists()):
            return SignatureCheck(None, f"not checked: no verification key at {public_key_path(kp)}")
        try:
            kid = self.store.verify(run.path)
        except DrctlError as e:
            return SignatureCheck(False, e.message)
        return SignatureCheck(True, f"signature valid (key {kid})")


def _is_secret(value: Any) -> bool:
    if isinstance(value, dict):
        return "secure" in value or any(_is_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_is_secret(v) for v in value)
    return False


def last_run_of_server(runs: list[StoredRun], server: str) -> tuple[RunSummary, str] | None:
    """The newest run that covered ``server``, and the server's status in it."""
    for r in runs:
        for s in r.summary.servers:
            if s.name == server:
                return r.summary, str(s.status)
    return None
