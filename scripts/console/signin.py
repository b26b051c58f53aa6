"""Sign-in: the password (Argon2), then a TOTP code (RFC 6238, 30 s steps, one step of clock
skew either side), each code accepted once; attempts rate-limited per address and a user locked
out after repeated failures.

Rules (the numbers are :class:`SignInGuard`'s defaults):

- a failed password or code counts against the user name: after 5 failures within 15 minutes the
  user is locked out for 15 minutes, whatever is typed (a right password included);
- any address gets at most 20 attempts per minute, then waits;
- a code is accepted only for a time step later than the last one accepted for that user, so a
  code seen over someone's shoulder (or replayed from a captured request) is refused.

The counters live in the console's memory: an attacker cannot restart the console, and the
operator who can does not need to wait for their own lockout.
"""

from __future__ import annotations

import hmac
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import pyotp

from drctl.console.users import User, UserStore

_CODE = re.compile(r"\d{6}")
ISSUER = "Flexible Recovery"


def new_totp_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(user: User, secret: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads from the enrolment QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=user.name, issuer_name=ISSUER)


def matching_step(secret: str, code: str, now: float) -> int | None:
    """The time step whose code is ``code`` (now, one before or one after), or None."""
    code = code.strip().replace(" ", "")
    if not _CODE.fullmatch(code):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


@dataclass(frozen=True)
class CodeCheck:
    """The outcome of a TOTP code: ``ok``, else ``reason`` (``wrong`` or ``replayed``)."""

    ok: bool
    reason: str = ""


def accept_code(store: UserStore, name: str, code: str, now: float | None = None) -> CodeCheck:
    """Check ``code`` against the user's secret (the pending one while enrolling) and, when it is
    right and newer than the last accepted one, record its step (and confirm the enrolment)."""
    now = time.time() if now is None else now
    outcome = CodeCheck(False, "wrong")

    def change(user: User) -> User | None:
        nonlocal outcome
        if not user.totp_secret:
            return None
        step = matching_step(user.totp_secret, code, now)
        if step is None:
            return None
        if step <= user.totp_last_step:
            outcome = CodeCheck(False, "replayed")
            return None
        outcome = CodeCheck(True)
        return replace(user, totp_last_step=step, totp_confirmed=True)

    store.update(name, change)
    return outcome


class SignInGuard:
    """Rate limit per address and lockout per user name (see the module docstring)."""

    def __init__(
        self,
        *,
        max_failures: int = 5,
        failure_window_s: float = 900,
        lockout_s: float = 900,
        per_address_per_minute: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.failure_window_s = failure_window_s
        self.lockout_s = lockout_s
        self.per_address_per_minute = per_address_per_minute
        self.clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._locked_until: dict[str, float] = {}
        self._attempts: dict[str, deque[float]] = defaultdict(deque)

    MAX_TRACKED = 10_000

    def _forget_stale(self, now: float) -> None:
        """Bound the memory a stream of made-up names or addresses can take (under the lock)."""
        if len(self._attempts) > self.MAX_TRACKED:
            self._attempts = defaultdict(
                deque, {a: q for a, q in self._attempts.items() if q and q[-1] > now - 60}
            )
        if len(self._failures) > self.MAX_TRACKED:
            window = now - self.failure_window_s
            self._failures = defaultdict(
                deque, {n: q for n, q in self._failures.items() if q and q[-1] > window}
            )
        if len(self._locked_until) > self.MAX_TRACKED:
            self._locked_until = {n: t for n, t in self._locked_until.items() if t > now}

    def address_allowed(self, address: str) -> bool:
        """Count one attempt from ``address``; False when it is over its rate."""
        now = self.clock()
        with self._lock:
            self._forget_stale(now)
            q = self._attempts[address]
            while q and q[0] <= now - 60:
                q.popleft()
            if len(q) >= self.per_address_per_minute:
                return False
            q.append(now)
            return True

    def locked_for(self, name: str) -> float:
        """Seconds the user is still locked out (0 when not)."""
        with self._lock:
            return max(0.0, self._locked_until.get(name, 0.0) - self.clock())

    def failed(self, name: str) -> bool:
        """Record a failure for ``name``; True when it locks the user out."""
        now = self.clock()
        with self._lock:
            q = self._failures[name]
            while q and q[0] <= now - self.failure_window_s:
                q.popleft()
            q.append(now)
            if len(q) >= self.max_failures:
                self._locked_until[name] = now + self.lockout_s
                q.clear()
                return True
            return False

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name, None)
