"""The semantic rules of a recovery plan: what the JSON Schema cannot say (unique names, a
dependency graph without cycles, addresses inside their subnets and outside DHCP ranges, a backup
schedule able to meet the RPO, ...). They read the raw document and tolerate shapes the schema
already rejected, so one run reports every problem. Each rule yields ``(path, message)``."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from drctl.plan.graph import find_cycles
from drctl.plan.model import CHECK_KINDS, parse_duration

log = logging.getLogger(__name__)

NEUTRON_MIN_LIFETIME_S = 60  # Neutron VPNaaS refuses shorter IKE/IPsec lifetimes
MAX_CYCLES_REPORTED = 20  # each cycle found costs a pass over the graph: bounded on hostile plans


def _items(obj: Any, key: str) -> list[tuple[int, dict]]:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, list):
        return []
    return [(i, x) for i, x in enumerate(value) if isinstance(x, dict)]


def _sub(obj: Any, key: str) -> dict:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, dict) else {}


def _ip(value: Any) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _duration(value: Any) -> int | None:
    try:
        return parse_duration(value) if isinstance(value, str) else None
    except ValueError:
        return None


def format_duration(seconds: int) -> str:
    """900 -> ``15m``; the largest unit that divides exactly (the plan's own notation)."""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def restore_point_gap(steps: list[tuple[str, int]]) -> int | None:
    """Largest time between two consecutive restore points a backup schedule guarantees.

    Rule: every step of the schedule (full, incremental, differential or log) produces a restore
    point each time it runs, *provided a full backup exists to restore from* (an incremental or
    differential is applied over a full, log backups are replayed over a full). So the restore
    points are the union of the steps' periodic series, and the largest gap between two
    consecutive points is the period of the most frequent step: that series alone already has a
    point every ``min(every)``, and in the usual aligned schedule (all steps anchored on the same
    backup window, the lower step not run when a higher one runs) the other series add no point
    inside its gaps, so ``min(every)`` is also reached. Full every 7d + incremental every 1d
    gives 1d; full 1d + log 15m gives 15m; a full every 7d alone gives 7d.

    Returns None when the schedule has no full backup (no restore point at all).
    """
    if not any(kind == "full" for kind, _ in steps):
        return None
    return min(every for _, every in steps)


@dataclass(frozen=True)
class _SubnetInfo:
    ref: str
    where: str
    network: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address | None
    dhcp: tuple[ipaddress.IPv4Address, ipaddress.IPv4Address] | None

    def describe(self) -> str:
        return f"subnet {self.ref} ({self.network})"


@lru_cache(maxsize=1)
def _have_tz_database() -> bool:
    # A minimal machine may have neither Debian's tzdata nor the tzdata wheel: then the zone name
    # cannot be checked here, which must not make every plan invalid.
    if available_timezones():
        return True
    log.warning("no time-zone database (install tzdata): client.timezone is not checked")
    return False


def _check_client_and_contacts(doc: dict) -> Iterator[tuple[str, str]]:
    tz = _sub(doc, "client").get("timezone")
    if isinstance(tz, str) and _have_tz_database():
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            yield "client.timezone", f"unknown time zone {tz!r} (use an IANA name such as Europe/Paris)"
    contacts = _items(doc, "contacts")
    if contacts and not any(c.get("can_activate") is True for _, c in contacts):
        yield (
            "contacts",
            (
                "no contact can activate the plan: set can_activate: true on at least one "
                "(the Flexible Recovery team calls one of them back before any activation)"
            ),
        )
    for i, c in contacts:
        if c.get("can_activate") is True and not c.get("phone"):
            yield (
                f"contacts[{i}].phone",
                (
                    f"{c.get('name')} can activate the plan but has no phone: "
                    "the team calls back by phone before an activation"
                ),
            )


def _unique(
    items: list[tuple[int, dict]], prefix: str, what: str, scope: str = ""
) -> Iterator[tuple[str, str]]:
    first: dict[Any, int] = {}
    for i, x in items:
        name = x.get("name")
        if not isinstance(name, str):
            continue
        if name in first:
            yield (
                f"{prefix}[{i}].name",
                f"duplicate {what} name {name}{scope} (first at {prefix}[{first[name]}])",
            )
        else:
            first[name] = i


def _check_sites(doc: dict, subnets: dict[str, _SubnetInfo]) -> Iterator[tuple[str, str]]:
    """Names, peers, addressing of each subnet and overlaps; fills ``subnets`` (ref -> info)."""
    sites = _items(doc, "sites")
    yield from _unique(sites, "sites", "site")
    peers: dict[str, str] = {}
    for i, site in sites:
        sname = site.get("name")
        peer = site.get("peer_address")
        if isinstance(peer, str) and peer in peers:
            yield f"sites[{i}].peer_address", f"{peer} is already the peer address of site {peers[peer]}"
        elif isinstance(peer, str):
            peers[peer] = str(sname)
        yield from _unique(_items(site, "subnets"), f"sites[{i}].subnets", "subnet", f" in site {sname}")
        for j, sn in _items(site, "subnets"):
            info = yield from _check_subnet(f"sites[{i}].subnets[{j}]", f"{sname}/{sn.get('name')}", sn)
            if info is None:
                continue
            for other in subnets.values():
                if other.network.overlaps(info.network):
                    yield f"{info.where}.cidr", f"{info.network} overlaps {other.describe()}"
            subnets.setdefault(info.ref, info)
        yield from _check_vpn(f"sites[{i}].vpn", _sub(site, "vpn"))


def _check_subnet(where: str, ref: str, sn: dict) -> Generator[tuple[str, str], None, _SubnetInfo | None]:
    """Addressing of one subnet; returns what NIC checks need (None if the CIDR is unusable)."""
    cidr = sn.get("cidr")
    try:
        net = ipaddress.IPv4Network(cidr, strict=True) if isinstance(cidr, str) else None
    except ValueError as e:
        try:
            loose = ipaddress.IPv4Network(cidr, strict=False)
            yield f"{where}.cidr", f"{cidr} has host bits set: the network is {loose}"
        except ValueError:
            yield f"{where}.cidr", f"{cidr!r} is not a valid network: {e}"
        return None
    if net is None:
        return None
    info = _SubnetInfo(ref, where, net, _ip(sn.get("gateway")), None)
    described = info.describe()
    gw = info.gateway
    if gw is not None:
        if gw not in net:
            yield f"{where}.gateway", f"{gw} is outside {described}"
        elif net.prefixlen < 31 and gw in (net.network_address, net.broadcast_address):
            yield (
                f"{where}.gateway",
                f"{gw} is the {'network' if gw == net.network_address else 'broadcast'} address of {described}",
            )
    dhcp = _sub(sn, "dhcp")
    start, end = _ip(dhcp.get("start")), _ip(dhcp.get("end"))
    inside = True
    for key, ip in (("start", start), ("end", end)):
        if ip is not None and ip not in net:
            inside = False
            yield f"{where}.dhcp.{key}", f"{ip} is outside {described}"
    if start is not None and end is not None and inside:
        if start > end:
            yield f"{where}.dhcp", f"the DHCP range starts after it ends ({start} > {end})"
        elif net.prefixlen < 31 and (start == net.network_address or end == net.broadcast_address):
            yield (
                f"{where}.dhcp",
                f"the DHCP range {start}-{end} includes the network or broadcast address of {described}",
            )
        else:
            info = _SubnetInfo(ref, where, net, gw, (start, end))
            if gw is not None and start <= gw <= end:
                yield f"{where}.gateway", f"{gw} is in the DHCP range {start}-{end}"
    return info


def _check_vpn(where: str, vpn: dict) -> Iterator[tuple[str, str]]:
    # The algorithm names are closed enums in the schema; here: values Neutron would refuse.
    for key in ("ike_lifetime", "ipsec_lifetime"):
        seconds = _duration(vpn.get(key))
        if seconds is not None and seconds < NEUTRON_MIN_LIFETIME_S:
            yield (
                f"{where}.{key}",
                f"{vpn[key]} is shorter than the {NEUTRON_MIN_LIFETIME_S}s minimum of Neutron VPNaaS",
            )


def _check_servers(doc: dict, subnets: dict[str, _SubnetInfo]) -> Iterator[tuple[str, str]]:
    servers = _items(doc, "servers")
    yield from _unique(servers, "servers", "server")
    used_ips: dict[ipaddress.IPv4Address, str] = {}
    groups: dict[str, list[str]] = {}
    for i, s in servers:
        at = f"servers[{i}]"
        disks = _items(s, "disks")
        boots = [d.get("name") for _, d in disks if d.get("boot") is True]
        if disks and len(boots) != 1:
            found = f"{len(boots)} boot disks ({', '.join(map(str, boots))})" if boots else "no boot disk"
            yield f"{at}.disks", f"{found}: mark exactly one disk with boot: true"
        yield from _unique(disks, f"{at}.disks", "disk")
        for j, nic in _items(s, "nics"):
            yield from _check_nic(f"{at}.nics[{j}]", s, nic, subnets, used_ips)
        checks = _items(s, "checks")
        for k, c in checks:
            kinds = [key for key in c if key in CHECK_KINDS]
            if len(kinds) != 1:
                found = ", ".join(kinds) if kinds else "none"
                yield (
                    f"{at}.checks[{k}]",
                    f"a check needs exactly one of {', '.join(CHECK_KINDS)} (found: {found})",
                )
        if s.get("class") == "dr" and not s.get("checks"):
            yield (
                f"{at}.checks",
                "a server of class dr needs at least one check (its restore is verified by them)",
            )
        yield from _check_rpo(at, s)
        group = _sub(s, "placement").get("anti_affinity")
        if isinstance(group, str):
            groups.setdefault(group, []).append(str(s.get("name")))
    for group, members in groups.items():
        if len(members) < 2:
            i = next(i for i, s in servers if _sub(s, "placement").get("anti_affinity") == group)
            yield (
                f"servers[{i}].placement.anti_affinity",
                f"anti-affinity group {group} has only {members[0]}: it needs at least two servers",
            )
    yield from _check_dependencies(servers)


def _check_nic(
    where: str,
    server: dict,
    nic: dict,
    subnets: dict[str, _SubnetInfo],
    used: dict[ipaddress.IPv4Address, str],
) -> Iterator[tuple[str, str]]:
    ref = nic.get("subnet")
    info = subnets.get(ref) if isinstance(ref, str) else None
    if isinstance(ref, str) and info is None:
        known = ", ".join(sorted(subnets)) or "none"
        yield f"{where}.subnet", f"unknown subnet {ref} (known: {known})"
    ip = _ip(nic.get("ip"))
    if ip is None:
        return
    if ip in used:
        yield f"{where}.ip", f"{ip} is already used by {used[ip]}"
    else:
        used[ip] = f"{server.get('name')} ({where}.ip)"
    if info is None:
        return
    net = info.network
    if ip not in net:
        yield f"{where}.ip", f"{ip} is outside {info.describe()}"
    elif net.prefixlen < 31 and ip == net.network_address:
        yield f"{where}.ip", f"{ip} is the network address of {info.describe()}"
    elif net.prefixlen < 31 and ip == net.broadcast_address:
        yield f"{where}.ip", f"{ip} is the broadcast address of {info.describe()}"
    elif ip == info.gateway:
        yield f"{where}.ip", f"{ip} is the gateway of {info.describe()}"
    elif info.dhcp and info.dhcp[0] <= ip <= info.dhcp[1]:
        yield (
            f"{where}.ip",
            (
                f"{ip} is in the DHCP range {info.dhcp[0]}-{info.dhcp[1]} of subnet "
                f"{info.ref}: give servers addresses outside it"
            ),
        )


def _check_rpo(at: str, s: dict) -> Iterator[tuple[str, str]]:
    steps_raw = _items(_sub(s, "backup"), "schedule")
    steps = [(st.get("type"), _duration(st.get("every"))) for _, st in steps_raw]
    if not steps_raw or any(e is None or not isinstance(t, str) for t, e in steps):
        return  # the schema reports the malformed step
    gap = restore_point_gap(steps)  # type: ignore[arg-type]
    if gap is None:
        yield (
            f"{at}.backup.schedule",
            ("no full backup: incremental, differential and log backups need a full one to restore from"),
        )
        return
    rpo = _duration(s.get("rpo"))
    if rpo is not None and gap > rpo:
        kind = next(t for t, e in steps if e == gap)
        yield (
            f"{at}.rpo",
            (
                f"{s['rpo']} cannot be met: the backup schedule leaves up to "
                f"{format_duration(gap)} between restore points (most frequent: {kind} every "
                f"{format_duration(gap)}); back up more often or raise the RPO"
            ),
        )


def _check_dependencies(servers: list[tuple[int, dict]]) -> Iterator[tuple[str, str]]:
    index: dict[str, int] = {}  # name -> index of its first definition
    first: dict[str, dict] = {}
    for i, s in servers:
        if isinstance(s.get("name"), str) and s["name"] not in index:
            index[s["name"]], first[s["name"]] = i, s
    graph: dict[str, list[str]] = {}
    for i, s in servers:
        name = s.get("name")
        boot = _sub(s, "boot")
        listed = boot.get("depends_on")
        deps: list[Any] = listed if isinstance(listed, list) else []
        group = boot.get("group", 1)
        for d in deps:
            if not isinstance(d, str):
                continue
            if d not in index:
                yield f"servers[{i}].boot.depends_on", f"unknown server {d}"
                continue
            dep_group = _sub(first[d], "boot").get("group", 1)
            if isinstance(group, int) and isinstance(dep_group, int) and dep_group > group:
                yield (
                    f"servers[{i}].boot.group",
                    (
                        f"group {group} boots before group {dep_group} of {d}, "
                        f"which {name} depends on (use group {dep_group} or later)"
                    ),
                )
        if isinstance(name, str) and index.get(name) == i:
            graph[name] = [d for d in deps if isinstance(d, str) and d in index]
    cycles = find_cycles(graph, limit=MAX_CYCLES_REPORTED + 1)
    for cycle in cycles[:MAX_CYCLES_REPORTED]:
        yield f"servers[{index[cycle[0]]}].boot.depends_on", f"dependency cycle {' -> '.join(cycle)}"
    if len(cycles) > MAX_CYCLES_REPORTED:
        yield (
            "servers",
            f"more dependency cycles than the {MAX_CYCLES_REPORTED} listed: break these first, then validate again",
        )


def semantic_problems(doc: Any) -> list[tuple[str, str]]:
    """The rules the schema cannot express, as ``(field path, message)``."""
    if not isinstance(doc, dict):
        return []
    subnets: dict[str, _SubnetInfo] = {}
    out = list(_check_client_and_contacts(doc))
    out += list(_check_sites(doc, subnets))
    out += list(_check_servers(doc, subnets))
    return out


# --------------------------------------------------------------------------------------------
# Entry points
