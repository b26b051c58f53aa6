"""Onboarding a third client the way the README tells a newcomer: ``drctl client new``, fill the
TODOs, ``validate``, ``preview``, ``policy``, ``cost``, ``plan rto``; all offline, through the CLI."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from drctl.cli import main
from drctl.stack.config import load_stack
from drctl.stack.secrets import open_encryption_salt

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE = "correct horse battery staple"

# What the newcomer types over the TODOs that have no ready example ("TODO: e.g. X" becomes X).
FILLED = {
    '"TODO: the client\'s DR contact"': "Claire Dupont",
    '"TODO: the server\'s name, e.g. db01"': "erp01",
    '"TODO: what it does"': "ERP of Bravo",
    '"TODO: dr | backup-tested | backup-only"': "dr",
    '"TODO: its address in lyon/lan"': "192.168.10.20",
    '"TODO: the servers it needs first, e.g. [dns01], or []"': "[]",
    '"TODO: the data loss the client accepts, e.g. 24h"': "24h",
    '"TODO: the time to recover the client accepts, e.g. 4h"': "4h",
    '"TODO: how to tell it works, e.g. [{port: 443}, {service: nginx}] (required for dr)"': "[{port: 443}]",
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout's project files without any client: Pulumi.yaml and the Pulumi program."""
    proj = tmp_path / "project"
    (proj / "stacks").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", proj)
    shutil.copy(ROOT / "stacks" / "__main__.py", proj / "stacks")
    passfile = tmp_path / "passphrase"  # outside the project, as the README says
    passfile.write_text(PASSPHRASE + "\n")
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE_FILE", str(passfile))
    monkeypatch.setenv("DRCTL_PROJECT_DIR", str(proj))
    monkeypatch.setenv("DRCTL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(proj)
    return proj


def fill_todos(path: Path) -> None:
    text = path.read_text()
    text = re.sub(r'"TODO: e\.g\. ([^"]+)"', r"\1", text)
    for todo, value in FILLED.items():
        assert todo in text, todo
        text = text.replace(todo, value)
    path.write_text(text)


def test_a_newcomer_onboards_a_client_end_to_end_offline(
    project: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["client", "new", "bravo", "--name", "Bravo & Fils Sàrl", "--site", "lyon=198.51.100.7"]) == 0
    printed = capsys.readouterr()
    out = printed.out
    for step in ("drctl validate recovery_plans/bravo.yaml", "drctl preview bravo", "drctl policy bravo"):
        assert step in out
    assert "drctl preflight bravo" in out and "pulumi up --stack bravo" in out

    plan = project / "recovery_plans" / "bravo.yaml"
    stack = project / "stacks" / "Pulumi.bravo.yaml"
    # Until the TODOs are filled, validate refuses, naming each field and what goes there.
    assert main(["validate", str(plan)]) == 1
    err = capsys.readouterr().err
    assert f"{plan}: servers[0].class: still a TODO (dr | backup-tested | backup-only)" in err
    for field in ("servers[0].rpo", "servers[0].rto", "servers[0].boot.depends_on", "servers[0].checks"):
        assert f"{plan}: {field}: still a TODO" in err
    assert "unknown subnet" not in err  # no echo of the TODOs through the semantic rules

    fill_todos(plan)
    assert yaml.safe_load(plan.read_text())["client"] == {
        "id": "bravo",
        "name": "Bravo & Fils Sàrl",
        "timezone": "Europe/Paris",
        "activation_window": "business-hours",
    }
    assert "TODO" not in yaml.safe_load(plan.read_text()).__repr__()
    assert main(["validate", str(plan)]) == 0
    assert main(["preview", "bravo", "--json"]) == 0
    resources = yaml.safe_load(capsys.readouterr().out.splitlines()[-1])["resources"]
    types = {r["type"] for r in resources}
    assert "openstack:objectstorage/container:Container" in types
    assert "openstack:vpnaas/siteConnection:SiteConnection" in types
    assert main(["policy", "bravo"]) == 0
    assert main(["policy", "bravo", "--failover"]) == 0
    capsys.readouterr()

    # The stack's secrets: a PSK per site, opened by the passphrase, never the passphrase itself.
    cfg = load_stack("bravo", project)
    assert len(cfg.psk("lyon")) >= 40
    assert cfg.psk("lyon") not in printed.out + printed.err + stack.read_text()
    assert PASSPHRASE not in stack.read_text()
    open_encryption_salt(PASSPHRASE, yaml.safe_load(stack.read_text())["encryptionsalt"], where="t")

    assert main(["cost", "bravo", "--days", "3", "--no-repository"]) == 0
    out = capsys.readouterr().out
    assert "ILLUSTRATIVE" in out and "instance erp01 (m1.small)" in out
    # m1.small 0.03/h * 24 + 20 GB volume and image + router IP + one VPN, per day
    per_day = 0.03 * 24 + 20 * (0.05 + 0.03) / 30 + 0.005 * 24 + 0.02 * 24
    assert f"activation: {per_day:.2f} EUR per day, {3 * per_day:.2f} EUR for 3 days" in out

    assert main(["plan", "rto", "bravo"]) == 0
    out = capsys.readouterr().out
    assert "DEFAULT (no drill measured it yet)" in out and "erp01" in out


def test_an_existing_client_is_never_overwritten(project: Path, capsys: pytest.CaptureFixture) -> None:
    (project / "recovery_plans").mkdir()
    plan = project / "recovery_plans" / "bravo.yaml"
    plan.write_text("# the client's real plan\n")
    assert main(["client", "new", "bravo", "--name", "Bravo", "--site", "lyon=198.51.100.7"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert plan.read_text() == "# the client's real plan\n"
    assert not (project / "stacks" / "Pulumi.bravo.yaml").exists()


def test_without_a_passphrase_nothing_is_written(
    project: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE")
    assert main(["client", "new", "bravo", "--name", "Bravo", "--site", "lyon=198.51.100.7"]) == 1
    assert "set PULUMI_CONFIG_PASSPHRASE_FILE" in capsys.readouterr().err
    assert not (project / "recovery_plans").exists() or not any((project / "recovery_plans").iterdir())
    assert not (project / "stacks" / "Pulumi.bravo.yaml").exists()


def test_a_write_failing_half_way_leaves_nothing_behind(project: Path, capsys: pytest.CaptureFixture) -> None:
    shutil.rmtree(project / "stacks")
    (project / "stacks").write_text("not a directory")  # the stack file cannot be written
    assert main(["client", "new", "bravo", "--name", "Bravo", "--site", "lyon=198.51.100.7"]) == 15
    err = capsys.readouterr().err
    assert "nothing was written" in err and "Traceback" not in err
    assert list((project / "recovery_plans").iterdir()) == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["Bravo", "--name", "B", "--site", "lyon=198.51.100.7"], "client id 'Bravo' is not valid"),
        (
            ["bravo", "--name", "B", "--site", "lyon=198.51.100.7", "--site", "lyon=198.51.100.8"],
            "given twice",
        ),
    ],
)
def test_bad_client_arguments_are_named(project: Path, capsys, argv: list[str], message: str) -> None:
    assert main(["client", "new", *argv]) == 1
    assert message in capsys.readouterr().err
    assert not (project / "stacks" / "Pulumi.bravo.yaml").exists()


def test_a_site_without_its_address_is_a_usage_error(project: Path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["client", "new", "bravo", "--name", "B", "--site", "lyon"])
    assert e.value.code == 2
    assert "--site: 'lyon' is not NAME=PEER_ADDRESS" in capsys.readouterr().err


def test_a_short_passphrase_is_refused(project: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "short")
    assert main(["client", "new", "bravo", "--name", "B", "--site", "lyon=198.51.100.7"]) == 1
    assert "shorter than 12 characters" in capsys.readouterr().err
    assert not (project / "stacks" / "Pulumi.bravo.yaml").exists()
