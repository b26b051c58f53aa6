"""A realistic run summary built by hand for the report tests (no code under test computes it).

The demo firm's five servers, test mode, local sandbox, started 2026-02-03 17:01:00 UTC:

==========  =====  ==========  ==========================================================  ==========
server      level  depends on  what happened                                               status
==========  =====  ==========  ==========================================================  ==========
dns01       0      -           restore 0-40 s, boot 40 s, up 55 s, verified 62 s          ok
files01     0      -           restore 0-70 s, boot 70 s, verified 95 s; port 445 (non-   warning
                               critical) never listened
db01        1      dns01       restore 0-90 s, boot 90 s (after dns01 at 62), verified    ok
                               180 s
app01       2      db01, dns01 restore 0-50 s, boot 180 s, http check failed until the     failed
                               deadline at 420 s
web01       3      app01       restore 0-45 s, never started                              not-started
==========  =====  ==========  ==========================================================  ==========

So: first server available after 62 s (1 min 02 s), last after 180 s (3 min 00 s);
ok 2, warning 1, failed 1, not started 1; 5 Linux servers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from drctl.runs.model import CheckResult, RunSummary, ServerResult

T0 = datetime(2026, 2, 3, 17, 1, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def chk(
    name: str, ok: bool, detail: str, start: float, end: float, *, critical: bool = True, attempts: int = 1
) -> CheckResult:
    return CheckResult(
        check=name,
        ok=ok,
        detail=detail,
        critical=critical,
        attempts=attempts,
        started_at=at(start),
        ended_at=at(end),
    )


def demo_summary(**overrides) -> RunSummary:
    servers = (
        ServerResult(
            name="dns01",
            os="debian-12",
            os_family="linux",
            status="ok",
            restore_started_at=at(0),
            restore_ended_at=at(40),
            boot_started_at=at(40),
            verified_at=at(62),
            restore_point="a1b2c3d4",
            restore_point_at=T0 - timedelta(hours=7),
            rpo_achieved_s=7 * 3600,
            rpo_target_s=24 * 3600,
            rto_target_s=4 * 3600,
            rto_achieved_s=62,
            checks=(
                chk("port 53", True, "listening on tcp://0.0.0.0:53", 41, 55, attempts=8),
                chk("service dnsmasq", True, "service dnsmasq is running", 41, 62, attempts=10),
            ),
        ),
        ServerResult(
            name="files01",
            os="debian-12",
            os_family="linux",
            status="warning",
            restore_started_at=at(0),
            restore_ended_at=at(70),
            boot_started_at=at(70),
            verified_at=at(95),
            restore_point="e5f6a7b8",
            restore_point_at=T0 - timedelta(hours=30),
            rpo_achieved_s=30 * 3600,
            rpo_target_s=24 * 3600,
            rto_target_s=24 * 3600,
            rto_achieved_s=95,
            checks=(
                chk("file /srv/share/README.txt", True, "/srv/share/README.txt exists", 71, 88, attempts=9),
                chk("service smbd", True, "service smbd is running", 71, 95, attempts=12),
                chk(
                    "port 445",
                    False,
                    "nothing listens on tcp port 445 (failed after 14 attempt(s))",
                    71,
                    105,
                    critical=False,
                    attempts=14,
                ),
            ),
        ),
        ServerResult(
            name="db01",
            os="debian-12",
            os_family="linux",
            status="ok",
            depends_on=("dns01",),
            restore_started_at=at(0),
            restore_ended_at=at(90),
            boot_started_at=at(90),
            verified_at=at(180),
            restore_point="c9d0e1f2",
            restore_point_at=T0 - timedelta(minutes=11),
            rpo_achieved_s=11 * 60,
            rpo_target_s=15 * 60,
            rto_target_s=2 * 3600,
            rto_achieved_s=180,
            checks=(
                chk("port 5432", True, "listening on tcp://192.168.10.20:5432", 91, 150, attempts=30),
                chk(
                    "service postgresql@15-main",
                    True,
                    "service postgresql@15-main is running",
                    91,
                    180,
                    attempts=45,
                ),
                chk(
                    'command runuser -u postgres -- psql -d catalogue -Atc "SELECT pg_is_in_recovery()::text'
                    " || ':' || label FROM item WHERE sku = 'A-400'\" | grep -qx false:Bureau",
                    True,
                    "exit 0",
                    91,
                    180,
                    attempts=45,
                ),
            ),
        ),
        ServerResult(
            name="app01",
            os="debian-12",
            os_family="linux",
            status="failed",
            depends_on=("db01", "dns01"),
            restore_started_at=at(0),
            restore_ended_at=at(50),
            boot_started_at=at(180),
            verified_at=None,
            restore_point="0a1b2c3d",
            restore_point_at=T0 - timedelta(hours=20),
            rpo_achieved_s=20 * 3600,
            rpo_target_s=24 * 3600,
            rto_target_s=420,
            rto_achieved_s=None,
            reason="critical check failed: http http://192.168.10.30:8080/ -> 200",
            checks=(
                chk("port 8080", True, "listening on tcp://192.168.10.30:8080", 181, 230, attempts=25),
                chk(
                    "http http://192.168.10.30:8080/ -> 200 containing 'catalogue from db01'",
                    False,
                    "HTTP 500 (expected 200): database connection refused (failed after 120 attempt(s))",
                    181,
                    420,
                    attempts=120,
                ),
            ),
        ),
        ServerResult(
            name="web01",
            os="debian-12",
            os_family="linux",
            status="not-started",
            depends_on=("app01",),
            restore_started_at=at(0),
            restore_ended_at=at(45),
            restore_point="4e5f6a7b",
            restore_point_at=T0 - timedelta(hours=5),
            rpo_achieved_s=5 * 3600,
            rpo_target_s=24 * 3600,
            rto_target_s=4 * 3600,
            reason="not started: upstream server app01 failed its checks",
        ),
    )
    fields = {
        "run_id": "20260203T170100Z-3f9a1c",
        "stack": "demo",
        "mode": "test",
        "target": "local",
        "started_at": T0,
        "ended_at": at(430),
        "servers": servers,
        "client_id": "demo",
        "client_name": "Demo SARL",
        "requested_by": "Alice Martin",
        "override_reason": "Semi-annual DR test scheduled on a Saturday with the client",
        "kind": "drill",
        "first_available_s": 62.0,
        "last_available_s": 180.0,
    }
    fields.update(overrides)
    return RunSummary(**fields)
