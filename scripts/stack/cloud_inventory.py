"""What a client's OpenStack project has, read with openstacksdk (``clouds.yaml`` / ``OS_CLOUD``),
for the preflight (:mod:`drctl.stack.preflight`); and :func:`run_preflight`, which puts the two
together for ``drctl preflight`` and the cloud activation.

Quotas: Neutron's ``GET /v2.0/quotas/<project>/details`` (limit and used per resource), Nova's and
Cinder's ``GET /limits`` (absolute limits and usage). Objects this stack already has in the project
(found by the names the stack declares) are counted as the stack's own, so a deployed recovery
space does not count twice.

The project is the token's. A cloud without Keystone (``auth_type: none``, e.g. the test servers)
names it with ``drctl_project_id`` in its clouds.yaml entry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from drctl.activation.targets.cloud import connect_cloud, openstack_errors
from drctl.activation.targets.cloud_errors import CloudAccessDenied, openstack_error
from drctl.stack.preflight import Inventory, Needs, PreflightReport, Quota, evaluate, needs_of
from drctl.stack.settings import Flavor

log = logging.getLogger(__name__)

# Neutron quota resource -> how to list the project's objects of it (named like the stack's).
_LISTERS: dict[str, Callable[[Any, str], Iterable[Any]]] = {
    "network": lambda net, p: net.networks(project_id=p),
    "subnet": lambda net, p: net.subnets(project_id=p),
    "router": lambda net, p: net.routers(project_id=p),
    "security_group": lambda net, p: net.security_groups(project_id=p),
    "address_group": lambda net, p: net.address_groups(project_id=p),
    "vpnservice": lambda net, p: net.vpn_services(project_id=p),
    "ikepolicy": lambda net, p: net.vpn_ike_policies(project_id=p),
    "ipsecpolicy": lambda net, p: net.vpn_ipsec_policies(project_id=p),
    "endpoint_group": lambda net, p: net.vpn_endpoint_groups(project_id=p),
    "ipsec_site_connection": lambda net, p: net.vpn_ipsec_site_connections(project_id=p),
}


def project_of(conn: Any, cloud: str | None) -> str:
    """The project the preflight reads (the token's, or clouds.yaml's ``drctl_project_id``)."""
    try:
        project = conn.current_project_id
    except openstack_errors() as e:
        raise openstack_error(e, f"reading the project of cloud {cloud or '(from OS_* variables)'}") from e
    project = project or conn.config.config.get("drctl_project_id")
    if not project:
        raise CloudAccessDenied(
            f"cloud {cloud or '(from OS_* variables)'}: the credentials are not scoped to a project; "
            "set project_name/project_id in clouds.yaml (or OS_PROJECT_NAME)"
        )
    return str(project)


def _network_quotas(conn: Any, project: str, needs: Needs) -> dict[str, Quota]:
    # The wire names (`security_group`, `vpnservice`...): the SDK's resource renames the ones it knows.
    from openstack.exceptions import raise_from_response

    response = conn.network.get(f"/quotas/{project}/details")
    raise_from_response(response)
    details = response.json().get("quota", {})
    quotas: dict[str, Quota] = {}
    present_groups: list[str] = []
    present_routers: list[str] = []
    for resource in needs.network:
        raw = details.get(resource)
        if not isinstance(raw, Mapping) or "limit" not in raw:
            continue  # this Neutron has no such quota (e.g. address groups before 2023.1)
        used = int(raw.get("used") or 0) + int(raw.get("reserved") or 0)
        of_stack = 0
        names = needs.names.get(resource, frozenset())
        if used and names and resource in _LISTERS:
            mine = [o for o in _LISTERS[resource](conn.network, project) if o.name in names]
            of_stack = len(mine)
            if resource == "security_group":
                present_groups = [o.id for o in mine]
            if resource == "router":
                present_routers = [o.id for o in mine]
        quotas[resource] = Quota(int(raw["limit"]), used, of_stack)
    # Rules and ports have no names to match: count the rules of the stack's groups and the ports
    # of its routers and named ports.
    if "security_group_rule" in quotas and present_groups:
        q = quotas["security_group_rule"]
        rules = sum(1 for g in present_groups for _ in conn.network.security_group_rules(security_group_id=g))
        quotas["security_group_rule"] = Quota(q.limit, q.used, rules)
    if "port" in quotas and quotas["port"].used:
        q = quotas["port"]
        names = needs.names.get("port", frozenset())
        routers = set(present_routers)
        ports = sum(
            1 for p in conn.network.ports(project_id=project) if p.name in names or p.device_id in routers
        )
        quotas["port"] = Quota(q.limit, q.used, ports)
    return quotas


def _absolute(limits: Any, pairs: Mapping[str, tuple[str, str]]) -> dict[str, Quota]:
    a = limits.absolute
    out = {}
    for resource, (limit, used) in pairs.items():
        value = getattr(a, limit, None)
        if value is not None:
            out[resource] = Quota(int(value), int(getattr(a, used, 0) or 0))
    return out


def _optional(service: str, call: Callable[[], Any], unavailable: dict[str, str]) -> Any:
    """A service the catalog may lack: None (and why) instead of an error."""
    import keystoneauth1.exceptions as ka
    import openstack.exceptions as oe

    try:
        return call()
    except (ka.EndpointNotFound, oe.NotSupported) as e:
        unavailable[service] = f"not in the cloud's catalog: {str(e).strip().splitlines()[0]}"
        return None


def read_inventory(conn: Any, project: str, needs: Needs) -> Inventory:
    """What the project has, for these needs. Errors of an unreachable or refusing cloud raise."""
    unavailable: dict[str, str] = {}
    net = conn.network
    quotas = _network_quotas(conn, project, needs)
    compute = _optional(
        "compute",
        lambda: _absolute(
            conn.compute.get_limits(),
            {
                "instances": ("max_total_instances", "total_instances_used"),
                "cores": ("max_total_cores", "total_cores_used"),
                "ram": ("max_total_ram_size", "total_ram_used"),
            },
        ),
        unavailable,
    )
    flavors = None
    if compute is not None:
        flavors = {f.name: Flavor(f.name, int(f.vcpus), int(f.ram)) for f in conn.compute.flavors()}
    volume = _optional(
        "volume",
        lambda: _absolute(
            conn.block_storage.get_limits(),
            {
                "volumes": ("max_total_volumes", "total_volumes_used"),
                "gigabytes": ("max_total_volume_gigabytes", "total_gigabytes_used"),
            },
        ),
        unavailable,
    )
    ext = net.find_network(needs.external_network, ignore_missing=True)
    external = None if ext is None else (ext.name if ext.is_router_external else "not-external")
    if ext is not None and ext.name != needs.external_network:  # found by id
        external = needs.external_network if ext.is_router_external else "not-external"
    vpnaas = any(e.alias == "vpnaas" for e in net.extensions())
    image_ok = _optional("image", lambda: list(conn.image.images(limit=1)), unavailable) is not None
    return Inventory(
        project_id=project,
        network_quotas=quotas,
        compute=compute,
        volume=volume,
        flavors=flavors,
        external_network=external,
        vpnaas=vpnaas,
        image_service=image_ok,
        unavailable=unavailable,
    )


def run_preflight(
    stack: str,
    *,
    cloud: str | None = None,
    project_dir: Path | None = None,
    servers: Sequence[str] | None = None,
    conn: Any = None,
) -> PreflightReport:
    """The preflight of ``stack`` (its nominal space plus a failover of ``servers``, default the
    stack's scope) against ``cloud`` (clouds.yaml name; default OS_CLOUD / the OS_* variables)."""
    from drctl.activation.activation import resolve_scope
    from drctl.stack.config import load_stack
    from drctl.stack.preview import preview_stack

    cfg = load_stack(stack, project_dir) if project_dir else load_stack(stack)
    scope = resolve_scope(cfg, servers)
    graph = preview_stack(stack, failover=True, servers=[s.name for s in scope], project_dir=project_dir)
    needs = needs_of(graph.resources, scope, cfg.settings)
    conn = conn if conn is not None else connect_cloud(cloud)
    project = project_of(conn, cloud)
    try:
        inventory = read_inventory(conn, project, needs)
    except openstack_errors() as e:
        raise openstack_error(e, f"reading the quotas and resources of project {project}") from e
    return PreflightReport(
        stack=stack, cloud=cloud, project_id=project, findings=tuple(evaluate(needs, inventory))
    )
