"""The pack entry `pulumi preview --policy-pack policies` runs: it builds the PolicyPack from the
rules module alone, even where drctl is not installed, without us starting its gRPC server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[2] / "policies"

# Runs policies/__main__.py as the Pulumi CLI would (a script, cwd elsewhere), with `drctl`
# unimportable and PolicyPack replaced by a recorder: the real one starts a server and blocks.
PROBE = """
import json, runpy, sys
sys.modules["drctl"] = None
import pulumi_policy
seen = {}
class RecordingPack:
    def __init__(self, name, policies, enforcement_level=None, **kwargs):
        seen["name"] = name
        seen["default_level"] = enforcement_level.value
        seen["policies"] = [[p.name, type(p).__name__, p.enforcement_level.value] for p in policies]
pulumi_policy.PolicyPack = RecordingPack
runpy.run_path(sys.argv[1], run_name="__main__")
print(json.dumps(seen))
"""


def test_pack_builds_every_rule_without_drctl(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(PACK_DIR / "__main__.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen["name"] == "flexible-recovery"
    assert seen["default_level"] == "mandatory"
    assert seen["policies"] == [
        ["backup-containers-private", "ResourceValidationPolicy", "mandatory"],
        ["backup-containers-versioned", "ResourceValidationPolicy", "mandatory"],
        ["backup-containers-protected", "ResourceValidationPolicy", "mandatory"],
        ["no-admin-ports-open-to-world", "StackValidationPolicy", "mandatory"],
        ["no-rules-on-default-security-group", "StackValidationPolicy", "mandatory"],
        ["vpn-strong-crypto", "ResourceValidationPolicy", "mandatory"],
        ["vpn-psk-secret", "ResourceValidationPolicy", "mandatory"],
        ["recovered-server-only-in-failover", "StackValidationPolicy", "mandatory"],
        ["dr-servers-have-checks", "StackValidationPolicy", "mandatory"],
        ["recovery-space-within-quotas", "StackValidationPolicy", "mandatory"],
        ["predicted-rto-within-target", "StackValidationPolicy", "advisory"],
    ]


def test_pack_project_file_names_the_python_runtime_and_its_requirements():
    import yaml

    project = yaml.safe_load((PACK_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"] == {"name": "python", "options": {"virtualenv": "venv"}}
    requirements = (PACK_DIR / "requirements.txt").read_text().split()
    assert any(r.startswith("pulumi-policy") for r in requirements)
