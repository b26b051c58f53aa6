"""``drctl deactivate``: return a stack to nominal, removing the servers of its active run.

After a *disaster* activation the recovered servers hold the production data written since the
activation: deleting them loses it. ``drctl failback`` (:mod:`drctl.activation.failback`) brings
that data home; once every server of the run that came up is failed back (recorded in the
failback state), the run is deactivated. Otherwise the deactivation is refused unless the
operator explicitly discards those changes: ``--discard-disaster-changes`` by a plan contact who
may activate, with a reason and a typed confirmation (the client id on a terminal, or ``--yes``).
That decision is recorded in the run, locally and in the client's report container, before
anything is deleted.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drctl.activation.guards import ask_on_terminal, authorised_contact, confirm_discard
from drctl.errors import InvalidInput, LocalIOError
from drctl.paths import check_stack_name
from drctl.runs.model import utc_now
from drctl.runs.store import RunNotFound, RunStore
from drctl.stack.config import StackConfig, load_stack
from drctl.storage import open_storage

log = logging.getLogger(__name__)


class DisasterChangesAtRisk(InvalidInput):
    """Deactivating would delete servers that hold production data written since a disaster
    activation."""


@dataclass(frozen=True)
class DiscardApproval:
    """An operator's decision to delete a disaster activation's servers with their changes."""

    requested_by: str
    reason: str
    yes: bool = False  # confirmed on the command line instead of typing the client id


def deactivate(
    stack: str,
    state_dir: Path,
    *,
    project_dir: Path | None = None,
    discard: DiscardApproval | None = None,
    ask: Callable[[str], str] = ask_on_terminal,
    is_tty: bool | None = None,
) -> dict[str, Any]:
    """Return ``stack`` to nominal: the local sandbox of its active run removed (or, for the
    cloud, the failover flag set back off by ``pulumi up``), restored images deleted.

    A disaster activation needs ``discard`` (see the module docstring); it is recorded first."""
    path = Path(state_dir) / "active" / f"{check_stack_name(stack)}.json"
    if not path.exists():
        raise InvalidInput(
            f"stack {stack} has no active run recorded in {path.parent}; nothing to deactivate"
        )
    try:
        active = json.loads(path.read_text())
        if not isinstance(active, dict):
            raise TypeError("not a JSON object")
        missing = [k for k in ("run_id", "target", "restore_dir") if k not in active]
        if missing:
            raise KeyError(", ".join(missing))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InvalidInput(
            f"the activation record {path} of stack {stack} is unreadable ({e}); check what is still "
            "running for this stack and remove its servers by hand, then remove that file"
        ) from e
    mode = _mode(active, Path(state_dir))
    record = None
    pending = _not_failed_back(stack, active, Path(state_dir)) if mode != "test" else []
    if pending:
        cfg = load_stack(stack, project_dir)
        record = _approve_discard(cfg, active, mode, discard, ask, is_tty, pending)
        _store_record(cfg, record, Path(state_dir))
    if active["target"] == "local":
        from drctl.activation.targets.sandbox import NS_PREFIX, cleanup_stale

        removed = cleanup_stale(NS_PREFIX + active["run_id"], state_dir=Path(state_dir))
    else:
        from drctl.activation.targets.cloud import (
            CloudTarget,
            GlanceImages,
            NovaServers,
            PulumiAutomationStack,
        )

        cfg = load_stack(stack, project_dir)
        CloudTarget(
            stack, GlanceImages(), PulumiAutomationStack(stack, cfg.project_dir), NovaServers()
        ).deactivate(image_ids=active.get("images", {}))
        removed = []
    shutil.rmtree(active["restore_dir"], ignore_errors=True)
    path.unlink()
    result = {"stack": stack, "run_id": active["run_id"], "target": active["target"], "removed": removed}
    if record is not None:
        result["discarded"] = record
    return result


def _mode(active: dict[str, Any], state_dir: Path) -> str:
    """The run's mode, from its activation record, else from its stored report. Unknown counts
    as a disaster: the safe side."""
    if "mode" in active:
        return str(active["mode"])
    try:
        return RunStore(state_dir).find(active["run_id"]).summary.mode
    except RunNotFound:
        return "unknown"


def _not_failed_back(stack: str, active: dict[str, Any], state_dir: Path) -> list[str]:
    """The run's servers that came up (so hold changes) and are not failed back; ``["?"]`` when
    the run's report is not here to tell (the safe side)."""
    from drctl.activation.failback_state import failed_back_servers

    run_id = str(active["run_id"])
    try:
        holding = {s.name for s in RunStore(state_dir).find(run_id).summary.servers if s.available}
    except RunNotFound:
        return ["?"]
    return sorted(holding - failed_back_servers(state_dir, stack, run_id))


def _approve_discard(
    cfg: StackConfig,
    active: dict[str, Any],
    mode: str,
    discard: DiscardApproval | None,
    ask: Callable[[str], str],
    is_tty: bool | None,
    pending: list[str] | None = None,
) -> dict[str, Any]:
    """Refuse, or return what to record: who, when, why, how it was confirmed."""
    stack, run_id = cfg.stack, active["run_id"]
    what = "a disaster activation" if mode == "disaster" else "an activation whose mode is not recorded"
    servers = f" ({', '.join(pending)} not failed back)" if pending and pending != ["?"] else ""
    if discard is None:
        raise DisasterChangesAtRisk(
            f"stack {stack} is up after {what} (run {run_id}, since {active.get('since', '?')}): its "
            f"recovered servers{servers} hold the production data written since, and deactivating deletes "
            f"them. Bring that data home first with `drctl failback {stack} --to SITE_TARGETS "
            "--requested-by NAME` (it deactivates the run once every server is back), or to throw it "
            f"away run `drctl deactivate {stack} --discard-disaster-changes --requested-by NAME "
            "--reason TEXT` (recorded in the run) and type the client id to confirm"
        )
    if not discard.reason.strip():
        raise InvalidInput(
            f"--discard-disaster-changes on stack {stack} needs --reason TEXT (recorded in run {run_id})"
        )
    contact = authorised_contact(cfg.plan, discard.requested_by)
    confirm_discard(cfg.plan.client.id, run_id, yes=discard.yes, ask=ask, is_tty=is_tty)
    return {
        "event": "disaster-changes-discarded",
        "stack": stack,
        "run_id": run_id,
        "mode": mode,
        "target": active["target"],
        "activated_since": active.get("since"),
        "requested_by": contact.name,
        "requested_by_email": contact.email,
        "os_user": getpass.getuser(),
        "host": socket.gethostname(),
        "at": utc_now().isoformat(),
        "reason": discard.reason.strip(),
        "confirmation": "--yes" if discard.yes else "client id typed on a terminal",
    }


def _store_record(cfg: StackConfig, record: dict[str, Any], state_dir: Path) -> None:
    """Into the local run directory (when the run is stored here) and the client's report
    container beside the run's report, both before anything is deleted. One record per attempt
    (named by its time): a deactivation that failed half-way and is retried keeps both."""
    stack, run_id = cfg.stack, record["run_id"]
    name = f"deactivation-{record['at'].replace(':', '').replace('-', '').split('.')[0]}.json"
    data = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
    try:
        run_dir: Path | None = RunStore(state_dir).find(run_id).path
    except RunNotFound:
        run_dir = None
        log.warning(
            "run %s is not stored under %s: its deactivation is recorded in the report container only",
            run_id,
            state_dir,
        )
    if run_dir is not None:
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=run_dir)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, run_dir / name)
        except OSError as e:
            raise LocalIOError(f"cannot write {run_dir / name}: {e}; nothing was deleted") from e
    reports = open_storage(cfg.settings.reports_url(cfg.plan))
    reports.put(f"reports/{stack}/{run_id}/{name}", data)
