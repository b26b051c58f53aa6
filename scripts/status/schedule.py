"""When each protection class must be tested (service description 3.4, 8.1, 11.2).

- ``dr`` servers: a drill every 6 months, on a date agreed between the parties;
- ``backup-tested`` servers: a restore test every year;
- ``backup-only`` servers: no test.

A server's next test is the earliest date agreed in the plan (``tests:``) after its last passing
run; without one, its last passing run plus its class's frequency. A server never tested with no
date agreed is overdue now. A date agreed fewer than :data:`SOON_DAYS` days ahead is flagged so
the team prepares it. Pure functions: the caller passes today's date and the runs it found.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from drctl.plan.model import AgreedTest
from drctl.status.model import NextTest

FREQUENCY_MONTHS = {"dr": 6, "backup-tested": 12}
"""Months between two tests of a class; a class missing here (``backup-only``) is never tested."""

SOON_DAYS = 30
CALENDAR_MONTHS = 12


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` plus ``months`` calendar months (the 31st becomes the month's last day)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def next_test(
    scope: str, last_pass: dt.date | None, agreed: Iterable[AgreedTest], today: dt.date
) -> NextTest | None:
    """The next test of a server of class ``scope`` (None for a class that is never tested)."""
    months = FREQUENCY_MONTHS.get(scope)
    if months is None:
        return None
    pending = sorted(t.date for t in agreed if t.scope == scope and (last_pass is None or t.date > last_pass))
    if pending:
        due = pending[0]
        soon = today <= due < today + dt.timedelta(days=SOON_DAYS)
        return NextTest(scope, due, "agreed", overdue=due < today, soon=soon)
    if last_pass is None:
        return NextTest(scope, None, "never-tested", overdue=True)
    due = add_months(last_pass, months)
    return NextTest(scope, due, "computed", overdue=due < today)


def class_due(tests: Sequence[NextTest]) -> NextTest | None:
    """The earliest of several servers' next tests of one class (never tested first)."""
    if not tests:
        return None
    never = [t for t in tests if t.due is None]
    if never:
        return never[0]
    return min(tests, key=lambda t: t.due or dt.date.max)


@dataclass(frozen=True)
class CalendarEntry:
    """One test in the next 12 months (or overdue) of one client."""

    stack: str
    client: str
    date: dt.date | None  # None: never tested, no date agreed
    scope: str
    source: str  # agreed | computed | never-tested | unknown
    overdue: bool = False
    soon: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "stack": self.stack,
            "client": self.client,
            "date": self.date.isoformat() if self.date else None,
            "scope": self.scope,
            "source": self.source,
            "overdue": self.overdue,
            "soon": self.soon,
        }


def calendar_entries(
    stack: str, client: str, due: Sequence[NextTest], agreed: Iterable[AgreedTest], today: dt.date
) -> list[CalendarEntry]:
    """A client's tests from today to 12 months ahead: what is overdue, every agreed date, and for
    a class without agreed dates its computed due date and the ones that follow at its frequency."""
    end = add_months(today, CALENDAR_MONTHS)
    out: list[CalendarEntry] = []
    agreed = list(agreed)
    for t in due:
        if t.overdue:
            out.append(CalendarEntry(stack, client, t.due, t.scope, t.source, overdue=True))
        future_agreed = [a.date for a in agreed if a.scope == t.scope and today <= a.date <= end]
        for day in future_agreed:
            soon = day < today + dt.timedelta(days=SOON_DAYS)
            out.append(CalendarEntry(stack, client, day, t.scope, "agreed", soon=soon))
        if future_agreed:
            continue
        if t.source == "unknown":  # a run summary is unreadable: no date is computed from the runs
            out.append(CalendarEntry(stack, client, None, t.scope, "unknown"))
            continue
        day = t.due if t.due is not None else today
        if t.overdue:  # the next one, once the overdue test is done today
            day = add_months(today, FREQUENCY_MONTHS[t.scope])
        while day <= end:
            out.append(CalendarEntry(stack, client, day, t.scope, "computed"))
            day = add_months(day, FREQUENCY_MONTHS[t.scope])
    return sorted(out, key=lambda e: (not e.overdue, e.date or dt.date.min, e.scope))
