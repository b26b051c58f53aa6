"""The record of one activation or drill: frozen dataclasses and their JSON form.

The JSON form is the contract printed by ``drctl activate --json`` (last line), stored as
``summary.json`` next to each report and signed. Its first keys, in this order, are the ones the
README documents for ``--json``::

    {"run_id", "stack", "mode", "target", "started_at", "ended_at", "first_available_s",
     "last_available_s", "servers": [{"name", "os", "status", "restore_started_at",
     "restore_ended_at", "boot_started_at", "verified_at", "restore_point", "rpo_achieved_s",
     "rto_target_s", "rto_achieved_s", "checks": [{"check", "ok", "detail"}]}]}

followed by extra keys (client, requested_by, override reason, per-server OS family, dependencies,
reason for not starting, check timings, for a database replayed from its archived WAL the last
segment, the moment recovered to and the disk point's age; for drills the per-site network and user
reconnection, ``reconnection`` and ``reconnection_ok``; for a disaster activation whose servers were
backed up while it ran, ``protection``: per backup the server, time, job and restore point of each
disk). Timestamps are ISO-8601 UTC with a ``Z``. Readers
ignore keys they do not know, so the form can grow without breaking older reports.

Times are measured from the run's start: a server is *available* when all its critical checks have
passed (``verified_at``); ``rto_achieved_s = verified_at - started_at``; the achieved RPO is the age of
the restore point when the run started, or for a database replayed from its archived WAL the age of
the moment it was recovered to (its newest archived segment).

The outcome rules live here too, so a run is judged in one place: a server's :class:`ServerStatus`
from its check results (:func:`server_outcome`, :func:`outcome_reason`, :func:`verified_at`), the
run's :attr:`RunSummary.outcome` and the exit code of the command that ran it
(:attr:`RunSummary.exit_code`).

Size: one module over 400 lines on purpose. It is the one contract of a run's record: each record
type keeps its fields, its ``to_dict`` and its ``from_dict`` together (a key cannot be added to one
without the other), beside the rules that judge them; the engine, the report, the store and the
CLI all read it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from drctl.errors import (
    EXIT_INTEGRITY,
    EXIT_INVALID,
    EXIT_LOCAL_IO,
    EXIT_LOCKED,
    EXIT_MISSING_TOOL,
    EXIT_OK,
    EXIT_REPO_MISSING,
    EXIT_RUN_FAILED,
    EXIT_STORAGE,
    EXIT_WRONG_PASSWORD,
    InvalidInput,
)
from drctl.input_files import loads_json
from drctl.plan.graph import DependencyCycle, dependency_levels

MODES = ("test", "disaster")
SCHEMA_VERSION = 1


class SummaryInvalid(InvalidInput):
    """A run summary document is malformed."""


class ServerStatus(StrEnum):
    """What became of one server of the scope; a str, so it is its own JSON form."""

    OK = "ok"  # every check passed
    WARNING = "warning"  # only non-critical checks failed
    FAILED = "failed"  # a critical check, its restore or its boot failed
    NOT_STARTED = "not-started"  # an upstream server was not available, or the run was interrupted

    @property
    def available(self) -> bool:
        """The server serves its users (ok or warning)."""
        return self in (ServerStatus.OK, ServerStatus.WARNING)

    @classmethod
    def parse(cls, value: object, where: str) -> ServerStatus:
        """``value`` as a status, or :class:`SummaryInvalid` naming ``where`` and the statuses."""
        try:
            return cls(str(value))
        except ValueError:
            raise SummaryInvalid(f"{where}: status {value!r} is not one of {', '.join(cls)}") from None


STATUSES = tuple(ServerStatus)

# When servers failed with different errors, the run exits with the most serious one: data that
# cannot be trusted first, then a repository that cannot be opened or reached, then local causes.
# A failed check (20) comes last; codes not listed here rank just before it.
EXIT_SEVERITY = (
    EXIT_INTEGRITY,
    EXIT_WRONG_PASSWORD,
    EXIT_REPO_MISSING,
    EXIT_STORAGE,
    EXIT_LOCKED,
    EXIT_LOCAL_IO,
    EXIT_MISSING_TOOL,
    EXIT_INVALID,
)


# --- timestamps -------------------------------------------------------------------------------


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_ts(ts: datetime | None) -> str | None:
    """``2026-02-03T17:01:00.250Z`` (milliseconds only when there are some)."""
    if ts is None:
        return None
    if ts.tzinfo is None:
        raise ValueError(f"naive datetime {ts!r}: run timestamps must be timezone-aware")
    ts = ts.astimezone(UTC)
    if ts.microsecond:
        return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(text: str | None, where: str = "timestamp") -> datetime | None:
    if text is None:
        return None
    try:
        ts = datetime.fromisoformat(str(text))
    except ValueError as e:
        raise SummaryInvalid(f"{where}: {text!r} is not an ISO-8601 time") from e
    if ts.tzinfo is None:
        raise SummaryInvalid(f"{where}: {text!r} has no time zone (use a trailing Z for UTC)")
    return ts.astimezone(UTC)


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def new_run_id(now: datetime | None = None) -> str:
    """Sortable and unique: ``20260203T170100Z-3f9a1c``."""
    now = (now or utc_now()).astimezone(UTC)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


# --- the model --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one plan check on one server, after its retries."""

    check: str  # what was checked, e.g. "port 5432", "service nginx"
    ok: bool
    detail: str  # what was observed (output, status, reason)
    critical: bool = True
    attempts: int = 1
    started_at: datetime | None = None  # first attempt
    ended_at: datetime | None = None  # the passing attempt, or the last one

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "ok": self.ok,
            "detail": self.detail,
            "critical": self.critical,
            "attempts": self.attempts,
            "started_at": format_ts(self.started_at),
            "ended_at": format_ts(self.ended_at),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "check") -> CheckResult:
        try:
            return cls(
                check=str(d["check"]),
                ok=bool(d["ok"]),
                detail=str(d.get("detail", "")),
                critical=bool(d.get("critical", True)),
                attempts=int(d.get("attempts", 1)),
                started_at=parse_ts(d.get("started_at"), f"{where}.started_at"),
                ended_at=parse_ts(d.get("ended_at"), f"{where}.ended_at"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise SummaryInvalid(f"{where}: missing or bad field ({e})") from e


# --- the outcome rules: from a server's check results to its status ---------------------------


def server_outcome(results: Sequence[CheckResult]) -> ServerStatus:
    """``failed`` if a critical check failed, ``warning`` if only non-critical ones did, else ``ok``."""
    if any(not r.ok and r.critical for r in results):
        return ServerStatus.FAILED
    if any(not r.ok for r in results):
        return ServerStatus.WARNING
    return ServerStatus.OK


def outcome_reason(results: Sequence[CheckResult]) -> str | None:
    """In words, for ``ServerResult.reason``: which checks failed (None when all passed)."""
    crit = [r.check for r in results if not r.ok and r.critical]
    other = [r.check for r in results if not r.ok and not r.critical]
    if crit:
        return "critical check(s) failed: " + "; ".join(crit)
    if other:
        return "non-critical check(s) failed: " + "; ".join(other)
    return None


def verified_at(results: Sequence[CheckResult]) -> datetime | None:
    """When the last critical check passed (the server is available), or None if one failed."""
    if server_outcome(results) == ServerStatus.FAILED:
        return None
    times = [r.ended_at for r in results if r.ok and r.critical and r.ended_at is not None]
    if not times:  # no critical check: available when the first check answered
        times = [r.ended_at for r in results if r.ended_at is not None]
    return max(times) if times else None


@dataclass(frozen=True)
class ServerResult:
    """What happened to one server of the scope during a run."""

    name: str
    os: str  # e.g. "debian-12", "windows-2019"
    status: ServerStatus  # a plain string is accepted and converted
    os_family: str = "linux"  # linux | windows
    depends_on: tuple[str, ...] = ()
    restore_started_at: datetime | None = None
    restore_ended_at: datetime | None = None
    boot_started_at: datetime | None = None
    boot_ended_at: datetime | None = None  # guest answered (optional; else the first passing check)
    verified_at: datetime | None = None  # every critical check passed
    restore_point: str | None = None  # snapshot id used
    restore_point_at: datetime | None = None  # when that snapshot was taken
    rpo_achieved_s: float | None = None
    rpo_target_s: int | None = None
    rto_target_s: int | None = None
    rto_achieved_s: float | None = None
    checks: tuple[CheckResult, ...] = ()
    reason: str | None = None  # why failed / not started, in words
    error: str | None = None  # the class of the error that failed the server, e.g. "IntegrityError"
    exit_code: int | None = None  # that error's exit code
    restored_bytes: int | None = None  # bytes of its restored disks (the restore throughput)
    # A database server replayed from its archived WAL (point-in-time recovery): rpo_achieved_s is
    # then measured from ``log_recovered_to`` (the newest archived segment's time, or the ISO point
    # when earlier); ``disk_point_age_s`` is the age of the disk point it replayed onto.
    disk_point_age_s: float | None = None
    log_segment: str | None = None
    log_recovered_to: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", ServerStatus.parse(self.status, f"server {self.name!r}"))

    @property
    def available(self) -> bool:
        return self.status.available and self.verified_at is not None

    @property
    def rpo_met(self) -> bool | None:
        if self.rpo_achieved_s is None or self.rpo_target_s is None:
            return None
        return self.rpo_achieved_s <= self.rpo_target_s

    @property
    def rto_met(self) -> bool | None:
        if self.rto_achieved_s is None or self.rto_target_s is None:
            return None
        return self.rto_achieved_s <= self.rto_target_s

    @property
    def checks_started_at(self) -> datetime | None:
        starts = [c.started_at for c in self.checks if c.started_at is not None]
        return min(starts) if starts else None

    @property
    def up_at(self) -> datetime | None:
        """When the guest first answered: ``boot_ended_at``, else its first passing check."""
        if self.boot_ended_at is not None:
            return self.boot_ended_at
        passed = [c.ended_at for c in self.checks if c.ok and c.ended_at is not None]
        return min(passed) if passed else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "os": self.os,
            "status": self.status,
            "restore_started_at": format_ts(self.restore_started_at),
            "restore_ended_at": format_ts(self.restore_ended_at),
            "boot_started_at": format_ts(self.boot_started_at),
            "verified_at": format_ts(self.verified_at),
            "restore_point": self.restore_point,
            "rpo_achieved_s": _opt_float(self.rpo_achieved_s),
            "rto_target_s": _opt_int(self.rto_target_s),
            "rto_achieved_s": _opt_float(self.rto_achieved_s),
            "checks": [c.to_dict() for c in self.checks],
            # extra keys
            "os_family": self.os_family,
            "depends_on": list(self.depends_on),
            "boot_ended_at": format_ts(self.boot_ended_at),
            "restore_point_at": format_ts(self.restore_point_at),
            "rpo_target_s": _opt_int(self.rpo_target_s),
            "reason": self.reason,
            "error": self.error,
            "exit_code": self.exit_code,
            "restored_bytes": self.restored_bytes,
            "disk_point_age_s": _opt_float(self.disk_point_age_s),
            "log_segment": self.log_segment,
            "log_recovered_to": format_ts(self.log_recovered_to),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "server") -> ServerResult:
        try:
            name = str(d["name"])
            w = f"{where} {name!r}"
            return cls(
                name=name,
                os=str(d.get("os", "")),
                status=ServerStatus.parse(d["status"], w),
                os_family=str(d.get("os_family", "linux")),
                depends_on=tuple(str(x) for x in d.get("depends_on", ())),
                restore_started_at=parse_ts(d.get("restore_started_at"), f"{w}.restore_started_at"),
                restore_ended_at=parse_ts(d.get("restore_ended_at"), f"{w}.restore_ended_at"),
                boot_started_at=parse_ts(d.get("boot_started_at"), f"{w}.boot_started_at"),
                boot_ended_at=parse_ts(d.get("boot_ended_at"), f"{w}.boot_ended_at"),
                verified_at=parse_ts(d.get("verified_at"), f"{w}.verified_at"),
                restore_point=d.get("restore_point"),
                restore_point_at=parse_ts(d.get("restore_point_at"), f"{w}.restore_point_at"),
                rpo_achieved_s=_opt_float(d.get("rpo_achieved_s")),
                rpo_target_s=_opt_int(d.get("rpo_target_s")),
                rto_target_s=_opt_int(d.get("rto_target_s")),
                rto_achieved_s=_opt_float(d.get("rto_achieved_s")),
                checks=tuple(
                    CheckResult.from_dict(c, f"{w} check {i}") for i, c in enumerate(d.get("checks", []))
                ),
                reason=d.get("reason"),
                error=d.get("error"),
                exit_code=_opt_int(d.get("exit_code")),
                restored_bytes=_opt_int(d.get("restored_bytes")),
                disk_point_age_s=_opt_float(d.get("disk_point_age_s")),
                log_segment=d.get("log_segment"),
                log_recovered_to=parse_ts(d.get("log_recovered_to"), f"{w}.log_recovered_to"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise SummaryInvalid(f"{where}: missing or bad field ({e})") from e


RECONNECTION_STATUSES = ("ok", "failed", "skipped")


@dataclass(frozen=True)
class ReconnectionStep:
    """One timed step of a site's reconnection test (tunnel, DHCP, DNS, ICMP, TCP, ...)."""

    step: str  # the NCA lab's step id, e.g. "tunnel", "dhcp"
    ok: bool
    seconds: float
    detail: str  # what was observed, or why it failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "ok": self.ok,
            "seconds": round(float(self.seconds), 3),
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "step") -> ReconnectionStep:
        try:
            return cls(
                step=str(d["step"]),
                ok=bool(d["ok"]),
                seconds=float(d.get("seconds", 0.0)),
                detail=str(d.get("detail", "")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise SummaryInvalid(f"{where}: missing or bad field ({e})") from e


@dataclass(frozen=True)
class SiteReconnection:
    """Network and user reconnection of one client site (service description 8.1, 10.1): the
    NCA's tunnel, DHCP and DNS, and a recovered server reached through the tunnel.

    ``status`` is ``ok`` (every step passed), ``failed`` (a step failed: it is the last step
    before ``teardown`` with ``ok`` false, and ``reason`` repeats its detail) or ``skipped``
    (nothing to reach: ``reason`` says why; no step ran)."""

    site: str
    status: str  # ok | failed | skipped
    target: str | None = None  # the recovered server the workstation had to reach
    target_ip: str | None = None
    probe: str = ""  # what was checked on it, e.g. "GET http://.../ containing '...'"
    started_at: datetime | None = None
    steps: tuple[ReconnectionStep, ...] = ()
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.status not in RECONNECTION_STATUSES:
            raise SummaryInvalid(
                f"reconnection of site {self.site!r}: status {self.status!r} is not "
                f"one of {RECONNECTION_STATUSES}"
            )

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def seconds(self) -> float:
        return round(sum(s.seconds for s in self.steps), 3)

    @property
    def failed_step(self) -> ReconnectionStep | None:
        return next((s for s in self.steps if not s.ok), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "status": self.status,
            "ok": self.ok,
            "target": self.target,
            "target_ip": self.target_ip,
            "probe": self.probe,
            "started_at": format_ts(self.started_at),
            "seconds": self.seconds,
            "reason": self.reason,
            "steps": [s.to_dict() for s in self.steps],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "reconnection") -> SiteReconnection:
        try:
            site = str(d["site"])
            w = f"{where} site {site!r}"
            return cls(
                site=site,
                status=str(d["status"]),
                target=d.get("target"),
                target_ip=d.get("target_ip"),
                probe=str(d.get("probe", "")),
                started_at=parse_ts(d.get("started_at"), f"{w}.started_at"),
                steps=tuple(
                    ReconnectionStep.from_dict(s, f"{w} step {i}") for i, s in enumerate(d.get("steps", []))
                ),
                reason=d.get("reason"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise SummaryInvalid(f"{where}: missing or bad field ({e})") from e


@dataclass(frozen=True)
class ProtectionPoint:
    """A backup taken of a recovered server while a disaster activation runs (``drctl protect``):
    when it ended, its job, and the restore point of each disk."""

    server: str
    at: datetime
    job_id: str
    type: str  # full | incremental | differential
    points: Mapping[str, str]  # disk -> restore point id
    bytes_uploaded: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "at": format_ts(self.at),
            "job_id": self.job_id,
            "type": self.type,
            "points": dict(self.points),
            "bytes_uploaded": int(self.bytes_uploaded),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "protection") -> ProtectionPoint:
        try:
            at = parse_ts(d["at"], f"{where}.at")
            assert at is not None
            return cls(
                server=str(d["server"]),
                at=at,
                job_id=str(d["job_id"]),
                type=str(d["type"]),
                points={str(k): str(v) for k, v in dict(d["points"]).items()},
                bytes_uploaded=int(d.get("bytes_uploaded", 0)),
            )
        except (KeyError, TypeError, ValueError, AssertionError) as e:
            raise SummaryInvalid(f"{where}: missing or bad field ({e})") from e


@dataclass(frozen=True)
class RunSummary:
    """One activation (``mode`` test or disaster) of a stack, on a target (local sandbox or cloud)."""

    run_id: str
    stack: str
    mode: str
    target: str
    started_at: datetime
    ended_at: datetime | None
    servers: tuple[ServerResult, ...]
    client_id: str = ""
    client_name: str = ""
    client_timezone: str = ""  # the plan's IANA zone: the report shows local times too
    requested_by: str = ""
    override_reason: str | None = None  # activation outside the plan's window, and why
    kind: str = "activation"  # activation | drill
    first_available_s: float | None = None
    last_available_s: float | None = None
    notes: tuple[str, ...] = field(default=())
    reconnection: tuple[SiteReconnection, ...] = field(default=())  # per site, drills only
    forecast: Mapping[str, Any] | None = None  # predicted times and cost, before the run (runs.forecast)
    protection: tuple[ProtectionPoint, ...] = field(default=())  # disaster mode: backups taken since

    # -- derived ----------------------------------------------------------------------------

    def server(self, name: str) -> ServerResult:
        for s in self.servers:
            if s.name == name:
                return s
        raise KeyError(name)

    def counts(self) -> dict[str, int]:
        """Servers per status, every status present (zero included)."""
        out: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for s in self.servers:
            out[s.status] += 1
        return out

    def os_families(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.servers:
            out[s.os_family] = out.get(s.os_family, 0) + 1
        return dict(sorted(out.items()))

    @property
    def outcome(self) -> ServerStatus:
        """The run judged as a whole (``ok``, ``warning`` or ``failed``): ``ok`` when every server
        is ok, ``warning`` when none failed or was left not started, else ``failed``. A site
        whose users could not be reconnected (:attr:`reconnection_ok` false) fails the run too:
        restored servers nobody can reach are not a recovery."""
        c = self.counts()
        if c[ServerStatus.FAILED] or c[ServerStatus.NOT_STARTED] or not self.reconnection_ok:
            return ServerStatus.FAILED
        return ServerStatus.WARNING if c[ServerStatus.WARNING] else ServerStatus.OK

    @property
    def exit_code(self) -> int:
        """What ``drctl activate``/``drill`` exits with: 0 unless the run failed; then the most
        serious error a server failed with (13 for tampered data before 14 for an unreachable
        store, see :data:`EXIT_SEVERITY`), else 20."""
        if self.outcome != ServerStatus.FAILED:
            return EXIT_OK
        codes = [
            s.exit_code
            for s in self.servers
            if s.exit_code is not None and s.exit_code not in (EXIT_OK, EXIT_RUN_FAILED)
        ]
        if not codes:
            return EXIT_RUN_FAILED
        rank = {code: k for k, code in enumerate(EXIT_SEVERITY)}
        return min(codes, key=lambda code: rank.get(code, len(EXIT_SEVERITY)))

    @property
    def reconnection_ok(self) -> bool:
        """No site failed its reconnection test (skipped sites and runs without the test pass)."""
        return not any(r.status == "failed" for r in self.reconnection)

    def reconnection_counts(self) -> dict[str, int]:
        """Sites per reconnection status, every status present (zero included)."""
        out = dict.fromkeys(RECONNECTION_STATUSES, 0)
        for r in self.reconnection:
            out[r.status] += 1
        return out

    def with_availability(self) -> RunSummary:
        """Fill ``first_available_s`` / ``last_available_s`` (and each server's achieved RTO when
        missing) from the servers' ``verified_at``."""
        servers = tuple(
            s
            if s.rto_achieved_s is not None or not s.available
            else replace(s, rto_achieved_s=seconds_between(self.started_at, s.verified_at))
            for s in self.servers
        )
        known = [seconds_between(self.started_at, s.verified_at) for s in servers if s.available]
        times = [t for t in known if t is not None]
        return replace(
            self,
            servers=servers,
            first_available_s=min(times) if times else None,
            last_available_s=max(times) if times else None,
        )

    def dependency_levels(self) -> dict[str, int]:
        """0 for servers with no upstream in this run, else 1 + the deepest upstream's level."""
        try:
            return dependency_levels({s.name: s.depends_on for s in self.servers})
        except DependencyCycle as e:
            raise SummaryInvalid(f"run {self.run_id}: servers in a {e.message}") from e

    # -- JSON ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "stack": self.stack,
            "mode": self.mode,
            "target": self.target,
            "started_at": format_ts(self.started_at),
            "ended_at": format_ts(self.ended_at),
            "first_available_s": _opt_float(self.first_available_s),
            "last_available_s": _opt_float(self.last_available_s),
            "servers": [s.to_dict() for s in self.servers],
            # extra keys
            "schema_version": SCHEMA_VERSION,
            "kind": self.kind,
            "client_id": self.client_id,
            "client_name": self.client_name,
            "client_timezone": self.client_timezone,
            "requested_by": self.requested_by,
            "override_reason": self.override_reason,
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "counts": self.counts(),
            "notes": list(self.notes),
            "reconnection": [r.to_dict() for r in self.reconnection],
            "reconnection_ok": self.reconnection_ok,
            "forecast": dict(self.forecast) if self.forecast is not None else None,
            # only once a disaster activation's servers were backed up: older summaries stay as signed
            **({"protection": [p.to_dict() for p in self.protection]} if self.protection else {}),
        }

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def canonical_bytes(self) -> bytes:
        """The exact bytes stored as ``summary.json`` and signed: deterministic for a given
        summary (documented key order, 2-space indent, UTF-8, trailing newline)."""
        return (self.to_json(indent=2) + "\n").encode("utf-8")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunSummary:
        if not isinstance(d, Mapping):
            raise SummaryInvalid("run summary: expected a JSON object")
        try:
            started = parse_ts(d["started_at"], "started_at")
            assert started is not None
            return cls(
                run_id=str(d["run_id"]),
                stack=str(d["stack"]),
                mode=str(d["mode"]),
                target=str(d["target"]),
                started_at=started,
                ended_at=parse_ts(d.get("ended_at"), "ended_at"),
                servers=tuple(
                    ServerResult.from_dict(s, f"servers[{i}]") for i, s in enumerate(d.get("servers", []))
                ),
                client_id=str(d.get("client_id", "")),
                client_name=str(d.get("client_name", "")),
                client_timezone=str(d.get("client_timezone", "")),
                requested_by=str(d.get("requested_by", "")),
                override_reason=d.get("override_reason"),
                kind=str(d.get("kind", "activation")),
                first_available_s=_opt_float(d.get("first_available_s")),
                last_available_s=_opt_float(d.get("last_available_s")),
                notes=tuple(str(n) for n in d.get("notes", ())),
                reconnection=tuple(
                    SiteReconnection.from_dict(r, f"reconnection[{i}]")
                    for i, r in enumerate(d.get("reconnection", []))
                ),
                forecast=_opt_mapping(d.get("forecast"), "forecast"),
                protection=tuple(
                    ProtectionPoint.from_dict(p, f"protection[{i}]")
                    for i, p in enumerate(d.get("protection", []))
                ),
            )
        except (KeyError, TypeError, ValueError, AssertionError) as e:
            raise SummaryInvalid(f"run summary: missing or bad field ({e})") from e

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "run summary") -> RunSummary:
        try:
            doc = loads_json(text)
        except (ValueError, UnicodeDecodeError) as e:
            raise SummaryInvalid(f"{where}: not valid JSON ({e})") from e
        return cls.from_dict(doc)


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


def _opt_mapping(v: Any, where: str) -> Mapping[str, Any] | None:
    if v is not None and not isinstance(v, Mapping):
        raise SummaryInvalid(f"run summary: {where}: expected an object or null")
    return v
