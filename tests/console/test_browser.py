"""Headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) against `drctl console serve`
on 127.0.0.1: sign in with password and a TOTP code computed here, the overview, a client, its
report; a wrong code, a replayed code, a form without its CSRF token and a client user opening
another client's report are all refused. Users are created with `drctl console user add`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from drctl.runs.signing import load_or_create_key
from drctl.runs.store import RunStore
from tests.console.support import ACME_RUN, DEMO_RUN, PASSWORD, REPO, code_at, current_step
from tests.runs.fixtures import demo_summary

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]
DRCTL = str(Path(sys.executable).with_name("drctl"))


def _env(state: Path) -> dict[str, str]:
    # The status collection reads the demo stacks' S3 vaults: point it at a closed local port, so
    # they are unreadable (and shown so) without any traffic leaving 127.0.0.1.
    return {
        **os.environ,
        "DRCTL_PROJECT_DIR": str(REPO),
        "DRCTL_STATE_DIR": str(state),
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "console-test",
        "AWS_SECRET_ACCESS_KEY": "console-test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def add_user(state: Path, *args: str) -> None:
    out = subprocess.run(
        [DRCTL, "console", "user", "add", *args], input=PASSWORD + "\n", env=_env(state),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert PASSWORD not in out.stdout + out.stderr


@pytest.fixture(scope="module")
def console(tmp_path_factory) -> Iterator[str]:
    """`drctl console serve` on a free port of 127.0.0.1, over two clients' signed runs."""
    state = tmp_path_factory.mktemp("console") / "state"
    key = load_or_create_key(state / "keys" / "report-signing.key")
    RunStore(state).record(demo_summary(), key)
    RunStore(state).record(demo_summary(stack="acme", run_id=ACME_RUN, client_name="ACME"), key)
    add_user(state, "olivia", "--role", "operator")
    add_user(state, "dana", "--role", "client", "--client", "demo")
    proc = subprocess.Popen(
        [DRCTL, "console", "serve", "--bind", "127.0.0.1:0"], env=_env(state),
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+)/", line)
        assert m, f"unexpected start line: {line!r}"
        yield m.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def sign_in_password(page, base: str, name: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()


def enrol(page, base: str, name: str) -> tuple[str, int]:
    sign_in_password(page, base, name)
    page.get_by_role("heading", name="Set up your second factor").wait_for()
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    step = current_step(secret)
    page.get_by_label("6-digit code").fill(code_at(secret, step))
    page.get_by_role("button", name="Confirm and sign in").click()
    return secret, step


def test_operator_signs_in_and_opens_overview_client_and_report_then_codes_are_refused(
    console, browser, tmp_path
):
    ctx = browser.new_context()
    page = ctx.new_page()
    secret, step = enrol(page, console, "olivia")
    page.get_by_role("heading", name="Fleet overview").wait_for()
    rows = page.locator("table.overview tbody tr")
    assert rows.count() == 2
    page.get_by_role("link", name="Demo SARL").click()
    page.get_by_role("heading", name="Servers").wait_for()
    assert page.locator('tr[data-server="db01"]').count() == 1
    page.get_by_role("heading", name="Cost").wait_for()
    cost = page.get_by_role("region", name="Cost")
    assert "illustrative prices" in cost.inner_text() and "EUR" in cost.inner_text()
    out = subprocess.run(
        [DRCTL, "cost", "demo", "--no-repository", "--json"], env=_env(tmp_path),
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    per_day = json.loads(out.stdout.splitlines()[-1])["activation_per_day"]
    assert cost.locator('[data-cost="activation_per_day"]').inner_text() == f"{per_day:.2f}"
    page.get_by_role("link", name="Tests and reports").click()
    row = page.locator(f'tr[data-run="{DEMO_RUN}"]')
    assert "signature valid" in row.inner_text()
    with page.expect_response(re.compile(r"report\.html$")) as resp:
        row.get_by_role("link", name="signed report").click()
    assert resp.value.status == 200
    assert "dns01" in page.content()
    ctx.close()

    # the code just used, in another browser: refused; a wrong one too
    for code, message in ((code_at(secret, step), "already used"), ("000000", "Wrong code")):
        if code == "000000" and code_at(secret, step) == "000000":
            code = "111111"
        ctx = browser.new_context()
        page = ctx.new_page()
        sign_in_password(page, console, "olivia")
        page.get_by_label("6-digit code from your authenticator app").fill(code)
        page.get_by_role("button", name="Sign in").click()
        assert message in page.locator(".error").inner_text()
        assert page.url.endswith("/login/code")
        ctx.close()


def test_a_form_without_its_csrf_token_is_refused(console, browser):
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(f"{console}/login")
    page.evaluate("document.querySelector('input[name=csrf_token]').remove()")
    page.get_by_label("User name").fill("olivia")
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_response(f"{console}/login") as resp:
        page.get_by_role("button", name="Continue").click()
    assert resp.value.status == 403
    assert "CSRF" in page.content()
    ctx.close()


def test_a_client_user_cannot_reach_another_clients_report(console, browser):
    ctx = browser.new_context()
    page = ctx.new_page()
    enrol(page, console, "dana")
    page.get_by_role("heading", name="Servers").wait_for()
    assert page.url.endswith("/clients/demo")
    for path in (f"/clients/acme/runs/{ACME_RUN}/report.html", "/clients/acme", "/overview"):
        resp = page.goto(f"{console}{path}")
        assert resp is not None and resp.status == 404, path
        assert "ACME" not in page.content()
    ctx.close()


def test_the_documented_screenshot_command_writes_every_page(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "drctl.console.screenshots", str(tmp_path / "shots"), "--clients", "3"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    names = {
        "signin.png",
        "enrol.png",
        "overview.png",
        "client.png",
        "tests.png",
        "run.png",
        "client-phone.png",
    }
    assert {p.name for p in (tmp_path / "shots").iterdir()} == names
    for name in names:
        data = (tmp_path / "shots" / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000, name
