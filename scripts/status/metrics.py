"""The status as Prometheus metrics (OpenMetrics text, prometheus-client), for node_exporter's
textfile collector (``drctl status --prometheus FILE``) and the console's ``/metrics``.

Per server (labels ``client``, ``stack``, ``server``, ``class``):

- ``drctl_backup_age_seconds``: age of the oldest disk's last successful backup (+Inf: none);
- ``drctl_rpo_seconds``: the server's RPO;
- ``drctl_last_job_success``: 1 when its agent's last verified job succeeded, 0 when it failed
  (absent before any verified job);
- ``drctl_job_consecutive_failures``: verified failed jobs since the last successful one.

Per client (labels ``client``, ``stack``):

- ``drctl_test_due_timestamp_seconds``: when its next test is due (UTC midnight of that day).
  Never tested and no date agreed is 0: due since 1970, which is the truth (overdue), and what
  the usual ``time() > ...`` rule makes of it; the rules tell it apart (``== 0``) to say "never
  tested" rather than "was due". Absent when unknown: a run summary could not be read;
- ``drctl_run_summaries_unreadable``: run summaries of the client that could not be read (its
  test verdicts are then unknown);
- ``drctl_last_drill_success``: 1 when its last drill (or test activation) passed, else 0 (absent
  before the first);
- ``drctl_vault_readable``: 0 when ``drctl status`` could not read the vault (the other metrics of
  that client are then absent).

``deploy/prometheus/drctl-rules.yml`` alerts on them.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.openmetrics.exposition import generate_latest

from drctl.errors import LocalIOError
from drctl.status.model import ClientState

_SERVER = ("client", "stack", "server", "class")
_CLIENT = ("client", "stack")


def registry(clients: Sequence[ClientState]) -> CollectorRegistry:
    """A fresh registry holding the gauges of ``clients``."""
    reg = CollectorRegistry(auto_describe=True)
    age = Gauge(
        "drctl_backup_age_seconds", "Age of the oldest disk's last successful backup", _SERVER, registry=reg
    )
    rpo = Gauge("drctl_rpo_seconds", "Recovery point objective of the server", _SERVER, registry=reg)
    job = Gauge("drctl_last_job_success", "1 if the last verified agent job succeeded", _SERVER, registry=reg)
    fails = Gauge(
        "drctl_job_consecutive_failures", "Verified failed jobs since the last success", _SERVER, registry=reg
    )
    due = Gauge(
        "drctl_test_due_timestamp_seconds",
        "When the client's next test is due (Unix time); 0: never tested, no date agreed (overdue)",
        _CLIENT,
        registry=reg,
    )
    bad_runs = Gauge(
        "drctl_run_summaries_unreadable",
        "Run summaries of the client that could not be read (its test verdicts are unknown)",
        _CLIENT,
        registry=reg,
    )
    drill = Gauge("drctl_last_drill_success", "1 if the client's last drill passed", _CLIENT, registry=reg)
    readable = Gauge(
        "drctl_vault_readable", "0 if the client's vault could not be read", _CLIENT, registry=reg
    )
    for c in clients:
        readable.labels(c.client, c.stack).set(0 if c.unreadable else 1)
        bad_runs.labels(c.client, c.stack).set(len(c.unreadable_runs))
        if c.unreadable:
            continue
        for s in c.servers:
            labels = (c.client, c.stack, s.name, s.protection)
            age.labels(*labels).set(math.inf if s.backup_age_s is None else s.backup_age_s)
            rpo.labels(*labels).set(s.rpo_s)
            fails.labels(*labels).set(s.consecutive_failures)
            if s.last_job is not None and s.last_job.result in ("ok", "failed"):
                job.labels(*labels).set(1 if s.last_job.result == "ok" else 0)
        t = c.test_due
        if t is not None and not t.unknown:
            when = 0.0
            if t.due is not None:
                when = dt.datetime.combine(t.due, dt.time(), dt.UTC).timestamp()
            due.labels(c.client, c.stack).set(when)
        if c.last_drill is not None:
            drill.labels(c.client, c.stack).set(0 if c.last_drill.outcome == "failed" else 1)
    return reg


def exposition(clients: Sequence[ClientState]) -> bytes:
    """The OpenMetrics text of ``clients`` (what ``/metrics`` serves)."""
    return generate_latest(registry(clients))


def write_textfile(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (a temporary file in the same directory renamed over
    it), so node_exporter never reads half a file. Mode 0644: the collector runs as another user,
    and the metrics hold no secret."""
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as e:
        raise LocalIOError(f"cannot write the metrics file {target}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise LocalIOError(f"cannot write the metrics file {target}: {e.strerror or e}") from e
    return target
