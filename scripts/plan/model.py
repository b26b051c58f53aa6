"""The recovery-plan model: frozen dataclasses built from a validated plan document.

The JSON Schema (``scripts/plan/schema.json``) is the contract for the document's shape;
``drctl.plan.load`` adds the semantic rules. This module only turns an already-valid document
into typed objects, so every consumer (stack program, components, drill) reads the same model.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from drctl.errors import InvalidInput

CHECK_KINDS = ("port", "service", "http", "command", "file")
_DURATION = re.compile(r"^(\d+)(s|m|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str | int) -> int:
    """``"15m"`` -> 900 seconds. Integers are taken as seconds."""
    if isinstance(text, int):
        return text
    m = _DURATION.match(str(text).strip())
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 15m, 24h, 7d, 1w)")
    return int(m.group(1)) * _UNIT_S[m.group(2)]


@dataclass(frozen=True)
class Client:
    id: str
    name: str
    timezone: str = "Europe/Paris"
    activation_window: str = "business-hours"  # or "24x7"


@dataclass(frozen=True)
class Contact:
    name: str
    role: str = ""
    phone: str = ""
    email: str = ""
    can_activate: bool = False


@dataclass(frozen=True)
class DhcpRange:
    start: str
    end: str


@dataclass(frozen=True)
class Subnet:
    site: str
    name: str
    cidr: str
    gateway: str
    dhcp: DhcpRange | None = None

    @property
    def ref(self) -> str:
        """The name servers' NICs use: ``site/subnet``."""
        return f"{self.site}/{self.name}"

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.cidr, strict=False)


@dataclass(frozen=True)
class VpnSettings:
    """IKE/IPsec parameters of a site's tunnel. Defaults are the strong ones the stack always sets."""

    ike_version: str = "v2"
    encryption: str = "aes-256"
    integrity: str = "sha256"
    pfs: str = "group14"
    ike_lifetime_s: int = 28800
    ipsec_lifetime_s: int = 3600


@dataclass(frozen=True)
class BgpPeer:
    neighbor: str
    remote_as: int


@dataclass(frozen=True)
class Mpls:
    """The site router's BGP sessions for MPLS BVPN reconnection (service description 10.2):
    routes to the recovery space are preferred nominal MPLS > backup MPLS > VPN."""

    asn: int
    nominal: BgpPeer
    vpn: BgpPeer
    backup: BgpPeer | None = None
    router_id: str | None = None


@dataclass(frozen=True)
class Site:
    name: str
    peer_address: str
    dns_domain: str
    subnets: tuple[Subnet, ...]
    vpn: VpnSettings = field(default_factory=VpnSettings)
    mpls: Mpls | None = None


@dataclass(frozen=True)
class Disk:
    name: str
    size_gb: int
    boot: bool = False


@dataclass(frozen=True)
class Nic:
    subnet: str  # "site/subnet"
    ip: str


@dataclass(frozen=True)
class BackupStep:
    type: str  # full | incremental | differential | log
    every_s: int


@dataclass(frozen=True)
class Retention:
    """The plan's ``backup.retention``: the newest point of each of the last N days/weeks/months."""

    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "keep_daily": self.keep_daily,
            "keep_weekly": self.keep_weekly,
            "keep_monthly": self.keep_monthly,
        }


@dataclass(frozen=True)
class Check:
    """One verification of a restored server: a plan's ``checks[]`` item, also what the
    verification runs (``drctl.activation.verify``). ``kind`` is one of :data:`CHECK_KINDS`;
    ``spec`` is normalised on construction, so every reader sees one shape per kind:

    - port: ``{"port": int, "protocol": "tcp"|"udp", "host": str|None}`` (the plan gives ``port: N``)
    - http: ``{"url": str, "status": int (200), "contains": str|None}``
    - file: ``{"path": str, "contains": str|None}`` (the plan gives ``file: PATH``)
    - service, command: the non-empty string

    A spec that cannot be normalised raises :class:`InvalidInput` naming the check.
    """

    kind: str
    spec: Any
    critical: bool = True

    def __post_init__(self) -> None:
        if self.kind not in CHECK_KINDS:
            raise InvalidInput(f"check kind {self.kind!r}: use one of {', '.join(CHECK_KINDS)}")
        try:
            object.__setattr__(self, "spec", _normalise_check(self.kind, self.spec))
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidInput(f"check {self.kind} {self.spec!r}: {e}") from e

    @classmethod
    def from_dict(cls, raw: Any) -> Check:
        """From the plan's form: a mapping like ``{"port": 53, "critical": false}``."""
        if not isinstance(raw, Mapping):
            raise InvalidInput(f'check {raw!r}: expected an object like {{"port": 80}}')
        kinds = [k for k in raw if k != "critical"]
        if len(kinds) != 1 or kinds[0] not in CHECK_KINDS:
            raise InvalidInput(f"check {dict(raw)!r}: give exactly one of {', '.join(CHECK_KINDS)}")
        return cls(kinds[0], raw[kinds[0]], bool(raw.get("critical", True)))

    def to_plan_dict(self) -> dict[str, Any]:
        """Back to the plan's form (what :meth:`from_dict` and ``--checks-json`` take)."""
        d: dict[str, Any] = {self.kind: self.spec}
        if not self.critical:
            d["critical"] = False
        return d

    def describe(self) -> str:
        """What is checked, in a few words: the name of the check in reports and policies."""
        s = self.spec
        if self.kind == "port":
            where = f"{s['host']}:" if s.get("host") else ""
            return f"port {where}{s['port']}" + ("/udp" if s["protocol"] == "udp" else "")
        if self.kind == "http":
            text = f"http {s['url']} -> {s['status']}"
            return text + (f" containing {s['contains']!r}" if s.get("contains") else "")
        if self.kind == "file":
            return f"file {s['path']}" + (f" containing {s['contains']!r}" if s.get("contains") else "")
        return f"{self.kind} {s}"


def _normalise_check(kind: str, spec: Any) -> Any:
    if kind == "port":
        d = spec if isinstance(spec, Mapping) else {"port": spec}
        port = int(d["port"])
        if not 0 < port < 65536:
            raise ValueError(f"port {port} out of range")
        proto = str(d.get("protocol", "tcp"))
        if proto not in ("tcp", "udp"):
            raise ValueError(f"protocol {proto!r}: use tcp or udp")
        return {"port": port, "protocol": proto, "host": d.get("host")}
    if kind == "http":
        if not isinstance(spec, Mapping) or "url" not in spec:
            raise ValueError("give {url, status, contains}")
        return {
            "url": str(spec["url"]),
            "status": int(spec.get("status", 200)),
            "contains": spec.get("contains"),
        }
    if kind == "file":
        d = spec if isinstance(spec, Mapping) else {"path": spec}
        return {"path": str(d["path"]), "contains": d.get("contains")}
    if not isinstance(spec, str) or not spec.strip():  # service, command
        raise ValueError(f"a {kind} check takes a non-empty string")
    return spec


@dataclass(frozen=True)
class Server:
    name: str
    os_family: str
    os_version: str
    protection: str  # dr | backup-tested | backup-only
    vcpus: int
    ram_mb: int
    disks: tuple[Disk, ...]
    nics: tuple[Nic, ...]
    boot_group: int
    depends_on: tuple[str, ...]
    backup: tuple[BackupStep, ...]
    rpo_s: int
    rto_s: int
    checks: tuple[Check, ...]
    roles: tuple[str, ...] = ()
    anti_affinity: str | None = None
    description: str = ""
    retention: Retention | None = None

    @property
    def boot_disk(self) -> Disk:
        return next((d for d in self.disks if d.boot), self.disks[0])

    @property
    def data_disks(self) -> tuple[Disk, ...]:
        """Every disk but the boot disk, in plan order (attached after it on every target)."""
        boot = self.boot_disk
        return tuple(d for d in self.disks if d is not boot)


@dataclass(frozen=True)
class Plan:
    client: Client
    contacts: tuple[Contact, ...]
    sites: tuple[Site, ...]
    servers: tuple[Server, ...]

    def server(self, name: str) -> Server:
        for s in self.servers:
            if s.name == name:
                return s
        raise KeyError(name)

    def subnet(self, ref: str) -> Subnet:
        for site in self.sites:
            for sn in site.subnets:
                if sn.ref == ref:
                    return sn
        raise KeyError(ref)

    @property
    def subnets(self) -> tuple[Subnet, ...]:
        return tuple(sn for site in self.sites for sn in site.subnets)

    def recovery_subnets(self) -> tuple[Subnet, ...]:
        """Subnets holding at least one server NIC: rebuilt in the recovery space with the same
        CIDR, so restored servers keep their addresses."""
        used = {nic.subnet for server in self.servers for nic in server.nics}
        return tuple(sn for sn in self.subnets if sn.ref in used)

    def user_subnets(self, site: Site) -> tuple[Subnet, ...]:
        """A site's user LANs: subnets with a DHCP range and no server. They stay on site; in a
        disaster the NCA serves their DHCP/DNS and routes them through the tunnel."""
        restored = {sn.ref for sn in self.recovery_subnets()}
        return tuple(sn for sn in site.subnets if sn.dhcp is not None and sn.ref not in restored)

    def default_scope(self) -> tuple[str, ...]:
        """Servers restored by a full activation: classes dr and backup-tested."""
        return tuple(s.name for s in self.servers if s.protection in ("dr", "backup-tested"))


def plan_from_dict(doc: dict[str, Any]) -> Plan:
    """Build the model from a schema-valid document (see ``drctl.plan.load.load_plan``)."""
    c = doc["client"]
    client = Client(
        id=c["id"],
        name=c["name"],
        timezone=c.get("timezone", "Europe/Paris"),
        activation_window=c.get("activation_window", "business-hours"),
    )
    contacts = tuple(
        Contact(
            name=x["name"],
            role=x.get("role", ""),
            phone=x.get("phone", ""),
            email=x.get("email", ""),
            can_activate=bool(x.get("can_activate", False)),
        )
        for x in doc.get("contacts", [])
    )
    sites = []
    for s in doc.get("sites", []):
        subnets = tuple(
            Subnet(
                site=s["name"],
                name=n["name"],
                cidr=n["cidr"],
                gateway=n["gateway"],
                dhcp=DhcpRange(**n["dhcp"]) if n.get("dhcp") else None,
            )
            for n in s.get("subnets", [])
        )
        v = s.get("vpn") or {}
        vpn = VpnSettings(
            ike_version=v.get("ike_version", "v2"),
            encryption=v.get("encryption", "aes-256"),
            integrity=v.get("integrity", "sha256"),
            pfs=v.get("pfs", "group14"),
            ike_lifetime_s=parse_duration(v.get("ike_lifetime", 28800)),
            ipsec_lifetime_s=parse_duration(v.get("ipsec_lifetime", 3600)),
        )
        m = s.get("mpls")
        mpls = (
            None
            if not m
            else Mpls(
                asn=m["asn"],
                router_id=m.get("router_id"),
                nominal=BgpPeer(**m["nominal"]),
                vpn=BgpPeer(**m["vpn"]),
                backup=BgpPeer(**m["backup"]) if m.get("backup") else None,
            )
        )
        sites.append(
            Site(
                name=s["name"],
                peer_address=s["peer_address"],
                dns_domain=s.get("dns_domain", ""),
                subnets=subnets,
                vpn=vpn,
                mpls=mpls,
            )
        )
    servers = []
    for x in doc.get("servers", []):
        servers.append(
            Server(
                name=x["name"],
                os_family=x["os"]["family"],
                os_version=str(x["os"].get("version", "")),
                protection=x["class"],
                vcpus=x["flavor"]["vcpus"],
                ram_mb=x["flavor"]["ram_mb"],
                disks=tuple(
                    Disk(name=d["name"], size_gb=d["size_gb"], boot=bool(d.get("boot", False)))
                    for d in x["disks"]
                ),
                nics=tuple(Nic(subnet=n["subnet"], ip=n["ip"]) for n in x.get("nics", [])),
                boot_group=x.get("boot", {}).get("group", 1),
                depends_on=tuple(x.get("boot", {}).get("depends_on", [])),
                backup=tuple(
                    BackupStep(type=b["type"], every_s=parse_duration(b["every"]))
                    for b in x.get("backup", {}).get("schedule", [])
                ),
                rpo_s=parse_duration(x["rpo"]),
                rto_s=parse_duration(x["rto"]),
                checks=tuple(Check.from_dict(c) for c in x.get("checks", [])),
                roles=tuple(x.get("roles", [])),
                anti_affinity=(x.get("placement") or {}).get("anti_affinity"),
                description=x.get("description", ""),
                retention=Retention(**x["backup"]["retention"])
                if x.get("backup", {}).get("retention")
                else None,
            )
        )
    return Plan(client=client, contacts=contacts, sites=tuple(sites), servers=tuple(servers))
