"""``drctl deactivate`` after a disaster activation: refused unless the changes are explicitly
discarded (flag, authorised requester, reason, typed confirmation or --yes), and then recorded
in the run before anything is deleted. A real activation (real encrypted repository on a local
directory, real restore) with the hypervisor faked at the target interface, as in
test_activation; the CLI is driven through ``drctl.cli.main``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from drctl.activation.activation import Activation, ActivationRequest
from drctl.activation.deactivation import DisasterChangesAtRisk, DiscardApproval, deactivate
from drctl.activation.guards import NotAuthorised, NotConfirmed
from drctl.cli import main
from drctl.repo.backup import backup_disk
from drctl.repo.crypto import KdfParams
from drctl.repo.repository import init_repository
from drctl.runs.model import CheckResult, utc_now
from drctl.storage.local import LocalDirStorage
from tests.conftest import demo_project

PASSWORD = b"correct horse battery staple"


class FakeTarget:
    """Boots nothing; every check passes."""

    namespace = None
    image_ids: dict[str, str] = {}

    def stage_disk(self, server, disk):
        pass

    def start_server(self, server, disks):
        pass

    def verify(self, server):
        now = utc_now()
        return [CheckResult(c.describe(), True, "fine", c.critical, 1, now, now) for c in server.checks]


@pytest.fixture
def project(tmp_path):
    proj = demo_project(
        tmp_path, repository=str(tmp_path / "vault" / "repo"), reports=str(tmp_path / "vault" / "reports")
    )
    repo_store = LocalDirStorage(tmp_path / "vault" / "repo")
    repo_store.create()
    LocalDirStorage(tmp_path / "vault" / "reports").create()
    repo = init_repository(repo_store, PASSWORD, chunk_size=1 << 20, kdf=KdfParams(n=2**12, r=8, p=1))
    img = tmp_path / "dns01.img"
    img.write_bytes(os.urandom(1 << 20))
    backup_disk(repo, img, server="dns01", disk="system")
    return proj, tmp_path


def activate(project, mode):
    proj, tmp = project
    req = ActivationRequest(
        stack="demo",
        mode=mode,
        target="local",
        requested_by="Alice Martin",
        servers=("dns01",),
        override_window=True,
        reason="exercise",
        yes=True,
    )
    act = Activation(
        req,
        password=PASSWORD,
        state_dir=tmp / "state",
        project_dir=proj,
        target_factory=lambda a, deadline_for: (FakeTarget(), lambda: None),
    )
    summary = act.execute()
    active = tmp / "state" / "active" / "demo.json"
    return summary.run_id, active, Path(json.loads(active.read_text())["restore_dir"])


def cli(project, *args):
    proj, tmp = project
    return main(["deactivate", "demo", "--state-dir", str(tmp / "state"), "--project-dir", str(proj), *args])


def records(project, run_id):
    _, tmp = project
    local = sorted((tmp / "state" / "runs" / "demo" / run_id).glob("deactivation-*.json"))
    bucket = sorted((tmp / "vault" / "reports" / "reports" / "demo" / run_id).glob("deactivation-*.json"))
    return local, bucket


def test_after_a_disaster_deactivate_refuses_and_deletes_nothing(project, capsys):
    run_id, active, restore_dir = activate(project, "disaster")
    assert cli(project) == 1
    err = capsys.readouterr().err
    assert err.startswith("drctl: stack demo is up after a disaster activation (run " + run_id)
    assert "hold the production data written since" in err and "`drctl failback demo --to SITE_TARGETS" in err
    assert "--discard-disaster-changes --requested-by NAME --reason TEXT" in err
    assert "Traceback" not in err
    assert active.exists() and restore_dir.is_dir()
    assert records(project, run_id) == ([], [])


def test_discarding_with_the_flag_and_yes_is_recorded_in_the_run_first(project, capsys):
    run_id, active, restore_dir = activate(project, "disaster")
    code = cli(
        project,
        "--discard-disaster-changes",
        "--requested-by",
        "alice@demo.example",
        "--reason",
        "site back; data copied by the client's DBA",
        "--yes",
        "--json",
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["run_id"] == run_id and out["discarded"]["requested_by"] == "Alice Martin"
    assert not active.exists() and not restore_dir.exists()
    (local,), (uploaded,) = records(project, run_id)
    assert local.read_bytes() == uploaded.read_bytes()  # the same record, here and in the client's bucket
    record = json.loads(local.read_text())
    assert record["event"] == "disaster-changes-discarded"
    assert record["run_id"] == run_id and record["mode"] == "disaster"
    assert record["requested_by"] == "Alice Martin" and record["requested_by_email"] == "alice@demo.example"
    assert record["reason"] == "site back; data copied by the client's DBA"
    assert record["confirmation"] == "--yes" and record["os_user"] and record["host"] and record["at"]


def test_the_typed_confirmation_must_be_the_client_id(project):
    proj, tmp = project
    run_id, active, restore_dir = activate(project, "disaster")
    approval = DiscardApproval(requested_by="Alice Martin", reason="changes not needed")
    with pytest.raises(
        NotConfirmed, match="'dmeo' does not match client id 'demo'; nothing was deleted"
    ) as e:
        deactivate(
            "demo", tmp / "state", project_dir=proj, discard=approval, is_tty=True, ask=lambda p: "dmeo"
        )
    assert e.value.exit_code == 1
    assert active.exists() and restore_dir.is_dir() and records(project, run_id) == ([], [])
    prompts = []
    result = deactivate(
        "demo",
        tmp / "state",
        project_dir=proj,
        discard=approval,
        is_tty=True,
        ask=lambda p: prompts.append(p) or "demo\n",
    )
    assert "without bringing it home (`drctl failback`)" in prompts[0]
    assert result["discarded"]["confirmation"] == "client id typed on a terminal"
    assert not active.exists()
    assert [len(r) for r in records(project, run_id)] == [1, 1]


def test_only_a_contact_who_may_activate_can_discard(project):
    proj, tmp = project
    run_id, active, _ = activate(project, "disaster")
    with pytest.raises(NotAuthorised, match="Bruno Petit .* may not activate"):
        deactivate(
            "demo",
            tmp / "state",
            project_dir=proj,
            discard=DiscardApproval(requested_by="Bruno Petit", reason="r", yes=True),
        )
    assert active.exists() and records(project, run_id) == ([], [])


def test_an_activation_record_without_its_mode_takes_it_from_the_report(project):
    proj, tmp = project
    run_id, active, _ = activate(project, "disaster")
    doc = json.loads(active.read_text())
    del doc["mode"]  # written by an older drctl
    active.write_text(json.dumps(doc))
    with pytest.raises(DisasterChangesAtRisk, match="after a disaster activation"):
        deactivate("demo", tmp / "state", project_dir=proj)
    assert active.exists()


def test_a_test_activation_deactivates_without_the_flag(project, capsys):
    run_id, active, restore_dir = activate(project, "test")
    assert cli(project) == 0
    assert f"demo: back to nominal (run {run_id}" in capsys.readouterr().out
    assert not active.exists() and not restore_dir.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--yes"], "only go with --discard-disaster-changes"),
        (["--discard-disaster-changes", "--yes"], "needs --requested-by and --reason"),
        (["--discard-disaster-changes", "--requested-by", "Alice Martin"], "needs --reason"),
    ],
)
def test_flags_that_do_not_go_together_are_usage_errors(project, capsys, args, message):
    run_id, active, _ = activate(project, "disaster")
    with pytest.raises(SystemExit) as e:
        cli(project, *args)
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    assert active.exists() and records(project, run_id) == ([], [])
