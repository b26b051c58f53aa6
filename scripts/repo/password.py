"""Where passwords come from: a file, a command, an environment variable or a terminal prompt.
Never from argv, never logged (docs/repository-format.md §7)."""

from __future__ import annotations

import getpass
import logging
import os
import shlex
import stat
import subprocess
import sys

from drctl.errors import InvalidInput

log = logging.getLogger(__name__)

PASSWORD_ENV = "DRCTL_PASSWORD"
NEW_PASSWORD_ENV = "DRCTL_NEW_PASSWORD"
# Key slots are readable by anyone who can read the bucket, and a slot can be attacked offline
# (guess, run the KDF, try the tag) without ever touching the store again: length is the defence.
MIN_PASSWORD_CHARS = 12


def check_new_password(password: bytes) -> None:
    """Refuse a new repository password (``repo init``, ``key add|passwd``) that is too short. The
    message never contains the password."""
    n = len(password.decode("utf-8", errors="replace"))
    if n < MIN_PASSWORD_CHARS:
        raise InvalidInput(
            f"the new password has {n} characters; at least {MIN_PASSWORD_CHARS} are required because "
            f"the key slots are readable by anyone who can read the bucket and a short password can "
            f"be guessed offline from them; choose a longer one (e.g. several random words)"
        )


def _from_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            text = f.read()
    except OSError as e:
        raise InvalidInput(f"cannot read the {what} file {path}: {e.strerror}") from e
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning(
            "the %s file %s is readable by other users (mode %04o): whoever reads it can open the "
            "repository; restrict it with `chmod 600 %s`",
            what,
            path,
            stat.S_IMODE(mode),
            path,
        )
    line = text.splitlines()[0] if text.splitlines() else b""
    if not line:
        raise InvalidInput(f"the {what} file {path} is empty")
    return line


def _from_command(command: str) -> bytes:
    argv = shlex.split(command)
    if not argv:
        raise InvalidInput("--password-command is empty")
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise InvalidInput(f"--password-command {argv[0]!r} could not run: {e}") from e
    if proc.returncode != 0:
        # stderr of the helper may be shown; its stdout (the password) never is.
        raise InvalidInput(
            f"--password-command {argv[0]!r} failed with exit code {proc.returncode}: "
            f"{proc.stderr.decode(errors='replace').strip()[:200]}"
        )
    lines = proc.stdout.splitlines()
    if not lines or not lines[0]:
        raise InvalidInput(f"--password-command {argv[0]!r} printed no password")
    return lines[0]


def _prompt(prompt: str, confirm: bool) -> bytes | None:
    if not sys.stdin.isatty():
        return None
    first = getpass.getpass(prompt)
    if confirm and getpass.getpass("repeat: ") != first:
        raise InvalidInput("the two passwords differ")
    return first.encode()


def read_password(
    password_file: str | None = None, password_command: str | None = None, *, confirm: bool = False
) -> bytes:
    """The repository password: --password-file, else --password-command, else $DRCTL_PASSWORD,
    else a prompt on a terminal."""
    if password_file:
        return _from_file(password_file, "password")
    if password_command:
        return _from_command(password_command)
    env = os.environ.get(PASSWORD_ENV)
    if env:
        return env.encode()
    got = _prompt("repository password: ", confirm)
    if got:
        return got
    raise InvalidInput(
        f"no password given: set {PASSWORD_ENV}, or use --password-file or "
        f"--password-command (never on the command line)"
    )


def read_new_password(new_password_file: str | None = None) -> bytes:
    """The new password of ``key add|passwd``: --new-password-file, else $DRCTL_NEW_PASSWORD, else
    a prompt (asked twice)."""
    if new_password_file:
        return _from_file(new_password_file, "new password")
    env = os.environ.get(NEW_PASSWORD_ENV)
    if env:
        return env.encode()
    got = _prompt("new password: ", confirm=True)
    if got:
        return got
    raise InvalidInput(f"no new password given: set {NEW_PASSWORD_ENV} or use --new-password-file")
