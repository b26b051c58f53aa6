"""Network and user reconnection of a drill, per site (service description 8.1 and 10.1).

A DR test covers the servers, the recovery network and the VPN that reconnects the client's sites.
After every server of a local drill has been verified, and before the sandbox is torn down, each
site that has a users LAN gets the NCA lab (:mod:`drctl.nca.lab`) attached to the sandbox's
namespace: the site's NCA bundle, rendered from the plan and the stack's PSK, runs with the real
daemons; the recovery side of the tunnel lives in the sandbox namespace, next to the guests. A
workstation with no address then has to get a lease, resolve a recovered server's name and reach
it through the tunnel (ICMP and the server's own service, checked against the real guest).

One :class:`~drctl.runs.model.SiteReconnection` per site, in plan order, sites one after the other
(the lab's namespaces and daemons are per run; two at once would only compete for two cores).
A site's failure is a ``failed`` result with its steps, never an exception: the drill still gets
its report. A site with no recovered server to reach is ``skipped`` with the reason.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from drctl.errors import DrctlError
from drctl.nca.lab import NcaLab, ProbeTarget
from drctl.plan.model import Check, Plan, Server, Site
from drctl.runs.model import ReconnectionStep, SiteReconnection, utc_now
from drctl.stack.config import StackConfig

log = logging.getLogger(__name__)

_HTTP_URL = re.compile(r"^http://([^/:]+)(?::(\d+))?(/[^\s]*)?$")


def sites_with_users(plan: Plan) -> tuple[Site, ...]:
    """The sites the NCA serves: those with a users LAN (a subnet with a DHCP range and no server).
    A site holding only servers has no workstation to reconnect."""
    return tuple(site for site in plan.sites if plan.user_subnets(site))


def _reachable_servers(plan: Plan, site: Site, available: Iterable[str]) -> list[Server]:
    """Available servers whose first NIC is in a recovery subnet (what the tunnel routes and the
    NCA's DNS names), the site's own servers first, then plan order."""
    up = set(available)
    rec = {sn.ref for sn in plan.recovery_subnets()}
    own = {sn.ref for sn in site.subnets}
    servers = [s for s in plan.servers if s.name in up and s.nics and s.nics[0].subnet in rec]
    return sorted(servers, key=lambda s: s.nics[0].subnet not in own)  # stable: plan order kept


def _critical_first(server: Server) -> list[Check]:
    # A non-critical check may be the one that failed on a server in "warning".
    return sorted(server.checks, key=lambda c: not c.critical)


def _http_target(server: Server, domain: str) -> ProbeTarget | None:
    """The server's first http check that the lab can repeat from a workstation: on the server's
    own address (or name), expecting 200."""
    ip = server.nics[0].ip
    for check in _critical_first(server):
        if check.kind != "http" or not isinstance(check.spec, dict):
            continue
        m = _HTTP_URL.match(str(check.spec.get("url", "")))
        if not m or m.group(1) not in (ip, server.name, f"{server.name}.{domain}"):
            continue
        if int(check.spec.get("status", 200)) != 200:
            continue
        contains = check.spec.get("contains")
        return ProbeTarget(
            server.name, ip, int(m.group(2) or 80), m.group(3) or "/", str(contains) if contains else None
        )
    return None


def _port_target(server: Server) -> ProbeTarget | None:
    for check in _critical_first(server):
        if check.kind == "port" and check.spec["protocol"] == "tcp":
            return ProbeTarget(server.name, server.nics[0].ip, check.spec["port"])
    return None


def choose_target(plan: Plan, site: Site, available: Iterable[str]) -> ProbeTarget | None:
    """The recovered server a workstation of ``site`` must reach: the first available one with an
    http check (its page must then contain the check's text), else one with a port check (a TCP
    connect), else any available one (ICMP and DNS only); None when no server is available."""
    servers = _reachable_servers(plan, site, available)
    for find in (lambda s: _http_target(s, site.dns_domain), _port_target):
        for server in servers:
            target = find(server)
            if target is not None:
                return target
    if servers:
        return ProbeTarget(servers[0].name, servers[0].nics[0].ip)
    return None


def describe_probe(t: ProbeTarget) -> str:
    if t.port is None:
        return f"{t.server} ({t.ip}): name and ICMP only, the plan gives it no port or http check"
    if t.http_path is None:
        return f"{t.server}: TCP {t.ip}:{t.port}"
    text = f" containing {t.contains!r}" if t.contains else ""
    return f"{t.server}: GET http://{t.ip}:{t.port}{t.http_path}{text}"


def check_site(cfg: StackConfig, site: Site, namespace: str, available: Iterable[str]) -> SiteReconnection:
    """Run the NCA lab of one site against the sandbox namespace; never raises a DrctlError."""
    now = utc_now()
    started = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as stored: milliseconds
    target = choose_target(cfg.plan, site, available)
    if target is None:
        reason = (
            "no recovered server is available to reach through the tunnel (no server in "
            "scope passed its checks)"
        )
        log.warning("reconnection of site %s skipped: %s", site.name, reason)
        return SiteReconnection(site=site.name, status="skipped", started_at=started, reason=reason)
    probe = describe_probe(target)
    lab: NcaLab | None = None
    error: str | None = None
    try:
        lab = NcaLab(plan=cfg.plan, site_name=site.name, psk=cfg.psk(site.name), target=target)
        ok = lab.run(cloud_ns=namespace)
    except (DrctlError, OSError) as e:
        # Before or outside the lab's steps: the PSK is missing, the bundle is refused, a tool is
        # missing. lab.run has already torn its namespaces down (finally).
        error = e.message if isinstance(e, DrctlError) else f"{type(e).__name__}: {e}"
        ok = False
    steps = [
        ReconnectionStep(s.step, s.ok, round(s.seconds, 3), s.detail) for s in (lab.steps if lab else ())
    ]
    if error is not None:
        # "setup" when nothing ran yet; else an error between the lab's steps, before its teardown.
        at = len(steps) - 1 if steps and steps[-1].step == "teardown" else len(steps)
        steps.insert(at, ReconnectionStep("lab-error" if steps else "setup", False, 0.0, error))
    failed = next((s for s in steps if not s.ok), None)
    if ok and failed is None:
        log.info("site %s reconnected: %s", site.name, probe)
        return SiteReconnection(
            site=site.name,
            status="ok",
            target=target.server,
            target_ip=target.ip,
            probe=probe,
            started_at=started,
            steps=tuple(steps),
        )
    reason = (
        f"step {failed.step!r} failed: {failed.detail}"
        if failed is not None
        else "the NCA lab recorded no step"
    )
    log.warning("reconnection of site %s failed: %s", site.name, reason)
    return SiteReconnection(
        site=site.name,
        status="failed",
        target=target.server,
        target_ip=target.ip,
        probe=probe,
        started_at=started,
        steps=tuple(steps),
        reason=reason,
    )


def check_sites(cfg: StackConfig, namespace: str, available: set[str]) -> tuple[SiteReconnection, ...]:
    """Per site with a users LAN, in plan order: the NCA tunnel, DHCP, DNS and a recovered server
    reached through the tunnel, with the NCA lab attached to ``namespace`` (the sandbox's, where
    each recovery subnet's bridge holds its gateway and the guests run). ``available``: the names
    of the servers that passed their checks (ok or warning)."""
    return tuple(check_site(cfg, site, namespace, available) for site in sites_with_users(cfg.plan))
