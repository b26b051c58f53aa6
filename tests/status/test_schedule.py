"""Test dates by class (service description 3.4, 8.1, 11.2) and the RPO grades: pure rules."""

from __future__ import annotations

from datetime import date

import pytest

from drctl.plan.model import AgreedTest
from drctl.status.model import Rpo, grade_rpo
from drctl.status.schedule import add_months, calendar_entries, next_test

TODAY = date(2026, 11, 30)


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (0, Rpo.MET),
        (0.8 * 3600, Rpo.MET),
        (0.81 * 3600, Rpo.AT_RISK),
        (3600, Rpo.AT_RISK),
        (3601, Rpo.BREACHED),
    ],
)
def test_rpo_is_met_up_to_80_percent_at_risk_up_to_100_then_breached(age, expected) -> None:
    assert grade_rpo(age, 3600) is expected


def test_no_trusted_restore_point_is_a_breach() -> None:
    assert grade_rpo(None, 86400) is Rpo.BREACHED


def test_months_are_calendar_months() -> None:
    assert add_months(date(2026, 8, 31), 6) == date(2027, 2, 28)
    assert add_months(date(2026, 11, 30), 12) == date(2027, 11, 30)


def test_without_an_agreed_date_a_class_is_due_one_frequency_after_its_last_passing_run() -> None:
    dr = next_test("dr", date(2026, 6, 1), (), TODAY)
    assert (dr.due, dr.source, dr.overdue) == (date(2026, 12, 1), "computed", False)
    yearly = next_test("backup-tested", date(2025, 11, 1), (), TODAY)
    assert (yearly.due, yearly.overdue) == (date(2026, 11, 1), True)
    assert next_test("backup-only", None, (), TODAY) is None


def test_never_tested_and_nothing_agreed_is_overdue_now() -> None:
    t = next_test("dr", None, (), TODAY)
    assert (t.due, t.source, t.overdue) == (None, "never-tested", True)


def test_the_earliest_agreed_date_after_the_last_pass_wins_and_is_flagged_within_30_days() -> None:
    agreed = (
        AgreedTest(date(2026, 5, 1), "dr"),  # done: the drill of May passed
        AgreedTest(date(2026, 12, 20), "dr"),
        AgreedTest(date(2026, 12, 5), "backup-tested"),  # another class
    )
    t = next_test("dr", date(2026, 5, 1), agreed, TODAY)
    assert (t.due, t.source, t.soon, t.overdue) == (date(2026, 12, 20), "agreed", True, False)
    later = next_test("dr", date(2026, 5, 1), (AgreedTest(date(2027, 3, 1), "dr"),), TODAY)
    assert not later.soon
    missed = next_test("dr", date(2026, 1, 1), (AgreedTest(date(2026, 11, 1), "dr"),), TODAY)
    assert (missed.due, missed.overdue) == (date(2026, 11, 1), True)


def test_the_calendar_covers_twelve_months() -> None:
    dr = next_test("dr", date(2026, 6, 1), (), TODAY)
    yearly = next_test("backup-tested", None, (AgreedTest(date(2027, 1, 15), "backup-tested"),), TODAY)
    entries = calendar_entries(
        "demo", "demo", [dr, yearly], (AgreedTest(date(2027, 1, 15), "backup-tested"),), TODAY
    )
    assert [(e.date, e.scope, e.source) for e in entries] == [
        (date(2026, 12, 1), "dr", "computed"),
        (date(2027, 1, 15), "backup-tested", "agreed"),
        (date(2027, 6, 1), "dr", "computed"),
    ]
    overdue = calendar_entries("demo", "demo", [next_test("dr", None, (), TODAY)], (), TODAY)
    assert overdue[0].overdue and overdue[0].date is None
    assert [e.date for e in overdue[1:]] == [date(2027, 5, 30), date(2027, 11, 30)]
