"""The JSON-lines schema of ``--json``: the stream itself, every event name emitted anywhere in
drctl documented in the README, and every ``--json`` command run for real, its output read the way
a consumer reads it."""

from __future__ import annotations

import argparse
import ast
import io
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from drctl.cli import build_parser, main
from drctl.events import EVENTS, EventStream
from tests.agent.agents import make_agent
from tests.repo.fakes import MiB, make_image
from tests.support.events import read_events

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "events-test-password-1"


def _readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Machine-readable output")
    return text[start : text.index("\n## ", start + 1)]


# -- the stream -----------------------------------------------------------------------------------


def test_every_line_has_event_and_utc_time_and_the_result_ends_it():
    out = io.StringIO()
    events = EventStream(out)
    events.emit("progress", {"phase": "restore", "bytes_done": 1, "bytes_total": 2})
    events.result({"ok": True, "path": Path("/tmp/x")})
    lines = read_events(out.getvalue())
    assert [e["event"] for e in lines] == ["progress", "result"]
    assert lines[1]["path"] == "/tmp/x"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", lines[0]["time"])
    with pytest.raises(RuntimeError, match="after the command's terminal event"):
        events.emit("note", {"message": "late"})
    events.error(1, "InvalidInput", "ignored: the result was already written")
    assert len(out.getvalue().splitlines()) == 2


def test_a_field_may_not_take_the_schema_s_names():
    events = EventStream(io.StringIO())
    for field in ("event", "time"):
        with pytest.raises(ValueError, match="reserved"):
            events.result({field: "x"})
    assert not events.finished


def test_lines_from_many_threads_never_interleave():
    out = io.StringIO()
    events = EventStream(out)

    def worker(n: int) -> None:
        for i in range(200):
            events.emit("restore-started", {"server": f"s{n}", "disk": "x" * (i % 50)})

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events.result({})
    assert len(read_events(out.getvalue())) == 8 * 200 + 1


def test_the_disaster_confirmation_prompts_on_stderr_so_stdout_stays_json(capsys, monkeypatch):
    from drctl.activation.guards import NotConfirmed, confirm_disaster

    monkeypatch.setattr(sys, "stdin", io.StringIO("demo\n"))
    confirm_disaster("demo", yes=False, is_tty=True)
    out, err = capsys.readouterr()
    assert out == "" and "type the client id to confirm" in err
    monkeypatch.setattr(sys, "stdin", io.StringIO("dmeo\n"))
    with pytest.raises(NotConfirmed, match="does not match"):
        confirm_disaster("demo", yes=False, is_tty=True)
    assert capsys.readouterr().out == ""


# -- documentation ---------------------------------------------------------------------------------


def _emitted_names() -> dict[str, str]:
    """Every event name passed as a literal to an ``emit(...)`` call in drctl's sources."""
    names: dict[str, str] = {}
    for path in (ROOT / "scripts").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0]
            if called == "emit" and isinstance(first, ast.Constant) and isinstance(first.value, str):
                names[first.value] = f"{path.relative_to(ROOT)}:{node.lineno}"
    return names


def test_every_emitted_event_is_declared_and_documented():
    emitted = _emitted_names()
    assert {"run-started", "server-finished", "progress", "note"} <= set(emitted)  # the scan works
    undeclared = {n: where for n, where in emitted.items() if n not in EVENTS}
    assert not undeclared, "events missing from drctl.events.EVENTS (and the README)"
    section = _readme_section()
    undocumented = [n for n in EVENTS if f"| `{n}` |" not in section]
    assert not undocumented, "events missing from the README's Machine-readable output tables"


def _json_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> set[str]:
    found = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= _json_commands(sub, (*path, name))
    if any("--json" in a.option_strings for a in parser._actions):
        found.add(" ".join(path))
    return found


# -- every --json command, for real -----------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A local directory repository with one backup, an empty state directory and a project
    directory without stacks; the password in the environment as an operator's script has it."""
    for name in ("DRCTL_STATE_DIR", "DRCTL_PROJECT_DIR", "DRCTL_VPN_PSK", "DRCTL_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DRCTL_PASSWORD", PASSWORD)
    monkeypatch.chdir(ROOT)
    repo = tmp_path / "repo"
    assert main(["repo", "init", str(repo), "--chunk-size", "1"]) == 0
    image = make_image(tmp_path / "disk.img", 3 * MiB + 17, seed=3)
    (tmp_path / "empty-project").mkdir()
    return tmp_path, repo, image


def test_every_json_command_writes_the_schema(workspace, capsys, monkeypatch):
    tmp, repo, image = workspace
    state = str(tmp / "state")
    agent = str(make_agent(tmp / "agent", str(repo), {"system": str(image)}))
    segment, wal = "000000010000000000000001", ["--repo", str(repo), "--server", "db01"]
    (tmp / segment).write_bytes(bytes(1 << 16))
    (tmp / "not-empty").mkdir()
    (tmp / "not-empty" / "PG_VERSION").write_text("15\n")
    # command -> (argv, expected exit code, terminal event); cheap error paths stand in for the
    # commands whose results need a cloud, QEMU or the NCA lab (their results are tested there).
    cases = {
        "validate": (["validate", "recovery_plans/demo.yaml"], 0, "result"),
        "preview": (["preview", "no-such-stack"], 1, "error"),
        "policy": (["policy", "no-such-stack"], 1, "error"),
        "preflight": (["preflight", "no-such-stack"], 1, "error"),
        "nca test": (["nca", "test", "no-such-stack", "--site", "paris"], 1, "error"),
        "backup": (["backup", str(repo), "--server", "web", "--disk", "vda", str(image)], 0, "result"),
        "snapshots": (["snapshots", str(repo)], 0, "result"),
        "restore": (["restore", str(repo), "--server", "web", "--out", str(tmp / "web.img")], 0, "result"),
        "check": (["check", str(repo), "--read-data"], 0, "result"),
        "key list": (["key", "list", str(repo)], 0, "result"),
        "forget": (["forget", str(repo), "--keep-last", "1", "--dry-run"], 0, "result"),
        "prune": (["prune", str(repo), "--dry-run"], 0, "result"),
        "repo upgrade": (["repo", "upgrade", str(repo)], 0, "result"),
        "repo copy": (["repo", "copy", str(repo), str(tmp / "repo-copy")], 0, "result"),
        "export": (["export", "no-such-stack", "--to", str(tmp / "export")], 1, "error"),
        "activate": (
            ["activate", "no-such-stack", "--mode", "test", "--requested-by", "x", "--state-dir", state],
            1,
            "error",
        ),
        "drill": (["drill", "no-such-stack", "--requested-by", "x", "--state-dir", state], 1, "error"),
        "deactivate": (["deactivate", "demo", "--state-dir", state], 1, "error"),
        "protect": (["protect", "demo", "--state-dir", state], 1, "error"),
        "failback": (
            ["failback", "demo", "--to", str(tmp / "site.yaml"), "--requested-by", "x", "--state-dir", state],
            1,
            "error",
        ),
        "runs": (["runs", "demo", "--state-dir", state], 0, "result"),
        "report show": (["report", "show", "20990101T000000Z", "--state-dir", state], 1, "error"),
        "local up": (["local", "up", "--port-base", "80", "--state-dir", str(tmp / "local")], 1, "error"),
        "local status": (["local", "status", "--state-dir", str(tmp / "local")], 14, "result"),
        "local down": (["local", "down", "--state-dir", str(tmp / "local")], 0, "result"),
        "plan rto": (["plan", "rto", "demo", "--state-dir", state], 0, "result"),
        "cost": (["cost", "demo", "--repository", str(repo)], 0, "result"),
        "demo prepare": (["demo", "prepare", "--state-dir", state], 1, "error"),
        "agent run": (["agent", "run", "--config", agent, "--type", "full"], 0, "result"),
        "agent status": (["agent", "status", "--config", agent], 0, "result"),
        "status": (["status", "no-such-stack"], 1, "error"),
        "wal push": (["wal", "push", *wal, str(tmp / segment), segment], 0, "result"),
        "wal fetch": (["wal", "fetch", *wal, segment, str(tmp / "fetched")], 0, "result"),
        "wal base": (["wal", "base", *wal, "--conninfo", "host=/run/pg password=x"], 1, "error"),
        "wal restore": (
            ["wal", "restore", *wal, "--to", "latest", "--datadir", str(tmp / "not-empty")],
            1,
            "error",
        ),
        "wal check": (["wal", "check", *wal, "--read-data"], 13, "result"),  # no base backup yet
        "wal prune": (["wal", "prune", *wal, "--dry-run"], 0, "result"),
    }
    assert set(cases) == _json_commands(build_parser()), "a --json command this test does not run"
    section = _readme_section()
    for command, (argv, code, terminal) in cases.items():
        if command == "demo prepare":  # a project without the demo stack: stops before building
            monkeypatch.setenv("DRCTL_PROJECT_DIR", str(tmp / "empty-project"))
        assert main([*argv, "--json"]) == code, command
        out, err = capsys.readouterr()
        events = read_events(out)
        last = events[-1]
        assert last["event"] == terminal, f"{command}: {last}"
        assert f"`{command.split()[0]}" in section, f"{command} missing from the README"
        if terminal == "error":
            assert last["exit_code"] == code and f"drctl: {last['message']}" in err, command
            continue
        undocumented = [k for k in last if k not in ("event", "time") and f"`{k}`" not in section]
        assert not undocumented, f"{command}: result fields missing from the README"
    assert PASSWORD not in out + err


def test_backup_progress_then_result_agree(workspace, capsys):
    _, repo, image = workspace
    assert main(["backup", str(repo), "--server", "db", "--disk", "vda", str(image), "--json"]) == 0
    events = read_events(capsys.readouterr().out)
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and {e["phase"] for e in progress} == {"backup"}
    assert progress[-1]["bytes_done"] == progress[-1]["bytes_total"] == image.stat().st_size
    result = events[-1]
    assert result["size"] == image.stat().st_size and result["server"] == "db" and len(result["point"]) == 32
    assert "type" not in result  # one schema: the event name says what a line is


def test_preview_result_is_the_graph_on_one_line():
    from drctl.stack.config import load_stack

    out = subprocess.run(
        [sys.executable, "-m", "drctl.cli", "preview", "demo", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    result = read_events(out.stdout)[-1]
    assert result["event"] == "result" and result["stack"] == "demo"
    assert {"type", "name", "inputs", "parent", "depends_on"} <= set(result["resources"][0])
    assert "[secret]" in out.stdout  # the VPN pre-shared keys, redacted
    for psk in load_stack("demo").psks.values():
        assert psk not in out.stdout + out.stderr


def test_the_image_builder_entry_point_speaks_the_same_schema(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "drctl.demo.images", "build", "--plan", str(tmp_path / "none.yaml"), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    error = read_events(out.stdout)[-1]
    assert out.returncode == error["exit_code"] == 1 and error["error"] == "PlanInvalid"
    assert f"drctl: {error['message']}" in out.stderr
