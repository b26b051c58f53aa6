"""The demo's console operator: ``drctl demo console-user`` (re)creates ``demo-operator`` with a
one-time password (replaced at the first sign-in) and an enrolled TOTP secret, both shown on the
terminal only, never written anywhere but the console's users file (0600, the secret as every
user's, the password as its Argon2 hash)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from drctl.console.signin import ISSUER, new_totp_secret
from drctl.console.users import UserStore, console_dir

DEMO_OPERATOR = "demo-operator"
CONSOLE_URL = "http://127.0.0.1:8080/"


@dataclass(frozen=True)
class DemoOperator:
    name: str
    password: str
    totp_secret: str

    @property
    def otpauth_uri(self) -> str:
        import pyotp

        return pyotp.TOTP(self.totp_secret).provisioning_uri(name=self.name, issuer_name=ISSUER)


def create_demo_operator(state_dir: Path | None = None) -> DemoOperator:
    """(Re)create the demo operator: a new one-time password and TOTP secret each time."""
    password = secrets.token_urlsafe(12)
    secret = new_totp_secret()
    UserStore(console_dir(state_dir)).add(
        DEMO_OPERATOR, "operator", None, password, one_time=True, totp_secret=secret, replace_existing=True
    )
    return DemoOperator(DEMO_OPERATOR, password, secret)


def how_to_open() -> str:
    """What the demo prints so that the console can be opened on its data."""
    return (
        "management console on the demo data: run `source .state/local/env; .venv/bin/drctl console serve` "
        "(127.0.0.1:8080), "
        f"then open {CONSOLE_URL} (from another machine: ssh -L 8080:127.0.0.1:8080 this-host) and sign in "
        f"as {DEMO_OPERATOR}; `.venv/bin/drctl demo console-user` shows its one-time password and "
        "TOTP secret on a terminal (a new pair each time)"
    )
