"""The site's network as the NCA appliance sees it, checked: user LANs, recovery subnets, DNS records.

The *recovery subnets* are the plan subnets holding at least one server NIC (they are restored in
the cloud with the same CIDR); a site's *user LANs* are its subnets with a DHCP range and no server
(the workstations, served by the NCA, which is their gateway and DNS). Every problem that would
make the appliance fail silently on site (a DHCP range outside its subnet or around the gateway, a
users LAN overlapping a recovery subnet, a name that is not a DNS label) is appended to the
caller's ``problems`` with the field at fault, so :mod:`drctl.nca.render` reports them all at once.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from drctl.plan.model import Plan, Site, Subnet

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", re.IGNORECASE)


@dataclass(frozen=True)
class UserNet:
    ref: str
    tag: str
    cidr: str
    gateway: str
    start: str
    end: str
    netmask: str
    prefixlen: int


@dataclass(frozen=True)
class HostRecord:
    name: str
    fqdn: str
    ip: str


def ip_or_none(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``value`` as an IP address, or None when it is not one."""
    try:
        return ipaddress.ip_address(str(value))
    except ValueError:
        return None


def _check_user_net(sn: Subnet, where: str, problems: list[str]) -> UserNet | None:
    assert sn.dhcp is not None
    try:
        net = ipaddress.ip_network(sn.cidr, strict=True)
    except ValueError as e:
        problems.append(f"{where}.cidr: {sn.cidr!r} is not a network address ({e}); fix the CIDR")
        return None
    bad = len(problems)
    gw, start, end = ip_or_none(sn.gateway), ip_or_none(sn.dhcp.start), ip_or_none(sn.dhcp.end)
    for fld, addr, text in (
        ("gateway", gw, sn.gateway),
        ("dhcp.start", start, sn.dhcp.start),
        ("dhcp.end", end, sn.dhcp.end),
    ):
        if addr is None:
            problems.append(f"{where}.{fld}: {text!r} is not an IP address")
        elif addr not in net or addr in (net.network_address, net.broadcast_address):
            problems.append(
                f"{where}.{fld}: {text} is outside {sn.cidr} (or is its network/"
                f"broadcast address); put it inside the subnet"
            )
    if len(problems) > bad:
        return None
    assert gw is not None and start is not None and end is not None
    # All three are inside ``net``, hence of its IP version: compare them as integers.
    if int(start) > int(end):
        problems.append(f"{where}.dhcp: start {start} is after end {end}; swap them")
    elif int(start) <= int(gw) <= int(end):
        problems.append(
            f"{where}.dhcp: the gateway {gw} (the NCA itself) is inside the DHCP "
            f"range {start}-{end}; move the range or the gateway"
        )
    if len(problems) > bad:
        return None
    return UserNet(
        ref=sn.ref,
        tag=re.sub(r"[^a-z0-9]", "-", sn.name.lower()),
        cidr=str(net),
        gateway=str(gw),
        start=str(start),
        end=str(end),
        netmask=str(net.netmask),
        prefixlen=net.prefixlen,
    )


def network_model(plan: Plan, site: Site, where: str, problems: list[str]) -> tuple[list[UserNet], list[str]]:
    """The site's user LANs (checked) and the recovery subnets' CIDRs the tunnel must reach."""
    rec = plan.recovery_subnets()
    rec_refs = {sn.ref for sn in rec}
    servers_on: dict[str, list[str]] = {}
    for server in plan.servers:
        for nic in server.nics:
            servers_on.setdefault(nic.subnet, []).append(server.name)
    for sn in site.subnets:
        if sn.dhcp is not None and sn.ref in rec_refs:
            problems.append(
                f"{where}.subnets.{sn.name}.dhcp: {sn.ref} holds servers "
                f"({', '.join(servers_on[sn.ref])}) and is restored in the recovery space, so the "
                f"NCA will not serve DHCP on it; remove its dhcp range or move the workstations "
                f"to a separate users subnet"
            )
    if not rec:
        problems.append(
            "servers: no server has a NIC, so there is no recovery subnet to reach "
            "through the tunnel; give the servers their nics"
        )
    users = [sn for sn in site.subnets if sn.dhcp is not None and sn.ref not in rec_refs]
    if not users and not any(sn.dhcp is not None for sn in site.subnets):
        problems.append(
            f"{where}.subnets: no users subnet (a subnet with a dhcp range and no "
            f"server); add the workstations' LAN with its dhcp range"
        )
    nets = []
    for sn in users:
        swhere = f"{where}.subnets.{sn.name}"
        un = _check_user_net(sn, swhere, problems)
        if un is None:
            continue
        for r in rec:
            if ipaddress.ip_network(r.cidr, strict=False).overlaps(ipaddress.ip_network(un.cidr)):
                problems.append(
                    f"{swhere}.cidr: {un.cidr} overlaps the recovery subnet {r.ref} "
                    f"({r.cidr}); the tunnel could not route between them: give the "
                    f"users' LAN a distinct range"
                )
        nets.append(un)
    return nets, [str(ipaddress.ip_network(r.cidr, strict=False)) for r in rec]


def host_records(plan: Plan, site: Site, where: str, problems: list[str]) -> list[HostRecord]:
    """The DNS records the NCA serves for the site: each restored server under the site's domain."""
    domain = site.dns_domain
    labels = domain.split(".") if domain else []
    if not labels or not all(_LABEL.match(x) for x in labels):
        problems.append(
            f"{where}.dns_domain: {domain!r} is not a DNS domain (e.g. demo.lan); set the site's dns_domain"
        )
        return []
    recs = []
    for server in plan.servers:
        if not _LABEL.match(server.name):
            problems.append(
                f"servers.{server.name}.name: not a valid DNS label (letters, digits, "
                f"hyphens); rename the server"
            )
            continue
        if server.nics and server.protection != "backup-only":  # backup-only: never restored
            recs.append(HostRecord(name=server.name, fqdn=f"{server.name}.{domain}", ip=server.nics[0].ip))
    return recs
