"""The repository commands as a user runs them: exit codes, messages without tracebacks, JSON
output, and the password never in argv or output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drctl.repo.manifest import chunk_key
from tests.repo.fakes import MiB, make_image
from tests.support.events import error_of, read_events, result_of

PASSWORD = "Tr0ub4dor&3-cli-secret"


def drctl(
    *args: str, env: dict[str, str] | None = None, password: str | None = PASSWORD, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("DRCTL_")}
    if password is not None:
        full["DRCTL_PASSWORD"] = password
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "drctl.cli", *args],
        capture_output=True,
        text=True,
        env=full,
        cwd=cwd,
        timeout=120,
    )


def no_traceback(p: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr
    assert PASSWORD not in p.stdout + p.stderr


@pytest.fixture
def repo_dir(tmp_path):
    r = drctl("repo", "init", str(tmp_path / "repo"), "--chunk-size", "1")
    assert r.returncode == 0, r.stderr
    return tmp_path / "repo"


def test_backup_restore_snapshots_and_json(repo_dir, tmp_path):
    img = make_image(tmp_path / "disk.img", 9 * MiB + 100, seed=4)
    b = drctl("backup", str(repo_dir), "--server", "web", "--disk", "vda", str(img))
    no_traceback(b)
    assert b.returncode == 0, b.stderr
    point = b.stdout.strip()
    assert len(point) == 32 and int(point, 16) >= 0
    j = drctl("backup", str(repo_dir), "--server", "web", "--disk", "vda", str(img), "--json")
    events = read_events(j.stdout)
    assert {e["event"] for e in events[:-1]} == {"progress"}
    assert events[-2]["bytes_done"] == events[-2]["bytes_total"] == img.stat().st_size
    summary = result_of(j.stdout)
    assert summary["new_chunks"] == 0 and summary["uploaded_bytes"] == 0
    assert {"point", "server", "disk", "size", "chunks", "new_chunks", "uploaded_bytes", "duration_s"} <= set(
        summary
    )
    assert summary["size"] == img.stat().st_size
    s = drctl("snapshots", str(repo_dir), "--json")
    ids = [p["id"] for p in result_of(s.stdout)["snapshots"]]
    assert ids == [point, summary["point"]]
    out = tmp_path / "out.img"
    r = drctl("restore", str(repo_dir), "--server", "web", "--point", point[:8], "--out", str(out))
    no_traceback(r)
    assert r.returncode == 0 and out.read_bytes() == img.read_bytes()
    again = drctl("restore", str(repo_dir), "--server", "web", "--out", str(out))
    assert again.returncode == 1 and "already exists" in again.stderr
    future = datetime.now(UTC).replace(year=2000).isoformat()
    early = drctl(
        "restore", str(repo_dir), "--server", "web", "--point", future, "--out", str(tmp_path / "o2")
    )
    assert early.returncode == 1 and "no restore point" in early.stderr


def test_error_exit_codes_without_tracebacks(repo_dir, tmp_path):
    img = make_image(tmp_path / "disk.img", 4 * MiB + 3, seed=9)
    point = drctl("backup", str(repo_dir), "--server", "web", "--disk", "vda", str(img)).stdout.strip()
    assert point

    wrong = drctl("snapshots", str(repo_dir), password="not-it")
    assert wrong.returncode == 12 and "no key" in wrong.stderr
    wrong_json = drctl("snapshots", str(repo_dir), "--json", password="not-it")
    error = error_of(wrong_json.stdout)
    assert wrong_json.returncode == error["exit_code"] == 12 and error["error"] == "WrongPassword"
    assert f"drctl: {error['message']}" in wrong_json.stderr
    missing = drctl("snapshots", str(tmp_path / "nowhere"))
    assert missing.returncode == 10 and "repo init" in missing.stderr
    (repo_dir / "locks" / "x").parent.mkdir(exist_ok=True)
    now = datetime.now(UTC).isoformat()
    (repo_dir / "locks" / "live").write_text(
        json.dumps(
            {
                "exclusive": True,
                "operation": "prune",
                "hostname": "other",
                "pid": 42,
                "created": now,
                "refreshed": now,
            }
        )
    )
    locked = drctl("restore", str(repo_dir), "--server", "web", "--out", str(tmp_path / "l.img"))
    assert locked.returncode == 11 and "prune" in locked.stderr and "drctl unlock" in locked.stderr
    assert drctl("unlock", str(repo_dir), "--all").returncode == 0

    chunk_files = sorted((repo_dir / "data").rglob("*"))
    victim = next(p for p in chunk_files if p.is_file())
    data = bytearray(victim.read_bytes())
    data[-3] ^= 0xFF
    victim.write_bytes(bytes(data))
    out = tmp_path / "t.img"
    bad = drctl("restore", str(repo_dir), "--server", "web", "--out", str(out))
    assert bad.returncode == 13 and victim.name in bad.stderr and not out.exists()
    chk = drctl("check", str(repo_dir), "--read-data")
    assert chk.returncode == 13 and victim.name in chk.stdout
    chk_json = drctl("check", str(repo_dir), "--read-data", "--json")
    report = result_of(chk_json.stdout)  # the check ran to its end: a result, and exit 13
    assert chk_json.returncode == 13 and report["ok"] is False
    assert any(victim.name in problem for problem in report["problems"])
    victim.unlink()
    gone = drctl("restore", str(repo_dir), "--server", "web", "--out", str(out))
    assert gone.returncode == 13 and "missing" in gone.stderr and not out.exists()
    assert drctl("forget", str(repo_dir)).returncode == 1  # no --keep-*
    for p in (wrong, wrong_json, missing, locked, bad, chk, chk_json, gone):
        no_traceback(p)


def test_keys_from_cli_and_password_never_in_argv(repo_dir, tmp_path):
    # The password comes from a command that records every process's argv while drctl runs.
    ps_dump = tmp_path / "ps.txt"
    helper = tmp_path / "pw.sh"
    helper.write_text(f"#!/bin/sh\nps -eo args >> {ps_dump}\necho '{PASSWORD}'\n")
    helper.chmod(0o700)
    cmd = ["--password-command", str(helper)]
    new_file = tmp_path / "new.txt"
    new_file.write_text("escrow-password-xyz\n")
    add = drctl("key", "add", str(repo_dir), *cmd, "--new-password-file", str(new_file), password=None)
    assert add.returncode == 0, add.stderr
    listed = drctl("key", "list", str(repo_dir), "--json", *cmd, password=None)
    keys = result_of(listed.stdout)["keys"]
    assert sorted(k["label"] for k in keys) == ["client", "escrow"]
    client = next(k["id"] for k in keys if k["label"] == "client")
    escrow = next(k["id"] for k in keys if k["label"] == "escrow")
    assert PASSWORD not in ps_dump.read_text() and "ps -eo args" in ps_dump.read_text()
    passwd = drctl(
        "key", "passwd", str(repo_dir), *cmd, env={"DRCTL_NEW_PASSWORD": "changed-pw-1"}, password=None
    )
    assert passwd.returncode == 0, passwd.stderr
    assert drctl("snapshots", str(repo_dir)).returncode == 12  # the old password is gone
    assert drctl("snapshots", str(repo_dir), password="changed-pw-1").returncode == 0
    rm = drctl("key", "remove", str(repo_dir), escrow, password="changed-pw-1")
    assert rm.returncode == 0, rm.stderr
    last = [
        k["id"]
        for k in result_of(drctl("key", "list", str(repo_dir), "--json", password="changed-pw-1").stdout)[
            "keys"
        ]
    ]
    assert len(last) == 1 and last[0] != client
    refuse = drctl("key", "remove", str(repo_dir), last[0], password="changed-pw-1")
    assert refuse.returncode == 1 and "last key" in refuse.stderr
    for p in (add, listed, passwd, rm, refuse):
        no_traceback(p)
        assert "escrow-password-xyz" not in p.stdout + p.stderr and "changed-pw-1" not in p.stdout + p.stderr
    assert not any("changed-pw-1" in f.read_text(errors="ignore") for f in repo_dir.rglob("*") if f.is_file())


def test_no_password_is_a_clear_error(repo_dir):
    r = drctl("snapshots", str(repo_dir), password=None)
    assert r.returncode == 1 and "DRCTL_PASSWORD" in r.stderr
    no_traceback(r)


def test_chunk_keys_name_hex_ids():
    assert chunk_key(bytes(range(32))) == "data/00/" + bytes(range(32)).hex()
