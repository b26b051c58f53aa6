"""A project with client stacks whose agents wrote signed status records to a real store: what the
status tests (and the benchmark) look at."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drctl.agent import records
from drctl.agent.records import JobRecord
from drctl.storage.base import Storage

ROOT = Path(__file__).resolve().parents[2]


def make_project(where: Path) -> Path:
    """An empty Pulumi project (``Pulumi.yaml``, ``stacks/``, ``recovery_plans/``)."""
    proj = where / "project"
    (proj / "stacks").mkdir(parents=True)
    (proj / "recovery_plans").mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", proj)
    return proj


def add_client(
    proj: Path,
    client: str,
    vault: str,
    keys: dict[str, Ed25519PrivateKey],
    *,
    plan_doc: dict | None = None,
    tests: Iterable[dict] = (),
) -> dict:
    """A stack ``client`` with the demo plan (renamed ``client``, or ``plan_doc``), its vault at
    ``vault`` and the agents' public keys of ``keys`` recorded as ``agent_keys``."""
    doc = plan_doc or yaml.safe_load((ROOT / "recovery_plans" / "demo.yaml").read_text())
    doc["client"]["id"] = client
    doc["client"]["name"] = f"{client.title()} SA"
    if tests:
        doc["tests"] = [dict(t) for t in tests]
    (proj / "recovery_plans" / f"{client}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    stack = {
        "config": {
            "flexible-recovery:plan": f"recovery_plans/{client}.yaml",
            "flexible-recovery:backup_repository": vault,
            "flexible-recovery:flavor_map": [{"name": "m1.large", "vcpus": 8, "ram_mb": 16384}],
            "flexible-recovery:agent_keys": {
                s: records.public_key_text(k.public_key()) for s, k in keys.items()
            },
        }
    }
    (proj / "stacks" / f"Pulumi.{client}.yaml").write_text(yaml.safe_dump(stack, sort_keys=False))
    return doc


def job(
    client: str,
    server: str,
    ended: datetime,
    *,
    result: str = "ok",
    disks: Iterable[str] = ("system",),
    job_id: str | None = None,
    error_class: str | None = None,
) -> JobRecord:
    disks = tuple(disks)
    return JobRecord(
        client=client,
        server=server,
        job_id=job_id or f"{server}-{ended.strftime('%Y%m%d%H%M%S')}",
        type="incremental",
        started=ended - timedelta(minutes=5),
        ended=ended,
        result=result,
        disks=disks,
        points={d: f"p-{server}-{d}-{ended.strftime('%Y%m%d%H%M')}" for d in disks} if result == "ok" else {},
        bytes_read=1 << 30,
        error_class=error_class,
        error=None if result == "ok" else "the store did not answer",
    )


def publish(storage: Storage, key: Ed25519PrivateKey, *jobs: JobRecord) -> None:
    for j in jobs:
        assert records.publish(storage, j, key, spool_dir=None)
