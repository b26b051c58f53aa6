"""Sessions in a signed cookie, and the CSRF token every form carries.

The cookie holds ``{"sid", "user", "stage", "csrf", "at"}`` signed with HMAC (itsdangerous) by a
key kept in ``<state>/console/session.key`` (0600, made on first use): the browser can read
nothing it could change. ``stage`` is ``anonymous``, ``password`` (the password was right, the
second factor is pending), ``enrol`` (idem, the user has no TOTP yet), ``new-password`` (both
factors passed, the one-time password must be replaced first) or ``signed-in``. The
cookie is ``HttpOnly``, ``SameSite=Strict``, ``Secure`` when the console is served over TLS, and
re-issued on every request: a session unused for ``idle_timeout_s`` is refused. Signing out
forgets the session id in this process (a copied cookie is refused too).

CSRF: every session has a random token, put in every form as ``csrf_token``; a POST whose token
is missing or different is refused (403) before anything else is looked at.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer

from drctl.errors import LocalIOError
from drctl.private_files import write_private_file

COOKIE = "drctl_console"
STAGES = ("anonymous", "password", "enrol", "new-password", "signed-in")


@dataclass(frozen=True)
class Session:
    sid: str
    csrf: str
    user: str | None = None
    stage: str = "anonymous"

    @property
    def signed_in(self) -> bool:
        return self.stage == "signed-in" and self.user is not None

    def csrf_ok(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf, str(token))


def new_session(user: str | None = None, stage: str = "anonymous") -> Session:
    """A fresh session id and CSRF token (a new one at each sign-in step: no fixation)."""
    return Session(secrets.token_urlsafe(18), secrets.token_urlsafe(24), user, stage)


def load_or_create_key(path: Path) -> bytes:
    """The session-signing key (random, 0600); created when absent."""
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    except OSError as e:
        raise LocalIOError(f"cannot read the console session key {path}: {e}") from e
    key = secrets.token_bytes(32)
    write_private_file(path, key)
    return key


class SessionCodec:
    """Signs and reads the session cookie; remembers signed-out session ids."""

    def __init__(self, key: bytes, *, idle_timeout_s: float = 900) -> None:
        self._serializer = URLSafeTimedSerializer(key, salt="drctl-console-session")
        self.idle_timeout_s = idle_timeout_s
        self._ended: dict[str, float] = {}
        self._lock = threading.Lock()

    def dumps(self, session: Session) -> str:
        return self._serializer.dumps(
            {"sid": session.sid, "csrf": session.csrf, "user": session.user, "stage": session.stage}
        )

    def loads(self, cookie: str | None) -> Session | None:
        """The session in ``cookie`` if it is signed by us, used within the idle timeout, and not
        signed out; else None."""
        if not cookie:
            return None
        try:
            d = self._serializer.loads(cookie, max_age=max(1, int(self.idle_timeout_s)))
            s = Session(str(d["sid"]), str(d["csrf"]), d["user"], str(d["stage"]))
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
        if s.stage not in STAGES:
            return None
        with self._lock:
            if s.sid in self._ended:
                return None
        return s

    def end(self, session: Session) -> None:
        """Refuse this session id from now on (signing out)."""
        now = time.monotonic()
        with self._lock:
            self._ended = {k: t for k, t in self._ended.items() if t > now - self.idle_timeout_s}
            self._ended[session.sid] = now
