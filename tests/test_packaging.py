"""``pip install .`` (not editable) into a fresh virtualenv, then ``drctl`` used outside the checkout.

What an operator's machine has: the package built from the repository and nothing else of the
checkout, so the plan schema, the NCA templates and the report template must ship as package data.

pip builds the package the normal way (PEP 517, with the project venv's setuptools as the build
backend, so the test needs no package index) from a copy of the repository, so no build files
land in the checkout. The fresh venv sees the project venv's site-packages through one
plain path line in a ``.pth`` file: the dependencies are not downloaded a second time, and the
project venv's own ``.pth`` hooks (among them drctl's editable-install finder) do not run there,
so ``drctl`` itself can only come from the build. A test checks that it does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.runs.fixtures import demo_summary

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
# Not part of a source tree a user would install from (see .gitignore), or large and irrelevant.
NOT_SOURCE = (".git", ".venv", "venv", ".state", "out", "build", "*.egg-info", "__pycache__", "*_cache")
# Variables that would point the installed drctl back at this checkout or at a test's state.
CHECKOUT_ENV = (
    "DRCTL_PROJECT_DIR",
    "DRCTL_STATE_DIR",
    "PULUMI_CONFIG_PASSPHRASE",
    "PULUMI_CONFIG_PASSPHRASE_FILE",
    "DRCTL_VPN_PSK",
    "DRCTL_VPN_ENDPOINT",
    "PYTHONPATH",
    "VIRTUAL_ENV",
)


@dataclass(frozen=True)
class Installed:
    venv: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def package_dir(self) -> Path:
        out = self.run(str(self.python), "-c", "import drctl, os; print(os.path.dirname(drctl.__file__))")
        assert out.returncode == 0, out.stderr
        return Path(out.stdout.strip())

    def run(self, *argv: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if k not in CHECKOUT_ENV}
        environ.update(env)
        return subprocess.run(
            list(argv), cwd=cwd, env=environ, capture_output=True, text=True, timeout=120, check=False
        )

    def drctl(self, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.venv / "bin" / "drctl"), *args, cwd=cwd, **env)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("packaging")
    source = base / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
    )
    deps = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "project-venv-dependencies.pth").write_text("".join(f"{p}\n" for p in deps))
    inst = Installed(venv)
    pip = inst.run(
        str(inst.python),
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-build-isolation",
        "--no-input",
        "--quiet",
        str(source),
        cwd=base,
    )
    if pip.returncode != 0:
        pytest.fail(f"pip install . failed (exit {pip.returncode}):\n{pip.stderr[-3000:]}", pytrace=False)
    return inst


def _files(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def test_the_installed_drctl_comes_from_the_build_with_every_module_and_data_file(installed):
    pkg = installed.package_dir
    assert pkg.is_relative_to(installed.venv), f"drctl imported from {pkg}, not from the fresh venv"
    shipped = _files(pkg)
    expected = (
        _files(REPO / "scripts")
        | {f"components/{f}" for f in _files(REPO / "components")}
        | {f"policies/{f}" for f in _files(REPO / "policies") if f.endswith(".py")}
    )
    assert {
        "plan/schema.json",
        "runs/templates/report.html.j2",
        "nca/templates/nca-swanctl.conf.j2",
    } <= expected
    missing = sorted(expected - shipped)
    assert not missing, f"not in the built package (pyproject.toml packages/package-data): {missing}"


def test_validate_a_plan_outside_the_checkout(installed, tmp_path):
    (tmp_path / "demo.yaml").write_text((REPO / "recovery_plans/demo.yaml").read_text())
    plan = yaml.safe_load((REPO / "recovery_plans/demo.yaml").read_text())
    plan["servers"][0]["class"] = "gold"  # only the JSON Schema knows the protection classes
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(plan))

    ok = installed.drctl("validate", "demo.yaml", cwd=tmp_path)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "demo.yaml: ok (5 servers, 1 sites)\n", "")

    bad = installed.drctl("validate", "broken.yaml", cwd=tmp_path)
    assert bad.returncode == 1
    assert bad.stderr.startswith("broken.yaml: servers[0].class: "), bad.stderr
    assert "Traceback" not in bad.stderr


def test_nca_render_in_a_project_outside_the_checkout(installed, tmp_path):
    for name in (
        "Pulumi.yaml",
        "stacks/Pulumi.demo.yaml",
        "stacks/demo.passphrase",
        "recovery_plans/demo.yaml",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes((REPO / name).read_bytes())

    r = installed.drctl("nca", "render", "demo", "--site", "paris", "--out", "nca-paris", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "nca-paris"
    assert sorted(p.name for p in out.iterdir()) == ["README.txt", "dnsmasq.conf", "nca.env", "swanctl.conf"]
    assert "remote_addrs = 198.51.100.1" in (out / "swanctl.conf").read_text()
    assert "192.168.20.100" in (out / "dnsmasq.conf").read_text()  # the users LAN's DHCP range


def test_a_run_report_is_rendered_and_verified_by_the_installed_package(installed, tmp_path):
    summary = demo_summary()
    (tmp_path / "summary.json").write_text(summary.to_json())
    state = tmp_path / "state"
    record = (
        "import sys; from pathlib import Path\n"
        "from drctl.runs.model import RunSummary\n"
        "from drctl.runs.store import RunStore\n"
        "run = RunStore(Path(sys.argv[2])).record(RunSummary.from_json(Path(sys.argv[1]).read_text()))\n"
        "print(run.html_path)\n"
    )
    r = installed.run(str(installed.python), "-c", record, "summary.json", str(state), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    page = Path(r.stdout.strip()).read_text()
    assert "Demo SARL" in page and summary.run_id in page
    assert all(s.name in page for s in summary.servers)

    listed = installed.drctl("runs", "demo", cwd=tmp_path, DRCTL_STATE_DIR=str(state))
    assert listed.returncode == 0 and summary.run_id in listed.stdout, listed.stderr
    verified = installed.drctl("report", "verify", summary.run_id, cwd=tmp_path, DRCTL_STATE_DIR=str(state))
    assert verified.returncode == 0, verified.stderr
    assert "signature valid" in verified.stdout


def test_the_installed_console_serves_its_templates_and_stylesheet(installed, tmp_path):
    import re
    import urllib.request

    for name in ("Pulumi.yaml", "stacks/Pulumi.demo.yaml", "recovery_plans/demo.yaml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes((REPO / name).read_bytes())
    environ = {k: v for k, v in os.environ.items() if k not in CHECKOUT_ENV}
    environ["DRCTL_STATE_DIR"] = str(tmp_path / "state")
    serve = [
        str(installed.venv / "bin" / "drctl"),
        "console",
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--status-every",
        "0",
    ]
    proc = subprocess.Popen(serve, cwd=tmp_path, env=environ, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+)/", line)
        assert m, line
        with urllib.request.urlopen(f"{m.group(1)}/login", timeout=30) as page:
            assert page.status == 200 and b'name="csrf_token"' in page.read()
        with urllib.request.urlopen(f"{m.group(1)}/static/console.css", timeout=30) as css:
            assert css.status == 200 and b"--accent" in css.read()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
