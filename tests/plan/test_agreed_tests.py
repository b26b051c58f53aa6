"""The plan's agreed test dates (``tests:``): schema, model and rules, through ``load_plan``."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from drctl.plan.load import PlanInvalid, load_plan
from drctl.plan.model import AgreedTest

ROOT = Path(__file__).resolve().parents[2]


def _plan(tmp_path: Path, tests_yaml: str) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text((ROOT / "recovery_plans" / "demo.yaml").read_text() + "\n" + tests_yaml)
    return path


def test_agreed_dates_are_modelled_in_date_order_quoted_or_not(tmp_path) -> None:
    plan = load_plan(
        _plan(
            tmp_path,
            "tests:\n  - {date: 2027-05-03, scope: dr}\n  - {date: '2027-01-12', scope: backup-tested}\n",
        )
    )
    assert plan.tests == (
        AgreedTest(datetime.date(2027, 1, 12), "backup-tested"),
        AgreedTest(datetime.date(2027, 5, 3), "dr"),
    )


def test_a_plan_without_tests_has_none() -> None:
    assert load_plan(ROOT / "recovery_plans" / "demo.yaml").tests == ()


@pytest.mark.parametrize(
    ("tests_yaml", "where", "message"),
    [
        (
            "tests:\n  - {date: 2027-02-30, scope: dr}\n",
            "line {second_new_line}, column 12",  # the date's line in the written file
            "'2027-02-30' is not a valid date",
        ),
        ("tests:\n  - {date: '2027-02-30', scope: dr}\n", "tests[0].date", "2027-02-30"),
        ("tests:\n  - {date: 'next week', scope: dr}\n", "tests[0].date", "YYYY-MM-DD"),
        ("tests:\n  - {date: 2027-02-01, scope: backup-only}\n", "tests[0].scope", "backup-only"),
        ("tests:\n  - {date: 2027-02-01}\n", "tests[0].scope", "missing"),
        (
            "tests:\n  - {date: 2027-02-01, scope: dr}\n  - {date: 2027-02-01, scope: dr}\n",
            "tests[1]",
            "twice",
        ),
    ],
)
def test_a_bad_agreed_date_names_its_field(tmp_path, tests_yaml, where, message) -> None:
    path = _plan(tmp_path, tests_yaml)
    where = where.format(second_new_line=path.read_text().splitlines().index("tests:") + 2)
    with pytest.raises(PlanInvalid) as e:
        load_plan(path)
    assert any(p.where == where and message in p.message for p in e.value.problems), e.value.problems


def test_a_test_of_a_class_the_plan_does_not_have_is_refused(tmp_path) -> None:
    text = (ROOT / "recovery_plans" / "demo.yaml").read_text().replace("class: backup-tested", "class: dr")
    path = tmp_path / "plan.yaml"
    path.write_text(text + "\ntests:\n  - {date: 2027-02-01, scope: backup-tested}\n")
    with pytest.raises(PlanInvalid) as e:
        load_plan(path)
    assert [p.where for p in e.value.problems] == ["tests[0].scope"]
    assert "no server of class backup-tested" in e.value.problems[0].message
