"""A client's stack configuration: ``stacks/Pulumi.<stack>.yaml`` read the way the Pulumi CLI reads it.

Two layers, so the Pulumi program and ``drctl`` read the same model:

- :func:`parse_settings` turns the config values (key without the project prefix -> value) into a
  typed :class:`StackSettings`. The Pulumi program calls it with what ``pulumi.Config`` returns.
- :func:`load_stack` reads a stack file offline (project defaults from ``Pulumi.yaml``, ``secure:``
  values opened with the passphrase, see :mod:`drctl.stack.secrets`) and loads the client's plan:
  this is what ``drctl preview`` and ``drctl nca render`` use.

Passphrase lookup (same order as the Pulumi CLI, plus one documented shortcut): the environment
variable ``PULUMI_CONFIG_PASSPHRASE``, else the file named by ``PULUMI_CONFIG_PASSPHRASE_FILE``,
else -- only when neither is set -- ``stacks/<stack>.passphrase`` (shipped for the demo stacks only).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drctl import paths
from drctl.errors import InvalidInput
from drctl.input_files import InputFileError, is_missing, load_yaml_file, read_input_text
from drctl.paths import PROJECT, check_stack_name
from drctl.plan.model import Plan, Server
from drctl.stack.secrets import StackCrypter, open_encryption_salt

STACKS_DIR = "stacks"

# The typed keys of Pulumi.yaml's ``config:`` (a test keeps both in step). "object" keys carry no
# type in Pulumi.yaml: the project file format only types string/integer/boolean/array.
SETTING_TYPES: dict[str, str] = {
    "plan": "string",
    "region": "string",
    "external_network": "string",
    "flavor_map": "object",
    "failover": "boolean",
    "activation": "object",
    "vpn_psks": "object",
    "admin_ssh_public_key": "string",
    "boot_volume_type": "string",
    "backup_repository": "string",
    "report_location": "string",
}
SECRET_SETTINGS = frozenset({"vpn_psks"})


class StackConfigInvalid(InvalidInput):
    """The stack configuration is invalid."""


class StackNotFound(InvalidInput):
    """No stack file for this stack."""


@dataclass(frozen=True)
class Flavor:
    """One entry of ``flavor_map``: a cloud flavor and its size."""

    name: str
    vcpus: int
    ram_mb: int


@dataclass(frozen=True)
class Activation:
    """The ``activation`` block: which servers a failover restores, from which images."""

    servers: tuple[str, ...] | None = None  # None: the plan's default scope (dr + backup-tested)
    images: Mapping[str, str] = field(default_factory=dict)  # server -> image of its boot disk
    data_images: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # server -> disk -> image
    restore_point: str = ""


@dataclass(frozen=True)
class StackSettings:
    """Every non-secret setting of a stack, typed."""

    plan: str
    region: str = "RegionOne"
    external_network: str = "public"
    flavors: tuple[Flavor, ...] = ()
    failover: bool = False
    activation: Activation = field(default_factory=Activation)
    admin_ssh_public_key: str = ""
    boot_volume_type: str = ""
    backup_repository: str = ""  # empty: s3://<client>-backups/repo (the BackupVault's container)
    report_location: str = ""  # empty: s3://<client>-reports (the BackupVault's report container)

    def repository_url(self, plan: Plan) -> str:
        """Where the client's encrypted backups are: the vault's backup container by default."""
        return self.backup_repository or f"s3://{plan.client.id}-backups/repo"

    def reports_url(self, plan: Plan) -> str:
        return self.report_location or f"s3://{plan.client.id}-reports"

    def scope(self, plan: Plan) -> tuple[str, ...]:
        """The servers a failover restores, in plan order."""
        wanted = self.activation.servers
        if wanted is None:
            return plan.default_scope()
        return tuple(s.name for s in plan.servers if s.name in set(wanted))


def choose_flavor(server: Server, flavors: Sequence[Flavor]) -> Flavor:
    """The smallest flavor (RAM first, then vCPUs) that fits the server's plan flavor."""
    fitting = [f for f in flavors if f.vcpus >= server.vcpus and f.ram_mb >= server.ram_mb]
    if not fitting:
        raise StackConfigInvalid(
            f"flavor_map: no flavor fits server {server.name} ({server.vcpus} vCPU, {server.ram_mb} MB); "
            "add a flavor at least that large to the stack's flavor_map"
        )
    return min(fitting, key=lambda f: (f.ram_mb, f.vcpus, f.name))


def _decode(key: str, kind: str, value: Any, where: str) -> Any:
    """Pulumi hands config to programs as strings (objects JSON-encoded); files hold YAML values."""
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        raise StackConfigInvalid(f"{where}: {PROJECT}:{key}: expected true or false, got {value!r}")
    if kind == "object" and isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as e:
            raise StackConfigInvalid(f"{where}: {PROJECT}:{key}: not a valid object ({e})") from e
        except RecursionError:
            raise StackConfigInvalid(
                f"{where}: {PROJECT}:{key}: a JSON value nested too deeply; write it as plain YAML"
            ) from None
    if kind == "string" and not isinstance(value, str):
        raise StackConfigInvalid(f"{where}: {PROJECT}:{key}: expected a string, got {value!r}")
    return value


def parse_settings(values: Mapping[str, Any], *, where: str = "stack config") -> StackSettings:
    """Typed settings from config values (keys without the ``flexible-recovery:`` prefix).

    Missing optional keys take the defaults of ``Pulumi.yaml``; ``where`` names the source in errors."""
    v = {
        k: _decode(k, SETTING_TYPES[k], x, where)
        for k, x in values.items()
        if k in SETTING_TYPES and x is not None
    }
    if not v.get("plan"):
        raise StackConfigInvalid(
            f"{where}: {PROJECT}:plan is required (the client's recovery plan, "
            "e.g. recovery_plans/<client>.yaml)"
        )
    flavors = []
    flavor_map = v.get("flavor_map") or []
    if not isinstance(flavor_map, list):
        raise StackConfigInvalid(
            f"{where}: {PROJECT}:flavor_map: expected a list of {{name, vcpus, ram_mb}} "
            "(see stacks/Pulumi.demo.yaml)"
        )
    for i, f in enumerate(flavor_map):
        try:
            flavors.append(Flavor(name=str(f["name"]), vcpus=int(f["vcpus"]), ram_mb=int(f["ram_mb"])))
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise StackConfigInvalid(
                f"{where}: {PROJECT}:flavor_map[{i}]: each entry needs name, vcpus and ram_mb"
            ) from e
    act = v.get("activation") or {}
    if not isinstance(act, dict):
        raise StackConfigInvalid(
            f"{where}: {PROJECT}:activation: expected an object "
            "{servers: [...], images: {server: image id}, restore_point: ...}"
        )
    servers = act.get("servers")
    images = act.get("images") or {}
    if servers is not None and not (isinstance(servers, list) and all(isinstance(s, str) for s in servers)):
        raise StackConfigInvalid(f"{where}: {PROJECT}:activation.servers: expected a list of server names")
    if not isinstance(images, dict):
        raise StackConfigInvalid(f"{where}: {PROJECT}:activation.images: expected server: image id pairs")
    data_images = act.get("data_images") or {}
    if not (isinstance(data_images, dict) and all(isinstance(d, dict) for d in data_images.values())):
        raise StackConfigInvalid(
            f"{where}: {PROJECT}:activation.data_images: expected "
            "{server: {disk: image id}} (the images of the servers' non-boot disks)"
        )
    activation = Activation(
        # An empty list means "not chosen": the default scope, like an absent one.
        servers=tuple(servers) if servers else None,
        images={str(k): str(x) for k, x in images.items()},
        data_images={str(k): {str(d): str(i) for d, i in v.items()} for k, v in data_images.items()},
        restore_point=str(act.get("restore_point") or ""),
    )
    return StackSettings(
        plan=v["plan"],
        region=v.get("region") or "RegionOne",
        external_network=v.get("external_network") or "public",
        flavors=tuple(flavors),
        failover=bool(v.get("failover", False)),
        activation=activation,
        admin_ssh_public_key=v.get("admin_ssh_public_key") or "",
        boot_volume_type=v.get("boot_volume_type") or "",
        backup_repository=v.get("backup_repository") or "",
        report_location=v.get("report_location") or "",
    )


def plan_path(project_dir: Path, plan: str, where: str) -> Path:
    """The stack's plan file: ``plan`` is relative to the project directory and stays inside it."""
    rel = Path(plan)
    if "\0" in plan or rel.is_absolute() or ".." in rel.parts:
        raise StackConfigInvalid(
            f"{where}: {PROJECT}:plan: {plan!r} must be a path inside the project directory "
            "relative to it, e.g. recovery_plans/<client>.yaml"
        )
    return (project_dir / rel).resolve()


def check_settings(settings: StackSettings, plan: Plan, *, where: str) -> None:
    """Cross-checks between a stack and its plan that do not need the engine."""
    names = {s.name for s in plan.servers}
    unknown = [s for s in (settings.activation.servers or ()) if s not in names]
    if unknown:
        raise StackConfigInvalid(
            f"{where}: {PROJECT}:activation.servers: unknown server(s) "
            f"{', '.join(unknown)}; the plan has {', '.join(sorted(names))}"
        )
    for name in settings.scope(plan):
        choose_flavor(plan.server(name), settings.flavors)


def load_plan_file(path: Path) -> Plan:
    """The plan through ``drctl.plan.load`` (schema + semantic checks) when it is available."""
    try:
        from drctl.plan.load import load_plan
    except ImportError:  # plan checks not landed yet: build the model without them
        from drctl.plan.model import plan_from_dict

        try:
            return plan_from_dict(yaml.safe_load(path.read_text()))
        except OSError as e:
            raise StackConfigInvalid(f"{path}: cannot read the plan ({e.strerror})") from e
    return load_plan(path)


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
            raise StackNotFound(f"{path}: no such stack file; create it from stacks/Pulumi.demo.yaml") from e
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


def _dump_stack_document(path: Path, doc: dict[str, Any]) -> None:
    """Rewrite the stack file, keeping its leading comment block; atomic (temp file + rename)."""
    header = []
    if path.exists():
        for line in path.read_text().splitlines():
            if not line.startswith("#"):
                break
            header.append(line)
    ordered = {k: doc[k] for k in ("secretsprovider", "encryptedkey", "encryptionsalt") if k in doc}
    ordered.update({k: v for k, v in doc.items() if k not in ordered})
    body = yaml.safe_dump(ordered, sort_keys=False, default_flow_style=False, width=100)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(("\n".join(header) + "\n" if header else "") + body)
    tmp.replace(path)


def set_secret(stack: str, key: str, value: str, project_dir: Path | None = None) -> Path:
    """Encrypt ``value`` into the stack file under ``key`` (dotted path allowed), creating the
    stack's ``encryptionsalt`` if it has none. Returns the stack file's path."""
    project_dir = project_dir or paths.project_dir()
    if not value:
        raise StackConfigInvalid(f"stack {stack}: refusing to store an empty secret for {key}")
    path = stack_file(stack, project_dir)
    doc = read_stack_document(path)
    passphrase = read_passphrase(stack, project_dir)
    if doc.get("encryptionsalt"):
        crypter = open_encryption_salt(passphrase, doc["encryptionsalt"], where=str(path))
    else:
        from drctl.stack.secrets import new_encryption_salt

        crypter = new_encryption_salt(passphrase)
        doc["encryptionsalt"] = crypter.encryption_salt
    top, nested = _split_key(key)
    config = doc.setdefault("config", {})
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
    _dump_stack_document(path, doc)
    return path
