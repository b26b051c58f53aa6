"""Benchmark: drctl backup/restore vs a raw parallel boto3 GET and vs restic, one run, same machine,
same data, same S3 server (docs/benchmarks.md).

    .venv/bin/python benchmarks/restore_benchmark.py                 # embedded SeaweedFS, started if needed
    .venv/bin/python benchmarks/restore_benchmark.py --store env     # the S3 server of AWS_ENDPOINT_URL (e.g. Swift)

Prints progress on stderr and a Markdown table on stdout. Not a test: figures depend on the machine
and its load, which the table reports (uptime at start and end). Objects written under a fresh prefix
are deleted at the end, and the embedded store is stopped again if this script started it."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout
from benchmarks.targets import Measured, Row, all_met, runs, target_rows

MiB = 1024 * 1024
CHUNK = 4 * MiB


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- data --------------------------------------------------------------------------------------


def make_image(path: Path, size: int, seed: int = 42, chunk: int = CHUNK) -> None:
    """~40 % zero blocks, ~30 % compressible text (log-like lines), ~30 % random (compressed or
    encrypted data), in 4 MiB blocks; ``size`` need not be a multiple of the block size."""
    rng = random.Random(seed)
    words = [
        b"kernel:",
        b"systemd[1]:",
        b"nginx",
        b"GET /index.html HTTP/1.1 200",
        b"postgres",
        b"\n",
        b"error",
        b"session opened for user",
        b"Started",
        b"0x7f3a2c",
    ]
    pool = b" ".join(rng.choice(words) for _ in range(chunk // 3))
    with open(path, "wb") as f:
        done = 0
        while done < size:
            n = min(chunk, size - done)
            r = rng.random()
            if r < 0.4:
                f.seek(n, os.SEEK_CUR)
            elif r < 0.7:
                off = rng.randrange(0, len(pool) - n)
                f.write((f"block {done}\n".encode() + pool[off : off + n])[:n])
            else:
                f.write(rng.randbytes(n))
            done += n
        f.truncate(size)


def mutate(path: Path, fraction: float, chunk: int = CHUNK) -> int:
    """Change ``fraction`` of the image's 4 MiB blocks (64 bytes in each); the number changed."""
    size = path.stat().st_size
    rng = random.Random(7)
    picked = rng.sample(range(size // chunk), max(1, int(size // chunk * fraction)))
    with open(path, "r+b") as f:
        for i in picked:
            f.seek(i * chunk + 100)
            f.write(rng.randbytes(64))
    return len(picked)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(16 * MiB):
            h.update(block)
    return h.hexdigest()


# -- processes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Child:
    wall_s: float
    maxrss_kib: int
    cpu_s: float  # user + system of the child
    stdout: str


# The child's peak RSS must not include ours: wait4 on a direct child reports the parent's RSS at
# fork time when it is larger (the fork shares our pages until exec). So a tiny launcher spawns the
# command and reports that grandchild's rusage on its last stderr line.
_LAUNCH = (
    "import os, sys\n"
    "p = os.posix_spawnp(sys.argv[1], sys.argv[1:], os.environ)\n"
    "_, st, ru = os.wait4(p, 0)\n"
    "sys.stderr.write(f'\\nRUSAGE {ru.ru_maxrss} {ru.ru_utime + ru.ru_stime}\\n')\n"
    "sys.exit(os.waitstatus_to_exitcode(st))\n"
)


def run(argv: list[str], env: dict[str, str], what: str) -> Child:
    """Run one command; its wall time, its own peak RSS (KiB) and CPU time."""
    t = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.run(
            [sys.executable, "-c", _LAUNCH, *argv], check=False, env=env, stdout=out, stderr=err, text=True
        )
        wall = time.monotonic() - t
        out.seek(0), err.seek(0)
        *lines, usage = err.read().strip().splitlines() or [""]
        if p.returncode != 0:
            if not usage.startswith("RUSAGE"):
                lines.append(usage)
            message = " ".join(" ".join(lines).split())[-600:]
            raise SystemExit(f"benchmark: {what} failed (exit {p.returncode}): {message}")
        _, maxrss, cpu = usage.split()
        return Child(wall, int(maxrss), float(cpu), out.read())


def last_json(text: str) -> dict[str, Any]:
    return json.loads(text.strip().splitlines()[-1])


# -- the store ---------------------------------------------------------------------------------


class Store:
    """The S3 server under test: the embedded SeaweedFS (started if needed) or the env's endpoint."""

    def __init__(self, kind: str, bucket: str, port_base: int | None = None) -> None:
        self.kind, self.bucket, self.port_base = kind, bucket, port_base
        self.started = False
        self.created_bucket = False
        self.env: dict[str, str] = {}
        self.pid: int | None = None  # the embedded server's, for its CPU time

    def up(self) -> None:
        if self.kind == "local":
            from drctl.devstore import LocalStore, LocalStorePorts, default_state_dir

            ports = None if self.port_base is None else LocalStorePorts.from_base(self.port_base)
            store = LocalStore(default_state_dir(), ports)
            self.started = not store.status(check=False).running
            say(f"embedded SeaweedFS: {'starting' if self.started else 'already running'}")
            info = store.up(buckets=())
            self.env = {
                "AWS_ENDPOINT_URL": info.endpoint,
                "AWS_ACCESS_KEY_ID": info.access_key_id or "",
                "AWS_SECRET_ACCESS_KEY": Path(info.secret_file).read_text().strip(),
                "AWS_DEFAULT_REGION": "us-east-1",
                "DRCTL_S3_ADDRESSING": "path",
            }
            self._store = store
            self.pid = info.pid
        elif not os.environ.get("AWS_ENDPOINT_URL"):
            raise SystemExit(
                "benchmark: --store env needs AWS_ENDPOINT_URL and credentials in the environment"
            )
        os.environ.update(self.env)
        from drctl.storage.s3_client import create_bucket, make_client

        client = make_client()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if self.bucket not in existing:
            create_bucket(client, self.bucket)
            self.created_bucket = True

    def cpu_s(self) -> float:
        """CPU seconds the embedded server has used so far (0 when it is not ours to see)."""
        if self.pid is None:
            return 0.0
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @property
    def endpoint(self) -> str:
        return os.environ["AWS_ENDPOINT_URL"].rstrip("/")

    def clean(self, prefixes: list[str]) -> None:
        from drctl.storage.s3 import S3Storage

        for prefix in prefixes:
            st = S3Storage.from_environment(self.bucket, prefix)
            keys = [o.key for o in st.list("")]
            st.delete_many(keys)
            say(f"deleted {len(keys)} objects under s3://{self.bucket}/{prefix}")
        if self.created_bucket:
            try:
                S3Storage.from_environment(self.bucket).client.delete_bucket(Bucket=self.bucket)
            except Exception as e:
                say(f"bucket {self.bucket} kept: {e}")
        if self.started:
            self._store.down()
            say("embedded SeaweedFS stopped again")


def settle() -> None:
    """Before each measured step: write back what earlier steps left dirty in the page cache
    (restic's buffered 2 GiB restore, deleted outputs), so that the kernel's writeback of one
    step is not charged to the next one's wall time."""
    os.sync()


# The raw GET, a process of its own like ``drctl restore``, so that both CPU figures are whole
# processes (interpreter start, imports, client) and neither is flattered: a plain boto3 client,
# THREADS GETs in flight, every body read into memory, nothing decrypted, written or hashed (the
# store's limit for these objects). Prints its GET loop's wall time, bytes and the loop's own CPU.
_RAW_GET = """
import json, resource, sys, time
from concurrent.futures import ThreadPoolExecutor
import boto3
from botocore.config import Config
bucket, threads, keys = sys.argv[1], int(sys.argv[2]), open(sys.argv[3]).read().split()
s3 = boto3.client("s3", config=Config(max_pool_connections=threads, s3={"addressing_style": "path"}))
s3.head_bucket(Bucket=bucket)  # connect before the clock starts
cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
c, t = cpu(), time.monotonic()
with ThreadPoolExecutor(threads) as ex:
    total = sum(ex.map(lambda k: len(s3.get_object(Bucket=bucket, Key=k)["Body"].read()), keys))
print(json.dumps({"secs": time.monotonic() - t, "bytes": total, "loop_cpu_s": cpu() - c}))
"""


def raw_get(bucket: str, keyfile: Path, threads: int, env: dict[str, str]) -> tuple[float, int, float, float]:
    """The raw GET child: (GET loop seconds, bytes, whole-process CPU-s, GET-loop CPU-s)."""
    c = run([sys.executable, "-c", _RAW_GET, bucket, str(threads), str(keyfile)], env, "raw GET")
    got = last_json(c.stdout)
    return float(got["secs"]), int(got["bytes"]), c.cpu_s, float(got["loop_cpu_s"])


def stored_keys(url: str, password: str, prefix: str) -> tuple[list[str], int]:
    """The object keys of the latest point's chunks (exactly what its restore downloads)."""
    from drctl.repo.manifest import chunk_key
    from drctl.repo.repository import open_repository
    from drctl.storage import open_storage

    repo = open_repository(open_storage(url), password.encode())
    point = repo.load_points()[-1]
    return [f"{prefix}/{chunk_key(c)}" for c in sorted(point.chunk_ids())], len(point.chunk_ids())


# -- the benchmark -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--store",
        choices=("local", "env"),
        default="local",
        help="local: the embedded SeaweedFS (default); env: the S3 server of AWS_ENDPOINT_URL",
    )
    ap.add_argument("--bucket", default="drctl-bench", help="created if missing, deleted if created")
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument(
        "--rounds", type=int, default=3, help="rounds of every measurement (>= 3), medians reported"
    )
    ap.add_argument("--parallel", type=int, default=16, help="GETs in flight for drctl, raw GET and restic")
    ap.add_argument("--concurrent", type=int, default=10, help="restores at once (0: skip)")
    ap.add_argument("--workdir", type=Path, default=None, help="needs ~(concurrent+2) x size free")
    ap.add_argument("--no-restic", action="store_true")
    ap.add_argument(
        "--port-base",
        type=int,
        default=None,
        help="start the embedded store on five ports from this one (default: its usual ports)",
    )
    args = ap.parse_args(argv)
    if args.rounds < 3:
        ap.error("--rounds: the targets are medians of at least 3 rounds")

    start_load, t_start = load(), time.monotonic()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="drctl-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    tag = time.strftime("%Y%m%d%H%M%S")
    store = Store(args.store, args.bucket, args.port_base)
    store.up()
    prefix, rprefix = f"drctl-{tag}", f"restic-{tag}"
    prefixes = [prefix, rprefix]  # every prefix written, removed at the end
    url = f"s3://{args.bucket}/{prefix}"
    password = secrets.token_urlsafe(24)  # throwaway repositories; children get it by env/file only
    pwfile = work / "restic-password"
    pwfile.write_text(password)
    pwfile.chmod(0o600)
    env = dict(os.environ, DRCTL_PASSWORD=password, RESTIC_PASSWORD_FILE=str(pwfile))
    env.pop("RESTIC_PASSWORD", None)
    # drctl as installed: pip compiles its bytecode, so a run does not compile its sources again (a
    # shell with PYTHONDONTWRITEBYTECODE would add ~0.3 CPU-s to every drctl process).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    import compileall

    import drctl

    compileall.compile_dir(str(Path(drctl.__file__).parent), quiet=1)
    drctl = [sys.executable, "-m", "drctl.cli"]
    restic = None if args.no_restic else shutil.which("restic")
    restic_repo = [
        "-r",
        f"s3:{store.endpoint}/{args.bucket}/{rprefix}",
        "-o",
        f"s3.connections={args.parallel}",
        "--cache-dir",
        str(work / "restic-cache"),
    ]
    rows: list[Row] = []
    try:
        img = work / "disk.img"
        size = args.size_mib * MiB + 12345
        say(f"generating a {size / MiB:.0f} MiB image (40 % zeros, 30 % text, 30 % random) in {work}")
        make_image(img, size)
        source_sha = sha256_file(img)

        # First backups, each into a fresh repository, drctl and restic alternating; the last drctl
        # one (at ``url``) is the repository the restores read.
        restic_note = ""
        if restic:
            try:
                run([restic, *restic_repo, "init"], env, "restic init")
            except SystemExit as e:  # e.g. Swift's s3api refuses restic's aws-chunked uploads
                say(f"restic left out: {e}")
                restic_note = f"not usable with this server: {str(e).split(': ', 1)[-1][-240:]}"
                restic = None
        elif not args.no_restic:
            restic_note = "restic is not installed (Debian package restic)"
        else:
            restic_note = "--no-restic"
        t_backup: list[float] = []
        rss_backup: list[int] = []
        t_rbackup: list[float] = []
        cpu_backup: list[float] = []
        cpu_rbackup: list[float] = []
        first: dict[str, Any] = {}
        for rnd in range(args.rounds):
            last = rnd == args.rounds - 1
            bprefix = prefix if last else f"{prefix}-b{rnd}"
            if not last:
                prefixes.append(bprefix)
            burl = f"s3://{args.bucket}/{bprefix}"
            settle()
            say(f"backup round {rnd + 1}/{args.rounds}: drctl repo init + backup (load {load()})")
            run(drctl + ["repo", "init", burl], env, "drctl repo init")
            b = run(
                drctl + ["backup", burl, "--server", "bench", "--disk", "vda", str(img), "--json"],
                env,
                "drctl backup",
            )
            t_backup.append(b.wall_s)
            rss_backup.append(b.maxrss_kib)
            cpu_backup.append(b.cpu_s)
            first = last_json(b.stdout)
            if restic:
                rp = rprefix if last else f"{rprefix}-b{rnd}"
                if not last:
                    prefixes.append(rp)
                    rrepo = [*restic_repo]
                    rrepo[1] = f"s3:{store.endpoint}/{args.bucket}/{rp}"
                    run([restic, *rrepo, "init"], env, "restic init")
                else:
                    rrepo = restic_repo
                settle()
                say(f"backup round {rnd + 1}/{args.rounds}: restic backup (load {load()})")
                rb = run([restic, *rrepo, "backup", str(img)], env, "restic backup")
                t_rbackup.append(rb.wall_s)
                cpu_rbackup.append(rb.cpu_s)
        keys, _ = stored_keys(url, password, prefix)
        keyfile = work / "raw-get-keys"
        keyfile.write_text("\n".join(keys))

        t_get: list[float] = []
        t_cli: list[float] = []
        t_data: list[float] = []
        t_restic: list[float] = []
        rss: list[int] = []
        cpu: dict[str, list[float]] = {
            "get": [],
            "get_loop": [],
            "get_server": [],
            "drctl": [],
            "drctl_server": [],
            "restic": [],
            "restic_server": [],
        }
        identical = True
        got = 0
        for rnd in range(args.rounds):
            steps: list[tuple[str, Callable[[], None]]] = []

            def do_get() -> None:
                nonlocal got
                s0 = store.cpu_s()
                secs, got, whole, loop = raw_get(args.bucket, keyfile, args.parallel, env)
                t_get.append(secs)
                cpu["get"].append(whole)
                cpu["get_loop"].append(loop)
                cpu["get_server"].append(store.cpu_s() - s0)

            def do_drctl(rnd: int = rnd) -> None:
                nonlocal identical
                out = work / "restored.img"
                s0 = store.cpu_s()
                c = run(
                    drctl
                    + [
                        "restore",
                        url,
                        "--server",
                        "bench",
                        "--out",
                        str(out),
                        "--json",
                        "--parallel",
                        str(args.parallel),
                    ],
                    env,
                    "drctl restore",
                )
                cpu["drctl_server"].append(store.cpu_s() - s0)
                cpu["drctl"].append(c.cpu_s)
                t_cli.append(c.wall_s)
                t_data.append(float(last_json(c.stdout)["duration_s"]))
                rss.append(c.maxrss_kib)
                if rnd == 0:
                    identical = sha256_file(out) == source_sha
                out.unlink()

            def do_restic() -> None:
                target = work / "restic-out"
                s0 = store.cpu_s()
                c = run(
                    [restic, *restic_repo, "restore", "latest", "--target", str(target)],
                    env,
                    "restic restore",
                )
                # restic leaves what it restored in the page cache (no fsync); drctl's time includes
                # its own fsync. So restic's time runs until its data is on disk too: the sync
                # right after it (settle() emptied the cache of anything else before it started).
                t = time.monotonic()
                os.sync()
                t_restic.append(c.wall_s + time.monotonic() - t)
                cpu["restic"].append(c.cpu_s)
                cpu["restic_server"].append(store.cpu_s() - s0)
                shutil.rmtree(target)

            steps = [("raw GET", do_get), ("drctl restore", do_drctl)]
            if restic:
                steps.append(("restic restore", do_restic))
            steps = steps[rnd % len(steps) :] + steps[: rnd % len(steps)]  # rotate: no order bias
            for name, step in steps:
                settle()
                say(f"round {rnd + 1}/{args.rounds}: {name} (load {load()})")
                step()

        pinned: dict[int, list[float]] = {}
        taskset = shutil.which("taskset")
        for cpus in (1, 2, 4):
            if taskset is None or cpus > (os.cpu_count() or 1):
                continue
            for rnd in range(args.rounds):
                settle()
                say(f"restore pinned to {cpus} CPU(s), round {rnd + 1}/{args.rounds} (load {load()})")
                out = work / "pinned.img"
                c = run(
                    [taskset, "-c", f"0-{cpus - 1}", *drctl, "restore", url, "--server", "bench"]
                    + ["--out", str(out), "--parallel", str(args.parallel)],
                    env,
                    f"drctl restore on {cpus} CPU(s)",
                )
                pinned.setdefault(cpus, []).append(c.wall_s)
                out.unlink()

        n_mutated = mutate(img, 0.01)
        say(f"changed {n_mutated} of {size // CHUNK} blocks; second drctl backup")
        second = last_json(
            run(
                drctl + ["backup", url, "--server", "bench", "--disk", "vda", str(img), "--json"],
                env,
                "second drctl backup",
            ).stdout
        )

        conc = None
        if args.concurrent:
            settle()
            say(f"{args.concurrent} restores at once (load {load()})")
            t = time.monotonic()
            procs = [
                subprocess.Popen(
                    drctl + ["restore", url, "--server", "bench", "--out", str(work / f"c{i}.img")],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                for i in range(args.concurrent)
            ]
            codes = [p.wait() for p in procs]
            t_c = time.monotonic() - t
            for i in range(args.concurrent):
                (work / f"c{i}.img").unlink(missing_ok=True)
            conc = (t_c, all(c == 0 for c in codes))

        # -- the table ---------------------------------------------------------------------------
        measured = Measured(
            size=size,
            raw_get_s=t_get,
            raw_get_cpu_s=cpu["get"],
            restore_cli_s=t_cli,
            restore_data_s=t_data,
            restore_cpu_s=cpu["drctl"],
            restore_rss_kib=rss,
            backup_s=t_backup,
            backup_rss_kib=rss_backup,
            second_backup_uploaded=int(second["uploaded_bytes"]),
            restic_restore_s=t_restic,
            restic_backup_s=t_rbackup,
            restic_note=restic_note,
            concurrent=None if conc is None else (args.concurrent, conc[0], conc[1]),
            pinned_cpus=pinned,
        )
        rows += [
            Row(
                "image",
                f"{size / MiB:.0f} MiB ({size} bytes, not a multiple of 4 MiB); stored "
                f"{first['uploaded_bytes'] / MiB:.0f} MiB in {first['new_chunks']} chunks; "
                f"repository format {first.get('repo_format', 1)}",
            ),
            Row("drctl backup (first, fresh repository each round)", f"{runs(t_backup)}"),
            Row("restic backup (first, fresh repository each round)", runs(t_rbackup) if t_rbackup else "-"),
            Row(
                "CPU seconds of the first backups (medians): drctl / restic",
                f"{statistics.median(cpu_backup):.2f} / "
                + (f"{statistics.median(cpu_rbackup):.2f}" if cpu_rbackup else "-"),
            ),
            Row(
                f"raw parallel boto3 GET of the point's {len(keys)} objects ({args.parallel} threads)",
                f"{runs(t_get)}: {got / MiB / statistics.median(t_get):.0f} MiB/s",
            ),
            Row(
                "drctl restore, data phase (summary duration_s)",
                f"{runs(t_data)}: {size / MiB / statistics.median(t_data):.0f} MiB/s of image; "
                f"bit-identical: {identical}",
            ),
            Row("drctl restore, whole CLI (process start, key derivation, lock, manifest)", runs(t_cli)),
            Row(
                f"restic restore (s3.connections={args.parallel}, whole CLI, until its data is on disk)",
                runs(t_restic) if t_restic else "-",
            ),
            Row(
                "CPU seconds (medians, whole processes): raw GET client (its GET loop alone) / server; "
                "drctl restore / server; restic / server",
                f"{statistics.median(cpu['get']):.2f} ({statistics.median(cpu['get_loop']):.2f}) / "
                f"{statistics.median(cpu['get_server']):.2f}; "
                f"{statistics.median(cpu['drctl']):.2f} / {statistics.median(cpu['drctl_server']):.2f}; "
                + (
                    f"{statistics.median(cpu['restic']):.2f} / {statistics.median(cpu['restic_server']):.2f}"
                    if cpu["restic"]
                    else "-"
                ),
            ),
            Row(
                "second backup: chunks uploaded",
                f"{second['new_chunks']} chunks for {n_mutated} changed blocks",
            ),
        ]
        targets = target_rows(measured)
        if not identical:
            targets.append(Row("restored image bit-identical to the source", "no", "yes", False))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        try:
            store.clean(prefixes)
        except Exception as e:
            say(f"cleanup incomplete: {e}")

    print(
        f"Machine: {platform.node()}, {cpu_model()}, {os.cpu_count()} CPUs, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, "
        f"Linux {platform.release()}, Python {platform.python_version()}; store: "
        f"{'embedded SeaweedFS' if args.store == 'local' else store.endpoint}; "
        f"load average at start {start_load}, at end {load()}; {time.monotonic() - t_start:.0f} s\n"
    )
    print("| measure | result | target | verdict |\n|---|---|---|---|")
    for row in rows:
        print(row.cells())
    print("\n| target | result | target | verdict |\n|---|---|---|---|")
    for row in targets:
        print(row.cells())
    met = all_met(targets)
    print(f"\nall targets met: {'yes' if met else 'no'}")
    return 0 if met else 1


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
