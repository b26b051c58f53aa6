"""``drctl status`` end to end on the embedded store: two clients whose agents wrote signed status
records, a run store, and every verdict checked where a user meets it: the text, the JSON, the exit
code and the Prometheus metrics."""

from __future__ import annotations

import os
import stat
from datetime import UTC, date, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from drctl.cli import main
from drctl.repo.crypto import KdfParams
from drctl.repo.repository import init_repository
from drctl.runs.model import RunSummary, ServerResult
from drctl.runs.store import RunStore
from tests.repo.fakes import MiB, make_image
from tests.status import world
from tests.support.events import read_events

pytestmark = pytest.mark.integration

FAST_KDF = KdfParams(n=2**12, r=8, p=1)
SERVERS = ("dns01", "db01", "app01", "files01", "web01")


def _now() -> datetime:
    """Read when a test runs, never at import: a full run collects this module half an hour before
    it runs it, and a record made "5 minutes ago" against an import-time clock is then 35 minutes
    old, past db01's 15-minute RPO."""
    return datetime.now(UTC)


def _ago(**kw) -> datetime:
    return _now() - timedelta(**kw)


@pytest.fixture
def scene(seaweed_s3, tmp_path, monkeypatch):
    """alpha: every state of a server's backups; beta: drift, forged and unsigned records."""
    seaweed_s3.apply_env(monkeypatch)
    monkeypatch.delenv("DRCTL_PASSWORD", raising=False)
    proj = world.make_project(tmp_path)
    state = tmp_path / "state"
    monkeypatch.setenv("DRCTL_PROJECT_DIR", str(proj))
    monkeypatch.setenv("DRCTL_STATE_DIR", str(state))

    alpha_keys = {s: Ed25519PrivateKey.generate() for s in SERVERS}
    world.add_client(proj, "alpha", seaweed_s3.url("alpha"), alpha_keys)
    alpha = seaweed_s3.storage("alpha")
    j = world.job
    world.publish(
        alpha, alpha_keys["dns01"], j("alpha", "dns01", _ago(hours=26)), j("alpha", "dns01", _ago(hours=2))
    )
    world.publish(alpha, alpha_keys["db01"], j("alpha", "db01", _ago(minutes=5)))  # RPO 15m
    world.publish(alpha, alpha_keys["app01"], j("alpha", "app01", _ago(hours=20)))  # 83 % of 24h
    world.publish(alpha, alpha_keys["web01"], j("alpha", "web01", _ago(hours=30)))  # > 24h
    world.publish(
        alpha,
        alpha_keys["files01"],
        j("alpha", "files01", _ago(hours=3)),
        j("alpha", "files01", _ago(hours=2), result="failed", error_class="StorageUnavailable"),
        j("alpha", "files01", _ago(hours=1), result="failed", error_class="StorageUnavailable"),
    )
    # alpha's last drill passed 200 days ago: the dr servers' next one (6 months) is overdue;
    # files01's yearly restore test is not.
    ended = _ago(days=200)
    RunStore(state).record(
        RunSummary(
            run_id=ended.strftime("%Y%m%dT%H%M%SZ") + "-a1",
            stack="alpha",
            mode="test",
            target="local",
            started_at=ended - timedelta(hours=1),
            ended_at=ended,
            servers=tuple(ServerResult(name=s, os="debian-12", status="ok") for s in SERVERS),
            kind="drill",
        ),
        key=Ed25519PrivateKey.generate(),
    )

    beta_keys = {s: Ed25519PrivateKey.generate() for s in SERVERS if s != "app01"}  # no key for app01
    soon = (_now() + timedelta(days=10)).date()
    world.add_client(
        proj,
        "beta",
        seaweed_s3.url("beta"),
        beta_keys,
        tests=[{"date": soon.isoformat(), "scope": "dr"}, {"date": "2099-01-04", "scope": "backup-tested"}],
    )
    beta = seaweed_s3.storage("beta")
    for s in ("dns01", "db01", "files01"):
        world.publish(beta, beta_keys[s], j("beta", s, _ago(minutes=3)))
    # app01's agent has no recorded key: its record is shown as unsigned and not trusted
    world.publish(beta, Ed25519PrivateKey.generate(), j("beta", "app01", _ago(minutes=3)))
    # a newer record for dns01 signed by another key: forged, and it hides nothing
    world.publish(beta, Ed25519PrivateKey.generate(), j("beta", "dns01", _ago(minutes=1), result="failed"))
    # old01 left the plan but its agent still backs it up: drift; web01 has no backup at all
    world.publish(beta, Ed25519PrivateKey.generate(), j("beta", "old01", _ago(hours=1)))
    return proj, state, tmp_path, soon


def _metrics(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k in ("client", "server")))] = (
                s.value
            )
    return out


def test_status_shows_every_state_in_text_json_exit_code_and_metrics(scene, capsys) -> None:
    proj, state, tmp, soon = scene
    prom = tmp / "textfile" / "drctl.prom"
    prom.parent.mkdir()

    # --- exit code and human output -------------------------------------------------------------
    assert main(["status", "--prometheus", str(prom)]) == 20
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("alpha") and "FAILING" in lines[0]  # worst first
    assert "at risk 1" in lines[0] and "BREACHED 1" in lines[0] and "jobs failed 1" in lines[0]
    assert "next test dr" in lines[0] and "OVERDUE" in lines[0]
    assert lines[1].startswith("beta") and "FAILING" in lines[1] and "not in plan: old01" in lines[1]
    assert f"next test dr {soon}" in lines[1] and "within 30 days" in lines[1]
    trouble = "\n".join(lines[lines.index("servers in trouble:") :])
    assert "alpha/web01 (dr) failing: RPO breached: last backup 30h00m old, RPO 24h00m" in trouble
    assert "alpha/app01 (dr) failing: RPO at-risk: last backup 20h00m old" in trouble
    assert "alpha/files01 (backup-tested) failing: last job" in trouble
    assert "failed: StorageUnavailable (2 in a row)" in trouble
    assert "alpha/dns01" in trouble and "dr test overdue (computed date" in trouble
    assert "beta/web01 (dr) failing: no restore point for disk system" in trouble
    assert "beta/app01 (dr) failing: no restore point" in trouble and "unsigned" in trouble
    assert "beta/dns01 (dr) warning:" in trouble and "forged" in trouble
    assert "beta/old01 failing: has restore points or records, not in the plan (drift)" in trouble
    # 5 minutes of a 15-minute RPO: met; only its drill is overdue
    assert "alpha/db01 (dr) failing: dr test overdue (computed date" in trouble
    assert "alpha/db01 (dr) failing: RPO" not in trouble

    # --- JSON -----------------------------------------------------------------------------------
    assert main(["status", "--json"]) == 20
    result = read_events(capsys.readouterr().out)[-1]
    assert result["event"] == "result" and result["exit_code"] == 20 and result["health"] == "failing"
    clients = {c["stack"]: c for c in result["clients"]}
    alpha = {s["server"]: s for s in clients["alpha"]["servers"]}
    beta = {s["server"]: s for s in clients["beta"]["servers"]}
    assert {n: s["rpo"] for n, s in alpha.items()} == {
        "dns01": "met",
        "db01": "met",
        "app01": "at-risk",
        "files01": "met",
        "web01": "breached",
    }
    assert alpha["files01"]["last_job"]["result"] == "failed"
    assert alpha["files01"]["last_job"]["error_class"] == "StorageUnavailable"
    assert alpha["files01"]["consecutive_failures"] == 2
    assert alpha["files01"]["disks"][0]["source"] == "record"
    assert 20 * 3600 - 60 < alpha["app01"]["disks"][0]["age_seconds"] < 20 * 3600 + 600
    assert alpha["app01"]["disks"][0]["point"].startswith("p-app01-system-")
    assert alpha["dns01"]["test"]["overdue"] is True and alpha["dns01"]["test"]["source"] == "computed"
    assert alpha["files01"]["test"]["overdue"] is False
    assert alpha["dns01"]["last_run"]["outcome"] == "ok" and alpha["dns01"]["last_run"]["kind"] == "drill"
    assert clients["alpha"]["last_drill"]["outcome"] == "ok"
    assert clients["alpha"]["retention"] is None and clients["alpha"]["notes"]  # no repository yet
    assert clients["beta"]["not_in_plan"] == ["old01"]
    assert beta["web01"]["drift"] == "no-restore-point" and beta["web01"]["rpo"] == "breached"
    assert [u["trust"] for u in beta["app01"]["untrusted_records"]] == ["unsigned"]
    assert [u["trust"] for u in beta["dns01"]["untrusted_records"]] == ["forged"]
    assert beta["dns01"]["rpo"] == "met" and beta["dns01"]["last_job"]["result"] == "ok"
    readme = (world.ROOT / "README.md").read_text()
    section = readme[readme.index("## Machine-readable output") :]
    documented = [
        *result,
        *clients["alpha"],
        *alpha["files01"],
        *alpha["files01"]["last_job"],
        *alpha["files01"]["disks"][0],
    ]
    assert not [k for k in documented if f"`{k}`" not in section], (
        "status result fields missing from the README"
    )
    dr = next(t for t in clients["beta"]["tests"] if t["scope"] == "dr")
    assert dr == {**dr, "due": soon.isoformat(), "source": "agreed", "soon": True, "overdue": False}

    # --- metrics (written atomically, readable by node_exporter) ----------------------------------
    mode = stat.S_IMODE(os.stat(prom).st_mode)
    assert mode == 0o644 and not [p for p in prom.parent.iterdir() if p != prom]
    m = _metrics(prom.read_text())
    web = (("client", "alpha"), ("server", "web01"))
    assert 30 * 3600 - 60 < m["drctl_backup_age_seconds", web] < 30 * 3600 + 600
    assert m["drctl_rpo_seconds", web] == 24 * 3600
    files = (("client", "alpha"), ("server", "files01"))
    assert m["drctl_last_job_success", files] == 0
    assert m["drctl_job_consecutive_failures", files] == 2
    assert m["drctl_last_job_success", (("client", "alpha"), ("server", "dns01"))] == 1
    assert m["drctl_backup_age_seconds", (("client", "beta"), ("server", "web01"))] == float("inf")
    due_alpha = m["drctl_test_due_timestamp_seconds", (("client", "alpha"),)]
    assert due_alpha < _now().timestamp()  # overdue
    due_beta = m["drctl_test_due_timestamp_seconds", (("client", "beta"),)]
    assert due_beta == datetime.combine(soon, datetime.min.time(), UTC).timestamp()
    assert m["drctl_last_drill_success", (("client", "alpha"),)] == 1
    assert ("drctl_last_drill_success", (("client", "beta"),)) not in m  # never drilled


def test_calendar_lists_the_next_twelve_months_and_flags_an_agreed_date_within_30_days(scene, capsys):
    proj, state, tmp, soon = scene
    assert main(["status", "beta", "--calendar", "--json"]) == 20
    result = read_events(capsys.readouterr().out)[-1]
    cal = result["calendar"]
    assert {"date": soon.isoformat(), "scope": "dr", "source": "agreed", "soon": True} == {
        k: v for k, v in cal[0].items() if k in ("date", "scope", "source", "soon")
    }
    assert all(
        e["date"] is None or e["date"] <= (date.today() + timedelta(days=366)).isoformat() for e in cal
    )
    assert main(["status", "beta", "--calendar"]) == 20
    text = capsys.readouterr().out
    assert f"{soon.isoformat()}   beta" in text and "agreed, fewer than 30 days ahead" in text


def test_all_good_is_exit_0(seaweed_s3, tmp_path, monkeypatch, capsys) -> None:
    seaweed_s3.apply_env(monkeypatch)
    proj = world.make_project(tmp_path)
    monkeypatch.setenv("DRCTL_PROJECT_DIR", str(proj))
    monkeypatch.setenv("DRCTL_STATE_DIR", str(tmp_path / "state"))
    keys = {s: Ed25519PrivateKey.generate() for s in SERVERS}
    later = (_now() + timedelta(days=90)).date().isoformat()
    world.add_client(
        proj,
        "gamma",
        seaweed_s3.url("gamma"),
        keys,
        tests=[{"date": later, "scope": "dr"}, {"date": later, "scope": "backup-tested"}],
    )
    storage = seaweed_s3.storage("gamma")
    init_repository(storage, b"gamma-password-1", object_lock={"retain_days": 7}, kdf=FAST_KDF)
    support = storage.lock_support()
    for s in SERVERS:
        world.publish(storage, keys[s], world.job("gamma", s, _ago(minutes=2)))
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("gamma") and "RPO met 5" in first and "servers in trouble" not in out
    # the vault's retention as the store enforces it, read back (a warning when it is not)
    assert ("retention 7 d, enforced" if support.enforced else "retention 7 d, NOT enforced") in first
    assert ("OK" if support.enforced else "WARNING") in first


def test_an_unreadable_vault_is_exit_14_and_the_other_clients_are_still_reported(scene, capsys) -> None:
    proj, state, tmp, soon = scene
    (proj / "stacks" / "Pulumi.gone.yaml").write_text(
        (proj / "stacks" / "Pulumi.beta.yaml")
        .read_text()
        .replace("beta", "gone")
        .replace("recovery_plans/gone.yaml", "recovery_plans/beta.yaml")
        .replace("s3://", "s3://no-such-bucket-")
    )
    assert main(["status", "--json"]) == 14
    result = read_events(capsys.readouterr().out)[-1]
    gone = next(c for c in result["clients"] if c["stack"] == "gone")
    assert result["clients"][0]["stack"] == "gone"  # worst first
    assert gone["health"] == "unreadable" and "cannot be read" in gone["unreadable"]
    assert gone["servers"] == [] and gone["counts"] is None  # nothing is claimed about them
    assert [t["scope"] for t in gone["tests"]] == ["dr", "backup-tested"]  # runs and plan still say
    others = [c for c in result["clients"] if c["stack"] != "gone"]
    assert [c["stack"] for c in others] == ["alpha", "beta"] and all(len(c["servers"]) == 5 for c in others)
    assert main(["status"]) == 14
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("gone") and "UNREADABLE" in first and "next test dr" in first


def test_a_corrupt_run_summary_is_a_note_on_its_client_the_others_are_reported_exit_14(scene, capsys) -> None:
    """A run summary that cannot be read may be the passing drill: alpha's test dates are then
    unknown (said with the file and the next step), never guessed; the rest of alpha and every
    other client are still reported, and the exit code is the unreadable-input one."""
    proj, state, tmp, soon = scene
    runs = state / "runs" / "alpha"
    truncated = runs / "20991231T000000Z-b2" / "summary.json"
    truncated.parent.mkdir()
    truncated.write_bytes(b'{"run_id": "20991231T000000Z-b2", "stack": "al')  # cut mid-write
    (runs / "20991231T000001Z-c3" / "summary.json").mkdir(parents=True)  # not even a file
    prom = tmp / "drctl.prom"

    assert main(["status", "--json", "--calendar", "--prometheus", str(prom)]) == 14
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    result = read_events(out)[-1]
    assert result["exit_code"] == 14
    clients = {c["stack"]: c for c in result["clients"]}
    alpha = clients["alpha"]
    assert [t["source"] for t in alpha["tests"]] == ["unknown", "unknown"]
    assert all(t["due"] is None and t["overdue"] is False for t in alpha["tests"])
    why = alpha["tests"][0]["why"]
    assert why.startswith(f"unknown: run summary {truncated} unreadable (not valid JSON")
    assert "(and 1 more)" in why and "next step: `drctl report verify 20991231T000000Z-b2`" in why
    assert any(str(truncated) in n and "next step" in n for n in alpha["notes"])
    servers = {s["server"]: s for s in alpha["servers"]}
    assert servers["dns01"]["test"]["source"] == "unknown"
    assert servers["web01"]["rpo"] == "breached" and servers["app01"]["rpo"] == "at-risk"  # still read
    assert servers["dns01"]["last_run"]["outcome"] == "ok"  # the readable drill is still shown
    dr = next(t for t in clients["beta"]["tests"] if t["scope"] == "dr")
    assert dr["source"] == "agreed" and dr["due"] == soon.isoformat()  # the other client: unaffected
    assert {e["source"] for e in result["calendar"] if e["stack"] == "alpha"} == {"unknown"}

    m = _metrics(prom.read_text())
    assert m["drctl_run_summaries_unreadable", (("client", "alpha"),)] == 2
    assert m["drctl_run_summaries_unreadable", (("client", "beta"),)] == 0
    assert ("drctl_test_due_timestamp_seconds", (("client", "alpha"),)) not in m  # unknown, not 0
    assert ("drctl_test_due_timestamp_seconds", (("client", "beta"),)) in m

    assert main(["status"]) == 14
    out, err = capsys.readouterr()
    line = next(x for x in out.splitlines() if x.startswith("alpha"))
    assert "next test dr UNKNOWN (a run summary is unreadable: see the notes)" in line
    notes = out[out.index("notes:") :]
    assert f"alpha: test verdict unknown: run summary {truncated} unreadable" in notes
    assert "Traceback" not in err


def test_with_the_client_s_password_the_restore_point_list_fills_in(
    seaweed_s3, tmp_path, monkeypatch, capsys
):
    seaweed_s3.apply_env(monkeypatch)
    monkeypatch.delenv("DRCTL_PASSWORD", raising=False)
    proj = world.make_project(tmp_path)
    monkeypatch.setenv("DRCTL_PROJECT_DIR", str(proj))
    monkeypatch.setenv("DRCTL_STATE_DIR", str(tmp_path / "state"))
    world.add_client(proj, "delta", seaweed_s3.url("delta"), {})  # no agent yet: no record at all
    password = "delta-password-1"
    init_repository(seaweed_s3.storage("delta"), password.encode(), chunk_size=1 << 20, kdf=FAST_KDF)
    image = make_image(tmp_path / "disk.img", 2 * MiB + 5, seed=1)
    monkeypatch.setenv("DRCTL_PASSWORD", password)
    for server in ("dns01", "legacy01"):  # legacy01 left the plan but is still backed up
        assert (
            main(["backup", seaweed_s3.url("delta"), "--server", server, "--disk", "system", str(image)]) == 0
        )
    capsys.readouterr()

    assert main(["status", "--json"]) == 20
    client = read_events(capsys.readouterr().out)[-1]["clients"][0]
    dns = next(s for s in client["servers"] if s["server"] == "dns01")
    assert dns["rpo"] == "met" and dns["disks"][0]["source"] == "repository"
    assert client["not_in_plan"] == ["legacy01"]

    pw_file = tmp_path / "wrong"
    pw_file.write_text("not-the-password\n")
    monkeypatch.delenv("DRCTL_PASSWORD")
    assert main(["status", "--password-file", str(pw_file)]) == 20
    out = capsys.readouterr().out
    assert "delta/dns01 (dr) failing: no restore point" in out
    assert "the password given does not open this vault" in out
    assert "not-the-password" not in out


def test_a_bad_agent_key_in_a_stack_names_the_file_and_field(tmp_path, monkeypatch, capsys) -> None:
    proj = world.make_project(tmp_path)
    monkeypatch.setenv("DRCTL_PROJECT_DIR", str(proj))
    world.add_client(proj, "eps", "s3://eps-backups/repo", {})
    path = proj / "stacks" / "Pulumi.eps.yaml"
    path.write_text(path.read_text().replace("agent_keys: {}", "agent_keys: {db01: 'rsa:00'}"))
    assert main(["status"]) == 1
    err = capsys.readouterr().err
    assert f"{path}: flexible-recovery:agent_keys.db01" in err and "drctl agent config" in err
    assert "Traceback" not in err
    assert main(["status", "no-such"]) == 1
    assert "Pulumi.no-such.yaml: no such stack file" in capsys.readouterr().err


def test_an_unwritable_metrics_file_is_a_local_io_error_naming_it(tmp_path, monkeypatch, capsys) -> None:
    from drctl.storage.local import LocalDirStorage

    proj = world.make_project(tmp_path)
    monkeypatch.setenv("DRCTL_PROJECT_DIR", str(proj))
    monkeypatch.setenv("DRCTL_STATE_DIR", str(tmp_path / "state"))
    keys = {s: Ed25519PrivateKey.generate() for s in SERVERS}
    vault = tmp_path / "vault"  # a directory vault: status reads it like a bucket
    world.add_client(proj, "zeta", str(vault), keys)
    vault.mkdir()
    storage = LocalDirStorage(vault)
    for s in SERVERS:
        world.publish(storage, keys[s], world.job("zeta", s, _ago(minutes=1)))
    target = tmp_path / "missing-dir" / "drctl.prom"
    assert main(["status", "--prometheus", str(target)]) == 15
    err = capsys.readouterr().err
    assert f"cannot write the metrics file {target}" in err and "Traceback" not in err
    assert main(["status", "--json"]) == 20  # never drilled: the dr test is overdue
    result = read_events(capsys.readouterr().out)[-1]
    assert result["clients"][0]["counts"]["rpo_met"] == 5


def test_what_a_real_agent_publishes_is_what_status_trusts(seaweed_s3, tmp_path, monkeypatch, capsys) -> None:
    """`drctl agent config` records the agent's key in the stack, `drctl agent run` backs up and
    signs its record, `drctl status` trusts it: the two features speak the same format."""
    seaweed_s3.apply_env(monkeypatch)
    proj = world.make_project(tmp_path)
    monkeypatch.setenv("DRCTL_PROJECT_DIR", str(proj))
    monkeypatch.setenv("DRCTL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DRCTL_PASSWORD", "agent-status-password-1")
    url = seaweed_s3.url("eta")
    world.add_client(proj, "eta", url, {})
    assert main(["repo", "init", url, "--chunk-size", "1"]) == 0
    image = make_image(tmp_path / "dns01.img", 2 * MiB + 3, seed=4)
    assert (
        main(
            [
                "agent",
                "config",
                "eta",
                "--server",
                "dns01",
                "--disk",
                f"system={image}",
                "--out",
                str(tmp_path / "agent"),
            ]
        )
        == 0
    )
    assert "agent_keys" in (proj / "stacks" / "Pulumi.eta.yaml").read_text()
    config = next((tmp_path / "agent").glob("*.yaml"))
    assert main(["agent", "run", "--config", str(config), "--type", "full"]) == 0
    capsys.readouterr()

    monkeypatch.delenv("DRCTL_PASSWORD")  # status needs no key: the signed record is enough
    assert main(["status", "eta", "--json"]) == 20  # the other servers have no backup yet
    servers = {s["server"]: s for s in read_events(capsys.readouterr().out)[-1]["clients"][0]["servers"]}
    dns = servers["dns01"]
    assert dns["rpo"] == "met" and dns["disks"][0]["source"] == "record" and dns["untrusted_records"] == []
    assert dns["last_job"]["result"] == "ok" and dns["last_job"]["type"] == "full"
    assert servers["db01"]["drift"] == "no-restore-point"


def test_a_log_schedule_drctl_does_not_back_is_said_with_the_status(tmp_path, monkeypatch, capsys) -> None:
    """acme's sql01 declares SQL Server log backups every 15 minutes: drctl does not produce them, so
    the status says its RPO is not backed, even while the vault cannot be read."""
    monkeypatch.setenv("DRCTL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: the vault is unreadable
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("DRCTL_S3_ADDRESSING", "path")
    assert main(["status", "acme", "--json"]) == 14
    (acme,) = read_events(capsys.readouterr().out)[-1]["clients"]
    notes = [n for n in acme["notes"] if "SQL Server transaction log backups" in n]
    assert len(notes) == 1 and "sql01" in notes[0] and "is not backed" in notes[0]
    assert not any("pg01" in n for n in acme["notes"])  # PostgreSQL's WAL is produced by drctl wal push
