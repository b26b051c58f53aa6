"""Who may activate, when, and only once at a time (service description 9.1 and 9.3).

Pure checks on the plan plus one I/O edge: the activation lock, an object in the client's report
container, so that two operators (or a cron drill and an operator) cannot activate the same stack
at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from drctl.errors import EXIT_LOCKED, DrctlError, InvalidInput
from drctl.input_files import loads_json
from drctl.plan.model import Contact, Plan
from drctl.storage.base import KeyContended, ObjectMissing, Storage, StorageError

log = logging.getLogger(__name__)

BUSINESS_START = time(8, 0)
BUSINESS_END = time(18, 0)
LOCK_KEY = "locks/activation.json"
LOCK_STALE_AFTER = timedelta(hours=12)


class NotAuthorised(InvalidInput):
    """The person requesting the activation is not allowed to trigger it."""


class OutsideWindow(InvalidInput):
    """The activation is outside the client's activation window."""


class NotConfirmed(InvalidInput):
    """A disaster activation was not confirmed."""


class ActivationLocked(DrctlError):
    """Another activation of this stack is running."""

    exit_code = EXIT_LOCKED


def authorised_contact(plan: Plan, requested_by: str) -> Contact:
    """The plan contact (matched by name or e-mail, case-insensitive) who may activate."""
    key = requested_by.strip().casefold()
    for c in plan.contacts:
        if key in (c.name.casefold(), c.email.casefold()):
            if not c.can_activate:
                raise NotAuthorised(
                    f"{c.name} is a contact of {plan.client.id} but may not activate its plan "
                    f"(can_activate: false); ask one of: {_activators(plan)}"
                )
            return c
    raise NotAuthorised(
        f"{requested_by!r} is not a contact of {plan.client.id}; activation must be requested by one of: "
        f"{_activators(plan)}"
    )


def _activators(plan: Plan) -> str:
    return ", ".join(c.name for c in plan.contacts if c.can_activate) or "(nobody: fix the plan's contacts)"


def in_activation_window(plan: Plan, at: datetime) -> bool:
    """Business hours are 08:00-18:00 Monday to Friday in the client's time zone (public holidays
    are not modelled), unless the client has the 24x7 option."""
    if plan.client.activation_window == "24x7":
        return True
    local = at.astimezone(ZoneInfo(plan.client.timezone))
    return local.weekday() < 5 and BUSINESS_START <= local.time() < BUSINESS_END


def check_window(plan: Plan, at: datetime, *, override: bool, reason: str | None) -> str | None:
    """Returns the override reason to record, or raises when outside the window without one."""
    if in_activation_window(plan, at):
        return None
    local = at.astimezone(ZoneInfo(plan.client.timezone)).strftime("%a %Y-%m-%d %H:%M %Z")
    if not override or not (reason and reason.strip()):
        raise OutsideWindow(
            f"{local} is outside {plan.client.id}'s activation window ({plan.client.activation_window}, "
            f"08:00-18:00 Mon-Fri {plan.client.timezone}); pass --override-window --reason TEXT "
            "(recorded in the report) if this activation was agreed"
        )
    return reason.strip()


def ask_on_terminal(prompt: str) -> str:
    """Prompt on stderr and read a line from stdin: stdout stays the command's output (with
    ``--json``, nothing but JSON lines), which ``input()`` would not respect."""
    sys.stderr.write(prompt)
    sys.stderr.flush()
    return sys.stdin.readline()


def confirm_disaster(client_id: str, *, yes: bool, ask=ask_on_terminal, is_tty: bool | None = None) -> None:
    """A disaster activation needs the client id typed on a terminal, or --yes."""
    if yes:
        return
    if not (os.isatty(0) if is_tty is None else is_tty):
        raise NotConfirmed(
            f"a disaster activation of {client_id} needs confirmation: run it on a terminal or pass --yes"
        )
    typed = ask(f"Disaster activation of {client_id}: type the client id to confirm: ")
    if typed.strip() != client_id:
        raise NotConfirmed(
            f"confirmation {typed.strip()!r} does not match client id {client_id!r}; nothing was done"
        )


def confirm_discard(
    client_id: str, run_id: str, *, yes: bool, ask=ask_on_terminal, is_tty: bool | None = None
) -> None:
    """Deleting a disaster activation's servers (and the data written on them) needs the client
    id typed on a terminal, or --yes given together with --discard-disaster-changes."""
    if yes:
        return
    if not (os.isatty(0) if is_tty is None else is_tty):
        raise NotConfirmed(
            f"discarding the changes of disaster run {run_id} of {client_id} needs confirmation: run it "
            "on a terminal, or add --yes to --discard-disaster-changes"
        )
    typed = ask(
        f"Deactivating {client_id} deletes its recovered servers and the production data written on them "
        f"since run {run_id}, without bringing it home (`drctl failback`). Type the client id to confirm: "
    )
    if typed.strip() != client_id:
        raise NotConfirmed(
            f"confirmation {typed.strip()!r} does not match client id {client_id!r}; nothing was deleted"
        )


@dataclass(frozen=True)
class HeldLock:
    """What the lock object says about the run holding it."""

    run_id: str
    host: str
    since: datetime
    token: str

    @classmethod
    def parse(cls, data: bytes | bytearray) -> HeldLock:
        """Raises ValueError, KeyError or TypeError for anything but a lock drctl wrote."""
        doc = loads_json(data)
        since = datetime.fromisoformat(doc["since"])
        if since.tzinfo is None:
            raise ValueError(f"'since' {doc['since']!r} has no time zone")
        token = doc["token"]
        if not isinstance(token, str) or not token:
            raise ValueError("it has no token")
        return cls(str(doc["run_id"]), str(doc["host"]), since, token)

    @property
    def takeover_marker(self) -> str:
        """The object whose creation entitles one run to delete this lock once it is stale."""
        return f"{LOCK_KEY}.takeover-{hashlib.sha256(self.token.encode()).hexdigest()[:32]}"


class ActivationLock:
    """An exclusive lock object in the client's report store, so that two runs of one stack
    (two operators, or a cron drill and an operator) never overlap.

    Taken with the store's create-if-absent (``Storage.put_if_absent``): of two runs racing, exactly
    one creates the object. A lock older than LOCK_STALE_AFTER is taken over with a warning, by the
    one run that also creates the stale lock's :attr:`HeldLock.takeover_marker`. Released on every exit
    path (context manager), only if it is still ours."""

    def __init__(self, storage: Storage, stack: str, run_id: str, *, now=lambda: datetime.now(UTC)):
        self.storage, self.stack, self.run_id, self.now = storage, stack, run_id, now
        self.token = uuid.uuid4().hex

    @property
    def where(self) -> str:
        return f"{self.storage.describe()}/{LOCK_KEY}"

    def __enter__(self) -> ActivationLock:
        body = json.dumps(
            {
                "run_id": self.run_id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "since": self.now().isoformat(),
                "token": self.token,
            }
        ).encode()
        markers: list[str] = []
        try:
            for _ in range(3):
                if self._create(LOCK_KEY, body):
                    return self
                held = self._read()
                if held is None:
                    continue  # released between our attempt and the read: try again
                if held.token == self.token:
                    return self  # an earlier attempt of our own (retried request) created it
                if self.now() - held.since < LOCK_STALE_AFTER:
                    raise ActivationLocked(
                        f"stack {self.stack} is being activated by run {held.run_id} on {held.host} "
                        f"since {held.since.isoformat(timespec='seconds')} (lock {self.where}); wait for "
                        f"it to finish. If that run died, delete the lock object, or wait until it is "
                        f"{int(LOCK_STALE_AFTER.total_seconds() // 3600)} h old (it is then taken over)"
                    )
                marker = self._take_over(held)
                if marker is not None:
                    markers.append(marker)
        finally:
            for marker in markers:
                try:
                    self.storage.delete(marker)
                except StorageError as e:  # harmless: it names a lock that no longer exists
                    log.warning("could not delete the takeover marker %s: %s", marker, e.message)
        raise ActivationLocked(
            f"stack {self.stack}: the activation lock {self.where} kept changing hands while this "
            "run tried to take it; retry"
        )

    def _create(self, key: str, body: bytes) -> bool:
        try:
            return self.storage.put_if_absent(key, body)
        except KeyContended as e:
            raise ActivationLocked(
                f"stack {self.stack}: other runs are taking the activation lock {self.where} at this "
                "very moment; retry"
            ) from e

    def _read(self) -> HeldLock | None:
        """The lock as it is now; None if it is gone. An unreadable lock is never taken over."""
        try:
            data = self.storage.get(LOCK_KEY)
        except ObjectMissing:
            return None
        try:
            return HeldLock.parse(data)
        except (ValueError, KeyError, TypeError) as e:
            raise ActivationLocked(
                f"stack {self.stack}: the activation lock {self.where} is unreadable ({e}); if no run "
                f"of {self.stack} is going on, delete that object, then retry"
            ) from e

    def _take_over(self, held: HeldLock) -> str | None:
        """Delete the stale lock ``held``, as the one run that created its takeover marker.
        Returns the marker (deleted by the caller once it has tried to create its own lock), or
        None when another run has just done the takeover (the caller then looks again)."""
        marker = held.takeover_marker
        if not self._create(marker, self.token.encode()):
            try:
                ours = self.storage.get(marker) == self.token.encode()  # a retried request of ours
            except ObjectMissing:
                ours = False
            if not ours:
                current = self._read()
                if current is None or current.token != held.token:
                    return None
                raise ActivationLocked(
                    f"stack {self.stack}: another run is taking over the stale lock of run {held.run_id} "
                    f"({self.where}); retry in a minute. If this persists, no run holds it: delete "
                    f"{self.storage.describe()}/{marker} and the lock, then retry"
                )
        current = self._read()
        if current is not None and current.token == held.token:
            log.warning(
                "taking over the stale activation lock of run %s on %s (since %s)",
                held.run_id,
                held.host,
                held.since.isoformat(),
            )
            self.storage.delete(LOCK_KEY)
        return marker

    def __exit__(self, *exc) -> None:
        try:
            if HeldLock.parse(self.storage.get(LOCK_KEY)).token == self.token:
                self.storage.delete(LOCK_KEY)
        except ObjectMissing:
            pass
        except (ValueError, KeyError, TypeError) as e:
            log.warning("leaving the unreadable activation lock %s in place: %s", self.where, e)


def check_not_active(state_dir: Path, stack: str) -> None:
    """Refuse a run while an earlier activation of ``stack`` is still up (its record is removed
    by ``drctl deactivate``). Called with the activation lock held, so that two runs cannot both
    find the stack inactive."""
    active = Path(state_dir) / "active" / f"{stack}.json"
    if not active.exists():
        return
    try:
        run_id = loads_json(active.read_text())["run_id"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InvalidInput(
            f"stack {stack} has an unreadable activation record {active} ({e}); check whether an "
            f"activation of {stack} is still up, then remove that file"
        ) from e
    raise InvalidInput(
        f"stack {stack} is still activated by run {run_id} ({active}); run `drctl deactivate {stack}` first"
    )
