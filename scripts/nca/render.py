"""The NCA appliance bundle: render a site's strongSwan and dnsmasq configuration from the plan.

The NCA is the box installed on a client's site during a test or a real activation: it holds the
IPsec tunnel to the recovery space and replaces the DHCP and DNS the disaster destroyed
(service description §10.1). This module is pure: plan + PSK + endpoint address in, file contents
out. Every problem that would make the appliance fail silently on site (overlapping subnets, a
short PSK, a DHCP range outside its subnet, an algorithm strongSwan would not parse the way the
cloud side means it) is refused here, all problems at once, naming site, subnet and field.

The site's network as the appliance sees it (recovery subnets, user LANs, DNS records) and its
checks are :mod:`drctl.nca.network`; this module maps the VPN settings to strongSwan proposals,
fills the templates and writes the bundle.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from drctl.errors import InvalidInput
from drctl.nca.network import host_records, ip_or_none, network_model
from drctl.plan.model import Plan, Site, VpnSettings
from drctl.private_files import write_private_tree

# Interface names of the appliance; the lab (drctl.nca.lab) names its veths the same, so the
# rendered files run there exactly as rendered.
LAN_INTERFACE = "lan0"
WAN_INTERFACE = "wan0"
LEASE_TIME = "12h"
DPD_DELAY_S = 30
MIN_PSK_LENGTH = 20
MIN_LIFETIME_S = 60

BUNDLE_FILES = ("swanctl.conf", "dnsmasq.conf", "nca.env", "README.txt")

# Plan (Neutron VPNaaS) names -> strongSwan proposal keywords. Anything else is refused.
ENCRYPTION = {"aes-128": "aes128", "aes-192": "aes192", "aes-256": "aes256"}
INTEGRITY = {"sha1": "sha1", "sha256": "sha256", "sha384": "sha384", "sha512": "sha512"}
PFS_GROUPS = {
    "group2": "modp1024",
    "group5": "modp1536",
    "group14": "modp2048",
    "group15": "modp3072",
    "group16": "modp4096",
    "group17": "modp6144",
    "group18": "modp8192",
    "group19": "ecp256",
    "group20": "ecp384",
    "group21": "ecp521",
}
IKE_VERSIONS = {"v1": 1, "v2": 2}


class NcaRenderError(InvalidInput):
    """The NCA bundle cannot be rendered from this plan."""


@dataclass(frozen=True)
class Proposals:
    """A site's VPN parameters as strongSwan keywords (one proposal each, no fallback)."""

    version: int
    ike_proposal: str
    esp_proposal: str
    ike_rekey_s: int
    ike_over_s: int
    child_rekey_s: int
    child_life_s: int


def _margin(lifetime_s: int) -> int:
    # Rekey before the SA expires, like strongSwan's legacy margintime (9 min), at most 10 %.
    return min(540, max(1, lifetime_s // 10))


def proposals_for(vpn: VpnSettings, where: str) -> tuple[Proposals | None, list[str]]:
    """Map plan algorithm names to strongSwan proposals; returns (proposals, problems)."""
    problems: list[str] = []

    def pick(table: dict[str, Any], value: str, fld: str) -> Any:
        key = str(value).strip().lower()
        if key not in table:
            problems.append(
                f"{where}.vpn.{fld}: unknown value {value!r}; use one of {', '.join(sorted(table))}"
            )
            return None
        return table[key]

    version = pick(IKE_VERSIONS, vpn.ike_version, "ike_version")
    enc = pick(ENCRYPTION, vpn.encryption, "encryption")
    integ = pick(INTEGRITY, vpn.integrity, "integrity")
    dh = pick(PFS_GROUPS, vpn.pfs, "pfs")
    for fld, value in (("ike_lifetime", vpn.ike_lifetime_s), ("ipsec_lifetime", vpn.ipsec_lifetime_s)):
        if value < MIN_LIFETIME_S:
            problems.append(
                f"{where}.vpn.{fld}: {value}s is too short; use at least "
                f"{MIN_LIFETIME_S}s (e.g. 8h for IKE, 1h for IPsec)"
            )
    if problems:
        return None, problems
    proposal = f"{enc}-{integ}-{dh}"
    ike_margin = _margin(vpn.ike_lifetime_s)
    child_margin = _margin(vpn.ipsec_lifetime_s)
    return Proposals(
        version=version,
        ike_proposal=proposal,
        esp_proposal=proposal,
        ike_rekey_s=vpn.ike_lifetime_s - ike_margin,
        ike_over_s=ike_margin,
        child_rekey_s=vpn.ipsec_lifetime_s - child_margin,
        child_life_s=vpn.ipsec_lifetime_s,
    ), []


def find_site(plan: Plan, site_name: str) -> Site:
    for site in plan.sites:
        if site.name == site_name:
            return site
    known = ", ".join(s.name for s in plan.sites) or "none"
    raise NcaRenderError(
        f"site {site_name!r} is not in the plan of client {plan.client.id} "
        f"(sites: {known}); pass --site with one of them"
    )


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("drctl.nca", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def _context(
    plan: Plan,
    site_name: str,
    psk: str,
    vpn_endpoint_address: str,
    recovery_vpn_address: str | None,
    vpn: VpnSettings | None,
) -> dict[str, Any]:
    site = find_site(plan, site_name)
    where = f"sites.{site.name}"
    problems: list[str] = []
    if not isinstance(psk, str) or len(psk) < MIN_PSK_LENGTH:
        problems.append(
            f"{where}: the VPN pre-shared key has {len(psk or '')} characters; the "
            f"policy requires at least {MIN_PSK_LENGTH}: set a longer secret with "
            f"`pulumi config set --secret`"
        )
    if ip_or_none(site.peer_address) is None:
        problems.append(
            f"{where}.peer_address: {site.peer_address!r} is not an IP address; give "
            f"the site's public address"
        )
    if ip_or_none(vpn_endpoint_address) is None:
        problems.append(
            f"the recovery VPN endpoint address {vpn_endpoint_address!r} is not an IP "
            f"address; pass the VPN service's external address"
        )
    props, bad = proposals_for(vpn or site.vpn, where)
    problems.extend(bad)
    nets, rec_cidrs = network_model(plan, site, where, problems)
    records = host_records(plan, site, where, problems)
    if problems:
        raise NcaRenderError(
            f"cannot render the NCA bundle of site {site.name} (client {plan.client.id}):\n  "
            + "\n  ".join(problems)
        )
    remote_id = recovery_vpn_address or vpn_endpoint_address
    return {
        "client_id": plan.client.id,
        "site": site,
        "vpn": props,
        "conn_name": f"{plan.client.id}-{site.name}",
        "child_name": f"{site.name}-recovery",
        "remote_address": vpn_endpoint_address,
        "local_id": site.peer_address,
        "remote_id": remote_id,
        "local_ts": [n.cidr for n in nets],
        "remote_ts": rec_cidrs,
        "user_nets": nets,
        "lan_addresses": [f"{n.gateway}/{n.prefixlen}" for n in nets],
        "records": records,
        "dpd_delay_s": DPD_DELAY_S,
        "lease_time": LEASE_TIME,
        "lan_interface": LAN_INTERFACE,
        "wan_interface": WAN_INTERFACE,
        "psk_b64": base64.b64encode(psk.encode("utf-8")).decode("ascii"),
    }


def render_bundle(
    plan: Plan,
    site_name: str,
    psk: str,
    vpn_endpoint_address: str,
    *,
    recovery_vpn_address: str | None = None,
) -> dict[str, str]:
    """Render the NCA bundle of ``site_name``: ``{filename: content}`` (see ``BUNDLE_FILES``; plus
    ``frr.conf`` for the site router when the site declares ``mpls``, see :mod:`drctl.nca.bgp`).

    ``vpn_endpoint_address`` is the recovery space's VPN endpoint (the Neutron VPN service's
    external address), which the appliance connects to. ``recovery_vpn_address`` is that
    endpoint's IKE identity when it differs from the address (NAT); it defaults to the address.
    The result contains the PSK: write it with :func:`write_bundle` (mode 0600).
    Raises :class:`NcaRenderError` (exit 1) listing every problem of the plan.
    """
    ctx = _context(plan, site_name, psk, vpn_endpoint_address, recovery_vpn_address, None)
    env = _env()
    bundle = {
        "swanctl.conf": env.get_template("nca-swanctl.conf.j2").render(ctx),
        "dnsmasq.conf": env.get_template("nca-dnsmasq.conf.j2").render(ctx),
        "nca.env": env.get_template("nca-env.j2").render(ctx),
        "README.txt": env.get_template("nca-readme.txt.j2").render(ctx),
    }
    if ctx["site"].mpls is not None:  # MPLS BVPN option (10.2): the site router's BGP preferences
        from drctl.nca.bgp import render_frr

        bundle["frr.conf"] = render_frr(plan, ctx["site"], env)
    return bundle


def render_cloud_endpoint(
    plan: Plan,
    site_name: str,
    psk: str,
    vpn_endpoint_address: str,
    *,
    vpn: VpnSettings | None = None,
    recovery_vpn_address: str | None = None,
) -> str:
    """The cloud side of the site's tunnel as a strongSwan ``swanctl.conf`` (what Neutron VPNaaS
    runs from the SiteVpn's policies). ``vpn`` overrides the site's settings: the cloud keeps the
    stack's declared policy while the appliance may have been rendered from an edited plan."""
    ctx = _context(plan, site_name, psk, vpn_endpoint_address, recovery_vpn_address, vpn)
    ctx = dict(
        ctx,
        local_address=vpn_endpoint_address,
        local_id=ctx["remote_id"],
        remote_id=ctx["site"].peer_address,
        local_ts=ctx["remote_ts"],
        remote_ts=ctx["local_ts"],
    )
    return _env().get_template("nca-cloud-swanctl.conf.j2").render(ctx)


def write_bundle(
    bundle: dict[str, str], out_dir: str | os.PathLike[str], *, force: bool = False
) -> list[Path]:
    """Write the files (they hold the PSK) as the directory ``out_dir``: mode 0700, files 0600,
    built beside it and renamed into place (:func:`drctl.private_files.write_private_tree`). An
    existing ``out_dir`` must be the caller's own, writable by nobody else, and empty; ``force``
    replaces an earlier bundle (only bundle files in it); a symbolic link is never followed."""
    return write_private_tree(out_dir, bundle, force=force, replaceable=(*BUNDLE_FILES, "frr.conf"))
