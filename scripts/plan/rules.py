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

from drctl.plan.checks import CHECK_KINDS
from drctl.plan.document import duration, format_duration, ipv4, items, restore_point_gap, sub
from drctl.plan.graph import find_cycles

log = logging.getLogger(__name__)

NEUTRON_MIN_LIFETIME_S = 60  # Neutron VPNaaS refuses shorter IKE/IPsec lifetimes
MAX_CYCLES_REPORTED = 20  # each cycle found costs a pass over the graph: bounded on hostile plans


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
    tz = sub(doc, "client").get("timezone")
    if isinstance(tz, str) and _have_tz_database():
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            yield "client.timezone", f"unknown time zone {tz!r} (use an IANA name such as Europe/Paris)"
    contacts = items(doc, "contacts")
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
    sites = items(doc, "sites")
    yield from _unique(sites, "sites", "site")
    peers: dict[str, str] = {}
    for i, site in sites:
        sname = site.get("name")
        peer = site.get("peer_address")
        if isinstance(peer, str) and peer in peers:
            yield f"sites[{i}].peer_address", f"{peer} is already the peer address of site {peers[peer]}"
        elif isinstance(peer, str):
            peers[peer] = str(sname)
        yield from _unique(items(site, "subnets"), f"sites[{i}].subnets", "subnet", f" in site {sname}")
        for j, sn in items(site, "subnets"):
            info = yield from _check_subnet(f"sites[{i}].subnets[{j}]", f"{sname}/{sn.get('name')}", sn)
            if info is None:
                continue
            for other in subnets.values():
                if other.network.overlaps(info.network):
                    yield f"{info.where}.cidr", f"{info.network} overlaps {other.describe()}"
            subnets.setdefault(info.ref, info)
        yield from _check_vpn(f"sites[{i}].vpn", sub(site, "vpn"))


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
    info = _SubnetInfo(ref, where, net, ipv4(sn.get("gateway")), None)
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
    dhcp = sub(sn, "dhcp")
    start, end = ipv4(dhcp.get("start")), ipv4(dhcp.get("end"))
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
        seconds = duration(vpn.get(key))
        if seconds is not None and seconds < NEUTRON_MIN_LIFETIME_S:
            yield (
                f"{where}.{key}",
                f"{vpn[key]} is shorter than the {NEUTRON_MIN_LIFETIME_S}s minimum of Neutron VPNaaS",
            )


def _check_servers(doc: dict, subnets: dict[str, _SubnetInfo]) -> Iterator[tuple[str, str]]:
    servers = items(doc, "servers")
    yield from _unique(servers, "servers", "server")
    used_ips: dict[ipaddress.IPv4Address, str] = {}
    groups: dict[str, list[str]] = {}
    for i, s in servers:
        at = f"servers[{i}]"
        disks = items(s, "disks")
        boots = [d.get("name") for _, d in disks if d.get("boot") is True]
        if disks and len(boots) != 1:
            found = f"{len(boots)} boot disks ({', '.join(map(str, boots))})" if boots else "no boot disk"
            yield f"{at}.disks", f"{found}: mark exactly one disk with boot: true"
        yield from _unique(disks, f"{at}.disks", "disk")
        for j, nic in items(s, "nics"):
            yield from _check_nic(f"{at}.nics[{j}]", s, nic, subnets, used_ips)
        checks = items(s, "checks")
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
        group = sub(s, "placement").get("anti_affinity")
        if isinstance(group, str):
            groups.setdefault(group, []).append(str(s.get("name")))
    for group, members in groups.items():
        if len(members) < 2:
            i = next(i for i, s in servers if sub(s, "placement").get("anti_affinity") == group)
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
    ip = ipv4(nic.get("ip"))
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
    steps_raw = items(sub(s, "backup"), "schedule")
    steps = [(st.get("type"), duration(st.get("every"))) for _, st in steps_raw]
    if not steps_raw or any(e is None or not isinstance(t, str) for t, e in steps):
        return  # the schema reports the malformed step
    gap = restore_point_gap(steps)  # type: ignore[arg-type]
    if gap is None:
        yield (
            f"{at}.backup.schedule",
            ("no full backup: incremental, differential and log backups need a full one to restore from"),
        )
        return
    rpo = duration(s.get("rpo"))
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
        boot = sub(s, "boot")
        listed = boot.get("depends_on")
        deps: list[Any] = listed if isinstance(listed, list) else []
        group = boot.get("group", 1)
        for d in deps:
            if not isinstance(d, str):
                continue
            if d not in index:
                yield f"servers[{i}].boot.depends_on", f"unknown server {d}"
                continue
            dep_group = sub(first[d], "boot").get("group", 1)
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
    out += list(_check_tests(doc))
    return out


def _check_tests(doc: dict) -> Iterator[tuple[str, str]]:
    """Agreed test dates: each tests a class the plan has, once per day."""
    classes = {s.get("class") for _, s in items(doc, "servers")}
    seen: dict[tuple[Any, Any], int] = {}
    for i, t in items(doc, "tests"):
        scope, day = t.get("scope"), t.get("date")
        if scope in ("dr", "backup-tested") and scope not in classes:
            yield (f"tests[{i}].scope", f"no server of class {scope} in the plan: nothing to test on {day}")
        if (day, scope) in seen:
            yield (f"tests[{i}]", f"{scope} test on {day} listed twice (first at tests[{seen[day, scope]}])")
        else:
            seen[day, scope] = i


# --------------------------------------------------------------------------------------------
# Entry points
