"""The type check sees the package as installed: ``.ci/mypy-path`` lays out ``drctl`` from
pyproject's package-dir, and mypy (configured in pyproject.toml) types ``drctl.*`` imports
through it instead of treating them as unknown."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / ".ci" / "mypy-path"


def _write(path: Path, text: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _fake_project(root: Path) -> None:
    """A project whose package `pkg` lives in `src/`, with a subpackage mapped from elsewhere."""
    _write(root / ".ci" / "mypy-path", SCRIPT.read_text())
    _write(
        root / "pyproject.toml",
        '[tool.setuptools]\npackage-dir = {"pkg" = "src", "pkg.extra" = "extra"}\n',
    )
    _write(root / "src" / "__init__.py")
    _write(root / "src" / "old.py", "OLD = 1\n")
    _write(root / "src" / "sub" / "__init__.py")
    _write(root / "src" / "__pycache__" / "old.cpython-311.pyc")
    _write(root / "extra" / "__init__.py")
    _write(root / "extra" / "rules.py", "RULES = 2\n")
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "python").symlink_to(sys.executable)


def _lay_out(root: Path) -> Path:
    subprocess.run(["bash", str(root / ".ci" / "mypy-path")], check=True, capture_output=True, timeout=60)
    return root / ".venv" / "mypy-path"


def test_layout_mirrors_package_dir_and_follows_added_and_removed_modules(tmp_path: Path) -> None:
    _fake_project(tmp_path)
    tree = _lay_out(tmp_path)
    assert (tree / "pkg" / "old.py").resolve() == (tmp_path / "src" / "old.py").resolve()
    assert (tree / "pkg" / "sub" / "__init__.py").is_file()
    assert (tree / "pkg" / "extra" / "rules.py").read_text() == "RULES = 2\n"
    assert not (tree / "pkg" / "__pycache__").exists()

    (tmp_path / "src" / "old.py").unlink()
    _write(tmp_path / "src" / "new.py", "NEW = 3\n")
    tree = _lay_out(tmp_path)
    assert (tree / "pkg" / "new.py").read_text() == "NEW = 3\n"
    assert not os.path.lexists(tree / "pkg" / "old.py")  # no dangling link left behind


def test_mypy_types_first_party_imports(tmp_path: Path) -> None:
    if not (REPO / ".venv" / "mypy-path" / "drctl").is_dir():
        pytest.fail("the mypy package layout is missing: run `bash .ci/venv`", pytrace=False)
    if shutil.which("mypy", path=str(Path(sys.executable).parent)) is None:
        pytest.fail("mypy is not installed in this venv: run `bash .ci/venv`", pytrace=False)
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from drctl.components.backup_vault import BackupVaultArgs\n"
        "from drctl.errors import DrctlError\n\n"
        'wrong: int = DrctlError("a message")\n'
        "missing = BackupVaultArgs.no_such_field\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), str(probe)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'expression has type "DrctlError", variable has type "int"' in result.stdout
    assert '"type[BackupVaultArgs]" has no attribute "no_such_field"' in result.stdout
    assert "import-not-found" not in result.stdout
