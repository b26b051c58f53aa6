"""The critical-path computation of the drill benchmark, on a hand-built run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from benchmarks.drill_benchmark import critical_path, table
from drctl.runs.model import RunSummary, ServerResult

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def server(name, deps, restore, boot, verified, status="ok"):
    return ServerResult(
        name=name,
        os="debian-12",
        status=status,
        depends_on=deps,
        restore_started_at=at(0),
        restore_ended_at=at(restore),
        boot_started_at=at(boot) if boot is not None else None,
        verified_at=at(verified) if verified is not None else None,
    )


def test_path_follows_the_slowest_chain_and_ignores_failed_branches():
    # dns: restore 10, boot+checks 30 -> 40; db waits for dns (40) + 20 -> 60;
    # files: restore 50 + 15 -> 65 (longer than the db chain); app failed.
    summary = RunSummary(
        run_id="r",
        stack="demo",
        mode="test",
        target="local",
        started_at=T0,
        ended_at=at(70),
        kind="drill",
        servers=(
            server("dns", (), 10, 10, 40),
            server("db", ("dns",), 12, 40, 60),
            server("files", (), 50, 50, 65),
            server("app", ("db",), 12, None, None, status="failed"),
        ),
    ).with_availability()
    seconds, path = critical_path(summary)
    assert seconds == 65 and path == ["files restore", "files boot+checks"]
    text = table(summary)
    assert "| wall time vs critical path (target ≤ +15%) | +7.7 % PASS |" in text


def test_upstream_chain_dominates_when_longer():
    summary = RunSummary(
        run_id="r",
        stack="demo",
        mode="test",
        target="local",
        started_at=T0,
        ended_at=at(200),
        kind="drill",
        servers=(
            server("dns", (), 10, 10, 40),
            server("db", ("dns",), 5, 40, 100),
        ),
    ).with_availability()
    assert critical_path(summary) == (100, ["dns restore", "dns boot+checks", "db boot+checks"])
    assert "FAIL" in table(summary)  # 200 s wall for a 100 s path
