"""Security-group rules of a recovered server, derived from its plan: pure functions, no engine.

Every ingress rule is limited to the client's own networks (the plan's subnets: the site subnets,
which the recovery subnets copy CIDR for CIDR). The one exception is the ``public-web`` role, which
opens 80 and 443 -- and only those -- to the world. Nothing administrative ever faces 0.0.0.0/0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from drctl.plan.model import Plan, Server

WORLD = "0.0.0.0/0"

# role -> (protocol, port_min, port_max). "sql" depends on the OS, see role_ports().
ROLE_PORTS: dict[str, tuple[tuple[str, int, int], ...]] = {
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
SQL_BY_OS = {"windows": (("tcp", 1433, 1433),), "linux": (("tcp", 5432, 5432), ("tcp", 3306, 3306))}


@dataclass(frozen=True, order=True)
class RuleSpec:
    """One ingress rule: protocol, port range and source prefix."""

    protocol: str
    port_min: int | None
    port_max: int | None
    remote_ip_prefix: str

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
        source = "world" if self.remote_ip_prefix == WORLD else re.sub(r"[./:]", "-", self.remote_ip_prefix)
        return f"{self.protocol}-{ports}-{source}"


def role_ports(server: Server) -> set[tuple[str, int, int]]:
    """Ports the server's roles serve (unknown roles such as ``app`` open nothing).

    ``sql`` opens the database ports its checks name (least privilege); without such a check, the
    usual ones of its OS: 1433 on Windows, 5432 and 3306 elsewhere."""
    out: set[tuple[str, int, int]] = set()
    for role in server.roles:
        if role == "sql":
            sql_ports = {p for by_os in SQL_BY_OS.values() for p in by_os}
            checked = check_ports(server) & sql_ports
            out.update(checked or SQL_BY_OS.get(server.os_family, SQL_BY_OS["linux"]))
        else:
            out.update(ROLE_PORTS.get(role, ()))
    return out


def check_ports(server: Server) -> set[tuple[str, int, int]]:
    """Ports the server's checks connect to: ``port: N`` and the port of ``http: {url}``."""
    out: set[tuple[str, int, int]] = set()
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


def ingress_rules(server: Server, plan: Plan) -> tuple[RuleSpec, ...]:
    """All ingress rules of ``server``'s security group, sorted and without duplicates."""
    prefixes = client_prefixes(plan)
    rules: set[RuleSpec] = set()
    for proto, lo, hi in role_ports(server) | check_ports(server):
        for prefix in prefixes:
            rules.add(RuleSpec(proto, lo, hi, prefix))
    if "public-web" in server.roles:
        for proto, lo, hi in ROLE_PORTS["public-web"]:
            rules.add(RuleSpec(proto, lo, hi, WORLD))
    for prefix in prefixes:  # ping from the client's networks: checks and users' first diagnosis
        rules.add(RuleSpec("icmp", None, None, prefix))
    return tuple(sorted(rules, key=lambda r: (r.remote_ip_prefix, r.protocol, r.port_min or 0)))


def egress_prefixes(plan: Plan) -> tuple[str, ...]:
    """Egress stays inside the client's networks (the default group's open egress is deleted)."""
    return client_prefixes(plan)
