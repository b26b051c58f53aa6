"""A sample fleet for the console's screenshots and benchmark: ``clients`` client stacks built from
the demo plan, each with a vault (a local directory) holding its agents' signed status records, and
one signed drill report in the run store. The clients are in different states on purpose (healthy,
an RPO at risk, a failed backup job, a failed drill), so every part of the console has something to
show. Everything is written under one new directory; nothing else is touched.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drctl.agent import records
from drctl.paths import project_dir as checkout_project_dir
from drctl.plan.load import load_plan
from drctl.plan.model import Plan
from drctl.runs.model import (
    CheckResult,
    ReconnectionStep,
    RunSummary,
    ServerResult,
    ServerStatus,
    SiteReconnection,
    new_run_id,
)
from drctl.runs.signing import load_or_create_key
from drctl.runs.store import RunStore
from drctl.storage import open_storage

NAMES = ("Demo SARL", "Boulangerie Martin", "Cabinet Leroy", "Transports Girard", "Clinique du Parc")


@dataclass(frozen=True)
class SampleFleet:
    project_dir: Path
    state_dir: Path
    stacks: tuple[str, ...]


def _kind(i: int) -> str:
    """The state a sample client is put in: most are healthy, some are not."""
    return {1: "at-risk", 2: "job-failed", 3: "drill-failed"}.get(i % 7, "healthy")


def _drill(plan: Plan, stack: str, started: datetime, failed: bool) -> RunSummary:
    servers = []
    clock = 0.0
    for n, s in enumerate(plan.servers):
        restore = 20.0 + 7 * n
        boot = restore + 5
        verified = boot + 40 + 9 * n
        bad = failed and s.name == "app01"
        status = ServerStatus.FAILED if bad else ServerStatus.OK
        checks = tuple(
            CheckResult(
                check=c.describe(),
                ok=not bad,
                detail="no answer before the deadline" if bad else "answered",
                critical=c.critical,
                attempts=3,
                started_at=started + timedelta(seconds=boot + 2),
                ended_at=started + timedelta(seconds=verified),
            )
            for c in s.checks
        )
        servers.append(
            ServerResult(
                name=s.name,
                os=f"{s.os_family}-{s.os_version}",
                os_family=s.os_family,
                status=status,
                depends_on=s.depends_on,
                restore_started_at=started + timedelta(seconds=clock),
                restore_ended_at=started + timedelta(seconds=restore),
                boot_started_at=started + timedelta(seconds=boot),
                verified_at=None if bad else started + timedelta(seconds=verified),
                restore_point=f"p{n:02d}a1b2",
                restore_point_at=started - timedelta(hours=3),
                rpo_achieved_s=3 * 3600,
                rpo_target_s=s.rpo_s,
                rto_target_s=s.rto_s,
                checks=checks,
                reason="critical check failed" if bad else None,
            )
        )
    reconnection = tuple(
        SiteReconnection(
            site=site.name,
            status="ok",
            started_at=started + timedelta(minutes=5),
            steps=(
                ReconnectionStep("tunnel", True, 2.1, "IKEv2 SA up"),
                ReconnectionStep("dhcp", True, 1.4, "lease"),
            ),
        )
        for site in plan.sites
    )
    return RunSummary(
        run_id=new_run_id(started),
        stack=stack,
        mode="test",
        target="local",
        kind="drill",
        started_at=started,
        ended_at=started + timedelta(minutes=6),
        servers=tuple(servers),
        client_id=plan.client.id,
        client_name=plan.client.name,
        client_timezone=plan.client.timezone,
        requested_by="Alice Martin",
        reconnection=reconnection,
    ).with_availability()


def make_sample_fleet(root: Path, clients: int = 5, *, now: datetime | None = None) -> SampleFleet:
    """Write the sample project (``root/project``), vaults (``root/vaults``) and state (``root/state``)."""
    now = now or datetime.now(UTC)
    source = checkout_project_dir()
    demo = yaml.safe_load((source / "recovery_plans" / "demo.yaml").read_text())
    proj, state, vaults = root / "project", root / "state", root / "vaults"
    for d in (proj / "stacks", proj / "recovery_plans", vaults):
        d.mkdir(parents=True)
    shutil.copy(source / "Pulumi.yaml", proj)
    demo_config = yaml.safe_load((source / "stacks" / "Pulumi.demo.yaml").read_text())["config"]
    flavors = demo_config["flexible-recovery:flavor_map"]
    signing = load_or_create_key(state / "keys" / "report-signing.key")
    store = RunStore(state)
    stacks = []
    for i in range(clients):
        stack = "demo" if i == 0 else f"client{i:02d}"
        doc = dict(
            demo,
            client={
                **demo["client"],
                "id": stack,
                "name": NAMES[i] if i < len(NAMES) else f"Client {i:02d} SA",
            },
        )
        (proj / "recovery_plans" / f"{stack}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        plan = load_plan(proj / "recovery_plans" / f"{stack}.yaml")
        keys = {s.name: Ed25519PrivateKey.generate() for s in plan.servers}
        vault = vaults / stack
        vault.mkdir()
        config = {
            "flexible-recovery:plan": f"recovery_plans/{stack}.yaml",
            "flexible-recovery:backup_repository": str(vault),
            "flexible-recovery:flavor_map": flavors,
            "flexible-recovery:prices": demo_config["flexible-recovery:prices"],
            "flexible-recovery:agent_keys": {
                n: records.public_key_text(k.public_key()) for n, k in keys.items()
            },
        }
        (proj / "stacks" / f"Pulumi.{stack}.yaml").write_text(
            yaml.safe_dump({"config": config}, sort_keys=False)
        )
        kind, storage = _kind(i), open_storage(str(vault))
        for n, s in enumerate(plan.servers):
            age = s.rpo_s * (0.9 if kind == "at-risk" and n == 1 else 0.3)
            ended = now - timedelta(seconds=age)
            failed = kind == "job-failed" and n == 2
            disks = tuple(d.name for d in s.disks)
            record = records.JobRecord(
                client=stack,
                server=s.name,
                job_id=f"{s.name}-{ended:%Y%m%d%H%M}",
                type="incremental",
                started=ended - timedelta(minutes=4),
                ended=ended,
                result="failed" if failed else "ok",
                disks=disks,
                points={} if failed else {d: f"p-{s.name}-{d}" for d in disks},
                error_class="StorageUnavailable" if failed else None,
                error="the store did not answer" if failed else None,
            )
            records.publish(storage, record, keys[s.name], spool_dir=None)
        if i == 0:  # the demo client has a history: the tests table of the service description's 8.2
            store.record(_drill(plan, stack, now - timedelta(days=182, hours=3), True), signing)
            store.record(_drill(plan, stack, now - timedelta(days=176, hours=5), False), signing)
        store.record(_drill(plan, stack, now - timedelta(days=20 + i % 30), kind == "drill-failed"), signing)
        stacks.append(stack)
    return SampleFleet(proj, state, tuple(stacks))
