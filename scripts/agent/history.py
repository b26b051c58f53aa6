"""``drctl agent status``: the last jobs of this server, from its status records in the store and
the ones a store outage left in the local spool, newest first.

The agent trusts a record only if it verifies with its own key (the one the stack records for this
server): a record in the store that does not is listed as forged or malformed, never hidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drctl.agent import records
from drctl.agent.config import AgentConfig
from drctl.storage.base import Storage, StorageError


@dataclass(frozen=True)
class JobLine:
    """One job as ``agent status`` shows it."""

    stored: records.StoredRecord
    where: str  # "store" or "spool"

    def as_dict(self) -> dict[str, Any]:
        r = self.stored.record
        d: dict[str, Any] = {"key": self.stored.key, "where": self.where, "trust": self.stored.trust.value}
        if self.stored.problem:
            d["problem"] = self.stored.problem
        if r is not None:
            d.update(
                {
                    "job_id": r.job_id,
                    "type": r.type,
                    "result": r.result,
                    "started": r.started.isoformat(),
                    "ended": r.ended.isoformat(),
                    "points": dict(r.points),
                    "bytes_read": r.bytes_read,
                    "bytes_uploaded": r.bytes_uploaded,
                    "error_class": r.error_class,
                    "error": r.error,
                }
            )
        return d


@dataclass(frozen=True)
class History:
    jobs: list[JobLine]
    store_error: str | None = None  # the store could not be listed: spooled jobs only


def _spooled(cfg: AgentConfig, trusted: dict[str, Any]) -> list[JobLine]:
    spool = Path(cfg.spool_dir)
    if not spool.is_dir():
        return []
    out = []
    for path in sorted(spool.glob(f"status__{cfg.server}__*.json")):
        key = path.name.replace("__", "/")
        out.append(JobLine(records.parse(key, path.read_bytes(), trusted), "spool"))
    return out


def job_history(cfg: AgentConfig, storage: Storage, *, last: int = 10) -> History:
    """The last ``last`` jobs, newest first (store and spool merged by the record's end time)."""
    public = records.load_agent_key(cfg.key).public_key()
    trusted = {cfg.server: public}
    lines = _spooled(cfg, trusted)
    problem = None
    try:
        keys = records.list_keys(storage, cfg.server)[-last:]
        lines += [JobLine(s, "store") for s in records.read(storage, keys, trusted)]
    except StorageError as e:
        problem = e.message
    # the object key starts with the end time: its order is the jobs' order
    lines.sort(key=lambda line: line.stored.key.rsplit("/", 1)[-1], reverse=True)
    return History(lines[:last], problem)
