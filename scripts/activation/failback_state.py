"""What a failback has done so far, per server, kept in the state directory so that an interrupted
failback re-runs only what is missing, and ``drctl deactivate`` knows which servers came home.

One JSON file per disaster run, ``<state>/failback/<stack>/<run_id>.json`` (0600), rewritten whole
(temporary file, fsync, rename) after every step::

    {"run_id": ..., "stack": ..., "failback_id": ..., "servers": {
        "db01": {"synced": {"cut_over": ..., "method": "freeze", "bytes_moved": ...,
                            "points": {"system": {"id": ..., "created": ..., "size": ...}}},
                 "stopped": true,
                 "restored": {"system": {"target": ..., "kind": ..., "started": ..., "ended": ...}},
                 "verified": {"at": ..., "started": ..., "checks": [...]},
                 "released": true}}}

Steps, in order: ``synced`` (the last backup; its time is the data cut-over), ``stopped`` (the
recovery guest ended), ``restored`` (every disk on site, verified), ``verified`` (booted from the
site images, the plan's checks passed), ``released`` (its recovery resources removed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from drctl.errors import LocalIOError
from drctl.paths import check_stack_name
from drctl.private_files import write_private_file

STEPS = ("synced", "stopped", "restored", "verified", "released")


class FailbackState:
    """The progress record of the failback of one disaster run."""

    def __init__(self, state_dir: Path, stack: str, run_id: str) -> None:
        self.path = Path(state_dir) / "failback" / check_stack_name(stack) / f"{run_id}.json"
        self.doc: dict[str, Any] = {"run_id": run_id, "stack": stack, "servers": {}}
        if self.path.exists():
            try:
                doc = json.loads(self.path.read_text())
                if not isinstance(doc, dict) or not isinstance(doc.get("servers"), dict):
                    raise ValueError("not a failback record")
            except (OSError, ValueError) as e:
                raise LocalIOError(
                    f"the failback record {self.path} is unreadable ({e}); move it away to start the "
                    "failback of this run again from its first step"
                ) from e
            self.doc = doc

    def server(self, name: str) -> dict[str, Any]:
        return self.doc["servers"].setdefault(name, {})

    def done(self, name: str, step: str) -> bool:
        return bool(self.doc["servers"].get(name, {}).get(step))

    def servers_done(self, step: str) -> set[str]:
        return {name for name, s in self.doc["servers"].items() if s.get(step)}

    def mark(self, name: str, step: str, value: Any = True) -> None:
        """Record ``step`` of server ``name`` and write the file (atomically)."""
        self.server(name)[step] = value
        self.save()

    def save(self) -> None:
        """Write the record: 0600, a new file renamed into place (never half-written)."""
        write_private_file(self.path, json.dumps(self.doc, indent=2, sort_keys=True) + "\n")


def failed_back_servers(state_dir: Path, stack: str, run_id: str) -> set[str]:
    """The servers of run ``run_id`` whose failback is complete (verified on site and released)."""
    path = Path(state_dir) / "failback" / check_stack_name(stack) / f"{run_id}.json"
    if not path.exists():
        return set()
    return FailbackState(state_dir, stack, run_id).servers_done("released")
