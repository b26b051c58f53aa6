"""RunSummary <-> JSON: the documented --json shape, ISO-8601 UTC times, derived figures."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from drctl.runs.model import (
    CheckResult,
    RunSummary,
    ServerResult,
    ServerStatus,
    SummaryInvalid,
    format_ts,
    new_run_id,
    outcome_reason,
    server_outcome,
    verified_at,
)
from tests.runs.fixtures import T0, at, demo_summary
from tests.runs.reconnection_fixtures import paris_failed

SUMMARY_TOP_KEYS = [
    "run_id",
    "stack",
    "mode",
    "target",
    "started_at",
    "ended_at",
    "first_available_s",
    "last_available_s",
    "servers",
]
SUMMARY_SERVER_KEYS = [
    "name",
    "os",
    "status",
    "restore_started_at",
    "restore_ended_at",
    "boot_started_at",
    "verified_at",
    "restore_point",
    "rpo_achieved_s",
    "rto_target_s",
    "rto_achieved_s",
    "checks",
]


def test_json_starts_with_the_documented_keys_in_order_and_uses_utc_z_times():
    doc = json.loads(demo_summary().to_json())
    assert list(doc)[: len(SUMMARY_TOP_KEYS)] == SUMMARY_TOP_KEYS
    for server in doc["servers"]:
        assert list(server)[: len(SUMMARY_SERVER_KEYS)] == SUMMARY_SERVER_KEYS
        for c in server["checks"]:
            assert list(c)[:3] == ["check", "ok", "detail"]
    assert doc["started_at"] == "2026-02-03T17:01:00Z"
    assert doc["ended_at"] == "2026-02-03T17:08:10Z"
    db01 = next(s for s in doc["servers"] if s["name"] == "db01")
    assert db01["verified_at"] == "2026-02-03T17:04:00Z"
    assert db01["status"] == "ok" and db01["restore_point"] == "c9d0e1f2"
    web01 = next(s for s in doc["servers"] if s["name"] == "web01")
    assert web01["status"] == "not-started" and web01["boot_started_at"] is None
    assert web01["reason"].startswith("not started")
    assert web01["depends_on"] == ["app01"]
    # extra keys the report needs
    assert doc["client_id"] == "demo" and doc["requested_by"] == "Alice Martin"
    assert doc["override_reason"].startswith("Semi-annual")
    assert doc["counts"] == {"ok": 2, "warning": 1, "failed": 1, "not-started": 1}
    assert doc["outcome"] == "failed"


def test_round_trip_is_lossless():
    s = demo_summary()
    again = RunSummary.from_json(s.to_json())
    assert again == s
    assert again.canonical_bytes() == s.canonical_bytes()
    assert s.canonical_bytes().endswith(b"}\n")


def test_other_time_zones_are_stored_as_utc():
    paris = timezone(timedelta(hours=1))
    s = demo_summary(started_at=datetime(2026, 2, 3, 18, 1, 0, 500000, tzinfo=paris))
    assert s.to_dict()["started_at"] == "2026-02-03T17:01:00.500Z"
    with pytest.raises(ValueError):
        format_ts(datetime(2026, 2, 3, 17, 1))  # naive: refused


def test_availability_is_derived_from_verified_times():
    # Built without first/last: dns01 verified at +62 s, files01 +95 s, db01 +180 s; app01 failed.
    s = demo_summary(first_available_s=None, last_available_s=None)
    s = replace(s, servers=tuple(replace(v, rto_achieved_s=None) for v in s.servers)).with_availability()
    assert s.first_available_s == 62.0
    assert s.last_available_s == 180.0
    assert s.server("files01").rto_achieved_s == 95.0
    assert s.server("app01").rto_achieved_s is None  # never available
    assert s.server("web01").rto_achieved_s is None


def test_counts_families_outcome_and_levels():
    s = demo_summary()
    assert s.counts() == {"ok": 2, "warning": 1, "failed": 1, "not-started": 1}
    win = ServerResult(name="ad01", os="windows-2019", os_family="windows", status="ok")
    s2 = replace(s, servers=s.servers + (win,))
    assert s2.os_families() == {"linux": 5, "windows": 1}
    assert s.dependency_levels() == {"dns01": 0, "files01": 0, "db01": 1, "app01": 2, "web01": 3}
    ok_only = replace(s, servers=(s.server("dns01"),))
    assert ok_only.outcome == "ok"
    assert replace(s, servers=(s.server("dns01"), s.server("files01"))).outcome == "warning"
    assert s.server("files01").rpo_met is False  # 30 h old restore point, 24 h target
    assert s.server("db01").rpo_met is True


def test_up_at_is_the_first_passing_check_when_boot_end_is_unknown():
    v = demo_summary().server("dns01")
    assert v.up_at == at(55)
    assert replace(v, boot_ended_at=at(50)).up_at == at(50)


def test_bad_documents_are_rejected_with_the_field_named():
    doc = json.loads(demo_summary().to_json())
    doc["servers"][1]["status"] = "great"
    with pytest.raises(SummaryInvalid, match="files01.*great"):
        RunSummary.from_dict(doc)
    doc = json.loads(demo_summary().to_json())
    doc["servers"][0]["verified_at"] = "yesterday"
    with pytest.raises(SummaryInvalid, match="dns01.*verified_at"):
        RunSummary.from_dict(doc)
    doc = json.loads(demo_summary().to_json())
    doc["started_at"] = "2026-02-03T17:01:00"  # no zone
    with pytest.raises(SummaryInvalid, match="time zone"):
        RunSummary.from_dict(doc)
    with pytest.raises(SummaryInvalid, match="not valid JSON"):
        RunSummary.from_json(b"{nope")
    assert SummaryInvalid("x").exit_code == 1


def test_unknown_keys_are_ignored_for_forward_compatibility():
    doc = json.loads(demo_summary().to_json())
    doc["future_field"] = {"a": 1}
    doc["servers"][0]["gpu"] = "none"
    assert RunSummary.from_dict(doc) == demo_summary()


def test_dependency_cycle_is_reported():
    a = ServerResult(name="a", os="", status="ok", depends_on=("b",))
    b = ServerResult(name="b", os="", status="ok", depends_on=("a",))
    s = RunSummary(
        run_id="r", stack="x", mode="test", target="local", started_at=T0, ended_at=None, servers=(a, b)
    )
    with pytest.raises(SummaryInvalid, match="run r: servers in a dependency cycle: a -> b -> a"):
        s.dependency_levels()


def test_levels_of_a_5000_server_chain() -> None:
    chain = tuple(
        ServerResult(name=f"s{i}", os="", status="ok", depends_on=(f"s{i + 1}",) if i < 4999 else ())
        for i in range(5000)
    )
    s = RunSummary(
        run_id="r", stack="x", mode="test", target="local", started_at=T0, ended_at=None, servers=chain
    )
    levels = s.dependency_levels()
    assert levels["s4999"] == 0 and levels["s0"] == 4999


def test_status_is_a_typed_value_that_reads_and_writes_as_its_string():
    s = demo_summary()
    assert all(isinstance(v.status, ServerStatus) for v in s.servers)
    assert s.server("web01").status is ServerStatus.NOT_STARTED and s.outcome is ServerStatus.FAILED
    assert json.loads(s.to_json())["servers"][4]["status"] == "not-started"
    assert f"{s.server('files01').status:<9}|" == "warning  |"
    assert [v.available for v in ServerStatus] == [True, True, False, False]
    with pytest.raises(SummaryInvalid, match="server 'x': status 'pending' is not one of ok, warning"):
        ServerResult(name="x", os="", status="pending")


def test_outcome_rules_judge_a_servers_check_results():
    ok = CheckResult("port 22", True, "", started_at=at(1), ended_at=at(5))
    late = CheckResult("service sshd", True, "", started_at=at(1), ended_at=at(9))
    cosmetic = CheckResult("port 445", False, "closed", critical=False, ended_at=at(20))
    broken = CheckResult("service postgresql", False, "inactive", ended_at=at(30))
    assert (server_outcome([ok, late]), outcome_reason([ok, late]), verified_at([ok, late])) == (
        "ok",
        None,
        at(9),
    )
    assert server_outcome([ok, cosmetic]) is ServerStatus.WARNING
    assert outcome_reason([ok, cosmetic]) == "non-critical check(s) failed: port 445"
    assert verified_at([ok, cosmetic]) == at(5)
    assert server_outcome([ok, broken, cosmetic]) is ServerStatus.FAILED
    assert outcome_reason([ok, broken, cosmetic]) == "critical check(s) failed: service postgresql"
    assert verified_at([ok, broken]) is None
    assert server_outcome([]) is ServerStatus.OK and verified_at([]) is None


def test_the_run_exit_code_is_judged_once_from_its_servers():
    s = demo_summary()  # app01 failed its checks, web01 not started
    assert s.exit_code == 20
    assert replace(s, servers=(s.server("dns01"), s.server("files01"))).exit_code == 0  # a warning
    reconnection_failed = replace(s, servers=(s.server("dns01"),), reconnection=(paris_failed(),))
    assert reconnection_failed.exit_code == 20

    def failed_with(name: str, error: str, code: int) -> ServerResult:
        return replace(s.server(name), status="failed", error=error, exit_code=code)

    storage = failed_with("db01", "StorageUnavailable", 14)
    tampered = failed_with("files01", "ChunkCorrupt", 13)
    guest = failed_with("dns01", "GuestFailed", 20)
    assert replace(s, servers=(guest, s.server("app01"))).exit_code == 20
    assert replace(s, servers=(guest, storage)).exit_code == 14  # 14 over 20
    assert replace(s, servers=(storage, tampered, guest)).exit_code == 13  # tampered data first
    doc = json.loads(replace(s, servers=(storage, tampered)).to_json())
    assert doc["exit_code"] == 13 and doc["outcome"] == "failed"
    assert (doc["servers"][1]["error"], doc["servers"][1]["exit_code"]) == ("ChunkCorrupt", 13)
    again = RunSummary.from_json(replace(s, servers=(storage, tampered)).to_json())
    assert again.server("files01").error == "ChunkCorrupt" and again.exit_code == 13


def test_check_result_round_trip_and_run_ids_sort_by_time():
    c = CheckResult(
        "port 80", False, "nothing listens", critical=False, attempts=3, started_at=at(1), ended_at=at(4)
    )
    assert CheckResult.from_dict(c.to_dict()) == c
    r1 = new_run_id(datetime(2026, 1, 1, tzinfo=UTC))
    r2 = new_run_id(datetime(2026, 1, 2, tzinfo=UTC))
    assert r1 < r2 and r1.startswith("20260101T000000Z-")


# --- network and user reconnection ---------------------------------------------------------------


def test_reconnection_is_an_extra_key_and_round_trips():
    from tests.runs.reconnection_fixtures import lyon_skipped, paris_failed, paris_ok

    s = replace(demo_summary(), reconnection=(paris_ok(), lyon_skipped()))
    doc = json.loads(s.to_json())
    assert list(doc)[: len(SUMMARY_TOP_KEYS)] == SUMMARY_TOP_KEYS  # the documented keys stay first
    paris, lyon = doc["reconnection"]
    assert list(paris)[:3] == ["site", "status", "ok"]
    assert (paris["site"], paris["status"], paris["ok"], paris["target"]) == ("paris", "ok", True, "app01")
    assert paris["started_at"] == "2026-02-03T17:07:45Z"
    assert paris["seconds"] == 14.25  # the fixture's eleven steps
    assert paris["steps"][4] == {
        "step": "tunnel",
        "ok": True,
        "seconds": 2.5,
        "detail": paris["steps"][4]["detail"],
    }
    assert (lyon["status"], lyon["steps"], lyon["reason"][:2]) == ("skipped", [], "no")
    assert doc["reconnection_ok"] is True
    again = RunSummary.from_json(s.to_json())
    assert again == s and again.canonical_bytes() == s.canonical_bytes()
    failed = replace(s, reconnection=(paris_failed(),))
    assert RunSummary.from_json(failed.to_json()) == failed
    assert failed.reconnection[0].failed_step.step == "tunnel"
    # A summary without the key (older reports, activations) reads as "not tested".
    del doc["reconnection"]
    assert RunSummary.from_dict(doc).reconnection == ()


def test_a_failed_reconnection_fails_the_run_even_with_every_server_ok():
    from tests.runs.reconnection_fixtures import lyon_skipped, paris_failed, paris_ok

    all_ok = replace(demo_summary(), servers=(demo_summary().server("dns01"), demo_summary().server("db01")))
    assert all_ok.outcome == "ok" and all_ok.reconnection_ok
    assert replace(all_ok, reconnection=(paris_ok(), lyon_skipped())).outcome == "ok"
    broken = replace(all_ok, reconnection=(paris_failed(), lyon_skipped()))
    assert not broken.reconnection_ok and broken.outcome == "failed"
    assert broken.reconnection_counts() == {"ok": 0, "failed": 1, "skipped": 1}
    assert json.loads(broken.to_json())["reconnection_ok"] is False


def test_bad_reconnection_documents_are_rejected_with_the_site_named():
    from tests.runs.reconnection_fixtures import paris_ok

    doc = json.loads(replace(demo_summary(), reconnection=(paris_ok(),)).to_json())
    doc["reconnection"][0]["status"] = "mostly"
    with pytest.raises(SummaryInvalid, match="paris.*mostly"):
        RunSummary.from_dict(doc)
    doc["reconnection"][0]["status"] = "ok"
    doc["reconnection"][0]["started_at"] = "noon"
    with pytest.raises(SummaryInvalid, match="paris.*started_at"):
        RunSummary.from_dict(doc)
