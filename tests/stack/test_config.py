"""Stack settings and stack files: Pulumi.yaml declarations, parsing, flavor choice, scope, config errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from drctl.plan.load import PlanInvalid
from drctl.plan.model import Server
from drctl.stack.config import load_stack
from drctl.stack.settings import (
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
