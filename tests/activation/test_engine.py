"""Ordering and error rules of the activation engine, with the three side effects faked at the
boundary."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

import pytest

from drctl.activation.engine import RestoredDisk, run_servers
from drctl.errors import Cancelled
from drctl.plan.graph import DependencyCycle
from drctl.plan.model import BackupStep, Check, Disk, Nic, Server
from drctl.repo.errors import IntegrityError
from drctl.runs.model import CheckResult as CheckOutcome
from drctl.runs.model import ServerStatus
from drctl.storage.base import StorageUnavailable
from tests.support.interrupts import ctrl_c_to_main_thread


def server(name: str, deps: tuple[str, ...] = (), disks: int = 1) -> Server:
    return Server(
        name=name,
        os_family="linux",
        os_version="12",
        protection="dr",
        vcpus=1,
        ram_mb=256,
        disks=tuple(Disk(name=f"d{i}", size_gb=1, boot=i == 0) for i in range(disks)),
        nics=(Nic(subnet="s/lan", ip="10.0.0.1"),),
        boot_group=1,
        depends_on=deps,
        backup=(BackupStep("full", 86400),),
        rpo_s=86400,
        rto_s=3600,
        checks=(Check("port", 22),),
    )


class Recorder:
    """Records the order of events with a lock; verification result chosen per server."""

    def __init__(self, results: dict[str, list[CheckOutcome]] | None = None, restore_s: float = 0.05):
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.results = results or {}
        self.restore_s = restore_s
        self.in_flight = 0
        self.max_in_flight = 0

    def restore(self, s: Server, disk: str) -> RestoredDisk:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        time.sleep(self.restore_s)
        with self.lock:
            self.in_flight -= 1
            self.events.append(("restored", f"{s.name}/{disk}"))
        return RestoredDisk(s.name, disk, f"/tmp/{s.name}-{disk}", "p1", datetime.now(UTC))

    def start(self, s: Server, disks) -> None:
        with self.lock:
            self.events.append(("start", s.name))

    def verify(self, s: Server):
        time.sleep(0.02)
        with self.lock:
            self.events.append(("verified", s.name))
        return self.results.get(s.name, [CheckOutcome("port 22", True, "listening")])

    def index(self, kind: str, name: str) -> int:
        return self.events.index((kind, name))


def test_servers_start_only_after_upstream_verified_and_branches_run_independently():
    plan = [
        server("dns"),
        server("db", ("dns",)),
        server("app", ("db", "dns")),
        server("web", ("app",)),
        server("files"),
    ]
    rec = Recorder(restore_s=0.3)
    runs = run_servers(plan, restore=rec.restore, start=rec.start, verify=rec.verify, restore_parallel=8)
    assert {n: r.status for n, r in runs.items()} == dict.fromkeys(["dns", "db", "app", "web", "files"], "ok")
    assert rec.index("verified", "dns") < rec.index("start", "db")
    assert rec.index("verified", "db") < rec.index("start", "app")
    assert rec.index("verified", "app") < rec.index("start", "web")
    # All restores ran at once (bounded by 8): every disk was restored before the deepest server started.
    assert rec.max_in_flight == 5
    for name in ("db", "app", "web"):
        for dep in plan[[s.name for s in plan].index(name)].depends_on:
            assert runs[dep].verified_at <= runs[name].boot_started_at


def test_failed_upstream_marks_dependants_not_started_and_other_branch_goes_on():
    plan = [server("dns"), server("db", ("dns",)), server("app", ("db",)), server("files")]
    rec = Recorder({"db": [CheckOutcome("service postgresql", False, "inactive")]})
    runs = run_servers(plan, restore=rec.restore, start=rec.start, verify=rec.verify)
    assert runs["db"].status == "failed" and "service postgresql" in runs["db"].reason
    assert runs["app"].status == "not-started"
    assert runs["app"].reason == "upstream server db is failed"
    assert ("start", "app") not in rec.events
    assert runs["files"].status == "ok" and runs["dns"].status == "ok"


def test_non_critical_failure_is_a_warning_and_does_not_block_dependants():
    plan = [server("files"), server("app", ("files",))]
    rec = Recorder(
        {
            "files": [
                CheckOutcome("file /srv/x", True, ""),
                CheckOutcome("port 445", False, "closed", critical=False),
            ]
        }
    )
    runs = run_servers(plan, restore=rec.restore, start=rec.start, verify=rec.verify)
    assert runs["files"].status == "warning"
    assert runs["app"].status == "ok"


def test_a_drctl_error_while_restoring_is_the_servers_outcome_with_its_class_and_exit_code():
    plan = [server("db"), server("app", ("db",)), server("files"), server("dns")]
    rec = Recorder()

    def restore(s, disk):
        if s.name == "db":
            raise IntegrityError("chunk 3f2a of db/d0 failed authentication")
        if s.name == "files":
            raise StorageUnavailable("s3://vault: connection refused")
        return rec.restore(s, disk)

    runs = run_servers(plan, restore=restore, start=rec.start, verify=rec.verify)
    db = runs["db"]
    assert db.status is ServerStatus.FAILED
    assert db.reason == "restore failed: IntegrityError: chunk 3f2a of db/d0 failed authentication"
    assert isinstance(db.error, IntegrityError) and db.error.exit_code == 13
    assert runs["files"].status == "failed" and runs["files"].error.exit_code == 14
    assert runs["app"].status == "not-started" and runs["app"].error is None
    assert runs["dns"].status == "ok" and ("start", "dns") in rec.events
    assert ("start", "db") not in rec.events and ("start", "files") not in rec.events


def test_a_drctl_error_while_booting_fails_that_server_only():
    from drctl.activation.targets.sandbox import GuestFailed

    plan = [server("db"), server("files")]
    rec = Recorder()

    def start(s, disks):
        if s.name == "db":
            raise GuestFailed("db: QEMU exited with status 1")
        rec.start(s, disks)

    runs = run_servers(plan, restore=rec.restore, start=start, verify=rec.verify)
    assert runs["db"].status == "failed" and runs["db"].reason == "GuestFailed: db: QEMU exited with status 1"
    assert type(runs["db"].error).__name__ == "GuestFailed" and runs["files"].status == "ok"


@pytest.mark.parametrize("where", ["restore", "start", "verify"])
def test_a_bug_stops_the_run_logs_its_traceback_and_reaches_the_caller(where, caplog):
    plan = [server("db", disks=2), server("app", ("db",)), server("files")]
    rec = Recorder(restore_s=0.5)
    effects = {"restore": rec.restore, "start": rec.start, "verify": rec.verify}
    real = effects[where]

    def buggy(s, *args):
        if s.name == "db":
            raise RuntimeError("'NoneType' object is not subscriptable")
        return real(s, *args)

    effects[where] = buggy
    with (
        caplog.at_level(logging.ERROR, logger="drctl.activation.engine"),
        pytest.raises(RuntimeError, match="'NoneType' object is not subscriptable"),
    ):
        run_servers(plan, **effects, restore_parallel=1)
    (record,) = [r for r in caplog.records if r.name == "drctl.activation.engine"]
    assert "server db: unexpected RuntimeError; the run stops" in record.getMessage()
    assert record.exc_info and record.exc_info[0] is RuntimeError
    assert "Traceback (most recent call last)" in caplog.text and "in buggy" in caplog.text
    # Restores run one at a time: files' comes after the bug, is cancelled and files never starts.
    assert ("start", "files") not in rec.events and ("restored", "files/d0") not in rec.events


def test_restore_parallelism_is_bounded():
    plan = [server(f"s{i}", disks=2) for i in range(5)]
    rec = Recorder(restore_s=0.3)
    run_servers(plan, restore=rec.restore, start=rec.start, verify=rec.verify, restore_parallel=3)
    assert rec.max_in_flight == 3


def test_dependency_outside_scope_does_not_block():
    rec = Recorder()
    runs = run_servers([server("web", ("app",))], restore=rec.restore, start=rec.start, verify=rec.verify)
    assert runs["web"].status == "ok"


def test_cycle_is_refused_naming_its_members_before_anything_runs():
    rec = Recorder()
    with pytest.raises(DependencyCycle, match="dependency cycle: a -> b -> a"):
        run_servers(
            [server("a", ("b",)), server("b", ("a",))],
            restore=rec.restore,
            start=rec.start,
            verify=rec.verify,
        )
    assert rec.events == []


@pytest.mark.parametrize(
    ("delay_s", "presses"),
    [(0, 1), (0.5, 1), (0.5, 2)],
    ids=["while-starting", "while-waiting", "pressed-twice"],
)
def test_ctrl_c_cancels_running_restores_and_returns_only_when_they_have_stopped(delay_s, presses):
    """After Ctrl-C the caller removes the restore directory: no restore may still be writing.

    The Ctrl-C is a real SIGINT to the calling thread, sent from the first restore at once (the
    caller may still be starting the server threads) or after a delay (the caller is blocked
    waiting for them, where a flag-only interrupt would wait for the threads to end). An impatient
    second Ctrl-C while the restores stop does not make it return earlier."""
    cancel = threading.Event()
    state = {"running": 0, "saw_cancel": 0, "calls": 0}
    lock = threading.Lock()

    with ctrl_c_to_main_thread() as press_ctrl_c:

        def restore(s: Server, disk: str) -> RestoredDisk:
            with lock:
                state["running"] += 1
                state["calls"] += 1
                first = state["calls"] == 1
            try:
                if first:
                    time.sleep(delay_s)
                    press_ctrl_c()
                # Generous for a loaded machine: a restore that never sees the cancel returns, and
                # the assertions below then fail instead of the test hanging.
                if cancel.wait(timeout=60):
                    if first and presses == 2:
                        time.sleep(0.2)
                        press_ctrl_c()  # while the caller waits for the restores to stop
                    time.sleep(0.2)  # a chunk download still finishing
                    with lock:
                        state["saw_cancel"] += 1
                    raise Cancelled(f"restore of {s.name}/{disk} cancelled")
                return RestoredDisk(s.name, disk, "/tmp/x", "p1", datetime.now(UTC))
            finally:
                with lock:
                    state["running"] -= 1

        rec = Recorder()
        servers = [server(n) for n in ("a", "b", "c", "d", "e")]
        with pytest.raises(KeyboardInterrupt):
            run_servers(
                servers,
                restore=restore,
                start=rec.start,
                verify=rec.verify,
                restore_parallel=2,
                cancel=cancel,
            )
    assert cancel.is_set()
    assert state["running"] == 0  # every started restore had stopped before run_servers returned
    assert state["saw_cancel"] == state["calls"] <= 3  # queued restores never started
    assert ("start", "a") not in rec.events
