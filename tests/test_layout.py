"""The layout rules a newcomer relies on: modules of scripts/ stay small or say why they are not."""

from __future__ import annotations

import ast
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
LIMIT = 400


def test_every_module_over_400_lines_says_why_in_its_docstring():
    unexplained = []
    for path in sorted(SCRIPTS.rglob("*.py")):
        text = path.read_text()
        if text.count("\n") <= LIMIT:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if "over 400 lines" not in doc:
            unexplained.append(f"{path.relative_to(SCRIPTS)} ({text.count(chr(10))} lines)")
    assert unexplained == [], (
        "split these modules along a real seam, or give the reason in a 'Size: ... over 400 lines' "
        f"paragraph of their docstring: {unexplained}"
    )


def test_no_flat_module_prefixes_left_at_the_top_of_the_package():
    """Concerns live in packages (plan/, stack/, activation/, runs/, nca/, demo/), not in prefixes."""
    prefixed = [
        p.name
        for p in SCRIPTS.glob("*.py")
        if p.stem.split("_")[0] in {"plan", "stack", "activation", "run", "report", "nca", "demo"}
    ]
    assert prefixed == []
