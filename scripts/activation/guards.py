"""Who may activate, when, and only once at a time (service description 9.1 and 9.3).

Pure checks on the plan plus one I/O edge: the activation lock, an object in the client's vault,
so that two operators (or a cron drill and an operator) cannot activate the same stack at once.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import uuid
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from drctl.errors import EXIT_LOCKED, DrctlError, InvalidInput
from drctl.plan.model import Contact, Plan
from drctl.storage.base import ObjectMissing, Storage

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


class ActivationLock:
    """An exclusive lock object in the client's vault. Released on every exit path (context
    manager); a lock older than LOCK_STALE_AFTER is taken over with a warning."""

    def __init__(self, storage: Storage, stack: str, run_id: str, *, now=lambda: datetime.now(UTC)):
        self.storage, self.stack, self.run_id, self.now = storage, stack, run_id, now
        self.token = uuid.uuid4().hex

    def __enter__(self) -> ActivationLock:
        try:
            held = json.loads(self.storage.get(LOCK_KEY))
        except ObjectMissing:
            held = None
        if held:
            since = datetime.fromisoformat(held["since"])
            if self.now() - since < LOCK_STALE_AFTER:
                raise ActivationLocked(
                    f"stack {self.stack} is being activated by run {held['run_id']} on {held['host']} since "
                    f"{held['since']} (lock {self.storage.describe()}/{LOCK_KEY}); wait for it, or run "
                    "`drctl deactivate` if that run is dead"
                )
            log.warning(
                "taking over stale activation lock of run %s (since %s)", held["run_id"], held["since"]
            )
        body = {
            "run_id": self.run_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": self.now().isoformat(),
            "token": self.token,
        }
        self.storage.put(LOCK_KEY, json.dumps(body).encode())
        # Read back: if another run wrote in between, the last writer wins and the other backs off.
        if json.loads(self.storage.get(LOCK_KEY)).get("token") != self.token:
            raise ActivationLocked(
                f"stack {self.stack}: another activation took the lock at the same moment; retry"
            )
        return self

    def __exit__(self, *exc) -> None:
        try:
            if json.loads(self.storage.get(LOCK_KEY)).get("token") == self.token:
                self.storage.delete(LOCK_KEY)
        except ObjectMissing:
            pass
