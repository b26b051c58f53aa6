"""The agent's pre- and post-hooks: commands run before and after a job (a database checkpoint, a
backup mode), each with a time budget.

A hook is split like a shell would split it (``shlex``) and run without one: write
``sh -c '...'`` for pipes or redirections. It runs in its own process group, so that a timeout
stops it and everything it started (a ``sleep`` under ``sh`` would otherwise keep the job waiting).
It gets the agent's environment minus ``DRCTL_PASSWORD``. Its output goes to the agent's log (stderr; the journal under systemd), its stderr tail into the
error message.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess

from drctl.errors import EXIT_RUN_FAILED, DrctlError, ToolMissing
from drctl.processes import clip
from drctl.repo.password import NEW_PASSWORD_ENV, PASSWORD_ENV

log = logging.getLogger(__name__)


class HookFailed(DrctlError):
    """A pre- or post-hook of the agent failed or ran out of time."""

    exit_code = EXIT_RUN_FAILED


def run_hook(which: str, command: str, timeout_s: float, *, server: str) -> None:
    """Run one hook to completion; :class:`HookFailed` names the hook, its status and stderr tail."""
    argv = shlex.split(command)
    if not argv:
        raise HookFailed(f"server {server}: the {which}-hook is empty; fix hooks.{which} in the agent config")
    log.info("server %s: running %s-hook %s", server, which, argv[0])
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env=_hook_environment(),
        )
    except FileNotFoundError as e:
        raise ToolMissing(f"server {server}: {which}-hook: `{argv[0]}` is not found on PATH") from e
    except OSError as e:
        raise HookFailed(
            f"server {server}: {which}-hook `{argv[0]}` could not be started: {e.strerror}"
        ) from e
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        raise HookFailed(
            f"server {server}: {which}-hook `{clip(command, 200)}` did not finish within {timeout_s:g} s "
            f"(it was stopped); make it faster or raise hooks.timeout_s in the agent config"
        ) from None
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    for line in (out or "").splitlines():
        log.info("%s-hook: %s", which, line)
    if proc.returncode != 0:
        raise HookFailed(
            f"server {server}: {which}-hook `{clip(command, 200)}` exited with status {proc.returncode}: "
            f"{clip(err or '') or '(nothing on stderr)'}"
        )


def _hook_environment() -> dict[str, str]:
    """The agent's environment without the repository password: a hook has no use for it."""
    return {k: v for k, v in os.environ.items() if k not in (PASSWORD_ENV, NEW_PASSWORD_ENV)}


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
