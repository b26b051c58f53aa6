"""Golden snapshots of the preview graph (`drctl preview STACK --json`), reviewed by hand.

Regenerate after an intended change with ``UPDATE_GOLDEN=1 .venv/bin/pytest tests/stack/test_golden.py``
and review the diff: every changed line is a change a real `pulumi up` would make.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from drctl.stack.preview import preview_stack

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
CASES = {
    "demo-nominal": ("demo", {}),
    "demo-failover": ("demo", {"failover": True}),
    "demo-failover-web01": ("demo", {"failover": True, "servers": ["web01"]}),
    "acme-nominal": ("acme", {}),
    "acme-failover": ("acme", {"failover": True}),
    "acme-failover-erp01": ("acme", {"failover": True, "servers": ["erp01"]}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_preview_matches_golden(case: str) -> None:
    stack, kwargs = CASES[case]
    got = json.dumps(preview_stack(stack, **kwargs).to_json(redact=True), indent=1, sort_keys=True) + "\n"
    path = GOLDEN / f"{case}.json"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(got)
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1 and review it"
    assert got == path.read_text(), f"preview of {case} changed: review, then UPDATE_GOLDEN=1"
