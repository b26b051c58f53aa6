"""The cost section of a client's synthesis: the same figures as ``drctl cost --json`` for the same
stack, the backup space measured in the background (a page view never lists the store), a stack
without prices saying so, and a client user seeing only their own client's cost.

bravo has the illustrative price table and a real repository (``drctl repo init`` + ``backup``) in
a local directory; alpha has no price table."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from starlette.testclient import TestClient

from drctl.cli import main
from drctl.console.app import create_app
from drctl.console.users import UserStore, console_dir
from drctl.stack.cost import ILLUSTRATIVE_PRICES
from drctl.storage import open_storage
from drctl.storage.base import Storage
from tests.console.support import PASSWORD
from tests.console.test_http import enrol
from tests.status import world

_FIGURE = re.compile(r'data-cost="(\w+)"(?: data-bytes="(\d+)")?>([^<]*)<')


@pytest.fixture
def scene(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DRCTL_PASSWORD", "a long enough test password")
    proj = world.make_project(tmp_path)
    world.add_client(proj, "alpha", str(tmp_path / "alpha-vault"), {})
    repo = tmp_path / "bravo-repo"
    world.add_client(proj, "bravo", str(repo), {})
    stack = proj / "stacks" / "Pulumi.bravo.yaml"
    doc = yaml.safe_load(stack.read_text())
    doc["config"]["flexible-recovery:prices"] = ILLUSTRATIVE_PRICES
    stack.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert main(["repo", "init", str(repo)]) == 0
    image = tmp_path / "disk.img"
    image.write_bytes(os.urandom(3 << 20))  # incompressible: the bytes stored are seen
    assert main(["backup", str(repo), "--server", "dns01", "--disk", "system", str(image)]) == 0
    capsys.readouterr()
    state = tmp_path / "state"
    users = UserStore(console_dir(state))
    users.add("olivia", "operator", None, PASSWORD)
    users.add("bob", "client", "bravo", PASSWORD)
    users.add("alice", "client", "alpha", PASSWORD)
    opened: list[str] = []

    def open_vault(url: str) -> Storage:  # the real store, counting who opens it
        opened.append(url)
        return open_storage(url)

    app = create_app(project_dir=proj, state_dir=state, status_every_s=None, open_vault=open_vault)
    return app, proj, repo, opened


def drctl_cost(capsys, proj: Path, *args: str) -> dict:
    capsys.readouterr()
    assert main(["cost", "bravo", "--project-dir", str(proj), "--json", *args]) == 0
    return json.loads(capsys.readouterr().out.splitlines()[-1])


def cost_section(html: str) -> str:
    start = html.index('id="cost-h"')
    return html[start : html.index("</section>", start)]


def figures(section: str) -> dict[str, str]:
    return {m[1]: m[2] or m[3] for m in _FIGURE.finditer(section)}


def test_the_page_shows_drctl_costs_figures_measured_in_the_background(scene, capsys):
    app, proj, repo, opened = scene
    c = TestClient(app, base_url="http://127.0.0.1")
    enrol(c, "olivia")

    before = cost_section(c.get("/clients/bravo").text)
    one_day = drctl_cost(capsys, proj, "--no-repository")
    assert figures(before) == {"activation_per_day": f"{one_day['activation_per_day']:.2f}",
                               "activation_total": f"{2 * one_day['activation_per_day']:.2f}"}  # fmt: skip
    assert "Backup space, per month</dt><dd>not measured yet" in before
    assert "ILLUSTRATIVE prices, not a quote" in before and "illustrative prices</span>" in before
    assert "EUR" in before
    assert opened == []  # the page did not touch the store

    app.state.console.status.feed.refresh()
    assert opened.count(str(repo)) == 2  # the status collection, then the space listing
    after = cost_section(c.get("/clients/bravo").text)
    one_day = drctl_cost(capsys, proj)
    two_days = drctl_cost(capsys, proj, "--days", "2")
    assert figures(after) == {
        "activation_per_day": f"{one_day['activation_per_day']:.2f}",
        "activation_total": f"{two_days['activation_total']:.2f}",
        "backup_per_month": f"{one_day['backup_per_month']:.2f}",
        "backup_stored_bytes": str(one_day["backup_stored_bytes"]),
    }
    assert one_day["backup_stored_bytes"] > 3 << 20  # the backup's chunks are counted
    assert "A 2-day test" in after and re.search(r"stored, measured \d{4}-\d\d-\d\d \d\d:\d\d", after)

    # pages read the measurement: a new backup shows only at the next due measurement
    image = repo.parent / "disk2.img"
    image.write_bytes(os.urandom(1 << 20))
    assert main(["backup", str(repo), "--server", "db01", "--disk", "system", str(image)]) == 0
    n = len(opened)
    assert figures(cost_section(c.get("/clients/bravo").text)) == figures(after)
    assert len(opened) == n
    app.state.console.status.feed.space.every_s = 0
    app.state.console.status.feed.refresh()
    grown = figures(cost_section(c.get("/clients/bravo").text))
    assert grown["backup_stored_bytes"] == str(drctl_cost(capsys, proj)["backup_stored_bytes"])
    assert int(grown["backup_stored_bytes"]) > int(figures(after)["backup_stored_bytes"])


def test_a_stack_without_prices_says_so_instead_of_zero(scene):
    app, *_ = scene
    c = TestClient(app, base_url="http://127.0.0.1")
    enrol(c, "alice")
    app.state.console.status.feed.refresh()
    section = cost_section(c.get("/clients/alpha").text)
    assert "No price table in the stack" in section and "Pulumi.alpha.yaml" in section
    assert "0.00" not in section and set(figures(section)) == {"none"}


def test_an_unlistable_repository_is_named_and_the_activation_still_priced(scene, capsys):
    app, proj, repo, _ = scene
    one_day = drctl_cost(capsys, proj, "--no-repository")
    for p in sorted(repo.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    repo.rmdir()
    c = TestClient(app, base_url="http://127.0.0.1")
    enrol(c, "olivia")
    app.state.console.status.feed.refresh()
    r = c.get("/clients/bravo")
    assert r.status_code == 200
    section = cost_section(r.text)
    assert "not measured</span>" in section and str(repo) in section
    assert figures(section)["activation_per_day"] == f"{one_day['activation_per_day']:.2f}"
    assert "backup_per_month" not in figures(section)


def test_a_client_user_sees_only_their_own_clients_cost(scene):
    app, *_ = scene
    c = TestClient(app, base_url="http://127.0.0.1")
    enrol(c, "bob")
    app.state.console.status.feed.refresh()
    own = c.get("/clients/bravo")
    assert own.status_code == 200 and 'data-cost="backup_per_month"' in own.text
    other = c.get("/clients/alpha")
    assert other.status_code == 404 and "price" not in other.text.lower()


def test_a_measurement_of_the_previous_repository_is_not_shown(scene, tmp_path):
    app, proj, _, _ = scene
    c = TestClient(app, base_url="http://127.0.0.1")
    enrol(c, "olivia")
    app.state.console.status.feed.refresh()
    assert "backup_per_month" in figures(cost_section(c.get("/clients/bravo").text))
    stack = proj / "stacks" / "Pulumi.bravo.yaml"
    doc = yaml.safe_load(stack.read_text())
    doc["config"]["flexible-recovery:backup_repository"] = str(tmp_path / "moved")
    stack.write_text(yaml.safe_dump(doc, sort_keys=False))
    section = cost_section(c.get("/clients/bravo").text)
    assert "Backup space, per month</dt><dd>not measured yet" in section
    app.state.console.status.feed.refresh()  # due at once: the repository changed
    section = cost_section(c.get("/clients/bravo").text)
    assert "not measured</span>" in section and str(tmp_path / "moved") in section
