"""``drctl status`` at scale: 50 clients x 20 servers (2 disks each), 30 days of daily signed status
records per server, all in one embedded SeaweedFS. Target: the whole status (every client, text,
JSON and metrics) in under 10 s and 256 MiB on this machine.

What it does: starts its own SeaweedFS (a fresh state directory, ``--port-base``), writes a project
of ``--clients`` stacks whose plans have ``--servers`` servers, initialises each client's repository
with 30 days of Object Lock retention (so status probes the lock, as it would in production),
publishes ``--days`` daily records per server (a few servers with failed last jobs), then runs
``drctl status --json --prometheus FILE`` in a child process ``--rounds`` times and reports its wall
time and its own peak RSS (through restore_benchmark's launcher). No chunk is written, so none can
be read: status lists ``status/`` once per vault and reads the newest records only.

    .venv/bin/python -m benchmarks.status_benchmark [--clients 50] [--servers 20] [--days 30]

Progress on stderr, the Markdown table on stdout; exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout
from benchmarks.restore_benchmark import _LAUNCH, Child, last_json, say
from drctl.agent import records
from drctl.agent.records import JobRecord

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 10.0
TARGET_RSS_MIB = 256


def plan_doc(client: str, servers: int) -> dict:
    """The demo plan's client, contacts and site, with ``servers`` servers of 2 disks each."""
    doc = yaml.safe_load((ROOT / "recovery_plans" / "demo.yaml").read_text())
    doc["client"]["id"], doc["client"]["name"] = client, f"Client {client}"
    template = doc["servers"][0]
    classes = ("dr", "backup-tested", "backup-only")
    doc["servers"] = []
    for i in range(servers):
        s = yaml.safe_load(yaml.safe_dump(template))
        s.update(
            name=f"srv{i:02d}",
            description=f"server {i}",
            disks=[{"name": "system", "size_gb": 1, "boot": True}, {"name": "data", "size_gb": 10}],
            nics=[{"subnet": "paris/lan", "ip": f"192.168.10.{20 + i}"}],
            boot={"group": 1, "depends_on": []},
        )
        s["class"] = classes[i % 3]
        if s["class"] != "dr":
            s.pop("checks", None)
        doc["servers"].append(s)
    return doc


def write_project(
    where: Path, clients: int, servers: int, bucket: str
) -> dict[str, dict[str, Ed25519PrivateKey]]:
    """The project and each client's agent keys (client -> server -> key)."""
    (where / "stacks").mkdir(parents=True)
    (where / "recovery_plans").mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", where)
    keys: dict[str, dict[str, Ed25519PrivateKey]] = {}
    for n in range(clients):
        client = f"client{n:02d}"
        doc = plan_doc(client, servers)
        (where / "recovery_plans" / f"{client}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        keys[client] = {s["name"]: Ed25519PrivateKey.generate() for s in doc["servers"]}
        stack = {
            "config": {
                "flexible-recovery:plan": f"recovery_plans/{client}.yaml",
                "flexible-recovery:backup_repository": f"s3://{bucket}/{client}",
                "flexible-recovery:agent_keys": {
                    s: records.public_key_text(k.public_key()) for s, k in keys[client].items()
                },
            }
        }
        (where / "stacks" / f"Pulumi.{client}.yaml").write_text(yaml.safe_dump(stack, sort_keys=False))
    return keys


def publish_history(bucket: str, keys: dict[str, dict[str, Ed25519PrivateKey]], days: int) -> int:
    """``days`` daily jobs per server, newest an hour ago; every 17th server's last job failed."""
    from drctl.repo.crypto import KdfParams
    from drctl.repo.repository import init_repository
    from drctl.storage.s3 import S3Storage
    from drctl.storage.s3_client import make_client

    s3 = make_client(max_connections=32)
    now = datetime.now(UTC)
    jobs: list[tuple[S3Storage, JobRecord, Ed25519PrivateKey]] = []
    for client, servers in keys.items():
        storage = S3Storage(bucket, client, s3)
        init_repository(
            storage,
            b"benchmark-password-1",
            object_lock={"retain_days": 30},
            kdf=KdfParams(n=2**10, r=8, p=1),
        )
        for k, (server, key) in enumerate(servers.items()):
            for day in range(days):
                ended = now - timedelta(days=day, hours=1)
                failed = day == 0 and k % 17 == 0
                record = JobRecord(
                    client=client,
                    server=server,
                    job_id=f"{server}-{ended:%Y%m%d}",
                    type="full" if day % 7 == 0 else "incremental",
                    started=ended - timedelta(minutes=20),
                    ended=ended,
                    result="failed" if failed else "ok",
                    disks=("system", "data"),
                    points={} if failed else {"system": f"{day:04d}a", "data": f"{day:04d}b"},
                    error_class="StorageUnavailable" if failed else None,
                )
                jobs.append((storage, record, key))
    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(lambda j: records.publish(j[0], j[1], j[2], spool_dir=None), jobs))
    return len(jobs)


def server_cpu_s(pid: int | None) -> float:
    """CPU seconds the embedded server has used so far."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_status(argv: list[str], env: dict[str, str]) -> Child:
    """``drctl status`` in a child: wall time, its own peak RSS and CPU (restore_benchmark's launcher).
    Exit 20 is expected here (some last jobs failed, no drill ever ran); anything else is a failure."""
    t = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.run(
            [sys.executable, "-c", _LAUNCH, *argv], check=False, env=env, stdout=out, stderr=err
        )
        wall = time.monotonic() - t
        out.seek(0), err.seek(0)
        *lines, usage = err.read().strip().splitlines() or [""]
        if p.returncode not in (0, 20) or not usage.startswith("RUSAGE"):
            raise SystemExit(
                f"benchmark: drctl status failed (exit {p.returncode}): {' '.join(lines)[-600:]}"
            )
        _, maxrss, cpu = usage.split()
        return Child(wall, int(maxrss), float(cpu), out.read())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--servers", type=int, default=20)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--port-base", type=int, default=int(os.environ.get("DRCTL_TEST_SEAWEED_PORT_BASE", 20200)) + 20
    )
    p.add_argument(
        "--workdir", type=Path, help="where the store and project go (default: a temporary directory)"
    )
    args = p.parse_args(argv)

    from drctl.devstore import LocalStore, LocalStorePorts
    from drctl.storage.s3_client import create_bucket, make_client

    work = Path(tempfile.mkdtemp(prefix="drctl-status-bench-", dir=args.workdir))
    store = LocalStore(work / "store", ports=LocalStorePorts.from_base(args.port_base))
    t0 = time.monotonic()
    try:
        info = store.up(buckets=())
        env = {
            "AWS_ENDPOINT_URL": info.endpoint,
            "AWS_ACCESS_KEY_ID": info.access_key_id or "",
            "AWS_SECRET_ACCESS_KEY": Path(info.secret_file).read_text().strip(),
            "AWS_DEFAULT_REGION": "us-east-1",
            "DRCTL_S3_ADDRESSING": "path",
        }
        os.environ.update(env)
        bucket = "drctl-status-bench"
        create_bucket(make_client(), bucket, object_lock=True)
        say(f"writing {args.clients} stacks of {args.servers} servers")
        keys = write_project(work / "project", args.clients, args.servers, bucket)
        t = time.monotonic()
        n = publish_history(bucket, keys, args.days)
        say(f"published {n} signed records in {time.monotonic() - t:.0f} s")
        child_env = {
            **os.environ,
            **env,
            "DRCTL_PROJECT_DIR": str(work / "project"),
            "DRCTL_STATE_DIR": str(work / "state"),
        }
        child_env.pop("DRCTL_PASSWORD", None)
        drctl = str(Path(sys.executable).with_name("drctl"))
        prom = work / "drctl.prom"
        load0 = " ".join(f"{x:.2f}" for x in os.getloadavg())
        rounds = []
        server_cpu = []
        for i in range(args.rounds):
            before = server_cpu_s(info.pid)
            # exit 20 is expected: some last jobs failed and no drill ever ran (tests overdue)
            child = run_status([drctl, "status", "--json", "--prometheus", str(prom)], child_env)
            rounds.append(child)
            server_cpu.append(server_cpu_s(info.pid) - before)
            say(f"round {i + 1}: {child.wall_s:.2f} s, {child.maxrss_kib / 1024:.0f} MiB")
        result = last_json(rounds[-1].stdout)
        servers = sum(len(c["servers"]) for c in result["clients"])
        failed = sum(c["counts"]["jobs_failed"] for c in result["clients"])
        wall = statistics.median(r.wall_s for r in rounds)
        rss = max(r.maxrss_kib for r in rounds) / 1024
        load = os.getloadavg()
        print(
            f"Machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; load average at start {load0}"
        )
        print(
            f"load average at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; setup+runs {time.monotonic() - t0:.0f} s\n"
        )
        print("| measure | result | target | verdict |")
        print("|---|---|---|---|")
        print(f"| store content | {args.clients} vaults, {servers} servers, {n} status records | - | - |")
        print(
            f"| clients / servers reported | {len(result['clients'])} / {servers} ({failed} failed last jobs) | "
            f"{args.clients} / {args.clients * args.servers} | "
            f"{'ok' if servers == args.clients * args.servers else '**FAIL**'} |"
        )
        print(
            f"| `drctl status --json --prometheus` wall time (median of {args.rounds}: "
            f"{', '.join(f'{r.wall_s:.2f}' for r in rounds)}) | {wall:.2f} s | < {TARGET_S:.0f} s | "
            f"{'ok' if wall < TARGET_S else '**FAIL**'} |"
        )
        print(
            f"| peak RSS of the status process | {rss:.0f} MiB | < {TARGET_RSS_MIB} MiB | "
            f"{'ok' if rss < TARGET_RSS_MIB else '**FAIL**'} |"
        )
        print(
            f"| CPU seconds of the status process (median) | {statistics.median(r.cpu_s for r in rounds):.2f} | - | - |"
        )
        print(
            f"| CPU seconds of SeaweedFS during a status (median) | {statistics.median(server_cpu):.2f} | - | - |"
        )
        ok = wall < TARGET_S and rss < TARGET_RSS_MIB and servers == args.clients * args.servers
        return 0 if ok else 1
    finally:
        store.down()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
