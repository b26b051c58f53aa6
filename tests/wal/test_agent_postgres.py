"""The agent's full and log jobs for a real PostgreSQL 15 server archiving with `drctl wal push --state`:
base backups in full jobs, and log records that carry the achieved RPO and every archive_command
failure, even one PostgreSQL later retried successfully."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drctl.agent import records
from drctl.agent.config import DatabaseConfig, ScheduleEntry, load_config
from drctl.agent.log_job import Cursor, evaluate
from drctl.cli import main
from drctl.repo.repository import open_repository
from drctl.storage.local import LocalDirStorage
from drctl.wal.base import list_bases
from drctl.wal.state import Failure, WalState
from tests.agent.agents import make_agent
from tests.repo.fakes import MiB, make_image
from tests.support.events import read_events
from tests.wal.pg import PASSWORD, WAL_STATE, Cluster, _switch_and_wait_archived

pytestmark = pytest.mark.integration


@pytest.fixture
def agent(archiving, pg_root: Path, tmp_path: Path, seaweed_s3, monkeypatch: pytest.MonkeyPatch):
    """The db01 agent of the archiving primary: one disk image, full every day, log every 15 minutes."""
    primary, repo, url, env, pw = archiving
    seaweed_s3.apply_env(monkeypatch)
    monkeypatch.setenv("DRCTL_PASSWORD", PASSWORD.decode())
    monkeypatch.setenv("TZ", "UTC")
    system = make_image(tmp_path / "system.img", 1 * MiB, seed=7)
    cfg = make_agent(
        tmp_path / "agent",
        url,
        {"system": str(system)},
        schedule=(ScheduleEntry("full", 86400), ScheduleEntry("log", 900)),
        database=DatabaseConfig(conninfo=primary.conninfo, wal_state=pg_root / WAL_STATE, workdir=tmp_path),
    )
    return primary, repo, cfg


def _log_job(cfg: Path, capsys) -> tuple[int, dict]:
    code = main(["agent", "run", "--config", str(cfg), "--type", "log", "--json"])
    events = read_events(capsys.readouterr().out)
    return code, events[-1]


def _records(repo, cfg_path: Path) -> list[records.JobRecord]:
    cfg = load_config(cfg_path)
    public = records.load_agent_key(cfg.key).public_key()
    stored = records.read(repo.storage, records.list_keys(repo.storage, "db01"), {"db01": public})
    assert all(s.trusted for s in stored)
    return [s.record for s in stored if s.record is not None]


def test_a_full_job_takes_a_base_backup_and_a_log_job_reports_the_achieved_rpo(agent, capsys) -> None:
    primary, repo, cfg = agent
    primary.sql("create table t (id int)")
    assert main(["agent", "run", "--config", str(cfg), "--type", "full"]) == 0
    capsys.readouterr()
    primary.sql("insert into t select generate_series(1, 1000)")
    segment = _switch_and_wait_archived(primary)

    code, result = _log_job(cfg, capsys)
    assert code == 0 and result["result"] == "ok" and result["type"] == "log"
    full, log = _records(repo, cfg)
    bases = list_bases(open_repository(repo.storage, PASSWORD), "db01")
    assert [b.point for b in bases] == [full.points["pgbase"]] and "system" in full.points
    assert full.detail["base_start_segment"] == bases[0].start_segment
    assert log.type == "log" and log.result == "ok"
    assert log.detail["last_segment"] >= segment  # the switch's own segment, or a later one
    archived_at = datetime.fromisoformat(str(log.detail["last_archived_at"]))
    assert timedelta(0) <= log.ended - archived_at < timedelta(seconds=60)
    assert 0 <= int(log.detail["achieved_rpo_s"]) < 60  # seconds, not the day between two fulls
    assert log.detail["failures_since"] == 0
    state = Path(load_config(cfg).database.wal_state)
    assert state.stat().st_mode & 0o777 == 0o600


def _set_archive_command(c: Cluster, command: str | None) -> None:
    if command is None:
        c.sql("alter system reset archive_command")
    else:
        c.sql(f"alter system set archive_command = '{command}'")
    c.sql("select pg_reload_conf()")
    time.sleep(0.5)


def test_a_failed_archive_command_fails_the_next_log_job_even_after_postgresql_retried_it(
    agent, pg_root: Path, capsys
) -> None:
    primary, repo, cfg = agent
    good = primary.sql("show archive_command")
    # the same command with an unreadable password file and no key cache: every push fails
    broken = good.replace(f"--key-cache {pg_root / 'wal.key'} ", "").replace(
        f"--password-file {pg_root / 'db01.pw'}", f"--password-file {pg_root / 'missing.pw'}"
    )
    assert broken != good
    primary.sql("create table t (id int)")
    _switch_and_wait_archived(primary)
    assert _log_job(cfg, capsys)[0] == 0

    _set_archive_command(primary, broken)
    primary.sql("insert into t select generate_series(1, 100)")
    victim = primary.sql("select pg_walfile_name(pg_current_wal_lsn())")
    primary.sql("select pg_switch_wal()")
    deadline = time.monotonic() + 60
    while primary.sql("select failed_count from pg_stat_archiver") == "0":
        assert time.monotonic() < deadline, "archive_command never failed"
        time.sleep(0.3)
    _set_archive_command(primary, None)  # back to postgresql.conf's: PostgreSQL retries and succeeds
    primary.sql("insert into t values (1)")
    _switch_and_wait_archived(primary)

    code, result = _log_job(cfg, capsys)
    assert code == 20 and result["event"] == "error" and result["error"] == "WalArchivingFailed"
    log = _records(repo, cfg)[-1]
    assert log.result == "failed" and log.error_class == "WalArchivingFailed"
    assert "archive_command failed" in (log.error or "") and victim in (log.error or "")
    assert int(log.detail["failures_since"]) >= 1 and victim in str(log.detail["failed_segments"])
    assert log.detail["last_error_class"] == "InvalidInput"  # the unreadable password file
    assert str(log.detail["last_segment"]) >= victim  # archived after all
    # reported once: the next log job has nothing new to say
    code, result = _log_job(cfg, capsys)
    assert code == 0 and _records(repo, cfg)[-1].detail["failures_since"] == 0


def test_a_log_job_without_any_recorded_push_says_how_to_set_it_up(agent, pg_root: Path, capsys) -> None:
    primary, repo, cfg = agent
    (pg_root / WAL_STATE).unlink(missing_ok=True)  # nothing archived yet
    code, result = _log_job(cfg, capsys)
    assert code == 20 and result["error"] == "WalArchivingFailed" and "no WAL push" in result["message"]
    assert _records(repo, cfg)[-1].result == "failed"
    assert f"--state {pg_root / WAL_STATE}" in (_records(repo, cfg)[-1].error or "")


def test_a_server_that_cannot_be_asked_fails_the_log_job_with_what_the_pushes_recorded(
    tmp_path: Path, capsys
) -> None:
    from drctl.wal.state import record_success

    state = tmp_path / "wal-state.json"
    record_success(state, "db01", "000000010000000000000007")
    repo = tmp_path / "repo"
    assert main(["repo", "init", str(repo), "--password-file", str(_password(tmp_path))]) == 0
    cfg = make_agent(
        tmp_path / "agent",
        str(repo),
        {"system": str(make_image(tmp_path / "system.img", MiB, seed=1))},
        schedule=(ScheduleEntry("full", 86400), ScheduleEntry("log", 900)),
        database=DatabaseConfig(conninfo=f"host={tmp_path / 'no-server'} user=postgres", wal_state=state),
    )
    capsys.readouterr()
    code, result = _log_job(cfg, capsys)  # no password: a log job reads no repository data
    assert code == 20 and "WAL position cannot be read" in result["message"]
    public = records.load_agent_key(load_config(cfg).key).public_key()
    storage = LocalDirStorage(repo)
    (stored,) = records.read(storage, records.list_keys(storage, "db01"), {"db01": public})
    assert stored.trusted and stored.record.result == "failed"
    assert stored.record.detail["last_segment"] == "000000010000000000000007"


def _password(tmp_path: Path) -> Path:
    pw = tmp_path / "pw"
    pw.write_text("log job test password\n")
    pw.chmod(0o600)
    return pw


NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("archived_ago_s", "previous_lsn", "lsn", "fails"),
    [
        (300, 1000, 90_000, False),  # archived 5 min ago, writing: fine
        (1800, 1000, 90_000, True),  # nothing for 30 min while writing: the RPO is not met
        (1800, 5000, 5000, False),  # nothing for 30 min, but the server wrote nothing either
        (1800, None, 90_000, False),  # first log job: no earlier position to compare with
    ],
)
def test_a_stale_archive_fails_only_while_the_server_writes(archived_ago_s, previous_lsn, lsn, fails) -> None:
    state = WalState("db01", "000000010000000000000009", NOW - timedelta(seconds=archived_ago_s))
    status = evaluate(
        state, Cursor(0, previous_lsn, None), now=NOW, lsn=lsn, every_s=900, state_path=Path("/s")
    )
    assert bool(status.problems) is fails
    assert status.detail["achieved_rpo_s"] == archived_ago_s and status.detail["stale"] is fails
    if fails:
        assert "archive_timeout = 900s" in status.problems[0]


def test_failures_are_counted_from_the_previous_log_job() -> None:
    failures = [Failure(f"00000001000000000000000{i}", "StorageUnavailable", 14, NOW) for i in range(1, 4)]
    state = WalState("db01", "000000010000000000000004", NOW, failure_count=7, failures=failures)
    status = evaluate(state, Cursor(5, 100, NOW), now=NOW, lsn=100, every_s=900, state_path=Path("/s"))
    assert status.detail["failures_since"] == 2
    assert status.detail["failed_segments"] == "000000010000000000000002, 000000010000000000000003"
    assert len(status.problems) == 1
