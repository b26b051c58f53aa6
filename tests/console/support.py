"""A console over the real checkout's stacks (demo, acme) and a state directory with signed runs,
and its users: an operator and one client user per client. Shared by the HTTP and browser tests."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pyotp

from drctl.console.users import UserStore, console_dir
from drctl.runs.signing import load_or_create_key
from drctl.runs.store import RunStore
from tests.runs.fixtures import demo_summary

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
DEMO_RUN = "20260203T170100Z-3f9a1c"
ACME_RUN = "20260210T090000Z-aa11bb"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_SECRET = re.compile(r'id="totp-secret">([A-Z2-7 ]+)<')


@dataclass(frozen=True)
class Fixture:
    state: Path
    users: UserStore


def make_state(state: Path) -> Fixture:
    """Two clients' runs, signed with the operator's key, and three users (none enrolled yet)."""
    key = load_or_create_key(state / "keys" / "report-signing.key")
    store = RunStore(state)
    store.record(demo_summary(), key)
    healthy = tuple(s for s in demo_summary().servers if s.status == "ok" and not s.depends_on)
    acme = demo_summary(stack="acme", run_id=ACME_RUN, client_id="acme", client_name="ACME", servers=healthy)
    store.record(acme.with_availability(), key)
    users = UserStore(console_dir(state))
    users.add("olivia", "operator", None, PASSWORD)
    users.add("dana", "client", "demo", PASSWORD)
    users.add("axel", "client", "acme", PASSWORD)
    return Fixture(state, users)


def csrf_of(html: str) -> str:
    m = _CSRF.search(html)
    assert m, "the page has no CSRF token in its form"
    return m.group(1)


def secret_of(html: str) -> str:
    m = _SECRET.search(html)
    assert m, "the enrolment page shows no TOTP secret"
    return m.group(1).replace(" ", "")


def code_at(secret: str, step: int) -> str:
    return pyotp.TOTP(secret).generate_otp(step)


def current_step(secret: str) -> int:
    import time

    return pyotp.TOTP(secret).timecode(time.time())
