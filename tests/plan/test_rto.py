"""Predicted RTO: the critical path of restore (disk sizes / the last drill's throughput) and boot
plus checks (the last drill's, else defaults), against each server's RTO; its policy rule; the
drill report's prediction next to the measured times."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from pathlib import Path

import pytest

from drctl.cli import main
from drctl.plan.rto import (
    DEFAULT_BOOT_S,
    DEFAULT_THROUGHPUT_BYTES_S,
    GIB,
    Measurements,
    last_measurement,
    predict,
)
from drctl.runs.forecast import make_forecast, prediction_rows
from drctl.runs.model import RunSummary, ServerResult
from drctl.runs.report import render_html
from drctl.runs.store import RunStore
from drctl.stack.config import load_stack
from drctl.stack.policy import check_resources, policy_config
from drctl.storage.memory import MemoryStorage
from tests.runs.fixtures import T0, at

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024**2


def server(
    name: str, restore: tuple[float, float], boot: tuple[float, float], size_gb: int, **kw
) -> ServerResult:
    return ServerResult(
        name=name,
        os="debian-12",
        status="ok",
        restore_started_at=at(restore[0]),
        restore_ended_at=at(restore[1]),
        boot_started_at=at(boot[0]),
        verified_at=at(boot[1]),
        rto_achieved_s=boot[1],
        restored_bytes=size_gb * GIB,
        **kw,
    )


def drill(*servers: ServerResult, run_id: str = "20260203T170100Z-aaaaaa") -> RunSummary:
    return RunSummary(
        run_id=run_id,
        stack="demo",
        mode="test",
        target="local",
        started_at=T0,
        ended_at=at(400),
        servers=servers,
        kind="drill",
    ).with_availability()


# The demo's five servers as a drill measured them: 1 GiB in 8 s, 2 GiB in 16 s (128 MiB/s overall).
MEASURED = drill(
    server("dns01", (0, 8), (8, 60), 1),
    server("db01", (0, 16), (60, 100), 2, depends_on=("dns01",)),
    server("app01", (0, 8), (100, 130), 1, depends_on=("db01", "dns01")),
    server("files01", (0, 16), (16, 90), 2),
    server("web01", (8, 16), (130, 150), 1, depends_on=("app01",)),
)


@pytest.fixture
def demo():
    return load_stack("demo", ROOT)


def test_the_prediction_follows_the_critical_path_of_measured_figures(demo) -> None:
    m = last_measurement([MEASURED], demo.plan)
    assert m.run_id == MEASURED.run_id
    assert m.throughput_bytes_s == pytest.approx(7 * GIB / 56)  # 7 GiB restored in 56 s of restores
    p = predict(demo.plan, demo.scope(), m)
    rate = 7 * GIB / 56
    dns = 1 * GIB / rate + 52
    db = max(2 * GIB / rate, dns) + 40
    app = max(1 * GIB / rate, db) + 30
    web = max(1 * GIB / rate, app) + 20
    assert p.server("web01").available_s == pytest.approx(web)
    assert p.server("web01").path == (
        "dns01 restore",
        "dns01 boot+checks",
        "db01 boot+checks",
        "app01 boot+checks",
        "web01 boot+checks",
    )
    assert p.server("files01").available_s == pytest.approx(2 * GIB / rate + 74)
    assert p.last_available_s == pytest.approx(web)
    assert all(s.within_target and s.boot_measured for s in p.servers)


def test_without_a_drill_the_defaults_are_used_and_said(demo, capsys, tmp_path) -> None:
    p = predict(demo.plan, demo.scope(), Measurements())
    assert p.throughput_bytes_s == DEFAULT_THROUGHPUT_BYTES_S and not p.throughput_measured
    assert p.server("dns01").boot_s == DEFAULT_BOOT_S["linux"] and not p.server("dns01").boot_measured
    assert main(["plan", "rto", "demo", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "DEFAULT (no drill measured it yet)" in out and "* default boot+check time" in out


def test_a_run_recorded_before_restored_bytes_counts_with_the_plan_sizes(demo) -> None:
    old = drill(*(dataclasses.replace(s, restored_bytes=None) for s in MEASURED.servers))
    assert last_measurement([old], demo.plan).throughput_bytes_s == pytest.approx(7 * GIB / 56)


def test_plan_rto_reads_the_last_drill_of_the_run_store(demo, tmp_path, capsys) -> None:
    store = RunStore(tmp_path)
    store.record(MEASURED)
    assert main(["plan", "rto", "demo", "--state-dir", str(tmp_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["measured_by"] == MEASURED.run_id and result["throughput_measured"] is True
    web = next(s for s in result["servers"] if s["server"] == "web01")
    assert web["boot_measured"] is True and web["within_target"] is True
    assert web["critical_path"][0] == "dns01 restore"


def _over_target(demo, measured: Measurements):
    tight = dataclasses.replace(demo.plan.server("db01"), rto_s=60)
    files = dataclasses.replace(demo.plan.server("files01"), rto_s=60)
    plan = dataclasses.replace(
        demo.plan, servers=tuple({"db01": tight, "files01": files}.get(s.name, s) for s in demo.plan.servers)
    )
    return predict(plan, demo.scope(), measured), plan


def test_the_policy_is_mandatory_for_dr_servers_once_a_drill_measured_them(demo) -> None:
    prediction, plan = _over_target(demo, last_measurement([MEASURED], demo.plan))
    config = policy_config(failover=False, servers=plan.servers, prediction=prediction)
    report = check_resources([], stack="demo", config=config)
    rto = [v for v in report.violations if v.policy == "predicted-rto-within-target"]
    assert [(v.level, "'db01'" in v.message) for v in rto] == [("mandatory", True)]  # files01 is not dr
    assert (
        f"measured by drill {MEASURED.run_id}" in rto[0].message and "over its RTO of 1 min" in rto[0].message
    )
    assert report.mandatory_failed


def test_the_policy_is_advisory_on_default_figures(demo) -> None:
    prediction, plan = _over_target(demo, Measurements())
    report = check_resources(
        [], stack="demo", config=policy_config(failover=False, servers=plan.servers, prediction=prediction)
    )
    rto = [v for v in report.violations if v.policy == "predicted-rto-within-target"]
    assert {v.level for v in rto} == {"advisory"} and len(rto) == 2  # db01 and files01
    assert not report.mandatory_failed


def test_the_drill_report_shows_the_prediction_error_and_the_cost(demo) -> None:
    storage = MemoryStorage()
    storage.put("repo/data/x", b"x" * 1000)
    forecast = make_forecast(demo, demo.scope(), [MEASURED], storage)
    assert forecast["cost"]["backup_stored_bytes"] == 1000 and forecast["notes"] == []
    # the next drill: every server 10 % slower than predicted
    predicted = {s["server"]: s["predicted_s"] for s in forecast["prediction"]["servers"]}
    servers = tuple(
        dataclasses.replace(
            s,
            rto_achieved_s=predicted[s.name] * 1.1,
            verified_at=T0 + timedelta(seconds=predicted[s.name] * 1.1),
        )
        for s in MEASURED.servers
    )
    run = dataclasses.replace(drill(*servers, run_id="20260204T170100Z-bbbbbb"), forecast=forecast)
    rows = {r.server: r for r in prediction_rows(run.forecast, run.servers)}
    assert rows["web01"].error_pct == pytest.approx(-100 / 11)  # predicted 10/11 of the measured
    assert rows["(last server)"].measured_s == pytest.approx(max(predicted.values()) * 1.1)
    again = RunSummary.from_json(run.to_json())
    assert again.forecast == run.forecast
    html = render_html(again)
    assert 'id="prediction"' in html and "-9.1 %" in html and f"drill {MEASURED.run_id}" in html
    assert "EUR per day" in html and "ILLUSTRATIVE" in html


def test_a_forecast_without_prices_notes_why(demo) -> None:
    bare = dataclasses.replace(demo, settings=dataclasses.replace(demo.settings, prices={}))
    forecast = make_forecast(bare, bare.scope(), [], MemoryStorage())
    assert forecast["cost"] is None and "the stack has no price table" in forecast["notes"][0]
    assert forecast["prediction"]["throughput_measured"] is False
