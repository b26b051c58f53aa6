"""``drctl status``'s facts, gathered: per client its vault (:mod:`drctl.status.vault`), its runs
(:mod:`drctl.runs.store`) and its plan, turned into :class:`~drctl.status.model.ClientState`.
Clients are read in parallel; one client's unreadable vault is reported on that client, the others
are still read; so is one client's unreadable run summary (its test verdicts are then unknown)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from drctl.agent.records import StoredRecord, Trust
from drctl.plan.model import Server
from drctl.runs.model import RunSummary
from drctl.runs.store import RunStore, UnreadableRun
from drctl.status import schedule
from drctl.status.clients import ClientSource
from drctl.status.model import ClientState, DiskBackup, JobInfo, NextTest, RunInfo, ServerState, Untrusted
from drctl.status.vault import VaultOpener, VaultReading, VaultUnreadable, read_vault
from drctl.storage.base import Storage

log = logging.getLogger(__name__)

CLIENTS_IN_PARALLEL = 8


def _run_end(run: RunSummary) -> dt.datetime:
    return run.ended_at or run.started_at


def _server_runs(runs: Sequence[RunSummary], name: str) -> tuple[RunInfo | None, dt.date | None]:
    """The newest run covering ``name`` (its status there) and the day of its newest passing one."""
    last: RunInfo | None = None
    passed: dt.date | None = None
    for run in sorted(runs, key=_run_end, reverse=True):
        result = next((s for s in run.servers if s.name == name), None)
        if result is None:
            continue
        if last is None:
            last = RunInfo(run.run_id, run.kind, run.mode, _run_end(run), str(result.status))
        if result.status.available:
            passed = _run_end(run).date()
            break
    return last, passed


def _last_drill(runs: Sequence[RunSummary]) -> RunInfo | None:
    tests = [r for r in runs if r.kind == "drill" or r.mode == "test"]
    if not tests:
        return None
    run = max(tests, key=_run_end)
    return RunInfo(run.run_id, run.kind, run.mode, _run_end(run), str(run.outcome))


def _server_state(
    server: Server,
    stored: list[StoredRecord],
    reading: VaultReading,
    runs: Sequence[RunSummary],
    source: ClientSource,
    now: dt.datetime,
    unknown: str = "",
) -> ServerState:
    trusted = [s.record for s in stored if s.trusted and s.record is not None]
    last_job = None
    failures = 0
    if trusted:
        r = trusted[0]
        last_job = JobInfo(r.job_id, r.type, r.result, r.ended, r.error_class)
        for r in trusted:
            if r.result == "ok":
                break
            failures += r.result == "failed"
    disks = []
    for disk in server.disks:
        found = next(
            (r for r in trusted if r.result == "ok" and disk.name in (r.points or dict.fromkeys(r.disks))),
            None,
        )
        backup = DiskBackup(disk.name, None)
        if found is not None:
            backup = DiskBackup(disk.name, found.ended, found.points.get(disk.name), "record")
        point = reading.points.get((server.name, disk.name))
        if point is not None and (backup.at is None or point[0] > backup.at):
            backup = DiskBackup(disk.name, point[0], point[1], "repository")
        if backup.at is not None:
            backup = dataclasses.replace(backup, age_s=(now - backup.at).total_seconds())
        disks.append(backup)
    ages = [d.age_s for d in disks if d.age_s is not None]
    age = max(ages) if ages and len(ages) == len(disks) else None
    untrusted = tuple(
        Untrusted(s.key, s.trust.value, s.problem) for s in stored if s.trust is not Trust.VERIFIED
    )
    last_run, last_pass = _server_runs(runs, server.name)
    test = _next_test(server.protection, last_pass, source, now, unknown)
    return ServerState(
        name=server.name,
        protection=server.protection,
        rpo_s=server.rpo_s,
        disks=tuple(disks),
        last_job=last_job,
        consecutive_failures=failures,
        untrusted=tuple(reversed(untrusted)),  # oldest first, the newest last
        last_run=last_run,
        test=test,
        backup_age_s=age,
    )


def _next_test(
    scope: str, last_pass: dt.date | None, source: ClientSource, now: dt.datetime, unknown: str
) -> NextTest | None:
    """The server's next test; with ``unknown`` (a run summary unreadable: the last passing run
    may be the one that cannot be read) the due date is not guessed."""
    test = schedule.next_test(scope, last_pass, source.plan.tests, now.date())
    if test is None or not unknown:
        return test
    return NextTest(scope, None, "unknown", overdue=False, problem=unknown)


def unreadable_runs_problem(unreadable: Sequence[UnreadableRun]) -> str:
    """Why the tests are unknown and what to do: the first unreadable summary named (and how many)."""
    first = unreadable[0]
    more = f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
    return (
        f"run summary {first.summary_path} unreadable ({first.problem}){more}; next step: "
        f"`drctl report verify {first.run_id}` tells whether it was altered, then restore the run from "
        f"the client's report bucket or move {first.summary_path.parent} out of the run store"
    )


def client_state(
    source: ClientSource,
    storage: Storage,
    runs: Sequence[RunSummary],
    now: dt.datetime,
    *,
    password: bytes | None = None,
    parallel: int = 16,
    unreadable_runs: Sequence[UnreadableRun] = (),
) -> ClientState:
    """One client's state (its vault unreadable is a state, not an error; so is an unreadable run
    summary: the tests are then unknown, the rest is still read)."""
    plan = source.plan
    unknown = unreadable_runs_problem(unreadable_runs) if unreadable_runs else ""
    bad_runs = tuple(f"{u.summary_path}: {u.problem}" for u in unreadable_runs)
    notes = source.plan_notes + ((f"test verdict unknown: {unknown}",) if unknown else ())
    per_class: dict[str, list[NextTest]] = {}
    for s in plan.servers:  # the tests depend on the runs and the plan only: known even without the vault
        _, last_pass = _server_runs(runs, s.name)
        test = _next_test(s.protection, last_pass, source, now, unknown)
        if test is not None:
            per_class.setdefault(test.scope, []).append(test)
    tests = tuple(
        t for scope in ("dr", "backup-tested") if (t := schedule.class_due(per_class.get(scope, [])))
    )
    try:
        reading = read_vault(storage, plan, source.agent_keys, password=password, parallel=parallel)
    except VaultUnreadable as e:
        return ClientState(
            source.stack,
            plan.client.id,
            plan.client.name,
            storage.describe(),
            unreadable=e.message,
            tests=tests,
            agreed_tests=plan.tests,
            notes=notes,
            unreadable_runs=bad_runs,
        )
    servers = tuple(
        _server_state(s, reading.records.get(s.name, []), reading, runs, source, now, unknown)
        for s in plan.servers
    )
    planned = {s.name for s in plan.servers}
    return ClientState(
        stack=source.stack,
        client=plan.client.id,
        name=plan.client.name,
        vault=storage.describe(),
        servers=servers,
        retention=reading.retention,
        not_in_plan=tuple(sorted(reading.servers_seen - planned)),
        tests=tests,
        last_drill=_last_drill(runs),
        notes=notes + tuple(reading.notes),
        agreed_tests=plan.tests,
        unreadable_runs=bad_runs,
    )


def collect(
    sources: Sequence[ClientSource | Callable[[], ClientSource]],
    *,
    now: dt.datetime | None = None,
    state_dir: Path | None = None,
    password: bytes | None = None,
    open_vault: Callable[[str], Storage] | None = None,
) -> list[ClientState]:
    """Every client's state, in the order of ``sources``. A source may be given as a function
    that loads it: loading (YAML, schema) then runs in the workers, beside other clients' reads."""
    now = now or dt.datetime.now(dt.UTC)
    open_vault = open_vault or VaultOpener()
    store = RunStore(state_dir)

    def one(item: ClientSource | Callable[[], ClientSource]) -> ClientState:
        source = item if isinstance(item, ClientSource) else item()
        stored, unreadable = store.read_runs(source.stack)
        runs = [r.summary for r in stored]
        return client_state(
            source, open_vault(source.vault), runs, now, password=password, unreadable_runs=unreadable
        )

    with ThreadPoolExecutor(max_workers=max(1, min(CLIENTS_IN_PARALLEL, len(sources)))) as pool:
        return list(pool.map(one, sources))


def status_of(
    stacks: Sequence[str] | None = None,
    *,
    project_dir: Path | None = None,
    state_dir: Path | None = None,
    password: bytes | None = None,
    now: dt.datetime | None = None,
) -> list[ClientState]:
    """The state of ``stacks`` (every stack of the project by default): what ``drctl status``
    prints and the console serves (``drctl.status.metrics.exposition(status_of())``)."""
    from drctl.status.clients import load_client, stack_names

    names = list(dict.fromkeys(stacks)) if stacks else stack_names(project_dir)
    loaders = [functools.partial(load_client, name, project_dir) for name in names]
    return collect(loaders, now=now, state_dir=state_dir, password=password)
