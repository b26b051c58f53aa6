"""`drctl console user add` and `drctl console serve` from the command line: the password never in
argv, private files, and bad input answered with a message naming the field and an exit code."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

from tests.console.support import PASSWORD, REPO

DRCTL = str(Path(sys.executable).with_name("drctl"))


def drctl(state: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DRCTL_PROJECT_DIR": str(REPO), "DRCTL_STATE_DIR": str(state)}
    return subprocess.run(
        [DRCTL, *args], input=stdin, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_user_add_reads_the_password_from_a_file_or_stdin_and_keeps_the_users_file_private(tmp_path):
    state = tmp_path / "state"
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    out = drctl(state, "console", "user", "add", "olivia", "--role", "operator", "--password-file", str(pw))
    assert out.returncode == 0, out.stderr
    assert "olivia added (operator, sees every client; TOTP enrolled at the first sign-in)" in out.stdout
    out = drctl(
        state, "console", "user", "add", "dana", "--role", "client", "--client", "demo", stdin=PASSWORD + "\n"
    )
    assert out.returncode == 0, out.stderr
    users = state / "console" / "users.json"
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    doc = json.loads(users.read_text())
    assert doc["users"]["dana"]["client"] == "demo" and doc["users"]["dana"]["totp_required"] is True
    assert doc["users"]["olivia"]["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in users.read_text()


def test_user_add_refuses_bad_input_naming_the_field(tmp_path):
    state = tmp_path / "state"
    cases = [
        (
            ("x", "--role", "client", "--client", "nosuch"),
            "--client nosuch: no stack stacks/Pulumi.nosuch.yaml",
        ),
        (("x", "--role", "client"), "a client user needs --client STACK"),
        (("x", "--role", "operator", "--no-totp"), "operators always sign in with a second factor"),
        (("bad name", "--role", "operator"), "user name 'bad name'"),
    ]
    for args, message in cases:
        out = drctl(state, "console", "user", "add", *args, stdin=PASSWORD + "\n")
        assert out.returncode == 1, (args, out.stderr)
        assert message in out.stderr and "Traceback" not in out.stderr
    short = drctl(state, "console", "user", "add", "x", "--role", "operator", stdin="short\n")
    assert short.returncode == 1 and "use at least 12" in short.stderr
    assert (
        drctl(state, "console", "user", "add", "x", "--role", "operator", stdin=PASSWORD + "\n").returncode
        == 0
    )
    again = drctl(state, "console", "user", "add", "x", "--role", "operator", stdin=PASSWORD + "\n")
    assert again.returncode == 1 and "console user x already exists" in again.stderr
    assert not (state / "console" / "users.json.tmp").exists()


def test_serve_on_an_address_in_use_says_so(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        out = drctl(tmp_path / "state", "console", "serve", "--bind", f"127.0.0.1:{port}")
    assert out.returncode == 15
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr and "--bind HOST:PORT" in out.stderr
    bad = drctl(tmp_path / "state", "console", "serve", "--bind", "nohostport")
    assert bad.returncode == 2 and "give HOST:PORT" in bad.stderr


def test_a_damaged_users_file_stops_serve_naming_it_and_a_page_says_so(tmp_path):
    from starlette.testclient import TestClient

    from drctl.console.app import create_app

    state = tmp_path / "state"
    users = state / "console" / "users.json"
    users.parent.mkdir(parents=True)
    users.write_text('{"format": "drctl-console-users-v1", "users": {"x": {"role": "admin"}}}')
    users.chmod(0o600)
    out = drctl(state, "console", "serve", "--bind", "127.0.0.1:0")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"{users} is damaged" in out.stderr and "add the users again" in out.stderr
    c = TestClient(create_app(project_dir=REPO, state_dir=state, status_every_s=None))
    page = c.get("/login")
    r = c.post(
        "/login",
        data={
            "csrf_token": page.text.split('name="csrf_token" value="')[1].split('"')[0],
            "username": "x",
            "password": "y" * 12,
        },
    )
    assert r.status_code == 500 and f"{users} is damaged" in r.text


def test_serve_refuses_an_unusable_tls_pair_naming_it(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("not a certificate\n")
    out = drctl(tmp_path / "state", "console", "serve", "--tls-cert", str(cert), "--tls-key", str(cert))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"--tls-cert {cert}" in out.stderr and "not a usable PEM certificate" in out.stderr
    half = drctl(tmp_path / "state", "console", "serve", "--tls-cert", str(cert))
    assert half.returncode == 1 and "give both --tls-cert and --tls-key" in half.stderr


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file


def test_serve_over_tls_sends_secure_cookies(tmp_path):
    import re
    import ssl

    import httpx

    cert, key = _self_signed(tmp_path)
    env = {**os.environ, "DRCTL_PROJECT_DIR": str(REPO), "DRCTL_STATE_DIR": str(tmp_path / "state")}
    serve = [DRCTL, "console", "serve", "--bind", "127.0.0.1:0", "--status-every", "0"]
    proc = subprocess.Popen(
        [*serve, "--tls-cert", str(cert), "--tls-key", str(key)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        m = re.search(r"listening on (https://127\.0\.0\.1:\d+)/", proc.stderr.readline())
        assert m
        trust = ssl.create_default_context(cafile=str(cert))
        r = httpx.get(f"{m.group(1)}/login", verify=trust, timeout=30)
        assert r.status_code == 200
        cookie = r.headers["set-cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
