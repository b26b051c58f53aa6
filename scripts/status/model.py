"""What ``drctl status`` concludes about each client and server: frozen dataclasses and the pure rules
that grade them (RPO met / at risk / breached, job failures, tests due, drift). No I/O here:
:mod:`drctl.status.collect` gathers the facts, :mod:`drctl.status.schedule` dates the tests.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from drctl.errors import EXIT_OK, EXIT_RUN_FAILED, EXIT_STORAGE
from drctl.plan.model import AgreedTest

AT_RISK_FRACTION = 0.8  # a backup older than 80 % of the RPO is at risk


class Rpo(enum.Enum):
    """A server's RPO judged from the age of its oldest disk's last successful backup."""

    MET = "met"
    AT_RISK = "at-risk"
    BREACHED = "breached"  # older than the RPO, or no trusted restore point at all


def grade_rpo(age_s: float | None, rpo_s: int) -> Rpo:
    """``age_s`` None means no trusted restore point: nothing proves the RPO, so it is breached."""
    if age_s is None or age_s > rpo_s:
        return Rpo.BREACHED
    return Rpo.AT_RISK if age_s > AT_RISK_FRACTION * rpo_s else Rpo.MET


class Health(enum.IntEnum):
    """A client's or server's overall state, worst last (the output sorts on it)."""

    OK = 0
    WARNING = 1  # RPO at risk, an agreed test within 30 days or unknown, untrusted records, retention off
    FAILING = 2  # RPO breached, last job failed, test overdue, drift
    UNREADABLE = 3  # the vault could not be read: nothing is known

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class DiskBackup:
    """The last successful backup of one disk: when, which restore point, and who says so."""

    disk: str
    at: dt.datetime | None
    point: str | None = None
    source: str = ""  # "record" (a verified agent record) | "repository" (the restore-point list)
    age_s: float | None = None  # seconds between that backup and the status


@dataclass(frozen=True)
class JobInfo:
    """The last job a verified record reports."""

    job_id: str
    type: str
    result: str
    ended: dt.datetime
    error_class: str | None = None


@dataclass(frozen=True)
class Untrusted:
    """A status record that was not trusted: shown, never counted."""

    key: str
    trust: str  # unsigned | forged | malformed
    problem: str


@dataclass(frozen=True)
class RunInfo:
    """A drill or activation as the run store keeps it, seen from one server or client."""

    run_id: str
    kind: str  # drill | activation
    mode: str  # test | disaster
    ended: dt.datetime
    outcome: str  # the server's status in it (ok, warning, failed, not-started) or the run's


@dataclass(frozen=True)
class NextTest:
    """When a class's (or a server's) next test is due, and why that date."""

    scope: str  # dr | backup-tested
    due: dt.date | None  # None: never tested and no date agreed, or unknown
    source: str  # agreed | computed | never-tested | unknown (a run summary could not be read)
    overdue: bool
    soon: bool = False  # an agreed date fewer than 30 days ahead
    problem: str = ""  # with source "unknown": which run summary, what is wrong, the next step

    @property
    def unknown(self) -> bool:
        return self.source == "unknown"


@dataclass(frozen=True)
class ServerState:
    name: str
    protection: str
    rpo_s: int
    disks: tuple[DiskBackup, ...]
    last_job: JobInfo | None = None
    consecutive_failures: int = 0
    untrusted: tuple[Untrusted, ...] = ()
    last_run: RunInfo | None = None
    test: NextTest | None = None  # None for backup-only (no test in the contract)
    backup_age_s: float | None = None  # age of the oldest disk's last backup; None: a disk has none

    @property
    def rpo(self) -> Rpo:
        return grade_rpo(self.backup_age_s, self.rpo_s)

    @property
    def no_restore_point(self) -> bool:
        """Drift: a server of the plan with no trusted restore point for some disk."""
        return any(d.at is None for d in self.disks)

    @property
    def job_failed(self) -> bool:
        return self.last_job is not None and self.last_job.result == "failed"

    def problems(self) -> list[str]:
        """What is wrong, in words, worst first (empty when all is well)."""
        out = []
        if self.no_restore_point:
            missing = ", ".join(d.disk for d in self.disks if d.at is None)
            out.append(f"no restore point for disk {missing} (drift: in the plan, not backed up)")
        elif self.rpo is not Rpo.MET:
            age = self.backup_age_s or 0.0
            out.append(
                f"RPO {self.rpo.value}: last backup {format_age(age)} old, RPO {format_age(self.rpo_s)}"
            )
        if self.job_failed and self.last_job is not None:
            times = f" ({self.consecutive_failures} in a row)" if self.consecutive_failures > 1 else ""
            out.append(
                f"last job {self.last_job.job_id} failed: {self.last_job.error_class or 'error'}{times}"
            )
        if self.test is not None and self.test.unknown:
            out.append(
                f"{self.test.scope} test due date unknown: a run summary is unreadable (see the notes)"
            )
        elif self.test is not None and self.test.overdue:
            out.append(f"{self.test.scope} test overdue ({describe_due(self.test)})")
        elif self.test is not None and self.test.soon:
            out.append(f"{self.test.scope} test agreed for {self.test.due} (fewer than 30 days)")
        if self.untrusted:
            u = self.untrusted[-1]
            out.append(f"{len(self.untrusted)} untrusted status record(s): {u.trust}, {u.problem}")
        return out

    @property
    def health(self) -> Health:
        if self.rpo is Rpo.BREACHED or self.job_failed or (self.test is not None and self.test.overdue):
            return Health.FAILING
        if (
            self.rpo is Rpo.AT_RISK
            or self.untrusted
            or (self.test is not None and (self.test.soon or self.test.unknown))
        ):
            return Health.WARNING
        return Health.OK


@dataclass(frozen=True)
class Retention:
    """The vault's Object Lock retention: what the repository asked for, what the store enforces."""

    retain_days: int | None  # None: the repository asks for no retention
    enforced: bool
    detail: str


@dataclass(frozen=True)
class ClientState:
    stack: str
    client: str  # the plan's client id
    name: str
    vault: str
    servers: tuple[ServerState, ...] = ()
    unreadable: str = ""  # why the vault could not be read (then nothing else is known)
    retention: Retention | None = None
    not_in_plan: tuple[str, ...] = ()  # drift: servers with records or points the plan does not list
    tests: tuple[NextTest, ...] = ()  # per class with a test (dr, backup-tested)
    last_drill: RunInfo | None = None
    notes: tuple[str, ...] = ()
    agreed_tests: tuple[AgreedTest, ...] = ()  # the plan's agreed dates (the calendar lists them)
    unreadable_runs: tuple[str, ...] = ()  # run summaries that could not be read (path and problem)

    @property
    def health(self) -> Health:
        if self.unreadable:
            return Health.UNREADABLE
        worst = max((s.health for s in self.servers), default=Health.OK)
        if self.not_in_plan:
            worst = max(worst, Health.FAILING)
        if self.retention is not None and self.retention.retain_days and not self.retention.enforced:
            worst = max(worst, Health.WARNING)
        if self.unreadable_runs:
            worst = max(worst, Health.WARNING)
        return worst

    @property
    def test_due(self) -> NextTest | None:
        """The client's next test (the earliest of its classes'; unknown when a run is unreadable)."""
        unknown = [t for t in self.tests if t.unknown]
        if unknown:
            return unknown[0]
        dated = [t for t in self.tests if t.due is not None]
        never = [t for t in self.tests if t.due is None]
        return never[0] if never else min(dated, key=lambda t: t.due or dt.date.max, default=None)

    def counts(self) -> dict[str, int]:
        return {
            "servers": len(self.servers),
            "rpo_met": sum(s.rpo is Rpo.MET for s in self.servers),
            "rpo_at_risk": sum(s.rpo is Rpo.AT_RISK for s in self.servers),
            "rpo_breached": sum(s.rpo is Rpo.BREACHED for s in self.servers),
            "jobs_failed": sum(s.job_failed for s in self.servers),
            "tests_overdue": sum(t.overdue for t in self.tests),
            "no_restore_point": sum(s.no_restore_point for s in self.servers),
            "not_in_plan": len(self.not_in_plan),
            "untrusted_records": sum(len(s.untrusted) for s in self.servers),
        }


def exit_code(clients: list[ClientState]) -> int:
    """14 when a vault or a run summary could not be read (what is not known comes first), else 20
    when an RPO is breached or a test overdue, else 0."""
    if any(c.unreadable or c.unreadable_runs for c in clients):
        return EXIT_STORAGE
    if any(s.rpo is Rpo.BREACHED for c in clients for s in c.servers) or any(
        t.overdue for c in clients for t in c.tests
    ):
        return EXIT_RUN_FAILED
    return EXIT_OK


def format_age(seconds: float) -> str:
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}m"
    if s < 2 * 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def describe_due(t: NextTest) -> str:
    if t.unknown:
        return f"unknown: {t.problem}"
    if t.due is None:
        return "never tested and no date agreed"
    return f"{t.source} date {t.due.isoformat()}"
