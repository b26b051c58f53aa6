"""A stack's settings, typed: what ``Pulumi.yaml`` declares and a stack file or ``pulumi.Config`` holds.

:func:`parse_settings` turns config values (key without the ``flexible-recovery:`` prefix -> value)
into a :class:`StackSettings`; the Pulumi program calls it with what ``pulumi.Config`` returns and
:func:`drctl.stack.config.load_stack` with what it read from the stack file, so both see the same
model. :func:`check_settings` is the cross-check between a stack and its plan (scope, flavors).
Pure: no file, no secret, no engine.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from drctl.errors import InvalidInput
from drctl.paths import PROJECT
from drctl.plan.model import Plan, Server

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
    "quotas": "object",
    "vault": "string",
    "prices": "object",
}
VAULT_KINDS = ("swift", "s3")
SECRET_SETTINGS = frozenset({"vpn_psks"})


class StackConfigInvalid(InvalidInput):
    """The stack configuration is invalid."""


# Neutron's default per-project quotas (neutron.conf [quotas] quota_<name>; "Manage Networking
# service quotas" in the Neutron admin guide). The policy pack keeps the same table for a run
# without config (policies/dr_rules.py NEUTRON_DEFAULT_QUOTAS; a test keeps both in step).
NEUTRON_DEFAULT_QUOTAS: dict[str, int] = {
    "network": 100,
    "subnet": 100,
    "port": 500,
    "router": 10,
    "floatingip": 50,
    "security_group": 10,
    "security_group_rule": 100,
    "rbac_policy": 10,
}


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
    # The recovery project's network quotas: Neutron's defaults, with the stack's ``quotas`` over them.
    quotas: Mapping[str, int] = field(default_factory=lambda: dict(NEUTRON_DEFAULT_QUOTAS))
    vault: str = "swift"  # swift: Swift containers; s3: S3 buckets with Object Lock (S3-only clouds)
    prices: Mapping[str, Any] = field(default_factory=dict)  # the cost table (drctl.stack.cost)

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


def parse_quotas(value: Any, where: str) -> dict[str, int]:
    """Neutron's defaults with the stack's ``quotas`` block over them (-1: unlimited, as in Neutron)."""
    if value in (None, ""):
        value = {}
    if not isinstance(value, dict):
        raise StackConfigInvalid(
            f"{where}: {PROJECT}:quotas: expected an object {{security_group: 10, security_group_rule: "
            "100, ...}} holding the recovery project's network quotas (`openstack quota show`)"
        )
    quotas = dict(NEUTRON_DEFAULT_QUOTAS)
    for key, limit in value.items():
        if key not in NEUTRON_DEFAULT_QUOTAS:
            raise StackConfigInvalid(
                f"{where}: {PROJECT}:quotas.{key}: not a Neutron quota drctl checks; "
                f"use one of {', '.join(NEUTRON_DEFAULT_QUOTAS)}"
            )
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < -1:
            raise StackConfigInvalid(
                f"{where}: {PROJECT}:quotas.{key}: expected a whole number of at least 0 "
                f"(or -1 for unlimited), got {limit!r}; copy it from `openstack quota show`"
            )
        quotas[str(key)] = limit
    return quotas


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
    vault = v.get("vault") or "swift"
    if vault not in VAULT_KINDS:
        raise StackConfigInvalid(
            f"{where}: {PROJECT}:vault: {vault!r} is not a vault kind; use swift (Swift containers) "
            "or s3 (S3 buckets with versioning and Object Lock, for S3-only clouds)"
        )
    prices = v.get("prices") or {}
    if not isinstance(prices, dict):
        raise StackConfigInvalid(
            f"{where}: {PROJECT}:prices: expected a price table (see the prices of stacks/Pulumi.demo.yaml)"
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
        quotas=parse_quotas(v.get("quotas"), where),
        vault=vault,
        prices=prices,
    )


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
