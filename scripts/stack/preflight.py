"""``drctl preflight``: can the client's OpenStack project hold its recovery space and a full
activation, before one is needed? Run before onboarding and by every cloud activation.

Needs come from the stack itself: the network objects from the preview graph (nominal space plus
the in-scope servers' ports, :mod:`drctl.stack.preview`), the instances, cores, RAM, volumes and
gigabytes from the plan's servers and the stack's ``flavor_map``. What the project has comes from
the cloud (:mod:`drctl.stack.cloud_inventory`). Each :class:`Finding` names the resource, what the
plan needs, what the project has and the fix; blocking ones stop an activation (exit
:data:`~drctl.errors.EXIT_PREFLIGHT`) unless it is overridden with a recorded reason.

The comparison (:func:`evaluate`) is pure: the inventory is a plain :class:`Inventory`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from drctl.errors import EXIT_PREFLIGHT, DrctlError
from drctl.plan.model import Server
from drctl.stack.settings import Flavor, StackSettings, choose_flavor

UNLIMITED = -1

# Neutron quota resource -> the graph's resource types that consume it.
NETWORK_QUOTAS: dict[str, tuple[str, ...]] = {
    "network": ("openstack:networking/network:Network",),
    "subnet": ("openstack:networking/subnet:Subnet",),
    "port": ("openstack:networking/port:Port", "openstack:networking/routerInterface:RouterInterface"),
    "router": ("openstack:networking/router:Router",),
    "security_group": ("openstack:networking/secGroup:SecGroup",),
    "security_group_rule": ("openstack:networking/secGroupRule:SecGroupRule",),
    "address_group": ("openstack:networking/addressGroup:AddressGroup",),
    "vpnservice": ("openstack:vpnaas/service:Service",),
    "ikepolicy": ("openstack:vpnaas/ikePolicy:IkePolicy",),
    "ipsecpolicy": ("openstack:vpnaas/ipSecPolicy:IpSecPolicy",),
    "endpoint_group": ("openstack:vpnaas/endpointGroup:EndpointGroup",),
    "ipsec_site_connection": ("openstack:vpnaas/siteConnection:SiteConnection",),
}
SUBNET_TYPE = "openstack:networking/subnet:Subnet"
GROUP_TYPE = "openstack:networking/secGroup:SecGroup"
DEFAULT_EGRESS_RULES = 2  # Neutron gives every new group an IPv4 and an IPv6 egress rule
DEFAULT_GROUP_RULES = 4  # the project's `default` group: 2 ingress (remote group) + 2 egress


class PreflightBlocked(DrctlError):
    """The cloud project cannot hold the plan (quota, flavor, network, VPN)."""

    exit_code = EXIT_PREFLIGHT


@dataclass(frozen=True)
class Quota:
    """One quota of the project: ``limit`` (-1: unlimited), ``used`` by everything in the project,
    ``of_stack``: how much of ``used`` is this stack's own (already deployed) objects."""

    limit: int
    used: int
    of_stack: int = 0

    def available(self) -> int | None:
        """What the stack can have in all (None: unlimited)."""
        return None if self.limit == UNLIMITED else max(0, self.limit - self.used + self.of_stack)


@dataclass(frozen=True)
class Inventory:
    """What the project has, read from the cloud. A missing service is ``None`` with the reason in
    ``unavailable`` (service -> why)."""

    project_id: str
    network_quotas: Mapping[str, Quota]  # Neutron quota resource -> quota (absent: no such quota)
    compute: Mapping[str, Quota] | None  # instances, cores, ram_mb
    volume: Mapping[str, Quota] | None  # volumes, gigabytes
    flavors: Mapping[str, Flavor] | None  # cloud flavor name -> size
    external_network: str | None  # None: absent; "not-external": exists, not router:external
    vpnaas: bool
    image_service: bool
    unavailable: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Finding:
    check: str  # compute-quota, volume-quota, network-quota, flavor, image-service, external-network, vpn
    resource: str
    need: int | str
    have: int | str | None
    status: str  # ok | warning | blocking
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PreflightReport:
    stack: str
    cloud: str | None
    project_id: str
    findings: tuple[Finding, ...]

    @property
    def blocking(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.status == "blocking")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.status == "warning")

    @property
    def ok(self) -> bool:
        return not self.blocking

    def to_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "cloud": self.cloud,
            "project_id": self.project_id,
            "ok": self.ok,
            "blocking": len(self.blocking),
            "warnings": len(self.warnings),
            "findings": [f.to_dict() for f in self.findings],
        }

    def summary(self) -> str:
        """One line per blocking finding: what an error message or a run note says."""
        return "; ".join(f"{f.resource}: needs {f.need}, has {f.have}" for f in self.blocking)


@dataclass(frozen=True)
class Needs:
    """What the plan asks of the project."""

    network: Mapping[str, int]  # Neutron quota resource -> objects
    names: Mapping[str, frozenset[str]]  # Neutron quota resource -> the names the stack gives them
    servers: tuple[Server, ...]
    flavors: Mapping[str, Flavor]  # server -> flavor_map entry it runs with
    external_network: str

    @property
    def instances(self) -> int:
        return len(self.servers)

    @property
    def volumes(self) -> int:
        return sum(len(s.disks) for s in self.servers)

    @property
    def gigabytes(self) -> int:
        return sum(d.size_gb for s in self.servers for d in s.disks)


def needs_of(resources: Iterable[Any], servers: Sequence[Server], settings: StackSettings) -> Needs:
    """Needs from the preview graph's resources (``type``, ``name``, ``inputs``) of the nominal space
    plus the in-scope ``servers``, and their flavors."""
    resources = list(resources)
    by_type = Counter(r.type for r in resources)
    network = {q: sum(by_type[t] for t in types) for q, types in NETWORK_QUOTAS.items()}
    groups = [r for r in resources if r.type == GROUP_TYPE]
    # A group keeps Neutron's two egress rules unless the stack deletes them.
    network["security_group_rule"] += DEFAULT_EGRESS_RULES * sum(
        1 for g in groups if not (g.inputs or {}).get("deleteDefaultRules")
    )
    # Each DHCP-enabled subnet gets a DHCP port in the project (where DHCP agents run).
    network["port"] += sum(
        1 for r in resources if r.type == SUBNET_TYPE and (r.inputs or {}).get("enableDhcp", True)
    )
    names = {
        q: frozenset(str((r.inputs or {}).get("name")) for r in resources if r.type in types)
        for q, types in NETWORK_QUOTAS.items()
    }
    return Needs(
        network=network,
        names=names,
        servers=tuple(servers),
        flavors={s.name: choose_flavor(s, settings.flavors) for s in servers},
        external_network=settings.external_network,
    )


def _quota(check: str, resource: str, need: int, quota: Quota | None, fix: str) -> Finding:
    if quota is None:
        return Finding(check, resource, need, "no quota", "ok")
    available = quota.available()
    if available is None:
        return Finding(check, resource, need, "unlimited", "ok")
    if need <= available:
        return Finding(check, resource, need, available, "ok")
    return Finding(check, resource, need, available, "blocking", fix)


# `openstack quota set` options of the quotas it can set.
QUOTA_OPTIONS = {
    "network": "--networks",
    "subnet": "--subnets",
    "port": "--ports",
    "router": "--routers",
    "security_group": "--secgroups",
    "security_group_rule": "--secgroup-rules",
    "instances": "--instances",
    "cores": "--cores",
    "ram": "--ram",
    "volumes": "--volumes",
    "gigabytes": "--gigabytes",
}


def _quota_fix(service: str, resource: str, need: int, quota: Quota, project: str) -> str:
    raise_to = quota.used - quota.of_stack + need
    option = QUOTA_OPTIONS.get(resource)
    how = (
        f"`openstack quota set {option} {raise_to} {project}`, or ask the cloud operator"
        if option
        else "ask the cloud operator"
    )
    return f"raise the project's {service} quota {resource} to at least {raise_to} ({how}), or free some in the project"


def evaluate(needs: Needs, inv: Inventory) -> list[Finding]:
    """Every requirement of the plan against the inventory: one finding each."""
    out: list[Finding] = []
    p = inv.project_id
    # A project without any group gets its `default` group (and its rules) at its first network call.
    sg = inv.network_quotas.get("security_group")
    first_use = sg is not None and sg.used == 0 and needs.network.get("security_group", 0) > 0
    extra = {"security_group": 1, "security_group_rule": DEFAULT_GROUP_RULES} if first_use else {}
    for resource, declared in needs.network.items():
        need = declared + extra.get(resource, 0)
        if need == 0 and resource not in inv.network_quotas:
            continue
        q = inv.network_quotas.get(resource)
        fix = _quota_fix("network", resource, need, q, p) if q else ""
        out.append(_quota("network-quota", resource, need, q, fix))
    for check, service, quotas, wanted in (
        ("compute-quota", "compute", inv.compute, _compute_needs(needs, inv)),
        ("volume-quota", "volume", inv.volume, {"volumes": needs.volumes, "gigabytes": needs.gigabytes}),
    ):
        if quotas is None:
            out.append(_service_missing(check, service, inv))
            continue
        for resource, need in wanted.items():
            q = quotas.get(resource)
            fix = _quota_fix(service, resource, need, q, p) if q else ""
            out.append(_quota(check, resource + (" (MB)" if resource == "ram" else ""), need, q, fix))
    out += _flavor_findings(needs, inv)
    out.append(_external_network(needs.external_network, inv.external_network))
    out.append(
        Finding("vpn", "VPN service (Neutron vpnaas)", "available", "available", "ok")
        if inv.vpnaas
        else Finding(
            "vpn",
            "VPN service (Neutron vpnaas)",
            "available",
            "missing",
            "blocking",
            "the cloud's Neutron has no VPNaaS: the sites cannot reach the recovery space; ask the cloud "
            "operator to enable the vpnaas service plugin (or choose a cloud region that has it)",
        )
    )
    out.append(
        Finding("image-service", "image service (Glance)", "reachable", "reachable", "ok")
        if inv.image_service
        else _service_missing("image-service", "image", inv)
    )
    return out


def _compute_needs(needs: Needs, inv: Inventory) -> dict[str, int]:
    """Instances, cores and RAM of the in-scope servers, each with its flavor's size in this cloud
    (``flavor_map``'s where the cloud lacks it)."""
    sizes = [(inv.flavors or {}).get(f.name, f) for f in needs.flavors.values()]
    return {
        "instances": needs.instances,
        "cores": sum(f.vcpus for f in sizes),
        "ram": sum(f.ram_mb for f in sizes),
    }


def _service_missing(check: str, service: str, inv: Inventory) -> Finding:
    why = inv.unavailable.get(service, "not in the cloud's catalog")
    return Finding(
        check,
        f"{service} service",
        "reachable",
        f"unavailable ({why})",
        "blocking",
        f"the activation needs the {service} service: check the cloud's catalog and clouds.yaml",
    )


def _flavor_findings(needs: Needs, inv: Inventory) -> list[Finding]:
    if inv.flavors is None:
        return []  # the compute service is missing: one finding already says so
    out = []
    for server in needs.servers:
        want = needs.flavors[server.name]
        need = f"{server.vcpus} vCPU, {server.ram_mb} MB"
        resource = f"flavor {want.name} (server {server.name})"
        have = inv.flavors.get(want.name)
        if have is None:
            out.append(
                Finding(
                    "flavor",
                    resource,
                    need,
                    "missing",
                    "blocking",
                    f"the cloud has no flavor {want.name}: change the stack's flavor_map to one of "
                    f"{', '.join(sorted(inv.flavors)) or '(none)'}, or have it created",
                )
            )
        elif have.vcpus < server.vcpus or have.ram_mb < server.ram_mb:
            out.append(
                Finding(
                    "flavor",
                    resource,
                    need,
                    f"{have.vcpus} vCPU, {have.ram_mb} MB",
                    "blocking",
                    f"flavor {want.name} is smaller in this cloud than flavor_map says: correct the "
                    "stack's flavor_map (vcpus, ram_mb) and map the server to a flavor that fits",
                )
            )
        elif have.vcpus < want.vcpus or have.ram_mb < want.ram_mb:
            out.append(
                Finding(
                    "flavor",
                    resource,
                    need,
                    f"{have.vcpus} vCPU, {have.ram_mb} MB",
                    "warning",
                    f"the stack's flavor_map says {want.name} has {want.vcpus} vCPU, {want.ram_mb} MB: "
                    "correct it to the cloud's size",
                )
            )
        else:
            out.append(Finding("flavor", resource, need, f"{have.vcpus} vCPU, {have.ram_mb} MB", "ok"))
    return out


def _external_network(name: str, state: str | None) -> Finding:
    resource = f"external network {name}"
    if state == name:
        return Finding("external-network", resource, "router:external", "present", "ok")
    have, why = ("missing", "does not exist") if state is None else ("not external", "is not router:external")
    return Finding(
        "external-network",
        resource,
        "router:external",
        have,
        "blocking",
        f"network {name} {why} in this cloud: set the stack's external_network to the cloud's "
        "external network (`openstack network list --external`)",
    )
