"""A client's stack configuration: ``stacks/Pulumi.<stack>.yaml`` read the way the Pulumi CLI reads it.

Two layers, so the Pulumi program and ``drctl`` read the same model:

- :func:`drctl.stack.settings.parse_settings` turns the config values (key without the project
  prefix -> value) into typed :class:`~drctl.stack.settings.StackSettings`. The Pulumi program
  calls it with what ``pulumi.Config`` returns.
- :func:`load_stack` (this module) reads a stack file offline (project defaults from
  ``Pulumi.yaml``, ``secure:`` values opened with the passphrase, see :mod:`drctl.stack.secrets`),
  parses its settings and loads the client's plan: this is what ``drctl preview`` and ``drctl nca
  render`` use. :func:`set_secret` writes a secret the way ``pulumi config set --secret`` does.

Passphrase lookup (same order as the Pulumi CLI, plus one documented shortcut): the environment
variable ``PULUMI_CONFIG_PASSPHRASE``, else the file named by ``PULUMI_CONFIG_PASSPHRASE_FILE``,
else -- only when neither is set -- ``stacks/<stack>.passphrase`` (shipped for the demo stacks only).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drctl import paths
from drctl.errors import InvalidInput
from drctl.input_files import InputFileError, is_missing, load_yaml_file, read_input_text
from drctl.paths import PROJECT, check_stack_name
from drctl.plan.load import load_plan, plan_from_text
from drctl.plan.model import Plan
from drctl.stack.secrets import StackCrypter, open_encryption_salt
from drctl.stack.settings import Activation, StackConfigInvalid, StackSettings, check_settings, parse_settings

STACKS_DIR = "stacks"


class StackNotFound(InvalidInput):
    """No stack file for this stack."""


def plan_path(project_dir: Path, plan: str, where: str) -> Path:
    """The stack's plan file: ``plan`` is relative to the project directory and stays inside it."""
    rel = Path(plan)
    if "\0" in plan or rel.is_absolute() or ".." in rel.parts:
        raise StackConfigInvalid(
            f"{where}: {PROJECT}:plan: {plan!r} must be a path inside the project directory "
            "relative to it, e.g. recovery_plans/<client>.yaml"
        )
    return (project_dir / rel).resolve()


# Plans already loaded in this process, by file name and content: `drctl preview` / `drctl policy`
# load the stack's plan, then the Pulumi program they run in-process loads it again (a 200-server
# plan costs ~0.7 s of YAML and schema checks each time). Plans are frozen, so sharing one is safe.
_PLANS: dict[tuple[str, bytes], Plan] = {}
_PLANS_MAX = 8


def load_plan_file(path: Path) -> Plan:
    """The plan through ``drctl.plan.load``: schema and semantic checks, every problem reported.

    The file is always read (bounded, as every plan); the same text already checked in this
    process is not parsed and checked again. A plan with problems is never kept."""
    file = str(path) or "''"
    try:
        text = read_input_text(path, what="plan")
    except InputFileError:
        return load_plan(path)  # raises PlanInvalid naming the file and what is wrong with it
    key = (file, hashlib.sha256(text.encode()).digest())
    plan = _PLANS.get(key)
    if plan is None:
        plan = plan_from_text(text, file)
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.pop(next(iter(_PLANS)))
        _PLANS[key] = plan
    return plan


# --- stack files -----------------------------------------------------------------------------------


def stack_file(stack: str, project_dir: Path | None = None) -> Path:
    """``stacks/Pulumi.<stack>.yaml``; raises :class:`~drctl.paths.InvalidStackName` for a name
    that could point anywhere else."""
    check_stack_name(stack)
    project_dir = project_dir or paths.project_dir()
    return project_dir / STACKS_DIR / f"Pulumi.{stack}.yaml"


def read_stack_document(path: Path) -> dict[str, Any]:
    try:
        doc = load_yaml_file(path, what="stack file")
    except InputFileError as e:
        if is_missing(e):
            raise StackNotFound(
                f"{path}: no such stack file; onboard the client with `drctl client new` "
                f"(or check the stack name)"
            ) from e
        raise StackConfigInvalid(e.message) from e
    doc = doc if doc is not None else {}
    if not isinstance(doc, dict) or not isinstance(doc.get("config", {}), dict):
        raise StackConfigInvalid(f"{path}: expected a mapping with a `config:` section")
    return doc


def project_defaults(project_dir: Path | None = None) -> dict[str, Any]:
    """Defaults declared in ``Pulumi.yaml``'s ``config:`` (key -> default)."""
    project_dir = project_dir or paths.project_dir()
    path = project_dir / "Pulumi.yaml"
    try:
        doc = load_yaml_file(path, what="Pulumi project file")
    except InputFileError as e:
        raise StackConfigInvalid(
            f"{e.message} (the project directory {project_dir} must hold this project's Pulumi.yaml)"
        ) from e
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        raise StackConfigInvalid(f"{path}: expected a mapping with a `config:` section")
    out: dict[str, Any] = {}
    for key, decl in config.items():
        if isinstance(decl, dict) and ("default" in decl or "value" in decl):
            out[key] = decl.get("default", decl.get("value"))
        elif not isinstance(decl, dict):
            out[key] = decl
    return out


def read_passphrase(stack: str, project_dir: Path | None = None) -> str:
    """The stack's passphrase: the Pulumi CLI's variables, else ``stacks/<stack>.passphrase``."""
    check_stack_name(stack)
    project_dir = project_dir or paths.project_dir()
    if "PULUMI_CONFIG_PASSPHRASE" in os.environ:
        return os.environ["PULUMI_CONFIG_PASSPHRASE"]
    file_var = os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    local = project_dir / STACKS_DIR / f"{stack}.passphrase"
    path = Path(file_var) if file_var else local
    if not file_var and not local.exists():
        raise StackConfigInvalid(
            f"stack {stack}: no passphrase; set PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE"
        )
    try:  # a regular file only: a FIFO or a device would block or never end
        return read_input_text(path, what="passphrase file", max_bytes=64 * 1024).strip()
    except InputFileError as e:
        raise StackConfigInvalid(e.message) from e


def open_stack_secrets(
    stack: str, doc: Mapping[str, Any], path: Path, project_dir: Path | None = None
) -> StackCrypter:
    project_dir = project_dir or paths.project_dir()
    salt = doc.get("encryptionsalt")
    if salt and not isinstance(salt, str):
        raise StackConfigInvalid(
            f"{path}: encryptionsalt is not a Pulumi passphrase state (v1:...); restore it from "
            "version control or set the secrets again with `drctl stack set-secret`"
        )
    if not salt:
        raise StackConfigInvalid(
            f"{path}: holds secure values but no encryptionsalt; "
            "set the secrets again with `drctl stack set-secret`"
        )
    return open_encryption_salt(read_passphrase(stack, project_dir), salt, where=str(path))


def _has_secure(value: Any) -> bool:
    if isinstance(value, dict):
        return set(value) == {"secure"} or any(_has_secure(x) for x in value.values())
    if isinstance(value, list):
        return any(_has_secure(x) for x in value)
    return False


def _reveal(value: Any, crypter: StackCrypter, where: str) -> Any:
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return crypter.decrypt(str(value["secure"]), where=where)
        return {k: _reveal(x, crypter, f"{where}.{k}") for k, x in value.items()}
    if isinstance(value, list):
        return [_reveal(x, crypter, f"{where}[{i}]") for i, x in enumerate(value)]
    return value


@dataclass(frozen=True)
class StackConfig:
    """A stack as ``drctl`` sees it: settings, plan, and the opened secrets (never printed)."""

    stack: str
    path: Path
    project_dir: Path
    settings: StackSettings
    plan: Plan
    values: Mapping[str, Any] = field(repr=False)  # every config value, secrets in clear
    secret_keys: frozenset[str] = frozenset()
    psks: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def failover(self) -> bool:
        return self.settings.failover

    @property
    def activation(self) -> Activation:
        return self.settings.activation

    def scope(self) -> tuple[str, ...]:
        return self.settings.scope(self.plan)

    def psk(self, site: str) -> str:
        try:
            return self.psks[site]
        except KeyError:
            raise StackConfigInvalid(
                f"{self.path}: {PROJECT}:vpn_psks has no key for site {site}; "
                f"set one with `drctl stack set-secret {self.stack} vpn_psks.{site}`"
            ) from None


def load_stack(stack: str, project_dir: Path | None = None) -> StackConfig:
    """Read ``stacks/Pulumi.<stack>.yaml`` (with the project defaults), open its secrets and load
    its plan. Raises :class:`StackConfigInvalid` / ``WrongPassphrase`` naming the stack file."""
    project_dir = project_dir or paths.project_dir()
    path = stack_file(stack, project_dir)
    doc = read_stack_document(path)
    values: dict[str, Any] = dict(project_defaults(project_dir))
    secret_keys: set[str] = set()
    crypter: StackCrypter | None = None
    prefix = f"{PROJECT}:"
    for full_key, raw in (doc.get("config") or {}).items():
        if not str(full_key).startswith(prefix):
            continue  # provider keys such as openstack:insecure are the CLI's business
        key = str(full_key)[len(prefix) :]
        if _has_secure(raw):
            crypter = crypter or open_stack_secrets(stack, doc, path, project_dir)
            raw = _reveal(raw, crypter, f"{path}: {full_key}")
            secret_keys.add(key)
        values[key] = raw
    where = str(path)
    settings = parse_settings(values, where=where)
    plan = load_plan_file(plan_path(project_dir, settings.plan, where))
    check_settings(settings, plan, where=where)
    psks_raw = values.get("vpn_psks") or {}
    if psks_raw and "vpn_psks" not in secret_keys:
        raise StackConfigInvalid(
            f"{where}: {PROJECT}:vpn_psks must hold secrets (`secure:` values); "
            f"set them with `drctl stack set-secret {stack} vpn_psks.<site>`"
        )
    if not isinstance(psks_raw, dict):
        raise StackConfigInvalid(f"{where}: {PROJECT}:vpn_psks: expected site: psk pairs")
    return StackConfig(
        stack=stack,
        path=path,
        project_dir=project_dir,
        settings=settings,
        plan=plan,
        values=values,
        secret_keys=frozenset(secret_keys),
        psks={str(k): str(x) for k, x in psks_raw.items()},
    )


# --- writing secrets (what `pulumi config set --secret [--path]` does) ------------------------------


def _split_key(key: str) -> tuple[str, list[str]]:
    """``vpn_psks.paris`` or ``flexible-recovery:vpn_psks.paris`` -> (full top key, nested path)."""
    bare = key[len(PROJECT) + 1 :] if key.startswith(f"{PROJECT}:") else key
    if ":" in bare or not bare:
        raise StackConfigInvalid(f"config key {key!r}: only keys of project {PROJECT} can be set here")
    parts = bare.split(".")
    if any(not p for p in parts):
        raise StackConfigInvalid(f"config key {key!r}: empty path element")
    return f"{PROJECT}:{parts[0]}", parts[1:]


@contextmanager
def _edited_stack_document(path: Path) -> Iterator[Any]:
    """The stack file as an editable mapping, written back when the block ends: round-trip YAML
    (ruamel.yaml, as ``pulumi config set`` edits the file), so every comment, key order and quoting
    the operator wrote stays as it was; atomic (temp file + rename), the file's mode kept."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    read_stack_document(path)  # the same errors as every reader for a missing or invalid file
    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 1 << 16  # never fold a line the operator wrote on one line
    try:
        doc = rt.load(path.read_text())
    except YAMLError as e:  # pragma: no cover - read_stack_document parsed it already
        raise StackConfigInvalid(f"{path}: {e}") from e
    if doc.get("config") is None:
        doc["config"] = {}
    yield doc
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        rt.dump(doc, f)
    os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
    tmp.replace(path)


def set_secret(stack: str, key: str, value: str, project_dir: Path | None = None) -> Path:
    """Encrypt ``value`` into the stack file under ``key`` (dotted path allowed), creating the
    stack's ``encryptionsalt`` if it has none. Returns the stack file's path."""
    project_dir = project_dir or paths.project_dir()
    if not value:
        raise StackConfigInvalid(f"stack {stack}: refusing to store an empty secret for {key}")
    path = stack_file(stack, project_dir)
    top, nested = _split_key(key)
    with _edited_stack_document(path) as doc:
        passphrase = read_passphrase(stack, project_dir)
        if doc.get("encryptionsalt"):
            crypter = open_encryption_salt(passphrase, doc["encryptionsalt"], where=str(path))
        else:
            from drctl.stack.secrets import new_encryption_salt

            crypter = new_encryption_salt(passphrase)
            doc.insert(0, "encryptionsalt", crypter.encryption_salt)  # first, where Pulumi puts it
        config = doc["config"]
        secure = {"secure": crypter.encrypt(value)}
        if not nested:
            config[top] = secure
        else:
            node = config.setdefault(top, {})
            for part in nested[:-1]:
                if not isinstance(node, dict):
                    raise StackConfigInvalid(f"{path}: {top}: cannot set {key} inside a non-object value")
                node = node.setdefault(part, {})
            if not isinstance(node, dict) or set(node) == {"secure"}:
                raise StackConfigInvalid(f"{path}: {top}: cannot set {key} inside a non-object value")
            node[nested[-1]] = secure
    return path


def set_value(stack: str, key: str, value: str, project_dir: Path | None = None) -> Path:
    """Write a plain (non-secret) ``value`` into the stack file under ``key`` (dotted path allowed),
    the way ``pulumi config set --path`` does. Refuses a key that holds a secret. Returns the path."""
    project_dir = project_dir or paths.project_dir()
    path = stack_file(stack, project_dir)
    top, nested = _split_key(key)
    with _edited_stack_document(path) as doc:
        config = doc["config"]
        if not nested:
            if _has_secure(config.get(top)):
                raise StackConfigInvalid(
                    f"{path}: {top} holds a secret; it is not overwritten with a plain value"
                )
            config[top] = value
        else:
            node = config.setdefault(top, {})
            for part in nested[:-1]:
                if not isinstance(node, dict) or set(node) == {"secure"}:
                    raise StackConfigInvalid(f"{path}: {top}: cannot set {key} inside a non-object value")
                node = node.setdefault(part, {})
            if not isinstance(node, dict) or set(node) == {"secure"} or _has_secure(node.get(nested[-1])):
                raise StackConfigInvalid(
                    f"{path}: {top}: cannot set {key} inside a non-object or secret value"
                )
            node[nested[-1]] = value
    return path
