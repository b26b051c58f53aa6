"""Every benchmark script the docs name still starts: its imports resolve and its options parse.
(A refactor of a shared helper once left two of them failing at import, unseen until the next
measurement.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(
    p for p in (ROOT / "benchmarks").glob("*.py") if p.name != "__init__.py" and "argparse" in p.read_text()
)


def test_the_docs_name_only_benchmarks_that_exist() -> None:
    docs = (ROOT / "docs" / "benchmarks.md").read_text() + (ROOT / "README.md").read_text()
    named = {p.stem for p in SCRIPTS}
    assert {"restore_benchmark", "agent_benchmark", "wal_benchmark", "status_benchmark"} <= named
    for stem in named:
        assert stem in docs, (
            f"benchmarks/{stem}.py is described neither in docs/benchmarks.md nor in the README"
        )


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_a_benchmark_script_starts_and_shows_its_usage(script: Path) -> None:
    for argv in (
        [sys.executable, str(script), "--help"],
        [sys.executable, "-m", f"benchmarks.{script.stem}", "--help"],
    ):
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "usage:" in done.stdout
