"""End to end: the real program previewed offline for the demo stack, then the policy pack.

A passing stack, then the same project copied with one change a user could make -- a weak VPN
override in the plan, or a flat-script RDP rule open to the world in the program -- and the
exact violation, through the same code path as ``drctl policy``.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import yaml

from drctl.stack.policy import check_stack
from tests.support.events import read_events, result_of

REPO = Path(__file__).resolve().parents[2]


def project_copy(tmp_path: Path) -> Path:
    """The parts of the project a preview reads, copied so a test can change one of them."""
    dst = tmp_path / "project"
    dst.mkdir()
    shutil.copy2(REPO / "Pulumi.yaml", dst / "Pulumi.yaml")
    for d in ("stacks", "recovery_plans"):
        shutil.copytree(REPO / d, dst / d, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def drctl(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_CONFIG_PASSPHRASE")}
    return subprocess.run(
        [sys.executable, "-m", "drctl.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO,
    )


def test_demo_stack_passes_every_rule_in_nominal_mode():
    out = drctl("policy", "demo")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout == ""
    assert "policy passed for stack demo: 0 mandatory" in out.stderr


def record_activation(project: Path, stack: str, restore_point: str) -> list[str]:
    """What an activation writes into the stack file: the restore point and one image per server."""
    from drctl.stack.config import load_stack

    path = project / "stacks" / f"Pulumi.{stack}.yaml"
    doc = yaml.safe_load(path.read_text())
    scope = list(load_stack(stack, project).scope())
    doc["config"]["flexible-recovery:activation"] = {
        "servers": [],
        "restore_point": restore_point,
        "images": {s: f"img-{s}-20261120" for s in scope},
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return scope


def test_demo_failover_from_recorded_images_passes(tmp_path):
    project = project_copy(tmp_path)
    record_activation(project, "demo", "2026-11-20T02:00:00Z")

    out = drctl("policy", "demo", "--failover", "--json", "--project-dir", str(project))

    assert out.returncode == 0, out.stdout + out.stderr
    assert result_of(out.stdout) == {"stack": "demo", "ok": True, "violations": []}


def test_demo_failover_instances_without_a_restore_point_fail(tmp_path):
    """The program always stamps the restore point; an instance declared without it (a hand-edited
    program) is refused. The graph is the real failover preview with that one field blanked."""
    import dataclasses

    from drctl.stack.config import load_stack
    from drctl.stack.policy import check_resources, policy_config
    from drctl.stack.preview import preview_stack

    project = project_copy(tmp_path)
    scope = record_activation(project, "demo", "2026-11-20T02:00:00Z")
    graph = preview_stack("demo", failover=True, project_dir=project)
    resources = [
        dataclasses.replace(
            r,
            inputs={
                **r.inputs,
                "metadata": {k: v for k, v in r.inputs["metadata"].items() if k != "restore_point"},
            },
        )
        if r.type == "openstack:compute/instance:Instance"
        else r
        for r in graph.resources
    ]
    config = policy_config(failover=True, servers=load_stack("demo", project).plan.servers)

    report = check_resources(resources, stack="demo", config=config)

    assert sorted((v.policy, v.resource) for v in report.violations) == sorted(
        ("recovered-server-only-in-failover", f"srv-{s}-instance") for s in scope
    )
    assert all("restore_point is empty" in v.message for v in report.violations)


def test_demo_failover_preview_without_recorded_images_passes_with_a_note():
    out = drctl("policy", "demo", "--failover")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "drctl: note: " in out.stderr and "placeholder" in out.stderr
    js = drctl("policy", "demo", "--failover", "--json")
    events = read_events(js.stdout)
    notes = [e["message"] for e in events if e["event"] == "note"]
    assert js.returncode == 0 and any("placeholder" in n for n in notes)
    assert [e["event"] for e in events] == ["note"] * len(notes) + ["result"]


def test_instances_with_the_failover_flag_off_fail(tmp_path):
    """The rule sees the flag through its config: a graph with instances under failover=false."""
    from drctl.stack.config import load_stack
    from drctl.stack.policy import check_resources, policy_config
    from drctl.stack.preview import preview_stack

    project = project_copy(tmp_path)
    record_activation(project, "demo", "2026-11-20T02:00:00Z")
    graph = preview_stack("demo", failover=True, servers=["dns01"], project_dir=project)
    config = policy_config(failover=False, servers=load_stack("demo", project).plan.servers)

    report = check_resources(graph.resources, stack="demo", config=config)

    assert [(v.policy, v.resource) for v in report.violations] == [
        ("recovered-server-only-in-failover", "srv-dns01-instance")
    ]
    assert "failover flag is false" in report.violations[0].message


def test_weak_vpn_override_in_the_plan_fails(tmp_path):
    project = project_copy(tmp_path)
    plan_path = project / "recovery_plans" / "demo.yaml"
    plan = yaml.safe_load(plan_path.read_text())
    plan["sites"][0]["vpn"] = {"encryption": "aes-128", "integrity": "sha1"}
    plan_path.write_text(yaml.safe_dump(plan, sort_keys=False))

    report, _ = check_stack("demo", project_dir=project)

    found = sorted(
        (v.policy, v.level, v.resource_type.rsplit(":", 1)[-1], v.message.split(";")[0])
        for v in report.violations
    )
    assert found == [
        ("vpn-strong-crypto", "mandatory", "IkePolicy", "authAlgorithm is sha1"),
        ("vpn-strong-crypto", "mandatory", "IkePolicy", "encryptionAlgorithm is aes-128"),
        ("vpn-strong-crypto", "mandatory", "IpSecPolicy", "authAlgorithm is sha1"),
        ("vpn-strong-crypto", "mandatory", "IpSecPolicy", "encryptionAlgorithm is aes-128"),
    ]
    assert all("paris" in v.resource for v in report.violations)
    assert report.mandatory_failed

    out = drctl("policy", "demo", "--project-dir", str(project))
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert len(lines) == 4
    assert all(line.startswith("MANDATORY vpn-strong-crypto: ") for line in lines)


RDP_TO_THE_WORLD = """
# A flat-script shortcut: a jump host's RDP opened to the Internet.
import pulumi_openstack as _os
_jump = _os.networking.SecGroup("demo-jump", name="demo-jump", delete_default_rules=True)
_os.networking.SecGroupRule("demo-jump-rdp", direction="ingress", ethertype="IPv4",
                            protocol="tcp", port_range_min=3389, port_range_max=3389,
                            remote_ip_prefix="0.0.0.0/0", security_group_id=_jump.id)
"""


def test_rdp_rule_open_to_the_world_fails(tmp_path):
    project = project_copy(tmp_path)
    with open(project / "stacks" / "__main__.py", "a") as f:
        f.write(RDP_TO_THE_WORLD)

    out = drctl("policy", "demo", "--project-dir", str(project), "--json")

    assert out.returncode == 1, out.stderr
    assert result_of(out.stdout)["ok"] is False
    assert result_of(out.stdout)["violations"] == [
        {
            "policy": "no-admin-ports-open-to-world",
            "level": "mandatory",
            "resource": "demo-jump-rdp",
            "type": "openstack:networking/secGroupRule:SecGroupRule",
            "message": "ingress from 0.0.0.0/0 opens 3389 (RDP); restrict remoteIpPrefix to the "
            "client's site subnets (reached through the VPN) or use remoteGroupId or an address "
            "group of the client's networks.",
        }
    ]


def test_psk_printed_nowhere(tmp_path):
    out = drctl("policy", "demo", "--json")
    from drctl.stack.config import load_stack

    for psk in load_stack("demo").psks.values():
        assert psk not in out.stdout + out.stderr


def test_larger_client_stack_passes_in_both_modes(tmp_path):
    project = project_copy(tmp_path)
    record_activation(project, "acme", "2026-11-20T02:00:00Z")
    for failover in (False, True):
        report, _ = check_stack("acme", failover=failover, project_dir=project, state_dir=tmp_path / "state")
        assert [v.line() for v in report.violations if v.level == "mandatory"] == []
        # Only the predicted RTO may warn: no drill measured acme, so it is advisory, on defaults.
        assert {v.policy for v in report.violations} <= {"predicted-rto-within-target"}
        assert all(v.level == "advisory" and "from default figures" in v.message for v in report.violations)


def test_pack_config_for_ci_carries_the_flag_and_the_plans_checks(tmp_path):
    path = tmp_path / "ci" / "policy-config.json"

    out = drctl("policy", "demo", "--write-pack-config", str(path))

    assert out.returncode == 0, out.stderr
    config = json.loads(path.read_text())
    assert config["recovered-server-only-in-failover"] == {"failover": False}
    servers = {s["name"]: s for s in config["dr-servers-have-checks"]["servers"]}
    plan = yaml.safe_load((REPO / "recovery_plans" / "demo.yaml").read_text())
    assert set(servers) == {s["name"] for s in plan["servers"]}
    for s in plan["servers"]:
        assert servers[s["name"]]["serverClass"] == s["class"]
        assert len(servers[s["name"]]["checks"]) == len(s.get("checks", []))


def test_pack_config_is_private_and_never_written_through_a_planted_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    path = tmp_path / "policy-config.json"
    path.symlink_to(victim)

    out = drctl("policy", "demo", "--write-pack-config", str(path))

    assert out.returncode == 15, out.stderr
    assert out.stderr.startswith(f"drctl: {path} is a symbolic link: drctl never writes through one")
    assert victim.read_text() == "root's file\n"
    path.unlink()
    assert drctl("policy", "demo", "--write-pack-config", str(path)).returncode == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and json.loads(path.read_text())


def test_a_stack_over_its_recorded_quota_fails_naming_quota_need_and_limit(tmp_path):
    project = project_copy(tmp_path)
    with open(project / "stacks" / "Pulumi.demo.yaml", "a") as f:
        f.write("  flexible-recovery:quotas:\n    security_group: 5\n")

    out = drctl("policy", "demo", "--project-dir", str(project), "--json")

    assert out.returncode == 1, out.stderr
    (v,) = result_of(out.stdout)["violations"]
    assert (v["policy"], v["level"], v["resource"]) == ("recovery-space-within-quotas", "mandatory", "demo")
    # demo: base + dns, ssh, sql, app, smb, web groups, and the project's default group
    assert v["message"].startswith(
        "quota security_group: the stack needs 8 (7 groups declared + the project's 'default' group) "
        "and the project allows 5;"
    )
    # CI's `pulumi preview --policy-pack` gets the same recorded quotas through the pack config
    path = tmp_path / "policy-config.json"
    assert (
        drctl("policy", "demo", "--project-dir", str(project), "--write-pack-config", str(path)).returncode
        == 1
    )
    quotas = json.loads(path.read_text())["recovery-space-within-quotas"]["quotas"]
    assert quotas["security_group"] == 5 and quotas["security_group_rule"] == 100


def test_acme_fits_neutrons_default_quotas_with_its_roles():
    report, _ = check_stack("acme")
    assert not [v for v in report.violations if v.policy == "recovery-space-within-quotas"]
    assert report.config["recovery-space-within-quotas"]["quotas"]["security_group"] == 10
