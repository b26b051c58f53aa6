"""The site router's FRR configuration for MPLS BVPN reconnection (service description 10.2).

In a real disaster every site's traffic to the servers is rerouted to the recovery space. With
an MPLS (BVPN) network the site router learns the recovery subnets over BGP from up to three
paths and must prefer them in this order: nominal MPLS access > backup MPLS access > the VPN.
The rendered ``frr.conf`` (template ``scripts/nca/templates/site-frr.conf.j2``) gives each path a
``weight`` (the router's own choice) and, on the routes it accepts, a ``local-preference`` (what
the other routers of the site's AS follow), 300 / 200 / 100; it accepts only the recovery
subnets from those peers and announces only the subnets that stay on site (the server subnets
are rebuilt, same CIDRs, in the recovery space: announcing them from the site would blackhole
them). The plan declares it per site:

    mpls: {asn: 65010, router_id: 192.168.10.1,
           nominal: {neighbor: 10.255.0.1, remote_as: 3215},
           backup: {neighbor: 10.255.1.1, remote_as: 3215},      # optional
           vpn: {neighbor: 169.254.10.1, remote_as: 64512}}

The behaviour is proven with FRR itself in ``tests/nca/test_bgp.py`` (the rendered config in
bgpd, three provider routers in namespaces, accesses taken down one by one). Rendering is pure
(plan in, text out). :func:`frr_parse_errors` is the one I/O function: FRR's own parser
(``vtysh --dryrun``) on the rendered text; ``drctl nca render`` runs it when FRR is installed.
"""

from __future__ import annotations

import ipaddress
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jinja2

from drctl.errors import InvalidInput
from drctl.plan.model import BgpPeer, Plan, Site
from drctl.processes import run

# Role, then the weight and local-preference of the routes learned on that path.
PREFERENCE = (("nominal", 300), ("backup", 200), ("vpn", 100))
TEMPLATE = "site-frr.conf.j2"


class BgpRenderError(InvalidInput):
    """The site router's BGP configuration cannot be rendered from this plan."""


@dataclass(frozen=True)
class BgpPath:
    role: str
    neighbor: str
    remote_as: int
    preference: int

    @property
    def route_map(self) -> str:
        return f"DR-{self.role.upper()}-IN"


def paths(site: Site) -> tuple[BgpPath, ...]:
    """The site's BGP paths to the recovery space, most preferred first."""
    assert site.mpls is not None
    peers: dict[str, BgpPeer | None] = {
        "nominal": site.mpls.nominal,
        "backup": site.mpls.backup,
        "vpn": site.mpls.vpn,
    }
    return tuple(
        BgpPath(role, p.neighbor, p.remote_as, pref)
        for role, pref in PREFERENCE
        if (p := peers[role]) is not None
    )


def _problems(plan: Plan, site: Site, chosen: tuple[BgpPath, ...], router_id: str) -> list[str]:
    assert site.mpls is not None
    where = f"sites.{site.name}.mpls"
    problems = []
    seen: dict[str, str] = {}
    nets = [
        (sn.ref, ipaddress.ip_network(sn.cidr, strict=False))
        for sn in (*plan.recovery_subnets(), *site.subnets)
    ]
    for p in chosen:
        addr = ipaddress.ip_address(p.neighbor)
        if p.neighbor in seen:
            problems.append(
                f"{where}.{p.role}.neighbor: {p.neighbor} is also the {seen[p.neighbor]} "
                "neighbor; each path needs its own BGP session"
            )
        seen.setdefault(p.neighbor, p.role)
        inside = [ref for ref, net in nets if addr in net]
        if inside:
            problems.append(
                f"{where}.{p.role}.neighbor: {p.neighbor} is inside subnet {inside[0]}; "
                "a BGP neighbor sits on the access link, outside the LANs it routes"
            )
    if site.mpls.nominal.remote_as == site.mpls.asn:
        problems.append(
            f"{where}.nominal.remote_as: {site.mpls.asn} is the site's own AS; the MPLS "
            "provider's PE is an eBGP neighbor with the provider's AS"
        )
    if not plan.recovery_subnets():
        problems.append(f"{where}: the plan has no recovery subnet (no server NIC) to route to")
    try:
        ipaddress.IPv4Address(router_id)
    except ValueError:
        problems.append(f"{where}.router_id: {router_id!r} is not an IPv4 address")
    return problems


def render_frr(plan: Plan, site: Site, env: jinja2.Environment) -> str:
    """``frr.conf`` of the site's router; raises :class:`BgpRenderError` listing every problem."""
    if site.mpls is None:
        raise BgpRenderError(
            f"site {site.name} declares no mpls block: nothing to render "
            f"(add sites.{site.name}.mpls to the plan for MPLS BVPN reconnection)"
        )
    chosen = paths(site)
    recovered = plan.recovery_subnets()
    staying = [sn for sn in site.subnets if sn not in recovered]
    router_id = site.mpls.router_id or (staying or list(site.subnets))[0].gateway
    problems = _problems(plan, site, chosen, router_id)
    if problems:
        raise BgpRenderError(
            f"cannot render the BGP configuration of site {site.name} (client "
            f"{plan.client.id}):\n  " + "\n  ".join(problems)
        )
    return env.get_template(TEMPLATE).render(
        client_id=plan.client.id,
        site=site,
        asn=site.mpls.asn,
        router_id=router_id,
        paths=chosen,
        recovery=[sn.cidr for sn in recovered],
        site_nets=[sn.cidr for sn in staying],
    )


def frr_parse_errors(text: str) -> list[str] | None:
    """FRR's own verdict on ``text``: the lines its parser refused ([] if none), or None when
    ``vtysh`` (Debian package frr) is not installed. ``vtysh --dryrun`` reports some refused lines
    with exit status 0, so its output is read, not only its status."""
    vtysh = shutil.which("vtysh")
    if vtysh is None:
        return None
    with tempfile.TemporaryDirectory(prefix="drctl-frr-") as tmp:
        conf = Path(tmp) / "frr.conf"
        conf.write_text(text)
        p = run(
            [vtysh, "--dryrun", "-f", str(conf)],
            what="FRR's parse check (vtysh --dryrun)",
            timeout=60,
            check=False,
        )
    errors = [line.strip() for line in (p.stdout + p.stderr).splitlines() if "%" in line]
    if p.returncode != 0 and not errors:
        errors = [f"vtysh --dryrun exited with status {p.returncode}"]
    return errors
