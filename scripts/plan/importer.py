"""``drctl plan import``: draft a plan from what an OpenStack cloud shows (a protected site that is
itself an OpenStack cloud).

Read through openstacksdk: servers, their flavors (vCPU, RAM), volumes (disks: the boot volume,
else the flavor's root disk, then the attached volumes), ports (NICs with their fixed IPv4
addresses) and the networks' subnets those ports sit on (the site's subnets). What the cloud
cannot say is left as a ``TODO`` marker (:mod:`drctl.plan.todos`) that ``drctl validate`` refuses
until filled: each server's class, RPO/RTO, dependencies and checks, the OS family, the site's
public address, the client and its contacts.

:func:`draft_plan` takes a Connection (tests hand it one pointed at a local HTTP stand-in);
openstacksdk and keystoneauth errors are translated where they enter.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from drctl.errors import InvalidInput
from drctl.plan.todos import MARKER

_NOT_NAME = re.compile(r"[^a-z0-9-]+")
DEFAULT_SCHEDULE = [{"type": "full", "every": "7d"}, {"type": "incremental", "every": "1d"}]


class CloudNotConfigured(InvalidInput):
    """The cloud named by ``--cloud`` is not in clouds.yaml."""


def plan_name(text: str, fallback: str) -> str:
    """A plan name (lower-case letters, digits, '-', starting with a letter) from a cloud name."""
    name = _NOT_NAME.sub("-", text.lower()).strip("-")[:63].strip("-")
    if not name or not name[0].isalpha():
        name = f"{fallback}-{name}".strip("-")[:63].strip("-")
    return name


def _unique(name: str, taken: set[str]) -> str:
    out, n = name, 2
    while out in taken:
        out = f"{name[:59]}-{n}"
        n += 1
    taken.add(out)
    return out


def connect(cloud: str, project: str | None = None) -> Any:
    """An openstacksdk Connection to ``cloud`` of clouds.yaml (``project`` overrides its project)."""
    import openstack
    import openstack.exceptions as oe

    try:
        if project:
            return openstack.connect(cloud=cloud, project_name=project)
        return openstack.connect(cloud=cloud)
    except oe.ConfigException as e:
        raise CloudNotConfigured(
            f"--cloud {cloud}: no such cloud in clouds.yaml ({str(e).splitlines()[0]}); add it to "
            "clouds.yaml (or OS_CLIENT_CONFIG_FILE) with the protected site's credentials"
        ) from e


def _flavor(conn: Any, server: Any, cache: dict[str, Any]) -> tuple[int, int, int]:
    """(vCPUs, RAM MB, root disk GB) of a server: embedded in the server since compute 2.47,
    else looked up by id."""
    f = server.flavor
    if getattr(f, "vcpus", None) is None or getattr(f, "ram", None) is None:
        fid = f.id
        if fid not in cache:
            cache[fid] = conn.compute.get_flavor(fid)
        f = cache[fid]
    return int(f.vcpus), int(f.ram), int(getattr(f, "disk", 0) or 0)


def draft_plan(conn: Any, *, cloud: str, site: str | None = None) -> dict[str, Any]:
    """The plan document drafted from the cloud ``conn`` reaches (see the module docstring)."""
    import keystoneauth1.exceptions as ka
    import openstack.exceptions as oe

    from drctl.activation.targets.cloud_errors import openstack_error

    try:
        return _draft(conn, cloud=cloud, site=site)
    except (ka.ClientException, oe.SDKException) as e:
        raise openstack_error(e, f"reading servers, volumes and ports of cloud {cloud}") from e


def _draft(conn: Any, *, cloud: str, site: str | None) -> dict[str, Any]:
    site_name = plan_name(site or cloud, "site")
    servers = sorted(conn.compute.servers(details=True), key=lambda s: s.name or s.id)
    if not servers:
        raise InvalidInput(
            f"cloud {cloud}: the project has no server to import; check --project and the credentials' project"
        )
    volumes = {v.id: v for v in conn.block_storage.volumes(details=True)}
    ports_by_server: dict[str, list[Any]] = {}
    for p in conn.network.ports():
        ports_by_server.setdefault(p.device_id or "", []).append(p)
    networks = {n.id: n for n in conn.network.networks()}
    subnets = {s.id: s for s in conn.network.subnets()}

    subnet_names: dict[str, str] = {}  # subnet id -> plan name
    taken_subnets: set[str] = set()
    taken_servers: set[str] = set()
    flavor_cache: dict[str, Any] = {}
    drafted = []
    for server in servers:
        name = _unique(plan_name(server.name or server.id, "server"), taken_servers)
        vcpus, ram, root_gb = _flavor(conn, server, flavor_cache)
        nics = []
        for port in sorted(ports_by_server.get(server.id, []), key=lambda p: p.id):
            for fixed in port.fixed_ips or []:
                sub = subnets.get(fixed.get("subnet_id"))
                if sub is None or sub.ip_version != 4:
                    continue
                if sub.id not in subnet_names:
                    net = networks.get(sub.network_id)
                    base = plan_name(sub.name or (net.name if net else "") or "net", "net")
                    subnet_names[sub.id] = _unique(base, taken_subnets)
                nics.append({"subnet": f"{site_name}/{subnet_names[sub.id]}", "ip": fixed["ip_address"]})
        drafted.append(
            {
                "name": name,
                "description": f"imported from {cloud}: server {server.name} ({server.id})",
                "os": {"family": f"{MARKER}: linux | windows | other"},
                "class": f"{MARKER}: dr | backup-tested | backup-only",
                "flavor": {"vcpus": vcpus, "ram_mb": ram},
                "disks": _disks(server, volumes, root_gb),
                "nics": nics or f"{MARKER}: the server has no IPv4 port; give its address",
                "boot": {
                    "group": 1,
                    "depends_on": f"{MARKER}: the servers it needs first, e.g. [dns01], or []",
                },
                "backup": {"schedule": DEFAULT_SCHEDULE},
                "rpo": f"{MARKER}: the data loss the client accepts, e.g. 24h",
                "rto": f"{MARKER}: the time to recover the client accepts, e.g. 4h",
                "checks": f"{MARKER}: how to tell it works, e.g. [{{port: 443}}] (required for dr)",
            }
        )
    plan_subnets = []
    for sid, pname in subnet_names.items():
        sub = subnets[sid]
        entry = {"name": pname, "cidr": sub.cidr, "gateway": sub.gateway_ip or f"{MARKER}: the gateway"}
        plan_subnets.append(entry)
    return {
        "client": {"id": f"{MARKER}: the client id", "name": f"{MARKER}: the client's name"},
        "contacts": [{"name": f"{MARKER}: the client's DR contact", "can_activate": True}],
        "sites": [
            {
                "name": site_name,
                "peer_address": f"{MARKER}: the site's public IPv4 address (its NCA's peer)",
                "subnets": plan_subnets or f"{MARKER}: the site's subnets",
            }
        ],
        "servers": drafted,
    }


def _disks(server: Any, volumes: dict[str, Any], root_gb: int) -> list[dict[str, Any]]:
    attached = [volumes[a["id"]] for a in server.attached_volumes or [] if a.get("id") in volumes]

    def device(v: Any) -> str:
        return next(
            (a.get("device") or "" for a in v.attachments or [] if a.get("server_id") == server.id), ""
        )

    attached.sort(key=lambda v: (device(v) or "~", v.id))
    boot = next((v for v in attached if v.is_bootable and device(v) in ("/dev/vda", "/dev/sda")), None)
    disks: list[dict[str, Any]] = [
        {"name": "system", "size_gb": int(boot.size) if boot else max(1, root_gb), "boot": True}
    ]
    taken = {"system"}
    for n, v in enumerate((v for v in attached if v is not boot), start=1):
        disks.append(
            {
                "name": _unique(plan_name(v.name or "", "data") if v.name else f"data{n}", taken),
                "size_gb": int(v.size),
            }
        )
    return disks


def render(doc: dict[str, Any], *, cloud: str) -> str:
    """The drafted plan as YAML, with a header saying what to do with it."""
    header = (
        f"# Plan drafted by `drctl plan import --cloud {cloud}` from what the cloud shows.\n"
        "# Fill in every value starting with TODO (`drctl validate` names each one), or copy the\n"
        "# servers and the site's subnets into the client's plan from `drctl client new`.\n"
    )
    return header + yaml.safe_dump(
        doc, sort_keys=False, default_flow_style=None, width=110, allow_unicode=True
    )
