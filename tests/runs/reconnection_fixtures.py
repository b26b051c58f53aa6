"""Reconnection results built by hand for the model and report tests (no code under test computes
them): the demo firm's site paris, tested 6 min 45 s into the run of tests/runs/fixtures.py.

ok:      every lab step passed; the workstation got 192.168.20.100 and app01's page through the
         tunnel; the steps add up to 14.25 s.
failed:  the tunnel did not come up (the appliance offered aes-128, the cloud accepts aes-256);
         dhcp, dns, icmp and tcp never ran.
skipped: no server was available to reach.
"""

from __future__ import annotations

from drctl.runs.model import ReconnectionStep, SiteReconnection
from tests.runs.fixtures import at

PROBE = "app01: GET http://192.168.10.30:8080/ containing 'catalogue from db01'"
MISMATCH = (
    "proposal mismatch (NO_PROPOSAL_CHOSEN): the appliance offers IKE:AES_CBC_128/HMAC_SHA2_256_128/"
    "PRF_HMAC_SHA2_256/MODP_2048 but the recovery endpoint accepts only IKE:AES_CBC_256/"
    "HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048"
)

OK_STEPS = (
    ("bundle-check", 0.05, "dnsmasq --test: syntax check OK"),
    ("namespaces", 0.4, "run 1a2b3c: site, ws, attached cloud drsb-x"),
    ("cloud-endpoint", 0.6, "cloud: swanctl loaded 1 connection(s)"),
    ("nca-start", 0.7, "dnsmasq running; site: swanctl loaded 1 connection(s)"),
    (
        "tunnel",
        2.5,
        "IKEv2 AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048 on both sides as declared",
    ),
    ("pfs-rekey", 1.2, "CHILD_SA rekeyed with PFS MODP_2048"),
    ("dhcp", 3.1, "lease 192.168.20.100/24 in 192.168.20.100-192.168.20.199, router 192.168.20.1"),
    ("dns", 0.3, "app01.demo.lan -> 192.168.10.30 via the NCA's DNS 192.168.20.1"),
    ("icmp", 2.2, "3/3 echo replies from 192.168.10.30, rtt 1.2 ms, 3 ESP packets out"),
    ("tcp", 0.4, "GET http://192.168.10.30:8080/ -> 200, page contains 'catalogue from db01'"),
    ("teardown", 2.8, "namespaces drnca-1a2b3c-*, daemons and run directory removed"),
)


def paris_ok() -> SiteReconnection:
    return SiteReconnection(
        site="paris",
        status="ok",
        target="app01",
        target_ip="192.168.10.30",
        probe=PROBE,
        started_at=at(405),
        steps=tuple(ReconnectionStep(n, True, s, d) for n, s, d in OK_STEPS),
    )


def paris_failed() -> SiteReconnection:
    steps = tuple(ReconnectionStep(n, True, s, d) for n, s, d in OK_STEPS[:4]) + (
        ReconnectionStep("tunnel", False, 1.5, MISMATCH),
        ReconnectionStep(
            "teardown", True, 2.0, "namespaces drnca-1a2b3c-*, daemons and run directory removed"
        ),
    )
    return SiteReconnection(
        site="paris",
        status="failed",
        target="app01",
        target_ip="192.168.10.30",
        probe=PROBE,
        started_at=at(405),
        steps=steps,
        reason=f"step 'tunnel' failed: {MISMATCH}",
    )


def lyon_skipped() -> SiteReconnection:
    return SiteReconnection(
        site="lyon",
        status="skipped",
        started_at=at(405),
        reason="no recovered server is available to reach through the tunnel",
    )
