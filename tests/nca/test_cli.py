"""``drctl nca render``: files written private, the PSK only from the stack or the environment."""

from __future__ import annotations

import base64
import os
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


def render(out: Path, *extra: str) -> int:
    return main(["nca", "render", "demo", "--site", "paris", "--out", str(out), *extra])


def test_render_refuses_outputs_another_user_could_read_or_redirect(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere)
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, 65534, 65534)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    open_parent = tmp_path / "open-parent"
    open_parent.mkdir()
    open_parent.chmod(0o777)
    cases = {
        tmp_path / "link": "is a symbolic link",
        foreign: "belongs to uid 65534, not to you",
        shared: "is writable by other users",
        open_parent / "nca": "writable by every user and not sticky",
    }
    for out, reason in cases.items():
        assert render(out, "--force") == 15
        err = capsys.readouterr().err
        assert err.startswith("drctl: ") and reason in err and "Traceback" not in err
    assert list(elsewhere.iterdir()) == list(foreign.iterdir()) == list(shared.iterdir()) == []
    assert list(open_parent.iterdir()) == []


def test_render_replaces_an_existing_bundle_only_with_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nca-paris"
    assert render(out) == 0
    first = (out / "swanctl.conf").read_text()
    (out / "swanctl.conf").write_text("edited by hand")
    assert render(out) == 15
    assert (
        "is not empty" in capsys.readouterr().err and (out / "swanctl.conf").read_text() == "edited by hand"
    )
    assert render(out, "--force") == 0
    assert (out / "swanctl.conf").read_text() == first
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nca-paris"]
    # --force replaces an earlier bundle, never a directory holding anything else (`--out ~`).
    (out / "notes.txt").write_text("mine")
    assert render(out, "--force") == 15
    assert "holds notes.txt, which drctl did not write" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"


def test_render_without_stack_reads_no_plan_outside_the_projects_plans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A plan next to the project's plans, which `nca render ../x` must not reach through
    # recovery_plans/../x.yaml.
    (tmp_path / "project" / "recovery_plans").mkdir(parents=True)
    (tmp_path / "x.yaml").write_text((ROOT / "recovery_plans" / "demo.yaml").read_text())
    monkeypatch.setenv("DRCTL_PROJECT_DIR", str(tmp_path / "project"))
    monkeypatch.setenv("DRCTL_VPN_PSK", PSK)
    monkeypatch.chdir(tmp_path / "project")
    with pytest.raises(SystemExit) as e:
        main(["nca", "render", "../x", "--site", "paris", "--out", str(tmp_path / "out")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("drctl: nca render: argument stack: stack name '../x' is not valid")
    assert not (tmp_path / "out").exists()
    # The library entry point checks too (the lab and the tests call it without argparse).
    from drctl.commands.nca_cmds import load_inputs
    from drctl.paths import InvalidStackName

    with pytest.raises(InvalidStackName):
        load_inputs("../x", "paris")
