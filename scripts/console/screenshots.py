"""The console's screenshots for the documentation, made by headless Chromium (Debian's
``/usr/bin/chromium``, driven by Playwright) against the console serving a sample fleet
(:mod:`drctl.console.sample`, in a temporary directory)::

    python -m drctl.console.screenshots docs/console/ [--clients 8]

Writes ``signin.png``, ``enrol.png``, ``overview.png``, ``client.png``, ``tests.png``, ``run.png``
(laptop, 1280 px wide) and ``client-phone.png`` (390 px wide) into the directory.
"""

from __future__ import annotations

import argparse
import secrets
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pyotp
import uvicorn

from drctl.console.app import create_app
from drctl.console.sample import make_sample_fleet
from drctl.console.users import UserStore, console_dir

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize
    from starlette.applications import Starlette

CHROMIUM = "/usr/bin/chromium"
LAPTOP: ViewportSize = {"width": 1280, "height": 860}
PHONE: ViewportSize = {"width": 390, "height": 844}


def _serve(app: Starlette) -> tuple[uvicorn.Server, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the console did not start within 20 s")
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{sock.getsockname()[1]}"


def take(out: Path, clients: int = 8) -> list[Path]:
    """Make the screenshots into ``out``; returns the files written."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="drctl-console-shots.") as tmp:
        fleet = make_sample_fleet(Path(tmp), clients)
        password = secrets.token_urlsafe(16)
        UserStore(console_dir(fleet.state_dir)).add("olivia", "operator", None, password)
        app = create_app(project_dir=fleet.project_dir, state_dir=fleet.state_dir, status_every_s=None)
        app.state.console.status.feed.refresh()
        server, base = _serve(app)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                page = browser.new_page(viewport=LAPTOP)

                def shot(name: str, full: bool = True) -> None:
                    path = out / name
                    page.screenshot(path=str(path), full_page=full)
                    written.append(path)

                page.goto(f"{base}/login")
                page.get_by_label("User name").fill("olivia")
                shot("signin.png", full=False)
                page.get_by_label("Password").fill(password)
                page.get_by_role("button", name="Continue").click()
                page.get_by_role("heading", name="Set up your second factor").wait_for()
                shot("enrol.png")
                secret = page.locator("#totp-secret").inner_text().replace(" ", "")
                page.get_by_label("6-digit code").fill(pyotp.TOTP(secret).now())
                page.get_by_role("button", name="Confirm and sign in").click()
                page.get_by_role("heading", name="Fleet overview").wait_for()
                shot("overview.png")
                page.goto(f"{base}/clients/demo")
                shot("client.png")
                page.goto(f"{base}/clients/demo/tests")
                shot("tests.png")
                page.locator("table.tests tbody th a").first.click()
                page.get_by_role("heading", name="Timeline").wait_for()
                shot("run.png")
                page.set_viewport_size(PHONE)
                page.goto(f"{base}/clients/demo")
                shot("client-phone.png")
                browser.close()
        finally:
            server.should_exit = True
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m drctl.console.screenshots", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("out", type=Path, metavar="DIR", help="where to write the PNG files")
    parser.add_argument("--clients", type=int, default=8, help="clients in the sample fleet (8)")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"drctl: {CHROMIUM} is missing: apt-get install chromium", file=sys.stderr)
        return 16
    for path in take(args.out, args.clients):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
