"""Security groups of the recovery space, derived from the plan: pure functions, no engine.

The groups are sized by roles, not by servers: one group per role (``ssh``, ``rdp``, ``sql``,
``web``, ``dns``, ``smb``, ...) shared by every server that has it, plus one ``base`` group every
server gets (ICMP from the client's networks, egress to them only). Every ingress rule admits the
client's networks through one Neutron address group (``CLIENT_NETWORKS``), so the number of groups
and rules grows with the distinct roles and service ports of the plan, never with its servers or
networks. The one exception to "only the client's networks" is the ``public-web`` role, which opens
80 and 443 -- and only those -- to the world. Nothing administrative ever faces 0.0.0.0/0.

Roles held by exactly the same servers share one group (``ad`` and ``dns`` on the domain
controllers become ``ad-dns``): the same servers would get the same rules, in one group fewer.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from drctl.plan.model import Plan, Server

WORLD = "0.0.0.0/0"
CLIENT_NETWORKS = "client-networks"  # a rule's remote: the address group of the plan's subnets
BASE = "base"  # the group of every server
SERVICES = "services"  # check ports of servers that have no role to carry them

Port = tuple[str, int, int]  # protocol, first port, last port

# role -> (protocol, port_min, port_max). "sql" depends on the OS and the checks, see role_ports().
ROLE_PORTS: dict[str, tuple[Port, ...]] = {
    "ssh": (("tcp", 22, 22),),
    "rdp": (("tcp", 3389, 3389),),
    "winrm": (("tcp", 5985, 5986),),
    "smb": (("tcp", 445, 445),),
    "dns": (("tcp", 53, 53), ("udp", 53, 53)),
    "web": (("tcp", 80, 80), ("tcp", 443, 443)),
    "public-web": (("tcp", 80, 80), ("tcp", 443, 443)),
    "mail": (("tcp", 25, 25), ("tcp", 143, 143), ("tcp", 587, 587), ("tcp", 993, 993)),
    "mssql": (("tcp", 1433, 1433),),
    "postgresql": (("tcp", 5432, 5432),),
    "mysql": (("tcp", 3306, 3306),),
    # Active Directory domain controller: DNS, Kerberos, RPC, LDAP(S), SMB, kpasswd, global catalog.
    "ad": (
        ("tcp", 53, 53),
        ("udp", 53, 53),
        ("tcp", 88, 88),
        ("udp", 88, 88),
        ("tcp", 135, 135),
        ("tcp", 389, 389),
        ("udp", 389, 389),
        ("tcp", 445, 445),
        ("tcp", 464, 464),
        ("udp", 464, 464),
        ("tcp", 636, 636),
        ("tcp", 3268, 3269),
    ),
}
SQL_BY_OS: dict[str, tuple[Port, ...]] = {
    "windows": (("tcp", 1433, 1433),),
    "linux": (("tcp", 5432, 5432), ("tcp", 3306, 3306)),
}
WORLD_ROLES = frozenset({"public-web"})  # roles whose ports face the world, not the client's networks


@dataclass(frozen=True, order=True)
class RuleSpec:
    """One rule of a group: direction, protocol (``None``: any), port range and remote."""

    direction: str  # "ingress" | "egress"
    protocol: str | None
    port_min: int | None
    port_max: int | None
    remote: str  # CLIENT_NETWORKS or WORLD

    @property
    def key(self) -> str:
        """Stable, name-safe identity used in the rule's resource name."""
        ports = (
            "all"
            if self.port_min is None
            else (
                str(self.port_min) if self.port_min == self.port_max else f"{self.port_min}-{self.port_max}"
            )
        )
        source = "world" if self.remote == WORLD else "clients"
        way = "in" if self.direction == "ingress" else "out"
        return f"{way}-{self.protocol or 'any'}-{ports}-{source}"


@dataclass(frozen=True)
class RoleGroup:
    """One security group of the recovery space: the roles it serves, its servers and its rules."""

    key: str  # name-safe: "base", "ssh", "ad-dns", "services"
    roles: tuple[str, ...]
    servers: tuple[str, ...]  # plan order
    rules: tuple[RuleSpec, ...]  # sorted, no duplicates


def _sql_ports(server: Server) -> set[Port]:
    """``sql`` opens the database ports its checks name (least privilege); without such a check,
    the usual ones of its OS: 1433 on Windows, 5432 and 3306 elsewhere."""
    sql_ports = {p for by_os in SQL_BY_OS.values() for p in by_os}
    checked = check_ports(server) & sql_ports
    return set(checked or SQL_BY_OS.get(server.os_family, SQL_BY_OS["linux"]))


def role_ports(server: Server) -> set[Port]:
    """Ports the server's roles serve (unknown roles such as ``app`` open nothing by themselves)."""
    out: set[Port] = set()
    for role in server.roles:
        out.update(_sql_ports(server) if role == "sql" else ROLE_PORTS.get(role, ()))
    return out


def check_ports(server: Server) -> set[Port]:
    """Ports the server's checks connect to: ``port: N`` and the port of ``http: {url}``."""
    out: set[Port] = set()
    for check in server.checks:
        if check.kind == "port":
            spec = check.spec
            port = int(spec["port"] if isinstance(spec, dict) else spec)
            proto = spec.get("protocol", "tcp") if isinstance(spec, dict) else "tcp"
            out.add((proto, port, port))
        elif check.kind == "http":
            url = urlsplit(str(check.spec["url"]))
            port = url.port or (443 if url.scheme == "https" else 80)
            out.add(("tcp", port, port))
    return out


def client_prefixes(plan: Plan) -> tuple[str, ...]:
    """The client's networks: every plan subnet (site and recovery copies share the CIDR)."""
    return tuple(dict.fromkeys(str(sn.network) for sn in plan.subnets))


def _carrier(server: Server) -> str:
    """The role whose group carries the server's check ports that no role of it opens: its first
    role without ports of its own (``app``), else its first role, else :data:`SERVICES`."""
    local = [r for r in server.roles if r not in WORLD_ROLES]  # never widen a check port to the world
    for role in local:
        if role != "sql" and role not in ROLE_PORTS:
            return role
    return local[0] if local else SERVICES


def _role_ports_by_server(server: Server) -> dict[str, set[Port]]:
    """role -> the ports this server needs its group to open (checks included)."""
    out: dict[str, set[Port]] = {
        role: (_sql_ports(server) if role == "sql" else set(ROLE_PORTS.get(role, ())))
        for role in server.roles
    }
    uncovered = check_ports(server) - role_ports(server)
    if uncovered:
        out.setdefault(_carrier(server), set()).update(uncovered)
    return out


def _rules(roles: tuple[str, ...], ports: set[Port]) -> tuple[RuleSpec, ...]:
    remote = WORLD if set(roles) <= WORLD_ROLES else CLIENT_NETWORKS
    return tuple(sorted({RuleSpec("ingress", proto, lo, hi, remote) for proto, lo, hi in ports}))


def base_rules() -> tuple[RuleSpec, ...]:
    """Every server: ping from the client's networks (checks and users' first diagnosis), and
    egress to the client's networks only (the new group's open egress is deleted)."""
    return (
        RuleSpec("egress", None, None, None, CLIENT_NETWORKS),
        RuleSpec("ingress", "icmp", None, None, CLIENT_NETWORKS),
    )


def role_groups(plan: Plan) -> tuple[RoleGroup, ...]:
    """The recovery space's security groups: ``base`` first, then one per role (roles held by the
    same servers merged), in order of first appearance in the plan."""
    members: dict[str, list[str]] = {}
    ports: dict[str, set[Port]] = {}
    for server in plan.servers:
        for role, needed in _role_ports_by_server(server).items():
            members.setdefault(role, []).append(server.name)
            ports.setdefault(role, set()).update(needed)
    # (servers, faces the world) -> roles, in first appearance order
    merged: dict[tuple[tuple[str, ...], bool], list[str]] = {}
    for role, names in members.items():
        merged.setdefault((tuple(names), role in WORLD_ROLES), []).append(role)
    groups = [
        RoleGroup(BASE, (), tuple(s.name for s in plan.servers), base_rules()),
    ]
    for (servers, _), roles in merged.items():
        key = "-".join(sorted(roles))
        all_ports: set[Port] = set().union(*(ports[r] for r in roles))
        groups.append(RoleGroup(key, tuple(sorted(roles)), servers, _rules(tuple(roles), all_ports)))
    return tuple(groups)


def groups_of(server: str, groups: tuple[RoleGroup, ...]) -> tuple[str, ...]:
    """Keys of the groups ``server`` belongs to (``base`` first)."""
    return tuple(g.key for g in groups if server in g.servers)


def server_access(server: Server, plan: Plan) -> tuple[RuleSpec, ...]:
    """Every rule that applies to ``server``'s port: the union of its groups' rules."""
    groups = role_groups(plan)
    mine = set(groups_of(server.name, groups))
    return tuple(sorted({r for g in groups if g.key in mine for r in g.rules}))
