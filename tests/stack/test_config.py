"""Stack settings and stack files: Pulumi.yaml declarations, parsing, flavor choice, scope, config errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from drctl.paths import InvalidStackName, check_stack_name
from drctl.plan.load import PlanInvalid
from drctl.plan.model import Server
from drctl.stack.config import load_stack, stack_file
from drctl.stack.settings import (
    NEUTRON_DEFAULT_QUOTAS,
    SECRET_SETTINGS,
    SETTING_TYPES,
    Flavor,
    StackConfigInvalid,
    check_settings,
    choose_flavor,
    parse_settings,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _server(vcpus: int, ram_mb: int) -> Server:
    return Server(
        name="x1",
        os_family="linux",
        os_version="12",
        protection="dr",
        vcpus=vcpus,
        ram_mb=ram_mb,
        disks=(),
        nics=(),
        boot_group=1,
        depends_on=(),
        backup=(),
        rpo_s=1,
        rto_s=1,
        checks=(),
    )


def test_pulumi_yaml_declares_exactly_the_settings_the_program_reads():
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "flexible-recovery"
    assert project["main"] == "stacks/" and project["stackConfigDir"] == "stacks"
    assert project["runtime"]["name"] == "python"
    config = project["config"]
    assert set(config) == set(SETTING_TYPES)
    for key, kind in SETTING_TYPES.items():
        assert config[key].get("type") == (None if kind == "object" else kind), key
    assert config["failover"]["default"] is False
    assert {k for k, d in config.items() if d.get("secret")} == set(SECRET_SETTINGS)


def test_smallest_fitting_flavor_by_ram_then_vcpus():
    flavors = (Flavor("big", 8, 32768), Flavor("mem", 2, 8192), Flavor("cpu", 4, 8192), Flavor("s", 1, 2048))
    assert choose_flavor(_server(2, 6000), flavors).name == "mem"
    assert choose_flavor(_server(3, 6000), flavors).name == "cpu"
    assert choose_flavor(_server(1, 512), flavors).name == "s"
    with pytest.raises(StackConfigInvalid, match="no flavor fits server x1 .16 vCPU"):
        choose_flavor(_server(16, 1024), flavors)


def test_settings_take_pulumi_strings_and_defaults():
    s = parse_settings(
        {
            "plan": "recovery_plans/demo.yaml",
            "failover": "true",
            "activation": '{"servers": ["web01"], "images": {"web01": "img-1"}}',
        }
    )
    assert s.failover is True and s.region == "RegionOne" and s.external_network == "public"
    assert s.activation.servers == ("web01",) and s.activation.images == {"web01": "img-1"}
    assert s.activation.data_images == {}
    s = parse_settings({"plan": "p.yaml", "activation": '{"data_images": {"db01": {"data": "img-2"}}}'})
    assert s.activation.data_images == {"db01": {"data": "img-2"}}
    with pytest.raises(StackConfigInvalid, match="activation.data_images: expected .server: .disk: image id"):
        parse_settings({"plan": "p.yaml", "activation": '{"data_images": {"db01": "img-2"}}'})
    with pytest.raises(StackConfigInvalid, match="failover: expected true or false"):
        parse_settings({"plan": "p.yaml", "failover": "yes please"})
    with pytest.raises(StackConfigInvalid, match="flexible-recovery:plan is required"):
        parse_settings({"failover": "false"})


def test_scope_defaults_to_dr_and_backup_tested_in_plan_order():
    cfg = load_stack("demo")
    assert cfg.failover is False
    assert cfg.scope() == ("dns01", "db01", "app01", "files01", "web01")
    acme = load_stack("acme")
    classes = {s.name: s.protection for s in acme.plan.servers}
    assert acme.scope() and all(classes[n] in ("dr", "backup-tested") for n in acme.scope())
    assert any(c == "backup-only" for c in classes.values())
    assert set(acme.scope()) == {n for n, c in classes.items() if c != "backup-only"}


def test_unknown_server_in_scope_is_a_config_error_listing_the_plan():
    cfg = load_stack("demo")
    s = parse_settings({"plan": "x", "activation": {"servers": ["web01", "nope"]}}, where="Pulumi.demo.yaml")
    with pytest.raises(
        StackConfigInvalid, match=r"activation.servers: unknown server\(s\) nope; the plan has app01"
    ):
        check_settings(s, cfg.plan, where="Pulumi.demo.yaml")


def test_every_shipped_stack_has_a_flavor_for_every_server():
    for stack in ("demo", "acme"):
        cfg = load_stack(stack)
        for server in cfg.plan.servers:
            choose_flavor(server, cfg.settings.flavors)


def test_a_stack_whose_plan_breaks_the_schema_is_refused_naming_the_field(tmp_path):
    """The stack loader always runs the plan's schema and semantic checks: the Pulumi program and
    every stack command see the same verdict as ``drctl validate``, never an unchecked plan."""
    (tmp_path / "stacks").mkdir()
    (tmp_path / "recovery_plans").mkdir()
    for name in ("Pulumi.yaml", "stacks/Pulumi.demo.yaml", "stacks/demo.passphrase"):
        (tmp_path / name).write_bytes((REPO_ROOT / name).read_bytes())
    plan = yaml.safe_load((REPO_ROOT / "recovery_plans/demo.yaml").read_text())
    plan["servers"][0]["class"] = "gold"
    (tmp_path / "recovery_plans/demo.yaml").write_text(yaml.safe_dump(plan))
    with pytest.raises(PlanInvalid) as e:
        load_stack("demo", tmp_path)
    assert str(tmp_path / "recovery_plans/demo.yaml") in str(e.value)
    assert "servers[0].class" in str(e.value)


# ---- bad stack files and names: one clear error each, never a traceback -------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's files a stack needs (Pulumi.yaml, the demo plan), no stack yet."""
    (tmp_path / "stacks").mkdir()
    (tmp_path / "recovery_plans").mkdir()
    (tmp_path / "Pulumi.yaml").write_text((REPO_ROOT / "Pulumi.yaml").read_text())
    (tmp_path / "recovery_plans" / "demo.yaml").write_text(
        (REPO_ROOT / "recovery_plans/demo.yaml").read_text()
    )
    return tmp_path


FLAVORS = "  flexible-recovery:flavor_map: [{name: m1.small, vcpus: 8, ram_mb: 16384}]\n"


@pytest.mark.parametrize(
    "body, message",
    [
        (
            "config:\n  flexible-recovery:plan: recovery_plans/demo.yaml\n  flexible-recovery:flavor_map: 5\n",
            "flexible-recovery:flavor_map: expected a list of {name, vcpus, ram_mb}",
        ),
        (
            "config:\n  flexible-recovery:plan: recovery_plans/demo.yaml\n"
            "  flexible-recovery:flavor_map: [{name: a, vcpus: 1e400, ram_mb: 5}]\n",
            "flavor_map[0]: each entry needs name, vcpus and ram_mb",
        ),
        (
            "encryptionsalt: 5\nconfig:\n  flexible-recovery:plan: recovery_plans/demo.yaml\n"
            + FLAVORS
            + "  flexible-recovery:vpn_psks: {paris: {secure: 'v1:AAAA:AAAA'}}\n",
            "encryptionsalt is not a Pulumi passphrase state",
        ),
        (
            "config:\n  flexible-recovery:plan: recovery_plans/demo.yaml\n  flexible-recovery:activation: '"
            + "[" * 5000
            + "]" * 5000
            + "'\n",
            "flexible-recovery:activation: a JSON value nested too deeply",
        ),
        (
            "config:\n  flexible-recovery:plan: recovery_plans/demo.yaml\n"
            + FLAVORS
            + "  flexible-recovery:quotas: {secgroups: 20}\n",
            "flexible-recovery:quotas.secgroups: not a Neutron quota drctl checks; use one of network,",
        ),
        (
            "config:\n  flexible-recovery:plan: recovery_plans/demo.yaml\n"
            + FLAVORS
            + "  flexible-recovery:quotas: {security_group: ten}\n",
            "flexible-recovery:quotas.security_group: expected a whole number of at least 0 (or -1 for "
            "unlimited), got 'ten'",
        ),
        (
            "config:\n  flexible-recovery:plan: recovery_plans/demo.yaml\n"
            + FLAVORS
            + "  flexible-recovery:quotas: [10]\n",
            "flexible-recovery:quotas: expected an object {security_group: 10",
        ),
        ("config:\n  flexible-recovery:plan: /etc/passwd\n", "must be a path inside the project directory"),
        ("config:\n  flexible-recovery:plan: ../../x.yaml\n", "must be a path inside the project directory"),
        ('config:\n  flexible-recovery:plan: "a\\0b"\n', "must be a path inside the project directory"),
        ("config:\n  ? [a]\n  : 1\n", "line 2, column 5: YAML syntax error: a key must be plain text"),
        ("config:\n  a: 1\n  a: 2\n", "line 3, column 3: YAML syntax error: duplicate key 'a'"),
    ],
    ids=[
        "flavor-map-not-a-list",
        "flavor-overflow",
        "salt-not-text",
        "deep-json",
        "quota-unknown",
        "quota-not-a-number",
        "quotas-not-an-object",
        "absolute-plan",
        "plan-outside",
        "plan-nul",
        "list-key",
        "duplicate-key",
    ],
)
def test_a_bad_stack_file_is_one_error_naming_the_file(project: Path, body: str, message: str) -> None:
    (project / "stacks" / "Pulumi.bad.yaml").write_text(body)
    with pytest.raises(StackConfigInvalid) as e:
        load_stack("bad", project)
    assert e.value.message.startswith(str(project / "stacks" / "Pulumi.bad.yaml"))
    assert message in e.value.message


def test_a_stack_file_that_is_a_directory_or_too_big_is_named(project: Path) -> None:
    (project / "stacks" / "Pulumi.dir.yaml").mkdir()
    with pytest.raises(
        StackConfigInvalid, match="Pulumi.dir.yaml: .file.: cannot read the stack file: it is a"
    ):
        load_stack("dir", project)
    with open(project / "stacks" / "Pulumi.big.yaml", "wb") as f:
        f.truncate(20 * 1024 * 1024)
    with pytest.raises(StackConfigInvalid, match="it is 20.0 MiB, a stack file is at most 10.0 MiB"):
        load_stack("big", project)


def test_a_project_without_pulumi_yaml_is_named(project: Path) -> None:
    (project / "stacks" / "Pulumi.ok.yaml").write_text(
        "config:\n  flexible-recovery:plan: recovery_plans/demo.yaml\n"
    )
    (project / "Pulumi.yaml").unlink()
    with pytest.raises(
        StackConfigInvalid, match="Pulumi.yaml: .file.: cannot read the Pulumi project file: No such"
    ):
        load_stack("ok", project)


@pytest.mark.parametrize(
    "name", ["../demo", "demo/../demo", ".demo", "-demo", "de mo", "", "x" * 101, "démo"]
)
def test_stack_names_that_could_leave_stacks_are_refused(project: Path, name: str) -> None:
    with pytest.raises(InvalidStackName, match="use letters, digits, '-', '_' and '.'"):
        load_stack(name, project)
    with pytest.raises(InvalidStackName):
        stack_file(name, project)


@pytest.mark.parametrize("name", ["demo", "acme-prod", "client_2.eu", "A1", "x" * 100])
def test_stack_names_pulumi_accepts_pass(name: str) -> None:
    assert check_stack_name(name) == name


def test_a_passphrase_file_that_is_a_fifo_or_a_directory_is_named_not_waited_for(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "stacks" / "Pulumi.s.yaml").write_text(
        "encryptionsalt: v1:AAAAAAAAAAA=:v1:AAAAAAAAAAAAAAAA:AAAA\nconfig:\n"
        "  flexible-recovery:plan: recovery_plans/demo.yaml\n"
        "  flexible-recovery:vpn_psks: {paris: {secure: 'v1:AAAA:AAAA'}}\n"
    )
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    fifo = project / "pass.fifo"
    os.mkfifo(fifo)
    for path, reason in ((fifo, "not a regular file"), (project, "it is a directory")):
        monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE_FILE", str(path))
        with pytest.raises(StackConfigInvalid, match=f"cannot read the passphrase file: {reason}"):
            load_stack("s", project)


def test_quotas_are_neutrons_defaults_with_the_stack_file_over_them(project: Path) -> None:
    (project / "stacks" / "Pulumi.q.yaml").write_text(
        "config:\n  flexible-recovery:plan: recovery_plans/demo.yaml\n"
        + FLAVORS
        + "  flexible-recovery:quotas: {security_group: 25, port: -1}\n"
    )
    quotas = load_stack("q", project).settings.quotas
    assert quotas == {**NEUTRON_DEFAULT_QUOTAS, "security_group": 25, "port": -1}
    assert NEUTRON_DEFAULT_QUOTAS["security_group"] == 10
    assert NEUTRON_DEFAULT_QUOTAS["security_group_rule"] == 100


def test_the_pack_and_the_stack_settings_know_the_same_neutron_defaults() -> None:
    from drctl.policies import dr_rules

    assert dict(dr_rules.NEUTRON_DEFAULT_QUOTAS) == NEUTRON_DEFAULT_QUOTAS


def test_a_plan_is_checked_once_per_process_but_never_served_stale(tmp_path: Path) -> None:
    from drctl.stack.config import load_plan_file

    path = tmp_path / "plan.yaml"
    text = (REPO_ROOT / "recovery_plans" / "demo.yaml").read_text()
    path.write_text(text)
    first = load_plan_file(path)
    assert load_plan_file(path) is first  # the program's second load reuses the first
    # the same size, rewritten at once (same timestamp tick): the new content is what counts
    path.write_text(text.replace("name: web01", "name: web02"))
    assert [s.name for s in load_plan_file(path).servers][-1] == "web02"
    path.write_text(text.replace("name: web01", "name: db01 "))
    with pytest.raises(PlanInvalid):
        load_plan_file(path)
