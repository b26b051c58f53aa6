"""Two processes race for the same stack's activation lock, many times, on a real local directory
and on a real SeaweedFS: exactly one wins every round. Also when a stale lock is there to be
taken over, and on SeaweedFS with the If-None-Match header lost on the way (the store then
looks like one that ignores it, and the write-then-list fallback decides)."""

from __future__ import annotations

import json
import multiprocessing
import queue
from datetime import UTC, datetime, timedelta

import pytest

from drctl.activation.guards import LOCK_KEY, ActivationLock, ActivationLocked
from drctl.storage.local import LocalDirStorage
from drctl.storage.retry import RetryingStorage
from drctl.storage.s3 import S3Storage

pytestmark = pytest.mark.integration

ROUNDS = 50
FORK = multiprocessing.get_context("fork")


def _drop_if_none_match(request, **_):
    if "If-None-Match" in request.headers:
        del request.headers["If-None-Match"]


def open_store(spec: dict):
    if spec["kind"] == "local":
        return LocalDirStorage(spec["root"])
    client = spec["server"].client()
    if spec["kind"] == "seaweed-no-condition":
        client.meta.events.register("before-sign.s3.PutObject", _drop_if_none_match)
    return RetryingStorage(S3Storage(spec["bucket"], "reports", client))


def contender(spec: dict, name: str, rounds: int, start, results) -> None:
    """One `drctl activate` process per side, with its own store client, racing once a round.
    A won lock is never released: a loser must not get in because the winner already left
    (the test removes it between rounds)."""
    storage = open_store(spec)
    for n in range(rounds):
        start.wait(timeout=120)
        try:
            ActivationLock(storage, "demo", f"run-{n}-{name}").__enter__()
            results.put((n, "won"))
        except ActivationLocked:
            results.put((n, "locked"))
        except BaseException as e:
            results.put((n, f"error {type(e).__name__}: {e}"))


def stale_lock() -> bytes:
    since = datetime.now(UTC) - timedelta(days=1)
    return json.dumps({"run_id": "dead", "host": "h", "since": since.isoformat(), "token": "f" * 32}).encode()


def race(spec: dict, *, stale: bool, rounds: int = ROUNDS) -> list[list[str]]:
    store = open_store(spec)
    start, results = FORK.Barrier(3), FORK.Queue()
    procs = [FORK.Process(target=contender, args=(spec, name, rounds, start, results)) for name in "ab"]
    for p in procs:
        p.start()
    outcomes = []
    try:
        for n in range(rounds):
            for obj in store.list("locks/"):
                store.delete(obj.key)
            if stale:
                store.put(LOCK_KEY, stale_lock())
            start.wait(timeout=120)
            got = []
            for _ in procs:
                try:
                    got.append(results.get(timeout=60))
                except queue.Empty:
                    got.append((n, "no answer"))
            assert [r for r, _ in got] == [n, n]
            outcomes.append(sorted(outcome for _, outcome in got))
            holder = json.loads(store.get(LOCK_KEY))["run_id"]
            assert holder.startswith(f"run-{n}-"), f"round {n}: the lock holds {holder}"
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
    return outcomes


@pytest.mark.parametrize("stale", [False, True], ids=["free", "stale-lock"])
def test_exactly_one_of_two_processes_wins_on_a_local_directory(tmp_path, stale):
    spec = {"kind": "local", "root": str(tmp_path / "reports")}
    LocalDirStorage(spec["root"]).create()
    outcomes = race(spec, stale=stale)
    assert outcomes == [["locked", "won"]] * ROUNDS


@pytest.mark.parametrize("kind", ["seaweed", "seaweed-no-condition"])
@pytest.mark.parametrize("stale", [False, True], ids=["free", "stale-lock"])
def test_exactly_one_of_two_processes_wins_on_seaweedfs(seaweed_s3_plain, kind, stale):
    spec = {"kind": kind, "server": seaweed_s3_plain.server, "bucket": seaweed_s3_plain.bucket}
    outcomes = race(spec, stale=stale)
    assert outcomes == [["locked", "won"]] * ROUNDS
    if kind == "seaweed":  # the store was asked with If-None-Match, and no claim was ever written
        assert not any(".claim-" in o.key for o in open_store(spec).list())
