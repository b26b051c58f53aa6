"""The console's users: one JSON file, mode 0600, under the state directory.

``<state dir>/console/users.json``::

    {"format": "drctl-console-users-v1",
     "users": {"alice": {"role": "operator", "client": null,
                         "password_hash": "$argon2id$...",
                         "totp_required": true, "totp_secret": "BASE32..." | null,
                         "totp_confirmed": false, "totp_last_step": 0,
                         "created": "2026-11-30T04:00:00Z"}}}

Passwords are Argon2id hashes (argon2-cffi's defaults). The TOTP secret is kept in clear because
the server must compute the codes; the file is the operator's alone (0600, written whole by a new
file renamed into place, never through a link: :mod:`drctl.private_files`). ``totp_last_step`` is
the time step of the last code accepted, so that no code is accepted twice. A read-modify-write
holds an ``fcntl`` lock on ``users.lock`` beside it: ``drctl console user add`` may run while the
console records a sign-in.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from drctl import paths
from drctl.errors import InvalidInput, LocalIOError
from drctl.input_files import loads_json
from drctl.private_files import write_private_file

FORMAT = "drctl-console-users-v1"
ROLES = ("operator", "client")
MIN_PASSWORD_LENGTH = 12
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_hasher = PasswordHasher()


class ConsoleUserInvalid(InvalidInput):
    """A console user cannot be created or read as asked."""


def console_dir(state_dir: Path | None = None) -> Path:
    """Where the console keeps its users, session key and audit log."""
    return (Path(state_dir) if state_dir is not None else paths.state_dir()) / "console"


@dataclass(frozen=True)
class User:
    """One console user. ``client`` is the stack a client user may see (None for operators)."""

    name: str
    role: str
    client: str | None
    password_hash: str
    totp_required: bool = True
    totp_secret: str | None = None
    totp_confirmed: bool = False
    totp_last_step: int = 0
    created: str = ""
    password_expired: bool = False  # a one-time password: a new one is chosen at the first sign-in

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"

    def may_see(self, client: str) -> bool:
        """Operators see every client; a client user only their own."""
        return self.is_operator or self.client == client


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_matches(user: User | None, password: str) -> bool:
    """True when ``password`` is the user's. Without a user the same hash work is done, so an
    unknown name takes as long to refuse as a wrong password."""
    try:
        if user is None:
            _hasher.verify(_DUMMY_HASH, password + "x")
            return False
        return _hasher.verify(user.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# A hash with the same parameters, made once (hashing at import would cost every start a second):
# verifying against it costs what a real user's verification costs.
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$ujztGTa08bR24hiI2EEsQA$K9QSiWV3I1D/w8qSTNpJTnVJkHOrQCwW26NISHi+3p0"
)


def check_new_user(name: str, role: str, client: str | None, password: str) -> None:
    """Raise :class:`ConsoleUserInvalid` naming the field at fault and the next step."""
    if not _NAME.fullmatch(name or ""):
        raise ConsoleUserInvalid(
            f"user name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
        )
    if role not in ROLES:
        raise ConsoleUserInvalid(f"role {role!r}: use one of {', '.join(ROLES)}")
    if role == "client" and not client:
        raise ConsoleUserInvalid(f"user {name}: a client user needs --client STACK (the client it may see)")
    if role == "operator" and client:
        raise ConsoleUserInvalid(f"user {name}: an operator sees every client; drop --client")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConsoleUserInvalid(
            f"user {name}: the password has {len(password)} characters; use at least {MIN_PASSWORD_LENGTH}"
        )


class UserStore:
    """The users file (see the module docstring)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else console_dir()

    @property
    def path(self) -> Path:
        return self.directory / "users.json"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.directory / "users.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as e:
            raise LocalIOError(f"cannot lock the console users file in {self.directory}: {e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def load(self) -> dict[str, User]:
        """Every user by name; an absent file is no user."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise LocalIOError(f"cannot read the console users file {self.path}: {e}") from e
        try:
            doc = loads_json(data)
            if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc["users"], dict):
                raise ValueError(f"not a {FORMAT} document")
            return {name: _user(name, fields) for name, fields in doc["users"].items()}
        except (ValueError, KeyError, TypeError) as e:
            raise ConsoleUserInvalid(
                f"{self.path} is damaged ({e}); restore it from a backup or move it away and add the users again"
            ) from e

    def get(self, name: str) -> User | None:
        return self.load().get(name)

    def _save(self, users: dict[str, User]) -> None:
        doc = {
            "format": FORMAT,
            "users": {
                n: {k: v for k, v in asdict(u).items() if k != "name"} for n, u in sorted(users.items())
            },
        }
        write_private_file(self.path, json.dumps(doc, indent=2, sort_keys=True) + "\n")

    def add(
        self,
        name: str,
        role: str,
        client: str | None,
        password: str,
        *,
        totp: bool = True,
        one_time: bool = False,
        totp_secret: str | None = None,
        replace_existing: bool = False,
    ) -> User:
        """Create a user; TOTP is enrolled at their first sign-in (always required for operators)
        unless ``totp_secret`` is given (then it is already enrolled). ``one_time``: the password
        must be replaced at the first sign-in. ``replace_existing``: a user of that name is replaced."""
        check_new_user(name, role, client, password)
        user = User(
            name=name,
            role=role,
            client=client if role == "client" else None,
            password_hash=hash_password(password),
            totp_required=True if role == "operator" else totp,
            totp_secret=totp_secret,
            totp_confirmed=totp_secret is not None,
            created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            password_expired=one_time,
        )
        with self._locked():
            users = self.load()
            if name in users and not replace_existing:
                raise ConsoleUserInvalid(f"console user {name} already exists in {self.path}")
            users[name] = user
            self._save(users)
        return user

    def update(self, name: str, change: Callable[[User], User | None]) -> User | None:
        """Apply ``change`` to the user under the lock; when it returns None nothing is written.
        Returns the user as stored afterwards (None when there is no such user)."""
        with self._locked():
            users = self.load()
            if name not in users:
                return None
            new = change(users[name])
            if new is None:
                return users[name]
            users[name] = new
            self._save(users)
            return new


def _user(name: str, f: dict[str, Any]) -> User:
    if f["role"] not in ROLES or not isinstance(f["password_hash"], str):
        raise ValueError(f"user {name}: bad role or password hash")
    return User(
        name=name,
        role=f["role"],
        client=f.get("client"),
        password_hash=f["password_hash"],
        totp_required=bool(f.get("totp_required", True)),
        totp_secret=f.get("totp_secret"),
        totp_confirmed=bool(f.get("totp_confirmed", False)),
        totp_last_step=int(f.get("totp_last_step", 0)),
        created=str(f.get("created", "")),
        password_expired=bool(f.get("password_expired", False)),
    )
