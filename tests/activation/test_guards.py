"""Who may activate, when, confirmation, and the activation lock (on a real local directory store)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from drctl.activation.guards import (
    LOCK_KEY,
    ActivationLock,
    ActivationLocked,
    HeldLock,
    NotAuthorised,
    NotConfirmed,
    OutsideWindow,
    authorised_contact,
    check_not_active,
    check_window,
    confirm_disaster,
    confirm_discard,
)
from drctl.errors import InvalidInput
from drctl.plan.model import Client, Contact, Plan
from drctl.storage.local import LocalDirStorage


def plan(window: str = "business-hours") -> Plan:
    return Plan(
        client=Client(id="demo", name="Demo SARL", timezone="Europe/Paris", activation_window=window),
        contacts=(
            Contact("Alice Martin", email="alice@demo.example", can_activate=True),
            Contact("Bruno Petit", can_activate=False),
        ),
        sites=(),
        servers=(),
    )


def test_only_contacts_who_can_activate():
    assert authorised_contact(plan(), "alice@DEMO.example").name == "Alice Martin"
    with pytest.raises(NotAuthorised, match="Bruno Petit .* may not activate.*Alice Martin"):
        authorised_contact(plan(), "bruno petit")
    with pytest.raises(NotAuthorised, match="'Mallory' is not a contact of demo"):
        authorised_contact(plan(), "Mallory")


# 2026-11-26 is a Thursday; Paris is UTC+1 in November.
THURSDAY_10H_PARIS = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
THURSDAY_19H_PARIS = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)
SATURDAY_11H_PARIS = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def test_business_hours_in_the_client_time_zone():
    assert check_window(plan(), THURSDAY_10H_PARIS, override=False, reason=None) is None
    with pytest.raises(OutsideWindow, match="Thu 2026-11-26 19:00 CET is outside demo's activation window"):
        check_window(plan(), THURSDAY_19H_PARIS, override=False, reason=None)
    with pytest.raises(OutsideWindow, match="--override-window --reason"):
        check_window(plan(), SATURDAY_11H_PARIS, override=True, reason="  ")
    assert (
        check_window(plan(), SATURDAY_11H_PARIS, override=True, reason="agreed with Alice")
        == "agreed with Alice"
    )
    assert check_window(plan("24x7"), SATURDAY_11H_PARIS, override=False, reason=None) is None


def test_disaster_confirmation():
    confirm_disaster("demo", yes=True, is_tty=False)
    with pytest.raises(NotConfirmed, match="run it on a terminal or pass --yes"):
        confirm_disaster("demo", yes=False, is_tty=False)
    with pytest.raises(NotConfirmed, match="'dmeo' does not match"):
        confirm_disaster("demo", yes=False, is_tty=True, ask=lambda prompt: "dmeo")
    confirm_disaster("demo", yes=False, is_tty=True, ask=lambda prompt: "demo\n")


def test_lock_excludes_a_second_activation_and_is_released_on_error(tmp_path):
    store = LocalDirStorage(tmp_path)
    store.create()
    with ActivationLock(store, "demo", "run-1"):
        with (
            pytest.raises(ActivationLocked, match="by run run-1") as e,
            ActivationLock(store, "demo", "run-2"),
        ):
            pass
        assert e.value.exit_code == 11
    assert not store.exists(LOCK_KEY)
    with pytest.raises(RuntimeError), ActivationLock(store, "demo", "run-3"):
        raise RuntimeError("boom")
    assert not store.exists(LOCK_KEY)


def test_stale_lock_is_taken_over(tmp_path):
    store = LocalDirStorage(tmp_path)
    store.create()
    old = datetime.now(UTC) - timedelta(days=1)
    store.put(
        LOCK_KEY, json.dumps({"run_id": "dead", "host": "h", "since": old.isoformat(), "token": "x"}).encode()
    )
    with ActivationLock(store, "demo", "run-4"):
        assert json.loads(store.get(LOCK_KEY))["run_id"] == "run-4"
    assert not store.exists(LOCK_KEY)


@pytest.mark.parametrize("body", [b"{not json", b"[" * 100_000], ids=["not-json", "deeply-nested"])
def test_an_unreadable_lock_is_never_taken_over_nor_removed(tmp_path, body):
    store = LocalDirStorage(tmp_path)
    store.create()
    store.put(LOCK_KEY, body)
    with pytest.raises(ActivationLocked) as e, ActivationLock(store, "demo", "run-5"):
        pass
    assert e.value.exit_code == 11
    assert f"{tmp_path}/{LOCK_KEY} is unreadable" in e.value.message
    assert "if no run of demo is going on, delete that object" in e.value.message
    assert store.get(LOCK_KEY) == body


class LostAnswer:
    """A store whose first create succeeds but whose answer is lost, so the retried request
    finds the object (the retry wrapper's view): put_if_absent says False for our own write."""

    def __init__(self, inner):
        self.inner, self.lost = inner, False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def put_if_absent(self, key, data):
        created = self.inner.put_if_absent(key, data)
        if created and not self.lost:
            self.lost = True
            return False
        return created


def test_a_lock_created_by_our_own_retried_request_is_ours(tmp_path):
    store = LocalDirStorage(tmp_path)
    store.create()
    with ActivationLock(LostAnswer(store), "demo", "run-6"):
        assert json.loads(store.get(LOCK_KEY))["run_id"] == "run-6"
    assert not store.exists(LOCK_KEY)


def test_a_stale_lock_being_taken_over_by_another_run_is_left_to_it(tmp_path):
    store = LocalDirStorage(tmp_path)
    store.create()
    old = datetime.now(UTC) - timedelta(days=1)
    stale = {"run_id": "dead", "host": "h", "since": old.isoformat(), "token": "x"}
    store.put(LOCK_KEY, json.dumps(stale).encode())
    marker = HeldLock.parse(store.get(LOCK_KEY)).takeover_marker
    store.put(marker, b"another run's token")
    with pytest.raises(ActivationLocked, match="another run is taking over the stale lock of run dead") as e:
        ActivationLock(store, "demo", "run-7").__enter__()
    assert marker in e.value.message  # what to delete if that run died half-way
    assert json.loads(store.get(LOCK_KEY))["run_id"] == "dead"
    # Once that run is done, the marker goes and the stale lock is taken over as usual.
    store.delete(marker)
    with ActivationLock(store, "demo", "run-8"):
        assert json.loads(store.get(LOCK_KEY))["run_id"] == "run-8"
    assert [o.key for o in store.list()] == []  # no marker left behind


def test_discarding_disaster_changes_needs_the_client_id_typed_or_yes():
    confirm_discard("demo", "r1", yes=True, is_tty=False)
    with pytest.raises(NotConfirmed, match="add --yes to --discard-disaster-changes"):
        confirm_discard("demo", "r1", yes=False, is_tty=False)
    prompts = []
    with pytest.raises(NotConfirmed, match="'dem' does not match client id 'demo'; nothing was deleted"):
        confirm_discard("demo", "r1", yes=False, is_tty=True, ask=lambda p: prompts.append(p) or "dem")
    assert "without bringing it home (`drctl failback`)" in prompts[0] and "run r1" in prompts[0]
    confirm_discard("demo", "r1", yes=False, is_tty=True, ask=lambda p: "demo\n")


def test_already_active_is_refused_naming_the_run_and_the_next_step(tmp_path):
    check_not_active(tmp_path, "demo")
    (tmp_path / "active").mkdir()
    (tmp_path / "active" / "demo.json").write_text(json.dumps({"run_id": "r9"}))
    with pytest.raises(InvalidInput, match="still activated by run r9 .*drctl deactivate demo"):
        check_not_active(tmp_path, "demo")
    (tmp_path / "active" / "demo.json").write_text("{")
    with pytest.raises(InvalidInput, match="unreadable activation record .*remove that file"):
        check_not_active(tmp_path, "demo")
