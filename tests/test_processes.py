"""The one subprocess runner and the one wait, with real processes (`true`, `false`, `sh -c`, a
missing binary) and real time (short budgets)."""

from __future__ import annotations

import hashlib
import subprocess
import time

import pytest

from drctl.errors import EXIT_MISSING_TOOL, EXIT_RUN_FAILED, DrctlError, ToolMissing
from drctl.processes import CommandFailed, CommandTimedOut, WaitTimedOut, run, seconds, wait_until


class StepFailed(DrctlError):
    """A caller's own error class (as the sandbox's SandboxError or the lab's LabError)."""

    exit_code = 42


# --- run ---------------------------------------------------------------------------------------


def test_a_command_that_succeeds_returns_its_output_as_text():
    assert run(["true"], timeout=10).returncode == 0
    proc = run(["sh", "-c", "echo out; echo err >&2"], timeout=10)
    assert (proc.stdout, proc.stderr) == ("out\n", "err\n")


def test_a_failure_names_the_step_the_command_its_status_and_its_stderr():
    with pytest.raises(CommandFailed) as e:
        run(
            ["sh", "-c", "echo 'RTNETLINK answers: File exists' >&2; exit 2"], what="creating br0", timeout=10
        )
    assert e.value.message == "creating br0 failed: sh exited with status 2: RTNETLINK answers: File exists"
    assert (e.value.command, e.value.returncode, e.value.exit_code) == ("sh", 2, EXIT_RUN_FAILED)


def test_without_a_description_the_message_shows_the_command_line():
    with pytest.raises(
        CommandFailed, match=r"^`false` failed: false exited with status 1: \(nothing on stderr\)$"
    ):
        run(["false"], timeout=10)


def test_a_long_stderr_is_clipped_to_its_end():
    script = (
        "i=0; while [ $i -lt 300 ]; do echo line-$i >&2; i=$((i+1)); done; echo the-real-cause >&2; exit 1"
    )
    with pytest.raises(CommandFailed) as e:
        run(["sh", "-c", script], what="a chatty tool", timeout=10)
    assert e.value.message.endswith("the-real-cause")
    assert "line-0\n" not in e.value.message and len(e.value.message) < 600
    assert "line-0" in e.value.stderr  # the whole stderr stays available to the caller


def test_stdout_never_goes_into_the_message():
    """A tool may print a secret on stdout (a password helper): only stderr is shown."""
    with pytest.raises(CommandFailed) as e:
        run(["sh", "-c", "cat; echo 'no such key' >&2; exit 1"], input="hunter2-secret\n", timeout=10)
    assert "no such key" in e.value.message and "hunter2-secret" not in e.value.message


def test_without_check_the_caller_reads_the_status():
    proc = run(["sh", "-c", "echo nope >&2; exit 3"], timeout=10, check=False)
    assert (proc.returncode, proc.stderr) == (3, "nope\n")


def test_a_missing_executable_is_a_missing_tool_exit_16():
    with pytest.raises(ToolMissing) as e:
        run(["drctl-no-such-tool", "--version"], what="checking the frobnicator", timeout=10)
    assert e.value.exit_code == EXIT_MISSING_TOOL
    assert (
        "checking the frobnicator" in e.value.message
        and "`drctl-no-such-tool` is not installed" in e.value.message
    )
    with pytest.raises(ToolMissing):  # also when the caller has its own error class
        run(["drctl-no-such-tool"], timeout=10, error=StepFailed)


def test_a_command_over_its_budget_is_killed_and_named():
    started = time.monotonic()
    with pytest.raises(CommandTimedOut) as e:
        run(["sh", "-c", "sleep 30"], what="waiting for nothing", timeout=0.5)
    assert time.monotonic() - started < 10
    assert e.value.message == "waiting for nothing did not finish within 0.5 s (sh was stopped)"
    assert isinstance(e.value, CommandFailed) and e.value.exit_code == EXIT_RUN_FAILED


def test_the_callers_error_class_is_raised_with_the_details_as_its_cause():
    with pytest.raises(StepFailed) as e:
        run(["sh", "-c", "echo bad >&2; exit 5"], what="the step", timeout=10, error=StepFailed)
    assert e.value.exit_code == 42 and e.value.message == "the step failed: sh exited with status 5: bad"
    assert isinstance(e.value.__cause__, CommandFailed) and e.value.__cause__.returncode == 5
    with pytest.raises(StepFailed, match="did not finish within"):
        run(["sleep", "30"], timeout=0.3, error=StepFailed)


def test_input_reaches_stdin_and_stays_out_of_the_command_line(tmp_path):
    """The way to hand a command a secret: on stdin, not in argv (readable by every local user)."""
    seen = tmp_path / "cmdline"
    script = f'cat /proc/$$/cmdline > {seen}; read secret; printf %s "$secret" | sha256sum'
    out = run(["sh", "-c", script], input="s3cr3t\n", timeout=10).stdout
    assert out.split()[0] == hashlib.sha256(b"s3cr3t").hexdigest()
    assert b"s3cr3t" not in seen.read_bytes() and b"-c" in seen.read_bytes()


def test_stdin_is_closed_without_input():
    """A tool that would read a terminal gets end-of-file instead of hanging the run."""
    assert run(["sh", "-c", "cat; echo done"], timeout=10).stdout == "done\n"


def test_env_replaces_the_environment():
    proc = run(["/bin/sh", "-c", 'echo "$ONLY:${HOME:-unset}"'], env={"ONLY": "this"}, timeout=10)
    assert proc.stdout == "this:unset\n"


def test_output_can_go_to_a_log_file_whose_tail_a_failure_shows(tmp_path):
    log = tmp_path / "build.log"
    assert run(["sh", "-c", "echo step one; echo warn >&2"], log_path=log, timeout=10).stdout is None
    assert log.read_text() == "step one\nwarn\n"
    with pytest.raises(CommandFailed) as e:
        run(
            ["sh", "-c", "echo fetching; echo 'E: mirror unreachable' >&2; exit 100"],
            log_path=log,
            timeout=10,
        )
    assert f"see {log}" in e.value.message and "E: mirror unreachable" in e.value.message


def test_a_missing_working_directory_is_named(tmp_path):
    from drctl.errors import LocalIOError

    with pytest.raises(LocalIOError, match="working directory"):
        run(["true"], cwd=tmp_path / "gone", timeout=10)


# --- wait_until --------------------------------------------------------------------------------


def test_wait_returns_the_first_true_value_without_sleeping():
    started = time.monotonic()
    assert wait_until(lambda: {"sa": "INSTALLED"}, 5, "the tunnel") == {"sa": "INSTALLED"}
    assert time.monotonic() - started < 0.05


def test_wait_polls_until_the_condition_holds(tmp_path):
    flag = tmp_path / "ready"
    proc = subprocess.Popen(["sh", "-c", f"sleep 0.3; touch {flag}"])
    try:
        started = time.monotonic()
        assert wait_until(flag.exists, 10, "the flag file", interval=0.05)
        assert 0.2 < time.monotonic() - started < 5
    finally:
        proc.wait(timeout=5)


def test_a_wait_that_times_out_names_what_and_how_long():
    calls = []
    started = time.monotonic()
    with pytest.raises(WaitTimedOut) as e:
        wait_until(lambda: calls.append(1), 0.5, "charon (site) to open its control socket", interval=0.1)
    elapsed = time.monotonic() - started
    assert e.value.message == "timed out after 0.5 s waiting for charon (site) to open its control socket"
    assert (e.value.what, e.value.timeout, e.value.exit_code) == (
        "charon (site) to open its control socket",
        0.5,
        EXIT_RUN_FAILED,
    )
    assert 0.5 <= elapsed < 2
    assert 4 <= len(calls) <= 8  # every interval, and once more at the deadline


def test_durations_in_messages_read_naturally():
    assert [seconds(v) for v in (0, 0.5, 2.25, 10, 12.4, 420.0)] == [
        "0 s",
        "0.5 s",
        "2.25 s",
        "10 s",
        "12 s",
        "420 s",
    ]
    with pytest.raises(WaitTimedOut, match=r"^timed out after 0 s waiting for nothing$"):
        wait_until(lambda: False, 0, "nothing")


def test_an_error_in_the_predicate_ends_the_wait_at_once():
    def daemon_died() -> bool:
        raise StepFailed("dnsmasq exited: bad option")

    started = time.monotonic()
    with pytest.raises(StepFailed, match="dnsmasq exited"):
        wait_until(daemon_died, 30, "dnsmasq to start")
    assert time.monotonic() - started < 1


def test_a_wait_can_raise_the_callers_error_class():
    with pytest.raises(StepFailed, match="^timed out after 0.2 s waiting for dnsmasq to start$") as e:
        wait_until(lambda: False, 0.2, "dnsmasq to start", error=StepFailed)
    assert e.value.exit_code == 42
