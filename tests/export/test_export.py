"""``drctl export``: the contract-end export as the client receives it, checked with the client's
own tools (sha256sum, qemu-img, openssl) and never with drctl: images identical to what was backed
up, reports whose signatures verify as the README says, no secret anywhere, nothing half-written."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from drctl.repo.manifest import chunk_key
from drctl.runs.store import RunStore
from drctl.stack.config import load_stack
from tests.conftest import demo_project
from tests.repo.fakes import MiB, make_image
from tests.runs.fixtures import demo_summary
from tests.support.events import read_events, result_of

PASSWORD = "export-test-Repo-pw1"
needs_qemu_img = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img (qemu-utils) missing")


def drctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("DRCTL_", "AWS_", "PULUMI_"))}
    full["DRCTL_PASSWORD"] = PASSWORD
    full.update(env or {})
    p = subprocess.run(
        [sys.executable, "-m", "drctl.cli", *args], capture_output=True, text=True, env=full, timeout=600
    )
    assert "Traceback" not in p.stderr and PASSWORD not in p.stdout + p.stderr, p.stderr
    return p


class Client:
    """A demo project whose repository is a directory, with backups and one signed drill report."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.repo = tmp / "repo"
        self.state = tmp / "state"
        self.project = demo_project(tmp, repository=str(self.repo), reports=str(tmp / "reports"))
        assert drctl("repo", "init", str(self.repo), "--chunk-size", "1").returncode == 0
        self.images: dict[str, list[Path]] = {}
        self.run_id = RunStore(self.state).record(demo_summary()).path.name

    def backup(self, server: str, seed: int, size: int = 12 * MiB + 3 * 512) -> Path:
        img = make_image(self.tmp / f"{server}-{seed}.img", size, seed=seed)
        b = drctl("backup", str(self.repo), "--server", server, "--disk", "system", str(img))
        assert b.returncode == 0, b.stderr
        self.images.setdefault(server, []).append(img)
        return img

    def export(self, to: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return drctl(
            "export",
            "demo",
            "--to",
            str(to),
            "--project-dir",
            str(self.project),
            "--state-dir",
            str(self.state),
            *args,
        )

    def secrets(self) -> list[bytes]:
        psks = list(load_stack("demo", self.project).psks.values())
        assert psks and all(len(p) >= 20 for p in psks)
        passphrase = (self.project / "stacks" / "demo.passphrase").read_text().strip()
        private_key = (self.state / "keys" / "report-signing.key").read_bytes()
        return [PASSWORD.encode(), passphrase.encode(), *(p.encode() for p in psks), private_key]


@pytest.fixture
def client(tmp_path) -> Client:
    c = Client(tmp_path)
    c.backup("web01", 1)
    c.backup("db01", 2)
    c.backup("db01", 3)  # db01's newer point
    return c


def raw_of(image: Path, tmp: Path) -> bytes:
    out = tmp / f"{image.stem}-{os.urandom(3).hex()}.raw"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(image), str(out)], check=True)
    return out.read_bytes()


@needs_qemu_img
def test_a_qcow2_export_checks_with_sha256sum_and_qemu_img_and_holds_no_secret(client, tmp_path):
    run_dir = client.state / "runs" / "demo" / client.run_id
    decision = b'{"requested_by": "Alice", "reason": "site rebuilt elsewhere"}\n'
    (run_dir / "deactivation-20260204T090000Z.json").write_bytes(decision)  # as deactivate records one
    to = tmp_path / "handover"
    p = client.export(to, "--json")
    assert p.returncode == 0, p.stderr
    events = read_events(p.stdout)
    assert [e["file"] for e in events if e["event"] == "export-image"] == [
        "images/db01/system.qcow2",
        "images/web01/system.qcow2",
    ]
    result = result_of(p.stdout)
    # What the client runs, in the directory, with the standard tools.
    sums = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=to, capture_output=True, text=True)
    assert sums.returncode == 0, sums.stdout + sums.stderr
    listed = {line.split(": ")[0] for line in sums.stdout.splitlines()}
    on_disk = {f.relative_to(to).as_posix() for f in to.rglob("*") if f.is_file()} - {"SHA256SUMS"}
    assert listed == on_disk and len(on_disk) == result["files"] - 1
    for server, newest in (("web01", client.images["web01"][-1]), ("db01", client.images["db01"][-1])):
        image = to / "images" / server / "system.qcow2"
        check = subprocess.run(["qemu-img", "check", str(image)], capture_output=True, text=True)
        assert check.returncode == 0 and "No errors" in check.stdout, check.stdout
        info = json.loads(subprocess.check_output(["qemu-img", "info", "--output=json", str(image)]))
        assert info["format"] == "qcow2" and info["virtual-size"] == newest.stat().st_size
        assert raw_of(image, tmp_path) == newest.read_bytes()  # the latest point, byte for byte
    # Sparse: a disk with zero runs takes less than its size.
    web = to / "images" / "web01" / "system.qcow2"
    assert web.stat().st_blocks * 512 < client.images["web01"][-1].stat().st_size
    # The plan as the stack uses it; settings without the PSKs; the report as signed.
    assert (to / "plan" / "demo.yaml").read_bytes() == (
        client.project / "recovery_plans" / "demo.yaml"
    ).read_bytes()
    settings = json.loads((to / "stack" / "settings.json").read_text())
    assert settings["omitted_secrets"] == ["vpn_psks"] and "vpn_psks" not in settings["settings"]
    assert settings["settings"]["backup_repository"] == str(client.repo)
    for name in ("summary.json", "report.html", "report.sig", "deactivation-20260204T090000Z.json"):
        assert (to / "reports" / client.run_id / name).read_bytes() == (run_dir / name).read_bytes()
    assert result["reports"] == [
        {
            "run_id": client.run_id,
            "kind": "drill",
            "mode": "test",
            "signature_verified": True,
            "files": ["deactivation-20260204T090000Z.json", "report.html", "report.sig", "summary.json"],
        }
    ]
    # No secret in any file, and nothing readable by others.
    for f in to.rglob("*"):
        assert f.stat().st_mode & 0o077 == 0, f
        if f.is_file():
            data = f.read_bytes()
            for secret in client.secrets():
                assert secret not in data, f"a secret in {f}"
    assert not (to / ".partial").exists()
    readme = (to / "README.txt").read_text()
    for words in ("sha256sum -c SHA256SUMS", "qemu-img info", "qemu-img convert", "openssl pkeyutl -verify"):
        assert words in readme


@needs_qemu_img
def test_the_readme_s_signature_checks_work_with_openssl_and_python(client, tmp_path):
    """The commands the README gives, run as written: a report verifies, an edited one does not."""
    to = tmp_path / "handover"
    assert client.export(to).returncode == 0
    readme = (to / "README.txt").read_text()
    shell = re.search(r"\n    D=reports/RUN_ID\n(.*?)\n\n", readme, re.S).group(1)
    shell = "\n".join(line[4:] for line in shell.splitlines()).replace("/tmp/", f"{tmp_path}/")
    script = re.search(r"    python3 - reports/RUN_ID <<'EOF'\n(.*?)\n    EOF", readme, re.S).group(1)
    script = "\n".join(line[4:] for line in script.splitlines())

    def verify(run: str) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
        o = subprocess.run(
            ["bash", "-c", f"D=reports/{run}\n{shell}"], cwd=to, capture_output=True, text=True
        )
        p = subprocess.run(
            [sys.executable, "-", f"reports/{run}"], input=script, cwd=to, capture_output=True, text=True
        )
        return o, p

    o, p = verify(client.run_id)
    assert "Signature Verified Successfully" in o.stdout, o.stdout + o.stderr
    assert p.returncode == 0 and "signature OK" in p.stdout, p.stderr
    html = to / "reports" / client.run_id / "report.html"
    html.write_text(html.read_text().replace("db01", "db02", 1))
    o, p = verify(client.run_id)
    assert o.returncode != 0 and "Signature Verified Successfully" not in o.stdout
    assert p.returncode != 0 and "InvalidSignature" in p.stderr
    sums = subprocess.run(
        ["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=to, capture_output=True, text=True
    )
    assert sums.returncode == 1 and f"reports/{client.run_id}/report.html: FAILED" in sums.stdout


def test_all_points_as_raw_images_each_identical_to_what_was_backed_up(client, tmp_path):
    to = tmp_path / "all"
    p = client.export(to, "--all-points", "--format", "raw", "--json")
    assert p.returncode == 0, p.stderr
    images = result_of(p.stdout)["images"]
    assert [(i["server"], i["format"]) for i in images] == [
        ("db01", "raw"),
        ("db01", "raw"),
        ("web01", "raw"),
    ]
    for entry, original in zip(images, [*client.images["db01"], *client.images["web01"]], strict=True):
        assert re.fullmatch(
            rf"images/{entry['server']}/system-\d{{8}}T\d{{6}}Z-{entry['point'][:8]}\.raw", entry["file"]
        )
        assert (to / entry["file"]).read_bytes() == original.read_bytes()
    index = json.loads((to / "export.json").read_text())
    assert index["images"] == images and index["format"] == "raw"
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=to).returncode == 0


def test_a_non_empty_target_is_refused_before_anything_is_read_and_left_as_it_was(client, tmp_path):
    to = tmp_path / "busy"
    to.mkdir(mode=0o700)
    (to / "keep.txt").write_text("the client's own file")
    p = client.export(to)
    assert p.returncode == 1 and "is not empty" in p.stderr and str(to) in p.stderr
    assert [f.name for f in to.iterdir()] == ["keep.txt"]
    f = tmp_path / "a-file"
    f.write_text("x")
    assert client.export(f).returncode == 1
    under_a_file = client.export(f / "export")
    assert under_a_file.returncode == 15 and f"{f}/export" in under_a_file.stderr, under_a_file.stderr
    assert f.read_text() == "x"


def test_a_damaged_backup_fails_the_export_and_leaves_nothing_behind(client, tmp_path):
    from drctl.repo.repository import open_repository
    from drctl.storage import open_storage

    repo = open_repository(open_storage(str(client.repo)), PASSWORD.encode())
    web = next(p for p in repo.load_points() if p.server == "web01")
    victim = client.repo / chunk_key(sorted(web.chunk_ids())[0])
    raw = bytearray(victim.read_bytes())
    raw[40] ^= 0x01
    victim.write_bytes(bytes(raw))
    to = tmp_path / "handover"
    p = client.export(to, "--format", "raw")
    assert p.returncode == 13, p.stderr
    assert victim.relative_to(client.repo).name in p.stderr
    assert not to.exists()  # no partial export, not even the directory this run created
    # An empty directory given by the client stays, empty.
    to.mkdir(mode=0o700)
    assert client.export(to, "--format", "raw").returncode == 13 and list(to.iterdir()) == []


@pytest.mark.integration
@pytest.mark.slow
def test_an_exported_demo_image_boots_in_the_sandbox(tmp_path):
    """dns01's demo disk, backed up, exported as qcow2 and booted from that file (no drctl in the
    way): it answers SSH on its production address in the sandbox's isolated namespace."""
    from datetime import UTC, datetime, timedelta

    from drctl.activation.targets.sandbox import Sandbox
    from drctl.activation.verify.checks import run_checks_subprocess
    from drctl.demo.images import build_demo_images
    from drctl.plan.load import load_plan
    from drctl.plan.model import Check
    from tests.activation.test_sandbox_integration import (
        BOOT_TIMEOUT_S,
        _assert_nothing_left,
        _require_tools,
        _run_id,
    )

    _require_tools()
    plan = load_plan(Path(__file__).resolve().parents[2] / "recovery_plans" / "demo.yaml")
    demo = build_demo_images(plan, servers=["dns01"])
    c = Client(tmp_path)
    b = drctl("backup", str(c.repo), "--server", "dns01", "--disk", "system", str(demo.images["dns01"]))
    assert b.returncode == 0, b.stderr
    to = tmp_path / "handover"
    p = c.export(to)
    assert p.returncode == 0, p.stderr
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=to).returncode == 0
    image = to / "images" / "dns01" / "system.qcow2"
    assert subprocess.run(["qemu-img", "check", "-q", str(image)]).returncode == 0
    dns = plan.server("dns01")
    sb = Sandbox(_run_id(), plan, state_dir=tmp_path / "sb", ssh_identity_file=demo.ssh_identity_file)
    with sb:
        g = sb.start_server(dns, image, disk_format="qcow2")
        sb.wait_ssh(g, timeout_s=BOOT_TIMEOUT_S)
        checks = [
            Check("command", "test $(hostname) = dns01"),
            Check("command", "systemctl is-active dnsmasq"),
        ]
        results = run_checks_subprocess(
            sb.ssh_url(dns), checks, datetime.now(UTC) + timedelta(seconds=180), prefix=sb.prefix
        )
        pid = g.pid
    _assert_nothing_left(sb.namespace, sb.run_dir, [pid])
    assert [r.ok for r in results] == [True, True], [r.detail for r in results]
