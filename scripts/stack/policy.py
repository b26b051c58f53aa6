"""Run the policy pack offline: the same rule objects the real pack serves, over the preview graph.

The Pulumi engine turns each resource into ``ResourceValidationArgs`` (secrets unwrapped, unknowns
behind a checking proxy, options such as ``protect``) and the whole stack into
``StackValidationArgs`` of linked ``PolicyResource`` objects. :func:`check_resources` builds the
same objects from :class:`drctl.stack.preview.PreviewResource` records and calls each policy's
``validate``, so a rule behaves alike under ``pulumi preview --policy-pack policies`` and under
``drctl policy``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import SPECIAL_SECRET_SIG, SPECIAL_SIG_KEY, deserialize_properties
from pulumi_policy.policy import _NotApplicableError
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from drctl.paths import PROJECT
from drctl.policies import dr_rules

log = logging.getLogger(__name__)

STACK_TYPE = "pulumi:pulumi:Stack"


class GraphResource(Protocol):
    """What the runner reads of a preview resource (``drctl.stack.preview.PreviewResource``)."""

    @property
    def type(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def inputs(self) -> Mapping[str, Any]: ...
    @property
    def parent(self) -> str | None: ...
    @property
    def depends_on(self) -> Sequence[str]: ...
    @property
    def protect(self) -> bool: ...


@dataclass(frozen=True)
class Violation:
    """One rule broken by one resource (or by the stack as a whole)."""

    policy: str
    level: str  # "mandatory" | "advisory"
    resource: str
    resource_type: str
    message: str

    def line(self) -> str:
        return f"{self.level.upper()} {self.policy}: {self.resource}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return {
            "policy": self.policy,
            "level": self.level,
            "resource": self.resource,
            "type": self.resource_type,
            "message": self.message,
        }


@dataclass(frozen=True)
class PolicyReport:
    """Every violation of one run, and the policies that declared themselves not applicable."""

    stack: str
    violations: tuple[Violation, ...]
    not_applicable: tuple[tuple[str, str], ...] = field(default=())
    config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def mandatory_failed(self) -> bool:
        return any(v.level == "mandatory" for v in self.violations)


def _is_secret(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get(SPECIAL_SIG_KEY) == SPECIAL_SECRET_SIG


def _urns(resources: Sequence[GraphResource], stack: str) -> dict[str, str]:
    """Resource name -> URN, with the parent type chain Pulumi puts in a URN."""
    by_name = {r.name: r for r in resources}
    urns: dict[str, str] = {}

    def chain(r: GraphResource, seen: frozenset[str]) -> str:
        parent = by_name.get(r.parent) if r.parent else None
        if parent is None or parent.name in seen:
            return r.type
        return f"{chain(parent, seen | {r.name})}${r.type}"

    for r in resources:
        urns[r.name] = f"urn:pulumi:{stack}::{PROJECT}::{chain(r, frozenset())}::{r.name}"
    return urns


def _options(r: GraphResource, parent_urn: str | None) -> PolicyResourceOptions:
    # The analyzer never sees secret markers in props; a secret shows in additional_secret_outputs.
    secret_keys = sorted(k for k, v in r.inputs.items() if _is_secret(v))
    declared = list(getattr(r, "additional_secret_outputs", None) or [])
    return PolicyResourceOptions(
        protect=bool(r.protect),
        ignore_changes=[],
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=sorted(set(secret_keys) | set(declared)),
        parent=parent_urn,
    )


def _props(r: GraphResource) -> Mapping[str, Any]:
    return unknown_checking_proxy(deserialize_properties(dict(r.inputs)))


def _run(
    policy: ResourceValidationPolicy | StackValidationPolicy, args: Any, report: ReportViolation
) -> None:
    result = policy.validate(args, report)
    if inspect.isawaitable(result):
        asyncio.run(_await(result))


async def _await(result: Any) -> None:
    await result


def check_resources(
    resources: Iterable[GraphResource],
    *,
    stack: str,
    config: Mapping[str, Mapping[str, Any]] | None = None,
    policies: Sequence[Policy] | None = None,
) -> PolicyReport:
    """Validate every resource and the whole graph against ``policies`` (default: the pack).

    ``config`` maps a policy name to its configuration, as ``--policy-pack-config`` would.
    """
    resources = list(resources)
    policies = list(policies if policies is not None else dr_rules.all_policies())
    config = config or {}
    urns = _urns(resources, stack)
    names = {urn: name for name, urn in urns.items()}
    types = {r.name: r.type for r in resources}

    policy_resources: dict[str, PolicyResource] = {}
    for r in resources:
        parent_urn = urns.get(r.parent) if r.parent else None
        policy_resources[r.name] = PolicyResource(
            r.type, _props(r), urns[r.name], r.name, _options(r, parent_urn), None, None, [], {}
        )
    for r in resources:
        pr = policy_resources[r.name]
        pr.parent = policy_resources.get(r.parent) if r.parent else None
        pr.dependencies = [policy_resources[d] for d in r.depends_on if d in policy_resources]
        prop_deps = getattr(r, "property_dependencies", None) or {}
        pr.property_dependencies = {
            k: [policy_resources[d] for d in v if d in policy_resources] for k, v in prop_deps.items()
        }

    violations: list[Violation] = []
    not_applicable: list[tuple[str, str]] = []
    for policy in policies:
        level = policy.enforcement_level or EnforcementLevel.ADVISORY
        configured = config.get(policy.name, {}).get("enforcementLevel")
        if configured:  # as the engine does with --policy-pack-config
            level = EnforcementLevel(configured)
        if level == EnforcementLevel.DISABLED:
            continue
        level_name = (
            "mandatory" if level in (EnforcementLevel.MANDATORY, EnforcementLevel.REMEDIATE) else "advisory"
        )
        policy_config = dict(config.get(policy.name, {}))

        def collect(resource: str, message: str, policy: Any = policy, level_name: str = level_name) -> None:
            violations.append(
                Violation(policy.name, level_name, resource, types.get(resource, STACK_TYPE), message)
            )

        def unknown(resource: str, e: UnknownValueError, policy: Any = policy) -> None:
            # The engine reports this as an advisory diagnostic and goes on.
            violations.append(
                Violation(
                    policy.name,
                    "advisory",
                    resource,
                    types.get(resource, STACK_TYPE),
                    f"can't run during preview: {e.message}",
                )
            )

        if isinstance(policy, ResourceValidationPolicy):
            for r in resources:
                pr = policy_resources[r.name]
                args = ResourceValidationArgs(r.type, pr.props, pr.urn, r.name, pr.opts, None, policy_config)

                def report(message: str, urn: str | None = None, name: str = r.name) -> None:
                    collect(name, message)

                try:
                    _run(policy, args, report)
                except UnknownValueError as e:
                    unknown(r.name, e)
                except _NotApplicableError as e:
                    not_applicable.append((policy.name, e.reason or ""))
        elif isinstance(policy, StackValidationPolicy):
            stack_args = StackValidationArgs(list(policy_resources.values()), policy_config)

            def report_stack(message: str, urn: str | None = None) -> None:
                collect(names.get(urn or "", stack), message)

            try:
                _run(policy, stack_args, report_stack)
            except UnknownValueError as e:
                unknown(stack, e)
            except _NotApplicableError as e:
                not_applicable.append((policy.name, e.reason or ""))
    for name, reason in not_applicable:
        log.info("policy %s not applicable: %s", name, reason)
    return PolicyReport(
        stack=stack, violations=tuple(violations), not_applicable=tuple(not_applicable), config=dict(config)
    )


def rto_config(prediction: Any) -> dict[str, Any]:
    """The config of ``predicted-rto-within-target`` from an :class:`~drctl.plan.rto.RtoPrediction`:
    every server, advisory, while nothing was measured; once a drill measured the client, the
    dr servers, mandatory (the other servers' predictions stay in ``drctl plan rto``)."""
    measured = prediction.throughput_measured
    servers = [s for s in prediction.servers if s.server_class == "dr"] if measured else prediction.servers
    return {
        "enforcementLevel": "mandatory" if measured else "advisory",
        "predictions": [
            {
                "name": s.name,
                "serverClass": s.server_class,
                "predictedS": round(s.available_s, 1),
                "rtoS": s.rto_s,
                "measuredBy": prediction.run_id if measured else None,
            }
            for s in servers
        ],
    }


def policy_config(
    *,
    failover: bool,
    servers: Iterable[Any] = (),
    quotas: Mapping[str, int] | None = None,
    prediction: Any = None,
) -> dict[str, dict[str, Any]]:
    """The per-policy config ``drctl policy`` passes: the failover flag, the plan's servers, the
    project's network quotas (absent: the pack's Neutron defaults) and the predicted recovery times
    (when given).

    ``servers`` are :class:`drctl.plan.model.Server` objects; the pack in CI gets the same document
    through ``pulumi preview --policy-pack policies --policy-pack-config <file>``.
    """
    extra = {"predicted-rto-within-target": rto_config(prediction)} if prediction is not None else {}
    return {
        **extra,
        "recovered-server-only-in-failover": {"failover": bool(failover)},
        "dr-servers-have-checks": {
            "servers": [
                {"name": s.name, "serverClass": s.protection, "checks": [c.describe() for c in s.checks]}
                for s in servers
            ]
        },
        "recovery-space-within-quotas": {"quotas": dict(quotas or {})},
    }


def check_stack(
    stack: str,
    *,
    failover: bool | None = None,
    servers: Sequence[str] | None = None,
    project_dir: Path | None = None,
    state_dir: Path | None = None,
) -> tuple[PolicyReport, tuple[str, ...]]:
    """Preview ``stack`` offline and run every rule over its graph.

    ``failover``/``servers`` override the stack file as in ``drctl preview``. Returns the report
    and the preview's notes (placeholders it supplied). Stack and plan errors propagate as the
    :class:`drctl.errors.DrctlError` that names the file."""
    from drctl import paths
    from drctl.plan.rto import last_measurement, predict
    from drctl.runs.store import RunStore
    from drctl.stack.config import load_stack
    from drctl.stack.preview import preview_stack

    project_dir = project_dir or paths.project_dir()
    cfg = load_stack(stack, project_dir)
    runs = [r.summary for r in RunStore(state_dir).list_runs(stack)]
    prediction = predict(cfg.plan, cfg.scope(), last_measurement(runs, cfg.plan))
    graph = preview_stack(stack, failover=failover, servers=servers, project_dir=project_dir, cfg=cfg)
    effective_failover = cfg.failover if failover is None else failover
    config = policy_config(
        failover=effective_failover, servers=cfg.plan.servers, quotas=cfg.settings.quotas, prediction=prediction
    )
    return check_resources(graph.resources, stack=stack, config=config), graph.notes
