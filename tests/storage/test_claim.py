"""The write-then-list fallback of create-if-absent (stores without conditional writes), on a
real local directory: its own rules, which the contract suite cannot reach (stale and live
claims of other writers). The contract suite runs it on Swift."""

from __future__ import annotations

import random
import time

import pytest

from drctl.errors import EXIT_STORAGE
from drctl.storage.base import KeyContended
from drctl.storage.claim import CLAIM_INFIX, CLAIM_STALE_AFTER_S, put_if_absent_by_claim
from drctl.storage.local import LocalDirStorage


@pytest.fixture
def store(tmp_path):
    s = LocalDirStorage(tmp_path / "reports")
    s.create()
    return s


def claim_of_another_writer(store, key, age_s):
    written_ms = int((time.time() - age_s) * 1000)
    store.put(f"{key}{CLAIM_INFIX}{written_ms:013d}-{'a' * 32}", b"")


def test_creates_once_and_leaves_no_claim(store):
    assert put_if_absent_by_claim(store, "locks/activation.json", b"one") is True
    assert put_if_absent_by_claim(store, "locks/activation.json", b"two") is False
    assert store.get("locks/activation.json") == b"one"
    assert [o.key for o in store.list()] == ["locks/activation.json"]


def test_a_live_claim_of_another_writer_makes_it_back_off_then_give_up(store):
    claim_of_another_writer(store, "locks/activation.json", age_s=1)
    sleeps: list[float] = []
    with pytest.raises(KeyContended) as exc:
        put_if_absent_by_claim(
            store, "locks/activation.json", b"mine", attempts=4, sleep=sleeps.append, rng=random.Random(1)
        )
    assert len(sleeps) == 3  # a random back-off between attempts
    assert "could not create 'locks/activation.json'" in exc.value.message and "retry" in exc.value.message
    assert exc.value.exit_code == EXIT_STORAGE
    assert not store.exists("locks/activation.json")
    # Only the other writer's claim remains: ours was removed after every attempt.
    assert len(list(store.list("locks/"))) == 1


def test_a_claim_left_by_a_dead_writer_is_ignored_and_removed(store):
    claim_of_another_writer(store, "locks/activation.json", age_s=CLAIM_STALE_AFTER_S + 60)
    assert put_if_absent_by_claim(store, "locks/activation.json", b"mine", sleep=pytest.fail) is True
    assert [o.key for o in store.list()] == ["locks/activation.json"]


def test_the_object_appearing_while_it_backs_off_means_someone_else_won(store):
    claim_of_another_writer(store, "locks/activation.json", age_s=1)

    def other_writer_finishes(_delay):
        store.put("locks/activation.json", b"theirs")

    assert (
        put_if_absent_by_claim(store, "locks/activation.json", b"mine", sleep=other_writer_finishes) is False
    )
    assert store.get("locks/activation.json") == b"theirs"
