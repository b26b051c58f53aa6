"""The demo's console operator: a one-time password and an enrolled TOTP secret, shown on a
terminal only; the first sign-in asks for a new password before anything else."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from drctl.demo.console_user import create_demo_operator
from tests.console.support import REPO, code_at, csrf_of, current_step
from tests.console.test_http import client_for, make_state

DRCTL = str(Path(sys.executable).with_name("drctl"))


def test_demo_operator_signs_in_with_the_one_time_password_then_must_choose_a_new_one(tmp_path):
    fx = make_state(tmp_path / "state")
    op = create_demo_operator(fx.state)
    c = client_for(fx)
    token = csrf_of(c.get("/login").text)
    r = c.post(
        "/login",
        data={"csrf_token": token, "username": op.name, "password": op.password},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/login/code"  # the TOTP secret is already enrolled
    page = c.get("/login/code")
    code = code_at(op.totp_secret, current_step(op.totp_secret))
    r = c.post("/login/code", data={"csrf_token": csrf_of(page.text), "code": code}, follow_redirects=False)
    assert r.headers["location"] == "/login/new-password"
    assert c.get("/overview", follow_redirects=False).headers["location"] == "/login"  # not signed in yet
    page = c.get("/login/new-password")
    same = c.post(
        "/login/new-password",
        data={"csrf_token": csrf_of(page.text), "password": op.password, "password_again": op.password},
    )
    assert same.status_code == 400 and "other than the one-time password" in same.text
    new = "my own demo passphrase"
    r = c.post(
        "/login/new-password",
        data={"csrf_token": csrf_of(same.text), "password": new, "password_again": new},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/"
    assert c.get("/overview").status_code == 200
    assert not fx.users.get(op.name).password_expired
    again = create_demo_operator(fx.state)  # a new pair each time: the old password no longer opens
    assert again.password != op.password and again.totp_secret != op.totp_secret


def _run(tmp_path, stdout_tty: bool) -> tuple[int, str]:
    env = {**os.environ, "DRCTL_PROJECT_DIR": str(REPO), "DRCTL_STATE_DIR": str(tmp_path / "state")}
    if not stdout_tty:
        out = subprocess.run(
            [DRCTL, "demo", "console-user"], env=env, capture_output=True, text=True, timeout=60
        )
        return out.returncode, out.stdout + out.stderr
    leader, follower = pty.openpty()
    proc = subprocess.Popen([DRCTL, "demo", "console-user"], env=env, stdout=follower, stderr=subprocess.PIPE)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(leader)
    return proc.returncode, b"".join(chunks).decode(errors="replace")


def test_console_user_prints_on_a_terminal_only(tmp_path):
    code, text = _run(tmp_path, stdout_tty=False)
    assert code == 1 and "on a terminal only" in text and "one-time password:" not in text
    assert not (tmp_path / "state" / "console" / "users.json").exists()
    code, text = _run(tmp_path, stdout_tty=True)
    assert code == 0, text
    assert "demo-operator" in text and "one-time password:" in text and "TOTP secret:" in text
    assert "drctl console serve" in text
    users = tmp_path / "state" / "console" / "users.json"
    assert oct(users.stat().st_mode & 0o777) == "0o600"
    password = text.split("one-time password:")[1].split()[0]
    assert password not in users.read_text()  # only its Argon2 hash is kept
