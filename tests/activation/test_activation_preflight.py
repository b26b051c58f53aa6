"""A cloud activation runs the preflight against the project before restoring anything: a blocking
finding stops it (exit 21, nothing restored, no lock left), unless --override-preflight gives a
reason, which the run's report records. The preflight is the real one, against the real Neutron and
the Nova/Cinder stand-in; the demo stack's external network `public` does not exist there, which
is the blocking finding."""

from __future__ import annotations

import pytest

from drctl.activation.activation import Activation, ActivationRequest
from drctl.activation.guards import LOCK_KEY
from drctl.errors import EXIT_PREFLIGHT
from drctl.runs.store import RunStore
from drctl.stack.preflight import PreflightBlocked
from tests.activation.test_activation import PASSWORD, FakeTarget, project  # noqa: F401 (fixture)
from tests.support.nova_cinder import NovaCinderStub

pytestmark = pytest.mark.integration


@pytest.fixture
def cloud_env(openstack, tmp_path, monkeypatch):
    stub = NovaCinderStub()
    clouds = openstack.write_clouds_yaml(
        tmp_path,
        "drtest",
        compute_endpoint_override=stub.compute_url,
        block_storage_endpoint_override=stub.volume_url,
        drctl_project_id=openstack.new_project(),
    )
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    monkeypatch.setenv("OS_CLOUD", "drtest")
    yield
    stub.close()


def cloud_run(project, target, **req):  # noqa: F811 (the fixture's value)
    proj, tmp, _ = project
    events: list[tuple[str, dict]] = []
    act = Activation(
        ActivationRequest(
            stack="demo", target="cloud", requested_by="Alice Martin", mode="test", kind="drill", **req
        ),
        password=PASSWORD,
        state_dir=tmp / "state",
        project_dir=proj,
        on_event=lambda k, d: events.append((k, d)),
        target_factory=lambda a, deadline_for: (target, lambda: None),
    )
    return act, events


def test_a_blocking_finding_stops_the_activation_before_any_restore(project, cloud_env):  # noqa: F811
    proj, tmp, images = project
    target = FakeTarget(images)
    act, events = cloud_run(project, target)
    with pytest.raises(PreflightBlocked) as err:
        act.execute()
    assert err.value.exit_code == EXIT_PREFLIGHT == 21
    assert "external network public" in err.value.message and "--override-preflight" in err.value.message
    assert target.started == []
    assert [k for k, _ in events] == ["preflight"]
    finding = next(f for f in events[0][1]["findings"] if f["check"] == "external-network")
    assert (finding["status"], finding["have"]) == ("blocking", "missing")
    assert not (tmp / "state" / "restores").exists() or not any((tmp / "state" / "restores").iterdir())
    assert not (tmp / "vault" / "reports" / LOCK_KEY).exists()


def test_an_overridden_preflight_runs_and_the_report_records_why(project, cloud_env):  # noqa: F811
    proj, tmp, images = project
    target = FakeTarget(images)
    act, events = cloud_run(
        project, target, override_preflight="the gateway is being added by the cloud team"
    )
    summary = act.execute()
    assert [k for k, _ in events][:2] == ["preflight", "run-started"]
    assert sorted(target.started) == ["app01", "db01", "dns01", "files01", "web01"]
    note = next(n for n in summary.notes if n.startswith("preflight overridden"))
    assert "Alice Martin" in note and "the gateway is being added by the cloud team" in note
    assert "external network public: needs router:external, has missing" in note
    stored = RunStore(tmp / "state").find(summary.run_id)
    assert "the gateway is being added by the cloud team" in (stored.path / "report.html").read_text()
    assert "preflight overridden" in (stored.path / "summary.json").read_text()


def test_the_local_target_runs_no_preflight(project):  # noqa: F811
    proj, tmp, images = project

    def no_cloud(act):
        raise AssertionError("the local target must not read a cloud")

    act = Activation(
        ActivationRequest(
            stack="demo", target="local", requested_by="Alice Martin", mode="test", kind="drill"
        ),
        password=PASSWORD,
        state_dir=tmp / "state",
        project_dir=proj,
        target_factory=lambda a, deadline_for: (FakeTarget(images), lambda: None),
        preflight=no_cloud,
    )
    assert act.execute().outcome == "ok"
