"""The agent's ``log`` job: one status record saying how the server's WAL archiving went.

PostgreSQL ships its log itself (``archive_command = drctl wal push --state FILE ...``, once per
WAL segment); the job only reads the outcome the pushes left in FILE (``database.wal_state`` of the
agent config, :mod:`drctl.wal.state`) and asks the server how far it has written, then publishes
one signed record of type ``log`` with this detail:

- ``last_segment``, ``last_archived_at``: the newest archived segment and when it was archived;
  ``achieved_rpo_s``: seconds from then to now, what a disaster now would lose at most;
- ``failures_since``: archive_command failures since the previous log job (PostgreSQL retries,
  so a failure followed by a success is still reported), with ``failed_segments``,
  ``last_error_class`` and ``last_failure_at``;
- ``wal_written_bytes``: WAL the server wrote since the previous log job.

The job fails (result ``failed``, :class:`WalArchivingFailed`) when archive_command failed since
the previous log job, when no push ever recorded anything, or when the archive is stale: nothing
was archived for longer than the schedule interval *while the server wrote WAL*. "Writes" means
its current WAL position (``pg_current_wal_lsn()``, read through ``database.conninfo``) moved
since the previous log job; an idle server archives nothing and that is fine. A busy server whose
segments take longer than the interval to fill also fails: its RPO is not met; set PostgreSQL's
``archive_timeout`` to the interval or less. How far the job has reported (the failure counter
and the WAL position) is kept in ``<state_dir>/log-cursor.json``; the first job has no previous
position, so it can only report staleness from the next run on. A server that cannot be asked
(down, psql missing) fails the job too, with the rest of the detail still reported.

The job needs no repository password: it reads no repository data.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drctl import processes
from drctl.agent.config import AgentConfig
from drctl.errors import EXIT_RUN_FAILED, DrctlError, InvalidInput, LocalIOError, ToolMissing
from drctl.input_files import loads_json
from drctl.private_files import write_private_file
from drctl.wal.state import WalState, read_state

log = logging.getLogger(__name__)

CURSOR_FILE = "log-cursor.json"
PSQL_TIMEOUT_S = 30


class WalArchivingFailed(DrctlError):
    """The server's WAL archiving failed or fell behind since the previous log job."""

    exit_code = EXIT_RUN_FAILED


@dataclass(frozen=True)
class Cursor:
    """What the previous log job saw."""

    failure_count: int
    lsn: int | None
    at: datetime | None


@dataclass(frozen=True)
class LogStatus:
    detail: dict[str, str | int | float | bool | None]
    problems: list[str]


def read_cursor(state_dir: Path) -> Cursor:
    path = state_dir / CURSOR_FILE
    try:
        doc = loads_json(path.read_bytes())
        return Cursor(
            int(doc["failure_count"]),
            None if doc.get("lsn") is None else int(doc["lsn"]),
            datetime.fromisoformat(doc["at"]) if doc.get("at") else None,
        )
    except FileNotFoundError:
        return Cursor(0, None, None)
    except (OSError, DrctlError, ValueError, KeyError, TypeError) as e:
        log.warning("log cursor %s is unreadable (%s): every recorded failure is reported again", path, e)
        return Cursor(0, None, None)


def write_cursor(state_dir: Path, cursor: Cursor) -> None:
    doc = {
        "failure_count": cursor.failure_count,
        "lsn": cursor.lsn,
        "at": cursor.at.isoformat() if cursor.at else None,
    }
    write_private_file(state_dir / CURSOR_FILE, json.dumps(doc).encode())


def current_lsn(conninfo: str) -> int:
    """The server's current WAL write position, in bytes, read with psql."""
    # libpq's own variables (PGPASSFILE, PGSSLMODE...) and HOME (~/.pgpass) pass through; nothing else
    env = {k: v for k, v in os.environ.items() if k.startswith("PG") or k == "HOME"}
    env.update(PATH="/usr/bin:/bin:/usr/local/bin", LC_ALL="C")
    proc = processes.run(
        ["psql", "-X", "-A", "-t", "-q", "-d", conninfo, "-c", "select pg_current_wal_lsn() - '0/0'"],
        timeout=PSQL_TIMEOUT_S,
        what="reading the server's WAL position (psql, database.conninfo)",
        env=env,
        error=WalArchivingFailed,
    )
    try:
        return int(proc.stdout.strip().split(".")[0])
    except ValueError as e:
        raise WalArchivingFailed(f"psql returned no WAL position: {proc.stdout.strip()[:200]!r}") from e


def evaluate(
    state: WalState | None, cursor: Cursor, *, now: datetime, lsn: int | None, every_s: int, state_path: Path
) -> LogStatus:
    """The record's detail and the reasons the job fails (pure: the clock and the position are given)."""
    detail: dict[str, str | int | float | bool | None] = {"interval_s": every_s}
    problems: list[str] = []
    written = None if lsn is None or cursor.lsn is None else max(0, lsn - cursor.lsn)
    detail["wal_written_bytes"] = written
    if state is None:
        detail.update(last_segment=None, last_archived_at=None, achieved_rpo_s=None, failures_since=0)
        problems.append(
            f"no WAL push has recorded anything in {state_path}: add `--state {state_path}` to the "
            "server's archive_command (`drctl wal push ... --state FILE %p %f`) and check archive_mode = on"
        )
        return LogStatus(detail, problems)
    detail["last_segment"] = state.last_segment
    detail["last_archived_at"] = state.last_archived_at.isoformat() if state.last_archived_at else None
    age = None if state.last_archived_at is None else int((now - state.last_archived_at).total_seconds())
    detail["achieved_rpo_s"] = age
    since = state.failure_count - cursor.failure_count
    if since < 0:  # the state file was started again: all its failures are new to us
        since = state.failure_count
    detail["failures_since"] = since
    if since:
        recent = state.failures[-since:]
        detail["failed_segments"] = ", ".join(sorted({f.segment for f in recent})[:10])
        detail["last_error_class"] = recent[-1].error_class if recent else None
        detail["last_failure_at"] = recent[-1].at.isoformat() if recent else None
        last = recent[-1] if recent else None
        problems.append(
            f"archive_command failed {since} time(s) since the previous log job"
            + (
                f" (last: {last.segment}, {last.error_class}, exit {last.exit_code}, {last.at.isoformat()})"
                if last
                else ""
            )
            + "; PostgreSQL retries it: see the server log and pg_stat_archiver"
        )
    stale = age is None or age > every_s
    if stale and written:
        problems.append(
            f"nothing archived for {'ever' if age is None else f'{age} s'} (longer than the {every_s} s log "
            f"interval) while the server wrote {written} bytes of WAL: the plan's RPO is not met; check "
            f"archive_command, and set archive_timeout = {every_s}s or less"
        )
    detail["stale"] = bool(stale and written)
    return LogStatus(detail, problems)


def run_log(cfg: AgentConfig, detail: dict[str, Any], *, now: datetime | None = None) -> None:
    """The log job's work: fill ``detail``; raise :class:`WalArchivingFailed` when archiving failed."""
    db = cfg.database
    if db is None:
        raise InvalidInput(
            f"{cfg.path}: a log job needs the database section (family, conninfo, wal_state) of the agent "
            "config; only PostgreSQL's WAL archiving is produced by drctl"
        )
    every_s = min((e.every_s for e in cfg.schedule if e.type == "log"), default=900)
    cursor = read_cursor(cfg.state_dir)
    try:
        state = read_state(db.wal_state, cfg.server)
    except LocalIOError as e:
        raise WalArchivingFailed(e.message) from e
    unreachable = None
    try:
        lsn: int | None = current_lsn(db.conninfo)
    except (WalArchivingFailed, ToolMissing) as e:  # still report what the pushes recorded
        lsn, unreachable = None, e.message
    now = now or datetime.now(UTC)
    status = evaluate(state, cursor, now=now, lsn=lsn, every_s=every_s, state_path=db.wal_state)
    detail.update(status.detail)
    problems = list(status.problems)
    if unreachable:
        problems.append(
            f"the server's WAL position cannot be read, so a stalled archive goes unseen: {unreachable}"
        )
    # reported once: the next job speaks of what happens after this one
    write_cursor(
        cfg.state_dir,
        Cursor(state.failure_count if state else 0, lsn if lsn is not None else cursor.lsn, now),
    )
    if problems:
        raise WalArchivingFailed(f"server {cfg.server}: " + "; ".join(problems))
