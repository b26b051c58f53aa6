"""The console over HTTP (Starlette's TestClient, the real application and files): sign-in with
password and TOTP, the refusals (wrong code, replayed code, missing CSRF token, lockout), sessions,
the audit log, and a client user meeting 404 on every route of another client."""

from __future__ import annotations

import json
import stat
import time

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from drctl.console.app import create_app
from drctl.console.signin import SignInGuard
from tests.console.support import (
    ACME_RUN,
    DEMO_RUN,
    PASSWORD,
    REPO,
    code_at,
    csrf_of,
    current_step,
    make_state,
    secret_of,
)


@pytest.fixture
def fx(tmp_path):
    return make_state(tmp_path / "state")


def client_for(fx, **kw) -> TestClient:
    kw.setdefault("status_every_s", None)
    return TestClient(create_app(project_dir=REPO, state_dir=fx.state, **kw), base_url="http://127.0.0.1")


def password_step(c: TestClient, name: str, password: str = PASSWORD):
    token = csrf_of(c.get("/login").text)
    return c.post(
        "/login", data={"csrf_token": token, "username": name, "password": password}, follow_redirects=False
    )


def enrol(c: TestClient, name: str) -> tuple[str, int]:
    """Password, then enrolment with a code computed here; returns the secret and the step used."""
    r = password_step(c, name)
    assert r.status_code == 303 and r.headers["location"] == "/login/enrol"
    page = c.get("/login/enrol")
    secret, step = secret_of(page.text), current_step(secret_of(page.text))
    r = c.post(
        "/login/enrol",
        data={"csrf_token": csrf_of(page.text), "code": code_at(secret, step)},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/", r.text
    return secret, step


def second_factor(c: TestClient, name: str, code: str):
    r = password_step(c, name)
    assert r.status_code == 303 and r.headers["location"] == "/login/code"
    page = c.get("/login/code")
    return c.post(
        "/login/code", data={"csrf_token": csrf_of(page.text), "code": code}, follow_redirects=False
    )


def audit_lines(fx) -> list[dict]:
    return [json.loads(line) for line in (fx.state / "console" / "audit.log").read_text().splitlines()]


def test_operator_signs_in_with_password_and_totp_and_sees_every_client_worst_first(fx):
    c = client_for(fx)
    assert c.get("/overview", follow_redirects=False).headers["location"] == "/login"
    enrol(c, "olivia")
    page = c.get("/overview")
    assert page.status_code == 200
    demo, acme = page.text.index('data-client="demo"'), page.text.index('data-client="acme"')
    assert demo < acme, "the client whose last drill failed comes first"
    assert 'data-client="demo" data-state="failing"' in page.text
    assert 'data-client="acme" data-state="ok"' in page.text
    client_page = c.get("/clients/demo")
    assert "Alice Martin" in client_page.text  # the contact who can activate
    assert 'data-server="db01"' in client_page.text and "m1." in client_page.text  # template from flavor_map
    tests = c.get("/clients/demo/tests")
    assert DEMO_RUN in tests.text and "signature valid" in tests.text
    run = c.get(f"/clients/demo/runs/{DEMO_RUN}")
    timeline = run.text[run.text.index('<svg class="timeline"') : run.text.index("</svg>")]
    assert all(f'data-server="{s}"' in timeline for s in ("dns01", "files01", "db01", "app01", "web01"))
    assert "1 min 02 s" in run.text and "3 min 00 s" in run.text  # first and last server available
    assert "default-src 'none'" in run.headers["content-security-policy"]
    report = c.get(f"/clients/demo/runs/{DEMO_RUN}/report.html")
    assert "style-src 'unsafe-inline'" in report.headers["content-security-policy"]  # its inline CSS only


def test_a_second_sign_in_needs_a_new_code_and_refuses_a_replayed_or_wrong_one(fx):
    secret, step = enrol(client_for(fx), "olivia")
    replay = second_factor(client_for(fx), "olivia", code_at(secret, step))
    assert replay.status_code == 401 and "already used" in replay.text
    wrong = second_factor(
        client_for(fx), "olivia", "000000" if code_at(secret, step + 1) != "000000" else "111111"
    )
    assert wrong.status_code == 401 and "Wrong code" in wrong.text
    c = client_for(fx)
    ok = second_factor(c, "olivia", code_at(secret, step + 1))
    assert ok.status_code == 303 and c.get("/overview").status_code == 200
    reasons = [(e["step"], e["outcome"], e.get("reason")) for e in audit_lines(fx) if e["event"] == "signin"]
    assert ("totp", "failure", "replayed") in reasons and ("totp", "failure", "wrong") in reasons
    assert reasons[-1] == ("totp", "success", None)


def test_a_form_without_its_csrf_token_is_refused(fx):
    c = client_for(fx)
    c.get("/login")
    r = c.post("/login", data={"username": "olivia", "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 403 and "CSRF" in r.text
    r = c.post("/login", data={"username": "olivia", "password": PASSWORD, "csrf_token": "forged"})
    assert r.status_code == 403
    enrol(c, "olivia")
    assert c.post("/logout", data={}).status_code == 403  # signing out is a form too
    assert c.get("/overview").status_code == 200


def test_repeated_failures_lock_the_user_out_even_with_the_right_password(fx):
    c = client_for(fx)
    for _ in range(4):
        assert password_step(c, "dana", "wrong password!!").status_code == 401
    locked = password_step(c, "dana", "wrong password!!")
    assert locked.status_code == 401 and "locked" in locked.text
    r = password_step(c, "dana")
    assert r.status_code == 429 and "locked" in r.text
    assert audit_lines(fx)[-1] == {
        **audit_lines(fx)[-1],
        "outcome": "refused",
        "reason": "locked-out",
        "user": "dana",
    }


def test_an_address_is_rate_limited(fx):
    c = client_for(fx, guard=SignInGuard(per_address_per_minute=3))
    for name in ("a", "b", "c"):
        assert password_step(c, name, "x" * 12).status_code == 401
    assert password_step(c, "d", "x" * 12).status_code == 429


def _routes_with(app, client: str, run_id: str) -> list[str]:
    paths = [r.path for r in app.routes if isinstance(r, Route) and "{client}" in r.path]
    assert len(paths) >= 4
    return [p.replace("{client}", client).replace("{run_id}", run_id) for p in paths]


def test_a_client_user_meets_404_on_every_route_of_another_client_and_on_operator_pages(fx):
    c = client_for(fx)
    enrol(c, "dana")
    assert c.get("/", follow_redirects=False).headers["location"] == "/clients/demo"
    own = _routes_with(c.app, "demo", DEMO_RUN)
    for path in own:
        assert c.get(path).status_code == 200, path
    others = _routes_with(c.app, "acme", ACME_RUN) + _routes_with(c.app, "acme", DEMO_RUN)
    others += _routes_with(c.app, "nosuchclient", DEMO_RUN) + ["/overview", "/metrics"]
    for path in others:
        r = c.get(path)
        assert r.status_code == 404, path
        assert "ACME" not in r.text, path
    # another client's run id under one's own client path is not found either
    assert c.get(f"/clients/demo/runs/{ACME_RUN}/report.html").status_code == 404


def test_report_download_is_audited_and_a_tampered_report_is_refused(fx):
    c = client_for(fx)
    enrol(c, "dana")
    r = c.get(f"/clients/demo/runs/{DEMO_RUN}/report.html")
    assert r.status_code == 200 and r.headers["x-drctl-signature"] == "valid" and "<svg" in r.text
    last = audit_lines(fx)[-1]
    assert (last["event"], last["user"], last["client"], last["run_id"], last["outcome"]) == (
        "report-download", "dana", "demo", DEMO_RUN, "success",
    )  # fmt: skip
    page = fx.state / "runs" / "demo" / DEMO_RUN / "report.html"
    page.write_bytes(page.read_bytes().replace(b"failed", b"ok", 1))
    r = c.get(f"/clients/demo/runs/{DEMO_RUN}/report.html")
    assert r.status_code == 409 and "report.html changed after the report was signed" in r.text
    assert "tampered" in c.get("/clients/demo/tests").text
    assert audit_lines(fx)[-1]["outcome"] == "refused"


def test_session_cookie_flags_idle_timeout_and_sign_out(fx):
    c = client_for(fx, idle_timeout_s=2)
    enrol(c, "olivia")
    cookie = c.get("/overview").headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "Secure" not in cookie  # plain HTTP on 127.0.0.1
    time.sleep(1.2)
    assert c.get("/overview").status_code == 200  # used within the timeout: the timeout slides
    time.sleep(3.5)
    assert c.get("/overview", follow_redirects=False).headers["location"] == "/login"
    tls = TestClient(create_app(project_dir=REPO, state_dir=fx.state), base_url="https://127.0.0.1")
    assert "Secure" in tls.get("/login").headers["set-cookie"]


def test_signing_out_ends_the_session_even_for_a_copied_cookie(fx):
    c = client_for(fx)
    enrol(c, "olivia")
    copied = c.cookies.get("drctl_console")
    page = c.get("/overview")
    assert (
        c.post("/logout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False).status_code == 303
    )
    c.cookies.set("drctl_console", copied)  # replaying the cookie captured before signing out
    assert c.get("/overview", follow_redirects=False).headers["location"] == "/login"


def test_private_files_and_no_secret_in_the_audit_log(fx):
    secret, _ = enrol(client_for(fx), "olivia")
    password_step(client_for(fx), "olivia", "a wrong password")
    for name in ("users.json", "audit.log", "session.key"):
        mode = stat.S_IMODE((fx.state / "console" / name).stat().st_mode)
        assert mode == 0o600, name
    log = (fx.state / "console" / "audit.log").read_text()
    assert PASSWORD not in log and "a wrong password" not in log and secret not in log
    assert {e["outcome"] for e in audit_lines(fx)} >= {"success", "failure"}


def test_a_client_user_without_a_second_factor_signs_in_with_the_password_only(fx):
    fx.users.add("carl", "client", "demo", PASSWORD, totp=False)
    c = client_for(fx)
    r = password_step(c, "carl")
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert c.get("/clients/demo").status_code == 200 and c.get("/clients/acme").status_code == 404


def test_a_damaged_run_summary_hides_only_that_run(fx):
    """One corrupt summary in the run store: the client's other runs are still listed and open."""
    damaged = fx.state / "runs" / "demo" / "20250101T000000Z-dead01"
    damaged.mkdir(parents=True)
    (damaged / "summary.json").write_text("{ not json")
    c = client_for(fx)
    enrol(c, "olivia")
    tests = c.get("/clients/demo/tests")
    assert tests.status_code == 200 and DEMO_RUN in tests.text and "dead01" not in tests.text
    assert c.get(f"/clients/demo/runs/{DEMO_RUN}").status_code == 200
