"""The activation engine: restore every in-scope disk at once, start each server when its disks
are restored and every server it depends on has passed its checks, verify it, record timings.

This module is pure orchestration. The three side effects sit behind callables injected by the
caller (``drctl.activation.activation``): restoring one disk, starting one server on the target, verifying
one server. That keeps the ordering rules testable without an object store or a hypervisor.

Rules (service description 9.4):
- restores of all in-scope disks start at once, bounded by ``restore_parallel``;
- a server boots when (a) all its disks are restored and (b) every in-scope server it depends on
  is ``ok`` or ``warning``; servers whose conditions are met at the same time boot in parallel;
- a server whose upstream failed (or was not started) is ``not-started`` with the reason, and
  independent branches go on;
- dependencies outside the activation scope (partial activation) are assumed to be running
  elsewhere and do not block.

Errors: a :class:`DrctlError` raised for a server (a tampered chunk while restoring it, a store
that went away, a guest that did not boot) is that server's outcome: ``failed``, keeping the
error's class and exit code for the report and the run's exit code. Anything else is a bug: it is
logged with its traceback, the run stops (as on Ctrl-C) and the exception is raised to the caller.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from drctl.errors import Cancelled, DrctlError
from drctl.plan.graph import dependency_levels
from drctl.plan.model import Server
from drctl.runs.model import CheckResult, ServerStatus, outcome_reason, server_outcome, verified_at

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestoredDisk:
    server: str
    disk: str
    path: str
    point_id: str
    point_time: datetime
    size: int | None = None  # bytes of the restored image (the restore throughput's numerator)
    # A database disk with the archived WAL staged for replay (drctl.wal.stage): the newest WAL
    # segment and the moment the database is recovered to (the achieved RPO's reference).
    log_segment: str | None = None
    log_recovered_to: datetime | None = None


@dataclass
class ServerRun:
    """What happened to one server during the run (mutable while the run goes on)."""

    server: Server
    status: ServerStatus | None = None  # None while the server is pending
    reason: str = ""
    error: DrctlError | None = None  # what failed the server, when an error did
    restore_started_at: datetime | None = None
    restore_ended_at: datetime | None = None
    boot_started_at: datetime | None = None
    verified_at: datetime | None = None
    disks: list[RestoredDisk] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def available(self) -> bool:
        return self.status is not None and self.status.available

    def failed(self, reason: str, error: DrctlError | None = None) -> None:
        self.status, self.reason, self.error = ServerStatus.FAILED, reason, error

    def not_started(self, reason: str) -> None:
        self.status, self.reason = ServerStatus.NOT_STARTED, reason


RestoreFn = Callable[[Server, str], RestoredDisk]
StartFn = Callable[[Server, Sequence[RestoredDisk]], None]
VerifyFn = Callable[[Server], Sequence[CheckResult]]
EventFn = Callable[[str, dict], None]


def _now() -> datetime:
    return datetime.now(UTC)


def _wait_for_restores(restoring: threading.Condition, in_flight: list[int]) -> None:
    """Wait until no restore runs. A second Ctrl-C does not cut this short: the caller removes the
    restore directory next, and a restore still running would write into it again."""
    while True:
        try:
            with restoring:
                restoring.wait_for(lambda: in_flight[0] == 0)
            return
        except KeyboardInterrupt:
            log.warning("interrupted again: still waiting for %d running restore(s) to stop", in_flight[0])


def run_servers(
    servers: Sequence[Server],
    *,
    restore: RestoreFn,
    start: StartFn,
    verify: VerifyFn,
    restore_parallel: int = 4,
    on_event: EventFn | None = None,
    now: Callable[[], datetime] = _now,
    cancel: threading.Event | None = None,
) -> dict[str, ServerRun]:
    """Run the activation of ``servers`` (already the in-scope subset, in plan order).

    On Ctrl-C (any exception in the calling thread) ``cancel`` is set, which ``restore`` is
    expected to honour, and this returns only once no restore is running any more: the caller
    can then remove the restore directory without a worker writing into it again. The same
    holds when a server meets a bug (an exception that is not a :class:`DrctlError`): the run
    stops and that exception is raised once nothing runs any more."""
    emit = on_event or (lambda kind, data: None)
    # Refuses a cycle (DependencyCycle, naming its members) before anything starts.
    dependency_levels({s.name: s.depends_on for s in servers})
    runs = {s.name: ServerRun(server=s) for s in servers}
    done = {s.name: threading.Event() for s in servers}
    lock = threading.Lock()

    cancel = cancel or threading.Event()
    bugs: list[Exception] = []
    restoring = threading.Condition()  # guards ``in_flight``: restores running right now
    in_flight = [0]

    def restore_one(s: Server, disk: str) -> RestoredDisk:
        with restoring:
            in_flight[0] += 1
        try:
            if cancel.is_set():
                raise Cancelled(f"the restore of {s.name}/{disk} was cancelled before it started")
            run = runs[s.name]
            with lock:
                if run.restore_started_at is None:
                    run.restore_started_at = now()
            emit("restore-started", {"server": s.name, "disk": disk})
            result = restore(s, disk)
            emit("restore-finished", {"server": s.name, "disk": disk, "point": result.point_id})
            return result
        finally:
            with restoring:
                in_flight[0] -= 1
                restoring.notify_all()

    def drive(s: Server, disk_futures: list[Future]) -> None:
        run = runs[s.name]
        try:
            try:
                run.disks = [f.result() for f in disk_futures]
            except DrctlError as e:  # the restore error is the server's outcome, reported
                run.failed(f"restore failed: {type(e).__name__}: {e}", e)
                return
            finally:
                run.restore_ended_at = now()
            for dep in s.depends_on:
                if dep not in done:
                    continue  # outside the scope: assumed running elsewhere
                done[dep].wait()
                if not runs[dep].available:
                    run.not_started(f"upstream server {dep} is {runs[dep].status}")
                    return
            if cancel.is_set():  # Ctrl-C: the target is being torn down, start nothing more
                run.not_started("the activation was interrupted")
                return
            run.boot_started_at = now()
            emit("boot-started", {"server": s.name})
            try:
                start(s, run.disks)
                run.checks = list(verify(s))
            except DrctlError as e:
                run.failed(f"{type(e).__name__}: {e}", e)
                return
            run.status = server_outcome(run.checks)
            # When the checks say the server became available; else the moment they gave up.
            run.verified_at = (verified_at(run.checks) or now()) if run.available else None
            run.reason = outcome_reason(run.checks) or ""
        except Exception as e:
            # A bug, not a failure of this server: the whole run stops and the caller gets it.
            log.error("server %s: unexpected %s; the run stops", s.name, type(e).__name__, exc_info=e)
            run.failed(f"internal error: {type(e).__name__}: {e}")
            with lock:
                bugs.append(e)
            cancel.set()
        finally:
            emit("server-finished", {"server": s.name, "status": run.status, "reason": run.reason})
            done[s.name].set()

    pool = ThreadPoolExecutor(max_workers=max(1, restore_parallel), thread_name_prefix="restore")
    try:
        futures = {s.name: [pool.submit(restore_one, s, d.name) for d in s.disks] for s in servers}
        drivers = [
            threading.Thread(target=drive, args=(s, futures[s.name]), name=f"server-{s.name}", daemon=True)
            for s in servers
        ]
        for t in drivers:
            t.start()
        for t in drivers:
            t.join()
    except BaseException:
        # Ctrl-C: queued restores are dropped, running ones told to stop and waited for; the
        # caller tears the target down, which makes any server start still in flight fail
        # instead of booting into a dead sandbox.
        cancel.set()
        pool.shutdown(wait=False, cancel_futures=True)
        _wait_for_restores(restoring, in_flight)
        raise
    pool.shutdown(wait=True)
    if bugs:
        raise bugs[0]
    return runs
