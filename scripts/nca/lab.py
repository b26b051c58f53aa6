"""``drctl nca test``: the rendered NCA bundle proven end to end in network namespaces.

Topology (addresses exist only inside the namespaces this run creates; ``<id>`` is the run id)::

    drnca-<id>-ws          drnca-<id>-site (the NCA)                drnca-<id>-cloud             drnca-<id>-srv
    eth0 (DHCP) --------- lan0 <users gw>  wan0 <peer_address> --- wan0 <endpoint>  br<i> <gw> --- eth0 <server ip>
                          charon + dnsmasq, the bundle as rendered   charon (SiteVpn policies)    stand-in service

The site runs ``swanctl.conf`` and ``dnsmasq.conf`` exactly as :func:`drctl.nca.render.render_bundle`
wrote them; the cloud side runs :func:`drctl.nca.render.render_cloud_endpoint` from the stack's policies,
plus ``encap = yes`` (the userspace ESP data path needs UDP encapsulation; the site's files stay
untouched). In a drill, ``start(cloud_ns=...)`` puts the VPN endpoint into the sandbox's namespace
and its guests replace the stand-in server.

Each step is timed and reported (:class:`Step`); the first failure raises :class:`LabError`
(exit 20) naming the step. The tunnel must come up with exactly the declared proposals: a peer
that does not accept them gets NO_PROPOSAL_CHOSEN, which the report names.

Size: one module over 400 lines on purpose. :class:`NcaLab` owns one run's namespaces, veths
and daemons from start to teardown, and every proof step (tunnel, lease, DNS, ICMP, HTTP, rekey)
reads that state; splitting the steps out would only pass the lab's internals between modules.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from drctl.nca.labrun import (
    CHARON,
    COMMAND_TIMEOUT,
    DNSMASQ,
    LabError,
    Namespaces,
    lab_netns,
    new_run,
    probe,
    read_log,
    require_tools,
    strongswan_conf,
    swanctl,
    wait_for_charon,
)
from drctl.nca.render import (
    LAN_INTERFACE,
    WAN_INTERFACE,
    Proposals,
    find_site,
    proposals_for,
    render_bundle,
    render_cloud_endpoint,
    write_bundle,
)
from drctl.nca.swan import (
    child_alg,
    established_ike,
    expected_sa,
    ike_alg,
    installed_child,
    parse_pretty,
    ts_text,
)
from drctl.netns import Netns, add_veth, list_namespaces
from drctl.plan.model import Plan, VpnSettings
from drctl.processes import WaitTimedOut, run, wait_until

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "198.51.100.1"
_TROUBLE = re.compile(
    r"error|fail|not supported|unable|unacceptable|no .* found|giving up|timeout", re.IGNORECASE
)


@dataclass(frozen=True)
class Step:
    step: str
    ok: bool
    seconds: float
    detail: str

    def as_dict(self) -> dict:
        return {"step": self.step, "ok": self.ok, "seconds": round(self.seconds, 3), "detail": self.detail}


@dataclass(frozen=True)
class ProbeTarget:
    """The recovered server the workstation must reach: by name (DNS), ICMP and a TCP service."""

    server: str
    ip: str
    port: int | None = None
    http_path: str | None = None  # None: a TCP connect only
    contains: str | None = None  # expected in the HTTP body (a real guest; the stand-in skips it)


def default_target(plan: Plan, name: str | None = None) -> ProbeTarget:
    """The server to reach: ``name``, else the first with an http check on its own address,
    else the first with a port check, else the first with a NIC."""
    rec = {sn.ref for sn in plan.recovery_subnets()}
    servers = [
        s for s in plan.servers if s.nics and s.nics[0].subnet in rec and s.protection != "backup-only"
    ]
    if name is not None:
        servers = [s for s in servers if s.name == name]
        if not servers:
            raise LabError(
                f"--target {name}: no restorable server of that name with a NIC in a recovery subnet"
            )
    for s in servers:
        for c in s.checks:
            if c.kind == "http":
                m = re.match(r"^http://([^/:]+)(?::(\d+))?(/.*)?$", str(c.spec.get("url", "")))
                if m and m.group(1) == s.nics[0].ip:
                    return ProbeTarget(
                        s.name, s.nics[0].ip, int(m.group(2) or 80), m.group(3) or "/", c.spec.get("contains")
                    )
    for s in servers:
        for c in s.checks:
            if c.kind == "port" and c.spec["protocol"] == "tcp":
                return ProbeTarget(s.name, s.nics[0].ip, c.spec["port"])
    if not servers:
        raise LabError("the plan has no restorable server with a NIC in a recovery subnet")
    return ProbeTarget(servers[0].name, servers[0].nics[0].ip)


@dataclass
class _Charon:
    role: str
    ns: str
    directory: Path
    conf: Path
    swanctl_conf: Path

    @property
    def uri(self) -> str:
        return f"unix://{self.directory / 'charon.vici'}"

    @property
    def env(self) -> dict[str, str]:
        return {"STRONGSWAN_CONF": str(self.conf), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}

    def swanctl(self, *args: str, check: bool = True) -> str:
        return swanctl(list(args), self.uri, self.env, check=check).stdout

    def log_text(self) -> str:
        try:
            return (self.directory / "charon.log").read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class NcaLab:
    """One run of the lab. ``site_plan`` (default ``plan``) renders the appliance's bundle; the
    cloud endpoint keeps ``plan``'s policies (or ``cloud_vpn``): an edited site plan whose
    algorithms the cloud does not accept must fail with a proposal mismatch."""

    plan: Plan
    site_name: str
    psk: str = field(repr=False)
    vpn_endpoint_address: str = DEFAULT_ENDPOINT
    site_plan: Plan | None = None
    cloud_vpn: VpnSettings | None = None
    target: ProbeTarget | None = None
    tunnel_timeout_s: float = 15.0
    steps: list[Step] = field(default_factory=list)

    def __post_init__(self) -> None:
        site_plan = self.site_plan or self.plan
        self.site = find_site(site_plan, self.site_name)
        # Render first: a plan the appliance must refuse fails here with exit 1, before any namespace.
        self.bundle = render_bundle(site_plan, self.site_name, self.psk, self.vpn_endpoint_address)
        cloud_site = find_site(self.plan, self.site_name)
        self.cloud_conf = render_cloud_endpoint(
            self.plan,
            self.site_name,
            self.psk,
            self.vpn_endpoint_address,
            vpn=self.cloud_vpn or cloud_site.vpn,
        )
        self.target = self.target or default_target(self.plan)
        self.users = site_plan.user_subnets(self.site)
        self.recovery = self.plan.recovery_subnets()
        self.ns: Namespaces | None = None
        self.charons: dict[str, _Charon] = {}
        self.cloud: Netns | None = None  # where the VPN endpoint runs (ours, or the sandbox's)
        self.stand_in = True
        self.lease: dict = {}

    # --- step bookkeeping -----------------------------------------------------------------------
    def _step(self, name: str, fn: Callable[[], str]) -> str:
        start = time.monotonic()
        try:
            detail = fn()
        except LabError as e:
            self.steps.append(Step(name, False, time.monotonic() - start, e.message))
            raise LabError(f"NCA test of site {self.site_name} failed at step {name!r}: {e.message}") from e
        self.steps.append(Step(name, True, time.monotonic() - start, detail))
        log.info("step %s ok (%.2fs): %s", name, time.monotonic() - start, detail)
        return detail

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps)

    # --- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> NcaLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, cloud_ns: str | None = None) -> None:
        """Create the namespaces and start cloud endpoint, NCA and (own cloud only) the stand-in
        server. ``cloud_ns``: an existing namespace holding the recovery subnets (the sandbox's,
        with the subnets' gateway addresses and the guests); it is used, never deleted."""
        require_tools(ecp="ecp" in self._declared().ike_proposal + self.cloud_conf)
        run_id, run_dir = new_run()
        self.ns = Namespaces(run_id, run_dir)
        self._step("bundle-check", self._check_bundle)
        self._step("namespaces", lambda: self._build(cloud_ns))
        self._step("cloud-endpoint", self._start_cloud)
        self._step("nca-start", self._start_site)

    def probe_all(self) -> list[Step]:
        """Run every check after :meth:`start`; raises :class:`LabError` at the first failure."""
        self._step("tunnel", self._tunnel)
        self._step("pfs-rekey", self._pfs_rekey)
        self._step("dhcp", self._dhcp)
        self._step("dns", self._dns)
        self._step("icmp", self._icmp)
        self._step("tcp", self._tcp)
        return self.steps

    def run(self, cloud_ns: str | None = None) -> bool:
        """start + probe_all + close; returns whether every step passed (the failure, if any, is
        the last step before ``teardown`` with ``ok=False``). For the drill's report."""
        try:
            self.start(cloud_ns=cloud_ns)
            self.probe_all()
        except LabError as e:
            log.warning("%s", e.message)
        finally:
            self.close()
        return self.ok

    def close(self) -> None:
        if self.ns is not None:
            start = time.monotonic()
            self.ns.teardown()
            self.steps.append(
                Step(
                    "teardown",
                    True,
                    time.monotonic() - start,
                    f"namespaces {self.ns.name('*')}, daemons and run directory removed",
                )
            )
            self.ns = None

    # --- steps ----------------------------------------------------------------------------------
    def _check_bundle(self) -> str:
        assert self.ns is not None
        bundle_dir = self.ns.run_dir / "bundle"
        write_bundle(self.bundle, bundle_dir)
        out = run(
            [DNSMASQ, "--test", "-C", str(bundle_dir / "dnsmasq.conf")],
            what="dnsmasq --test",
            check=False,
            timeout=COMMAND_TIMEOUT,
            error=LabError,
        )
        if out.returncode != 0:
            raise LabError(f"dnsmasq refuses the rendered dnsmasq.conf: {(out.stderr or out.stdout).strip()}")
        return "dnsmasq --test: syntax check OK"

    def _build(self, cloud_ns: str | None) -> str:
        ns = self.ns
        assert ns is not None
        site, ws = ns.add("site"), ns.add("ws")
        peer = self.site.peer_address
        if cloud_ns is None:
            cloud = ns.add("cloud")
            cloud_link = WAN_INTERFACE
        else:
            if cloud_ns not in list_namespaces(cloud_ns, error=LabError):
                raise LabError(f"cloud namespace {cloud_ns!r} does not exist")
            cloud, cloud_link = lab_netns(cloud_ns), f"nca{ns.run_id}"
        self.cloud = cloud
        self.stand_in = cloud_ns is None
        add_veth(site, WAN_INTERFACE, cloud, cloud_link)
        if cloud_ns is not None:
            ns.foreign_links.append((cloud, cloud_link))
        for n, link, addr, other in (
            (site, WAN_INTERFACE, peer, self.vpn_endpoint_address),
            (cloud, cloud_link, self.vpn_endpoint_address, peer),
        ):
            # Point-to-point "Internet": /32 addresses with a route to the other end.
            n.ip("addr", "add", f"{addr}/32", "dev", link)
            n.ip("link", "set", link, "up")
            n.ip("route", "add", f"{other}/32", "dev", link)
            n.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], timeout=COMMAND_TIMEOUT)
        add_veth(site, LAN_INTERFACE, ws, "eth0")
        for un in self.users:
            net = ipaddress.ip_network(un.cidr, strict=False)
            site.ip("addr", "add", f"{un.gateway}/{net.prefixlen}", "dev", LAN_INTERFACE)
        site.ip("link", "set", LAN_INTERFACE, "up")
        ws.ip("link", "set", "eth0", "up")
        if cloud_ns is None:
            self._build_recovery(cloud)
        else:
            self._check_recovery(cloud)
        roles = "site, ws, " + ("cloud, srv" if cloud_ns is None else f"attached cloud {cloud_ns}")
        return f"run {ns.run_id}: {roles}"

    def _build_recovery(self, cloud: Netns) -> None:
        """The recovery subnets as bridges (gateway on each, like the Neutron router) and a
        stand-in server namespace on the target's subnet."""
        ns = self.ns
        assert ns is not None and self.target is not None
        srv = ns.add("srv")
        target_net = None
        for i, sn in enumerate(self.recovery):
            net = ipaddress.ip_network(sn.cidr, strict=False)
            br = f"br{i}"
            cloud.add_bridge(
                br, f"{sn.gateway}/{net.prefixlen}", what=f"the bridge of recovery subnet {sn.ref}"
            )
            if ipaddress.ip_address(self.target.ip) in net:
                target_net = (br, net, sn.gateway)
        if target_net is None:
            raise LabError(f"target {self.target.server} ({self.target.ip}) is in no recovery subnet")
        br, net, gw = target_net
        add_veth(cloud, "srv0", srv, "eth0")
        cloud.ip("link", "set", "srv0", "master", br, "up")
        srv.ip("addr", "add", f"{self.target.ip}/{net.prefixlen}", "dev", "eth0")
        srv.ip("link", "set", "eth0", "up")
        if self.target.port:
            www = ns.run_dir / "www"
            www.mkdir()
            (www / "index.html").write_text(f"stand-in for {self.target.server} (drctl nca test)\n")
            proc = ns.start(
                "stand-in",
                srv,
                [
                    sys.executable,
                    "-u",
                    "-m",
                    "http.server",
                    str(self.target.port),
                    "--bind",
                    self.target.ip,
                    "--directory",
                    str(www),
                ],
            )
            try:
                wait_until(
                    lambda: "Serving HTTP" in read_log(proc.log_path),
                    5,
                    f"the stand-in server on {self.target.ip}:{self.target.port}",
                    interval=0.05,
                )
            except WaitTimedOut as e:
                raise LabError(f"{e.message}: {read_log(proc.log_path)[-300:]}") from e
        # After the server is up: http.server's reverse lookup at bind time then fails at once
        # (no route) instead of waiting for a resolver that no namespace of ours can reach.
        srv.ip("route", "add", "default", "via", gw)

    def _check_recovery(self, cloud: Netns) -> None:
        addrs = cloud.ip("-o", "-4", "addr", "show").stdout
        missing = [f"{sn.ref} gateway {sn.gateway}" for sn in self.recovery if f" {sn.gateway}/" not in addrs]
        if missing:
            raise LabError(
                f"cloud namespace {cloud.name} does not route the recovery subnets: missing "
                f"{', '.join(missing)} (give each subnet's bridge its gateway address)"
            )

    def _charon(self, role: str, ns: Netns, conf_text: str) -> _Charon:
        assert self.ns is not None
        directory = self.ns.run_dir / role
        conf = strongswan_conf(directory)
        swanctl_conf = directory / "swanctl.conf"
        swanctl_conf.write_text(conf_text)
        swanctl_conf.chmod(0o600)
        ch = _Charon(role, ns.name, directory, conf, swanctl_conf)
        proc = self.ns.start(f"charon-{role}", ns, [CHARON], env=ch.env, private_run=directory / "run")
        wait_for_charon(proc, directory / "charon.vici", f"charon ({role})")
        self.charons[role] = ch
        return ch

    def _start_cloud(self) -> str:
        assert self.cloud is not None
        text = self.cloud_conf.replace("        version =", "        encap = yes\n        version =", 1)
        ch = self._charon("cloud", self.cloud, text)
        out = ch.swanctl("--load-all", "--noprompt", "--file", str(ch.swanctl_conf))
        return _loaded(out, "cloud")

    def _start_site(self) -> str:
        assert self.ns is not None
        site = lab_netns(self.ns.name("site"))
        bundle_dir = self.ns.run_dir / "bundle"
        pid_file = self.ns.run_dir / "dnsmasq.pid"
        proc = self.ns.start(
            "dnsmasq",
            site,
            [
                DNSMASQ,
                "--keep-in-foreground",
                "-C",
                str(bundle_dir / "dnsmasq.conf"),
                f"--pid-file={pid_file}",
                f"--dhcp-leasefile={self.ns.run_dir / 'dnsmasq.leases'}",
                "--user=root",
                "--group=root",
                f"--log-facility={self.ns.run_dir / 'dnsmasq.log'}",
                "--log-dhcp",
                "--log-queries",
            ],
        )
        pid_file = self.ns.run_dir / "dnsmasq.pid"
        wait_until(
            lambda: pid_file.exists() or proc.popen.poll() is not None,
            10,
            "dnsmasq to start (its pid file)",
            interval=0.05,
            error=LabError,
        )
        if proc.popen.poll() is not None:
            raise LabError(f"dnsmasq exited with the rendered dnsmasq.conf: {read_log(proc.log_path)[-500:]}")
        ch = self._charon("site", site, self.bundle["swanctl.conf"])
        out = ch.swanctl("--load-all", "--noprompt", "--file", str(ch.swanctl_conf))
        return "dnsmasq running; " + _loaded(out, "site")

    def _sas(self, role: str) -> dict:
        return parse_pretty(self.charons[role].swanctl("--list-sas", "--pretty", "--noblock"))

    def _tunnel(self) -> str:
        declared = self._declared()

        def established() -> tuple[dict, dict] | None:
            site_sa, cloud_sa = established_ike(self._sas("site")), established_ike(self._sas("cloud"))
            if installed_child(site_sa) and installed_child(cloud_sa):
                return site_sa, cloud_sa
            mismatch = self._mismatch()
            if mismatch:
                raise LabError(mismatch)
            return None

        try:
            site_sa, cloud_sa = wait_until(
                established, self.tunnel_timeout_s, f"the tunnel of site {self.site_name}", interval=0.2
            )
        except WaitTimedOut as e:
            raise LabError(f"no tunnel: {e.message}; {self._diagnose()}") from e
        want = expected_sa(declared.ike_proposal)
        got_ike = {
            role: {k: sa.get(k) for k in want} for role, sa in (("site", site_sa), ("cloud", cloud_sa))
        }
        want_esp = {
            k: v for k, v in expected_sa(declared.esp_proposal).items() if k not in ("prf-alg", "dh-group")
        }
        for role, sa in (("site", site_sa), ("cloud", cloud_sa)):
            if got_ike[role] != want:
                raise LabError(f"{role} IKE SA negotiated {got_ike[role]}, declared {want}")
            child = installed_child(sa)
            got_esp = {k: child.get(k) for k in want_esp}
            if got_esp != want_esp:
                raise LabError(f"{role} CHILD_SA negotiated {got_esp}, declared {want_esp}")
        child = installed_child(site_sa)
        return (
            f"IKEv{site_sa.get('version')} {ike_alg(site_sa)} on both sides as declared "
            f"({declared.ike_proposal}); CHILD_SA {ts_text(child, 'local-ts')} === "
            f"{ts_text(child, 'remote-ts')} ESP {child_alg(child)}"
        )

    def _declared(self) -> Proposals:
        props, _ = proposals_for(self.site.vpn, self.site_name)
        assert props is not None  # rendering already refused unknown names
        return props

    def _mismatch(self) -> str | None:
        logs = {r: self.charons[r].log_text() for r in ("site", "cloud")}
        if (
            "NO_PROPOSAL_CHOSEN" not in logs["site"] + logs["cloud"]
            and "no acceptable proposal found" not in logs["cloud"]
        ):
            return None
        received = re.findall(r"received proposals: (.*)", logs["cloud"])
        configured = re.findall(r"configured proposals: (.*)", logs["cloud"])
        return (
            "proposal mismatch (NO_PROPOSAL_CHOSEN): the appliance offers "
            f"{received[-1] if received else '?'} but the recovery endpoint accepts only "
            f"{configured[-1] if configured else '?'}; make sites."
            f"{self.site_name}.vpn match the stack's SiteVpn policies and render the bundle again"
        )

    def _diagnose(self) -> str:
        """The lines of both charon logs that say what went wrong."""
        found = []
        for role, ch in self.charons.items():
            bad = [
                line for line in ch.log_text().splitlines() if _TROUBLE.search(line) and "vici" not in line
            ]
            found.append(f"{role} charon: " + (" | ".join(bad[-4:]) if bad else "no error logged"))
        return "; ".join(found)

    def _pfs_rekey(self) -> str:
        """The initial CHILD_SA has no DH exchange: rekey it to prove the declared PFS group."""
        want = expected_sa(self._declared().esp_proposal)["dh-group"]
        site = self.charons["site"]
        before = installed_child(established_ike(self._sas("site"))).get("uniqueid")
        site.swanctl("--rekey", "--child", f"{self.site_name}-recovery")

        def rekeyed() -> dict | None:
            child = installed_child(established_ike(self._sas("site")))
            if child and child.get("uniqueid") != before and child.get("state") == "INSTALLED":
                return child
            mismatch = self._mismatch()
            if mismatch:
                raise LabError("PFS " + mismatch)
            return None

        try:
            child = wait_until(rekeyed, 10, "the CHILD_SA to be rekeyed", interval=0.2)
        except WaitTimedOut as e:
            raise LabError(f"the CHILD_SA was not rekeyed: {e.message}; {self._diagnose()}") from e
        got = child.get("dh-group")
        if got != want:
            raise LabError(f"rekeyed CHILD_SA used PFS group {got}, declared {want}")
        return f"CHILD_SA rekeyed with PFS {got}"

    def _dhcp(self) -> str:
        assert self.ns is not None
        ws = lab_netns(self.ns.name("ws"))
        answered, lease = probe(ws, "dhcp", "--iface", "eth0", "--timeout", "15")
        if not answered:
            raise LabError(f"no DHCP lease from the NCA: {lease.get('error')}")
        ip = ipaddress.ip_address(lease["ip"])
        net = next((u for u in self.users if ip in ipaddress.ip_network(u.cidr, strict=False)), None)
        if net is None or net.dhcp is None:
            raise LabError(f"lease {ip} is in no users subnet of site {self.site_name}")
        lo, hi = ipaddress.ip_address(net.dhcp.start), ipaddress.ip_address(net.dhcp.end)
        problems = []
        # One address family (the lease is inside the subnet, as is its range): integers order them.
        if not int(lo) <= int(ip) <= int(hi):
            problems.append(f"address {ip} outside the range {lo}-{hi}")
        if lease["router"] != [net.gateway]:
            problems.append(f"router {lease['router']} instead of [{net.gateway}]")
        if lease["dns"] != [net.gateway]:
            problems.append(f"DNS {lease['dns']} instead of the NCA [{net.gateway}]")
        if lease["domain"] != self.site.dns_domain:
            problems.append(f"domain {lease['domain']!r} instead of {self.site.dns_domain!r}")
        if problems:
            raise LabError("wrong lease: " + "; ".join(problems))
        ws.ip("addr", "add", f"{ip}/{lease['prefixlen']}", "dev", "eth0")
        ws.ip("route", "add", "default", "via", lease["router"][0])
        self.lease = lease
        return (
            f"lease {ip}/{lease['prefixlen']} in {lo}-{hi}, router {lease['router'][0]}, "
            f"DNS {lease['dns'][0]}, domain {lease['domain']}, {lease['lease_s']}s"
        )

    def _dns(self) -> str:
        assert self.ns is not None and self.target is not None
        fqdn = f"{self.target.server}.{self.site.dns_domain}"
        answered, ans = probe(
            lab_netns(self.ns.name("ws")), "dns", "--server", self.lease["dns"][0], "--name", fqdn
        )
        if not answered:
            raise LabError(f"no DNS answer for {fqdn}: {ans.get('error')}")
        if ans["addresses"] != [self.target.ip]:
            raise LabError(
                f"{fqdn} resolved to {ans['addresses']} (rcode {ans['rcode']}), "
                f"expected its recovery address {self.target.ip}"
            )
        return f"{fqdn} -> {self.target.ip} via the NCA's DNS {self.lease['dns'][0]}"

    def _esp_packets(self) -> int:
        child = installed_child(established_ike(self._sas("site")))
        return int(child.get("packets-out", 0)) if child else 0

    def _icmp(self) -> str:
        assert self.ns is not None and self.target is not None
        before = self._esp_packets()
        answered, out = probe(lab_netns(self.ns.name("ws")), "ping", "--dest", self.target.ip, "--count", "3")
        if not answered or not out.get("received"):
            raise LabError(
                f"{self.target.server} ({self.target.ip}) does not answer ICMP echo "
                f"through the tunnel: {out.get('error') or out}"
            )
        through = self._esp_packets() - before
        if through < out["received"]:
            raise LabError(
                f"echo replies came back but only {through} ESP packets left the NCA: "
                f"the traffic did not go through the tunnel"
            )
        return (
            f"{out['received']}/{out['sent']} echo replies from {self.target.ip}, "
            f"rtt {out['rtt_ms']} ms, {through} ESP packets out"
        )

    def _tcp(self) -> str:
        assert self.ns is not None and self.target is not None
        t = self.target
        if t.port is None:
            return f"{t.server} declares no TCP service: skipped"
        ws = lab_netns(self.ns.name("ws"))
        if t.http_path is None:
            answered, out = probe(ws, "tcp", "--host", t.ip, "--port", str(t.port))
            if not answered:
                raise LabError(out.get("error", "no answer"))
            return f"TCP {t.ip}:{t.port} connected in {out['connect_ms']} ms"
        answered, out = probe(ws, "http", "--host", t.ip, "--port", str(t.port), "--path", t.http_path)
        if not answered:
            raise LabError(out.get("error", "no answer"))
        if out["status"] != 200:
            raise LabError(f"GET {out['url']} answered {out['status']}, expected 200")
        if t.contains and not self.stand_in:
            if t.contains not in out["body"]:
                raise LabError(f"GET {out['url']}: the page does not contain {t.contains!r}")
            return f"GET {out['url']} -> {out['status']}, page contains {t.contains!r}"
        return f"GET {out['url']} -> {out['status']}"


def _loaded(out: str, role: str) -> str:
    m = re.search(r"successfully loaded (\d+) connections", out)
    if not m or m.group(1) == "0":
        raise LabError(f"swanctl ({role}) loaded no connection: {out.strip()[-400:]}")
    return f"{role}: swanctl loaded {m.group(1)} connection(s)"
