"""``drctl validate`` as a user runs it: the installed entry point, stdout/stderr text, exit status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from drctl.cli import main
from tests.support.events import result_of

ROOT = Path(__file__).resolve().parents[2]
DRCTL = Path(sys.executable).parent / "drctl"
BAD = "tests/data/plans"


def drctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DRCTL), *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_shipped_plans_are_valid() -> None:
    r = drctl("validate", "recovery_plans/demo.yaml", "recovery_plans/acme.yaml")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "recovery_plans/demo.yaml: ok (5 servers, 1 sites)",
        "recovery_plans/acme.yaml: ok (14 servers, 3 sites)",
    ]
    # acme's SQL Server declares log backups drctl does not produce: said plainly, still valid
    assert r.stderr.splitlines() == [
        "recovery_plans/acme.yaml: servers[2].backup.schedule[3]: note: log every 15m: drctl does not produce "
        "SQL Server transaction log backups (only PostgreSQL's WAL: backup.database: postgresql), so the RPO "
        "15m of sql01 is not backed: restore points come from the disk backups alone, up to 1h apart"
    ]


@pytest.mark.parametrize(
    ("database", "note"),
    [
        ("postgresql", None),
        ("oracle", "drctl does not produce Oracle archived redo log backups"),
        (None, "backup.database does not say which database this server runs"),
    ],
)
def test_log_schedules_are_noted_unless_drctl_produces_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], database: str | None, note: str | None
) -> None:
    text = (ROOT / "recovery_plans" / "demo.yaml").read_text()
    old = "backup: {database: postgresql, "
    assert old in text
    plan = tmp_path / "plan.yaml"
    plan.write_text(text.replace(old, f"backup: {{database: {database}, " if database else "backup: {"))
    assert main(["validate", "--json", str(plan)]) == 0
    notes = result_of(capsys.readouterr().out)["plans"][0]["notes"]
    if note is None:
        assert notes == []
    else:
        assert [n["path"] for n in notes] == ["servers[1].backup.schedule[1]"]
        assert note in notes[0]["message"]
        assert (
            "log every 15m" in notes[0]["message"] and "RPO 15m of db01 is not backed" in notes[0]["message"]
        )
        assert "up to 1d apart" in notes[0]["message"]


def test_bad_plans_exit_1_naming_each_problem_without_traceback() -> None:
    r = drctl(
        "validate",
        "recovery_plans/demo.yaml",
        f"{BAD}/cycle.yaml",
        f"{BAD}/ip_outside_subnet.yaml",
        f"{BAD}/rpo_unreachable.yaml",
        f"{BAD}/unknown_dependency.yaml",
    )
    assert r.returncode == 1
    assert r.stdout.splitlines() == ["recovery_plans/demo.yaml: ok (5 servers, 1 sites)"]
    assert r.stderr.splitlines() == [
        f"{BAD}/cycle.yaml: servers[0].boot.depends_on: dependency cycle a -> b -> c -> a",
        f"{BAD}/ip_outside_subnet.yaml: servers[2].nics[0].ip: 10.0.0.5 is outside subnet paris/lan (192.168.10.0/24)",
        f"{BAD}/rpo_unreachable.yaml: servers[0].rpo: 4h cannot be met: the backup schedule leaves up to 1d "
        "between restore points (most frequent: incremental every 1d); back up more often or raise the RPO",
        f"{BAD}/unknown_dependency.yaml: servers[1].boot.depends_on: unknown server ghost",
    ]
    assert "Traceback" not in r.stderr


def test_yaml_syntax_error_names_the_line() -> None:
    r = drctl("validate", f"{BAD}/yaml_syntax_error.yaml")
    assert r.returncode == 1
    assert r.stderr.startswith(f"{BAD}/yaml_syntax_error.yaml: line 6, column 8: YAML syntax error: ")
    assert "Traceback" not in r.stderr


def test_json_result_is_machine_readable() -> None:
    r = drctl("validate", "--json", "recovery_plans/demo.yaml", f"{BAD}/duplicate_ip.yaml")
    assert r.returncode == 1
    out = result_of(r.stdout)
    assert out["ok"] is False
    assert out["plans"][0] == {
        "file": "recovery_plans/demo.yaml",
        "ok": True,
        "servers": 5,
        "sites": 1,
        "problems": [],
        "notes": [],
    }
    assert out["plans"][1]["ok"] is False
    assert out["plans"][1]["problems"] == [
        {
            "file": f"{BAD}/duplicate_ip.yaml",
            "path": "servers[1].nics[0].ip",
            "message": "192.168.10.10 is already used by a (servers[0].nics[0].ip)",
        }
    ]


def test_in_process_main_many_problems(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", str(ROOT / BAD / "many_problems.yaml")])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert len(lines) == 14  # every problem of the file, one line each
    assert all(line.startswith(f"{ROOT / BAD}/many_problems.yaml: ") for line in lines)
    assert (
        f"{ROOT / BAD}/many_problems.yaml: servers[1].flavour: unknown field (did you mean flavor?)" in lines
    )


def test_missing_file_is_reported_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", "does/not/exist.yaml"])
    _, err = capsys.readouterr()
    assert code == 1
    assert err == "does/not/exist.yaml: (file): cannot read the plan: No such file or directory\n"


def test_no_plan_argument_is_a_usage_error() -> None:
    r = drctl("validate")
    assert r.returncode == 2
    assert "PLAN" in r.stderr and "Traceback" not in r.stderr
