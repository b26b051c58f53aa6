"""Stack-file secrets: Pulumi's passphrase format, set-secret, and the wrong-passphrase path."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from drctl.stack.config import StackConfigInvalid, load_stack, set_secret, set_value
from drctl.stack.secrets import SecretValueInvalid, WrongPassphrase, new_encryption_salt, open_encryption_salt

REPO_ROOT = Path(__file__).resolve().parents[2]

DRCTL = str(Path(REPO_ROOT) / ".venv" / "bin" / "drctl")
# From pulumi/pulumi pkg/secrets/passphrase/manager_test.go: this state opens with "password".
PULUMI_STATE = "v1:fozI5u6B030=:v1:F+6ZduKKd8G0/V7L:PGMFeIzwobWRKmEAzUdaQHqC5mMRIQ=="


def test_state_written_by_pulumi_opens_with_its_passphrase_only():
    crypter = open_encryption_salt("password", PULUMI_STATE, where="Pulumi.x.yaml")
    assert crypter.decrypt(crypter.encrypt("hello")) == "hello"
    with pytest.raises(WrongPassphrase, match="Pulumi.x.yaml: the passphrase does not open"):
        open_encryption_salt("password123", PULUMI_STATE, where="Pulumi.x.yaml")


def test_values_are_aes256gcm_under_pbkdf2_sha256_1m_of_the_salt():
    crypter = new_encryption_salt("correct horse")
    value = crypter.encrypt("s3cret-psk")
    m = re.fullmatch(r"v1:([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)", value)
    assert m, value
    salt = base64.b64decode(crypter.encryption_salt.split(":")[1])
    assert len(salt) == 8
    # Decrypt independently of drctl.stack.secrets, as the Go code does.
    key = hashlib.pbkdf2_hmac("sha256", b"correct horse", salt, 1_000_000, 32)
    nonce, ct = base64.b64decode(m.group(1)), base64.b64decode(m.group(2))
    assert len(nonce) == 12
    assert AESGCM(key).decrypt(nonce, ct, None) == b"s3cret-psk"


def test_every_flipped_byte_of_a_value_is_refused():
    crypter = new_encryption_salt("pp")
    nonce_b64, ct_b64 = crypter.encrypt("a-psk-of-some-length")[3:].split(":")
    ct = bytearray(base64.b64decode(ct_b64))
    for i in range(len(ct)):
        bad = bytearray(ct)
        bad[i] ^= 0x01
        with pytest.raises(SecretValueInvalid, match="integrity"):
            crypter.decrypt(f"v1:{nonce_b64}:{base64.b64encode(bytes(bad)).decode()}")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project (Pulumi.yaml, stacks, plans) to write stack files in."""
    for name in ("Pulumi.yaml", "stacks", "recovery_plans"):
        src = REPO_ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    return tmp_path


def test_set_secret_round_trip_keeps_other_secrets(project, monkeypatch):
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    before = load_stack("acme", project).psks
    set_secret("acme", "vpn_psks.lyon", "a-new-lyon-key-of-32-characters!", project)
    after = load_stack("acme", project)
    assert after.psks["lyon"] == "a-new-lyon-key-of-32-characters!"
    assert after.psks["marseille"] == before["marseille"]
    text = (project / "stacks/Pulumi.acme.yaml").read_text()
    assert "a-new-lyon-key" not in text
    assert text.startswith("# Stack of client")  # the header comment survives the rewrite
    doc = yaml.safe_load(text)
    assert set(doc["config"]["flexible-recovery:vpn_psks"]["lyon"]) == {"secure"}


def test_set_secret_creates_the_salt_of_a_stack_without_one(project, monkeypatch):
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "fresh stack passphrase")
    path = project / "stacks/Pulumi.newco.yaml"
    path.write_text(
        "config:\n  flexible-recovery:plan: recovery_plans/demo.yaml\n"
        "  flexible-recovery:flavor_map: [{name: f1, vcpus: 8, ram_mb: 65536}]\n"
    )
    set_secret("newco", "vpn_psks.paris", "p" * 32, project)
    doc = yaml.safe_load(path.read_text())
    assert doc["encryptionsalt"].startswith("v1:")
    assert load_stack("newco", project).psk("paris") == "p" * 32


def test_shipped_stacks_hold_long_random_psks_for_every_site():
    for stack in ("demo", "acme"):
        cfg = load_stack(stack)
        assert set(cfg.psks) == {s.name for s in cfg.plan.sites}
        assert all(len(p) >= 32 for p in cfg.psks.values())
        assert len(set(cfg.psks.values())) == len(cfg.psks)
        assert cfg.secret_keys == {"vpn_psks"}


def test_plaintext_psks_are_refused(project):
    path = project / "stacks/Pulumi.demo.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["config"]["flexible-recovery:vpn_psks"] = {"paris": "plain-text-psk-plain-text-psk"}
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(StackConfigInvalid, match="vpn_psks must hold secrets"):
        load_stack("demo", project)


def run_drctl(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess:
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_CONFIG_PASSPHRASE")}
    full_env.update(env or {})
    return subprocess.run(
        [DRCTL, *args], input=stdin, capture_output=True, text=True, env=full_env, timeout=120
    )


def test_wrong_passphrase_exits_1_naming_the_stack_file():
    r = run_drctl("preview", "demo", env={"PULUMI_CONFIG_PASSPHRASE": "not the demo passphrase"})
    assert r.returncode == 1
    assert "stacks/Pulumi.demo.yaml: the passphrase does not open" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_set_secret_reads_stdin_and_never_echoes(project):
    secret = "from-stdin-0123456789-abcdefghijkl"
    r = run_drctl(
        "stack", "set-secret", "demo", "vpn_psks.paris", "--project-dir", str(project), stdin=secret + "\n"
    )
    assert r.returncode == 0, r.stderr
    assert secret not in r.stdout + r.stderr
    assert load_stack("demo", project).psk("paris") == secret


def test_set_value_writes_a_plain_value_and_never_over_a_secret(project, monkeypatch):
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE_FILE", str(project / "stacks" / "acme.passphrase"))
    before = load_stack("acme", project)
    set_value("acme", "flexible-recovery:agent_keys.dc01", "ed25519:" + "ab" * 32, project)
    after = load_stack("acme", project)
    assert after.values["agent_keys"] == {"dc01": "ed25519:" + "ab" * 32}
    assert "agent_keys" not in after.secret_keys and after.psks == before.psks  # secrets untouched
    assert (project / "stacks" / "Pulumi.acme.yaml").read_text().startswith("#")  # header kept
    for key in ("vpn_psks.lyon", "vpn_psks", "vpn_psks.lyon.x"):
        with pytest.raises(StackConfigInvalid):
            set_value("acme", key, "plain", project)
    assert load_stack("acme", project).psks == before.psks


def test_writes_keep_every_comment_and_line_the_operator_wrote(project, monkeypatch):
    """A stack file is the operator's: drctl adds its value and changes nothing else (comments,
    key order, quoting, long lines), and a refused write leaves it byte for byte."""
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE_FILE", str(project / "stacks" / "acme.passphrase"))
    path = project / "stacks" / "Pulumi.acme.yaml"
    path.write_text(path.read_text() + "  # a note the operator left at the end\n")
    before = path.read_text().splitlines()
    lyon = before.index("    lyon:") + 1  # the one line set_secret replaces
    assert "secure:" in before[lyon] and sum("#" in line for line in before) >= 2
    path.chmod(0o640)
    set_value("acme", "flexible-recovery:agent_keys.dc01", "ed25519:" + "cd" * 32, project)
    set_secret("acme", "vpn_psks.lyon", "q" * 40, project)
    after = path.read_text().splitlines()
    kept = before[:lyon] + before[lyon + 1 :]
    assert [line for line in after if line in kept] == kept  # every other line, in its order
    assert len(after) == len(before) + 2  # plus agent_keys: and its one entry
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    assert load_stack("acme", project).psk("lyon") == "q" * 40
    frozen = path.read_bytes()
    with pytest.raises(StackConfigInvalid):
        set_value("acme", "vpn_psks.lyon", "plain", project)
    assert path.read_bytes() == frozen
