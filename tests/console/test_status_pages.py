"""The console over the protection status (`drctl status`'s collection): the overview worst first
from it, a client's backup ages against their RPO and tests due, and `/metrics` (operators only).
Two clients whose vaults are local directories (a real drctl storage backend): alpha's vault is
missing (unreadable), bravo's agents published a signed record for db01 only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from drctl.console.app import create_app
from drctl.console.users import UserStore, console_dir
from drctl.storage import open_storage
from tests.console.support import PASSWORD
from tests.console.test_http import enrol
from tests.status import world


@pytest.fixture
def scene(tmp_path):
    proj = world.make_project(tmp_path)
    key = Ed25519PrivateKey.generate()
    world.add_client(proj, "alpha", str(tmp_path / "alpha-vault-missing"), {})
    bravo_vault = tmp_path / "bravo-vault"
    bravo_vault.mkdir()
    world.add_client(proj, "bravo", str(bravo_vault), {"db01": key})
    world.publish(
        open_storage(str(bravo_vault)),
        key,
        world.job("bravo", "db01", datetime.now(UTC) - timedelta(minutes=5)),
    )
    # charlie's stack names a plan that does not exist: shown as unreadable, the others still served
    (proj / "stacks" / "Pulumi.charlie.yaml").write_text(
        "config:\n  flexible-recovery:plan: recovery_plans/gone.yaml\n"
    )
    state = tmp_path / "state"
    users = UserStore(console_dir(state))
    users.add("olivia", "operator", None, PASSWORD)
    users.add("bob", "client", "bravo", PASSWORD)
    app = create_app(project_dir=proj, state_dir=state, status_every_s=None)
    return app


def test_overview_client_page_and_metrics_come_from_the_collected_status(scene):
    c = TestClient(scene, base_url="http://127.0.0.1")
    enrol(c, "olivia")
    before = c.get("/overview").text
    assert "not collected yet" in before
    assert c.get("/metrics").status_code == 503
    snapshot = scene.state.console.status.feed.refresh()
    assert set(snapshot.clients) == {"alpha", "bravo"}

    page = c.get("/overview").text
    assert page.index('data-client="alpha" data-state="unreadable"') < page.index(
        'data-client="bravo" data-state="failing"'
    )
    assert 'data-client="charlie" data-state="unreadable"' in page and "gone.yaml" in page
    charlie = c.get("/clients/charlie")
    assert charlie.status_code == 200 and "cannot be read" in charlie.text and "gone.yaml" in charlie.text
    assert "alpha-vault-missing" in page  # why alpha is unreadable
    assert "no restore point for disk system" in page and "more)" in page

    bravo = c.get("/clients/bravo").text
    db01 = bravo[bravo.index('data-server="db01"') :].split("</tr>")[0]
    assert "RPO met" in db01 and "old" in db01
    web01 = bravo[bravo.index('data-server="web01"') :].split("</tr>")[0]
    assert "RPO breached" in web01 and "never tested and no date agreed" in web01

    r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/openmetrics-text")
    samples = {
        (s.name, s.labels.get("stack"), s.labels.get("server")): s.value
        for fam in text_string_to_metric_families(r.text)
        for s in fam.samples
    }
    assert samples[("drctl_vault_readable", "alpha", None)] == 0
    assert samples[("drctl_vault_readable", "bravo", None)] == 1
    assert samples[("drctl_backup_age_seconds", "bravo", "db01")] < 600
    assert samples[("drctl_backup_age_seconds", "bravo", "web01")] == float("inf")


def test_a_client_user_sees_their_status_but_not_the_metrics_nor_the_overview(scene):
    scene.state.console.status.feed.refresh()
    c = TestClient(scene, base_url="http://127.0.0.1")
    enrol(c, "bob")
    assert "RPO met" in c.get("/clients/bravo").text
    for path in ("/metrics", "/overview", "/clients/alpha"):
        r = c.get(path)
        assert r.status_code == 404 and "alpha-vault" not in r.text, path
