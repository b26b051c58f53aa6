"""External commands and waits, one way for all of drctl (embedded store, sandbox, NCA lab, images).

- :func:`run` runs a command to completion: output captured as text (or sent to a log file), stdin
  closed unless ``input`` is given, a time budget, and failures raised as :class:`CommandFailed`
  (or the caller's :class:`~drctl.errors.DrctlError` subclass) naming the command, its exit status
  and the tail of its stderr; an absent executable is :class:`~drctl.errors.ToolMissing` (exit 16).
  Secrets go through ``input`` or a 0600 file, never through ``argv``: a command line is visible to
  every local user (``/proc/<pid>/cmdline``) and appears in error messages and debug logs.
- :func:`wait_until` polls a predicate until it holds, raising :class:`WaitTimedOut` (or the
  caller's class) that names the thing waited for and the time allowed.

Long-running daemons (QEMU, charon, dnsmasq, SeaweedFS) are started with :class:`subprocess.Popen`
by their owners (:mod:`drctl.netns`, :mod:`drctl.devstore`), not here.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

from drctl.errors import EXIT_RUN_FAILED, DrctlError, LocalIOError, ToolMissing

log = logging.getLogger(__name__)

T = TypeVar("T")

STDERR_CLIP = 500  # characters of a failed command's stderr kept in its error message


class CommandFailed(DrctlError):
    """An external command drctl ran exited with a failure status."""

    exit_code = EXIT_RUN_FAILED

    def __init__(self, message: str, *, command: str = "", returncode: int | None = None, stderr: str = ""):
        super().__init__(message)
        self.command = command
        self.returncode = returncode
        self.stderr = stderr


class CommandTimedOut(CommandFailed):
    """An external command drctl ran did not finish in the time allowed (it was killed)."""


class WaitTimedOut(DrctlError):
    """Something drctl waited for did not happen in the time allowed."""

    exit_code = EXIT_RUN_FAILED

    def __init__(self, message: str, *, what: str = "", timeout: float = 0.0):
        super().__init__(message)
        self.what = what
        self.timeout = timeout


def seconds(value: float) -> str:
    """A duration for a message: ``15 s``, ``0.5 s``."""
    return f"{value:.0f} s" if value >= 10 else f"{value:g} s"


def clip(text: str, limit: int = STDERR_CLIP) -> str:
    """The last ``limit`` characters of ``text`` (where a tool says what went wrong), stripped."""
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def run(
    argv: Sequence[str],
    *,
    timeout: float | None,
    what: str | None = None,
    check: bool = True,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    log_path: Path | None = None,
    error: type[DrctlError] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to completion and return it (``stdout``/``stderr`` as text).

    ``timeout``: seconds before the command is killed, or None for a build step that may take as
    long as it takes. ``what`` says what the command does ("creating the bridge of lan"), for the
    messages; it defaults to the command line. ``input`` is written to its stdin (the way to hand
    it a secret), which is otherwise closed. ``env`` replaces the environment (as in
    :func:`subprocess.run`). ``log_path``: stdout and stderr go to that file instead of being
    captured. With ``check`` (default) a non-zero exit raises; without it the caller reads
    ``returncode`` (a timeout raises either way). ``error`` is the :class:`DrctlError` subclass raised for a failure or a timeout
    (its cause then carries the :class:`CommandFailed` details); by default :class:`CommandFailed`
    and :class:`CommandTimedOut`. An executable that is not installed raises :class:`ToolMissing`.
    """
    argv = [str(a) for a in argv]
    if not argv:
        raise ValueError("run() needs a command")
    name = os.path.basename(argv[0])
    what = what or f"`{clip(' '.join(argv), 200)}`"
    log.debug("run: %s", " ".join(argv))
    try:
        if log_path is None:
            proc = subprocess.run(
                argv,
                input=input,
                stdin=subprocess.DEVNULL if input is None else None,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                cwd=cwd,
                check=False,
            )
        else:
            with open(log_path, "wb") as out:
                proc = subprocess.run(
                    argv,
                    input=input,
                    stdin=subprocess.DEVNULL if input is None else None,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=timeout,
                    env=env,
                    cwd=cwd,
                    check=False,
                )
    except subprocess.TimeoutExpired as e:
        assert timeout is not None
        timed_out = CommandTimedOut(
            f"{what} did not finish within {seconds(timeout)} ({name} was stopped)",
            command=name,
            stderr=_text(e.stderr),
        )
        _raise(timed_out, error)
    except FileNotFoundError as e:
        if cwd is not None and not Path(cwd).is_dir():
            raise LocalIOError(f"{what}: the working directory {cwd} does not exist") from e
        raise ToolMissing(
            f"{what}: `{argv[0]}` is not installed (not found on PATH); install the package that provides it"
        ) from e
    except OSError as e:  # not executable, too many processes...
        _raise(
            CommandFailed(f"{what}: `{argv[0]}` could not be started: {e.strerror or e}", command=name), error
        )
    if check and proc.returncode != 0:
        stderr = proc.stderr or ""
        if log_path is not None:
            said = f"see {log_path}: {clip(_tail(log_path))}"
        else:
            said = clip(stderr) or "(nothing on stderr)"
        failed = CommandFailed(
            f"{what} failed: {name} exited with status {proc.returncode}: {said}",
            command=name,
            returncode=proc.returncode,
            stderr=stderr,
        )
        _raise(failed, error)
    return proc


def _raise(exc: CommandFailed, error: type[DrctlError] | None) -> NoReturn:
    if error is None or isinstance(exc, error):
        raise exc
    raise error(exc.message) from exc


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    interval: float = 0.1,
    error: type[DrctlError] | None = None,
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something true, and return that.

    It is always called at least once, and once more when ``timeout`` seconds have passed; if it
    never held, :class:`WaitTimedOut` (or ``error``) is raised: "timed out after 10 s waiting for
    <what>", so ``what`` names the thing awaited ("charon (site) to open its control socket").
    An exception from ``predicate`` (a daemon found dead, a refused proposal) ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        left = deadline - time.monotonic()
        if left <= 0:
            message = f"timed out after {seconds(timeout)} waiting for {what}"
            if error is None or issubclass(WaitTimedOut, error):
                raise WaitTimedOut(message, what=what, timeout=timeout)
            raise error(message)
        time.sleep(min(interval, left))


def process_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (an exited child not yet reaped is dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def sigterm_as_interrupt(signum: int, frame: object) -> None:
    """SIGTERM handler: raise KeyboardInterrupt, so a service manager, a CI timeout or `kill` takes
    the same clean-up path as Ctrl-C (sandbox torn down, locks released, partial files removed)."""
    raise KeyboardInterrupt(f"signal {signum}")
