"""``drctl nca render``: files written private, the PSK only from the stack or the environment."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from drctl.cli import main
from drctl.stack.config import load_stack

ROOT = Path(__file__).resolve().parents[2]
PSK = "cli-test-psk-0123456789abcdef"


@pytest.fixture(autouse=True)
def at_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("DRCTL_VPN_ENDPOINT", raising=False)


def test_render_writes_private_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DRCTL_VPN_PSK", PSK)
    out = tmp_path / "nca-paris"
    assert (
        main(["nca", "render", "demo", "--site", "paris", "--out", str(out), "--endpoint", "198.51.100.77"])
        == 0
    )
    names = sorted(p.name for p in out.iterdir())
    assert names == ["README.txt", "dnsmasq.conf", "nca.env", "swanctl.conf"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert all(stat.S_IMODE((out / n).stat().st_mode) == 0o600 for n in names)
    conf = (out / "swanctl.conf").read_text()
    assert "remote_addrs = 198.51.100.77" in conf
    # The stack's Pulumi secret is the key the cloud side uses: it wins over the environment.
    stack_psk = load_stack("demo").psk("paris")
    secret = next(line.split("= ", 1)[1] for line in conf.splitlines() if "secret = " in line)
    assert base64.b64decode(secret[2:]).decode() == stack_psk != PSK
    printed = capsys.readouterr()
    assert stack_psk not in printed.out + printed.err
    assert str(out / "swanctl.conf") in printed.out


def test_render_without_stack_takes_plan_and_env_psk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A client with a plan but no stack file yet: the project's recovery_plans/<stack>.yaml +
    # $DRCTL_VPN_PSK.
    (tmp_path / "recovery_plans").mkdir()
    (tmp_path / "recovery_plans" / "nostack.yaml").write_text(
        (ROOT / "recovery_plans" / "demo.yaml").read_text()
    )
    monkeypatch.setenv("DRCTL_PROJECT_DIR", str(tmp_path))
    monkeypatch.delenv("DRCTL_VPN_PSK", raising=False)
    code = main(["nca", "render", "nostack", "--site", "paris", "--out", str(tmp_path / "x")])
    assert code == 1
    err = capsys.readouterr().err
    assert "no VPN pre-shared key" in err and "DRCTL_VPN_PSK" in err
    assert not (tmp_path / "x").exists()
    monkeypatch.setenv("DRCTL_VPN_PSK", PSK)
    assert main(["nca", "render", "nostack", "--site", "paris", "--out", str(tmp_path / "x")]) == 0
    assert (tmp_path / "x" / "swanctl.conf").exists()


def test_render_refusal_is_exit_1_with_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "recovery_plans").mkdir()
    (tmp_path / "recovery_plans" / "nostack.yaml").write_text(
        (ROOT / "recovery_plans" / "demo.yaml").read_text()
    )
    monkeypatch.setenv("DRCTL_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("DRCTL_VPN_PSK", "too-short")
    code = main(["nca", "render", "nostack", "--site", "paris", "--out", str(tmp_path / "x")])
    assert code == 1
    err = capsys.readouterr().err
    assert "drctl: cannot render the NCA bundle of site paris (client demo)" in err
    assert "9 characters" in err and "too-short" not in err
    assert not (tmp_path / "x").exists()


def test_psk_is_never_an_argument(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as e:
        main(["nca", "render", "demo", "--site", "paris", "--out", str(tmp_path), "--psk", PSK])
    assert e.value.code == 2
