"""Benchmark: an agent job backing up an unchanged disk (dedup: nothing uploaded) vs the source's own
sequential read speed, measured in the same run; and the job's peak RSS (docs/benchmarks.md).

    .venv/bin/python benchmarks/agent_benchmark.py                 # embedded SeaweedFS, started if needed
    .venv/bin/python benchmarks/agent_benchmark.py --store env     # the S3 server of AWS_ENDPOINT_URL
    #   --size-mib 2048 --rounds 3 --workdir DIR

The image is dense (its zero runs written, as on a disk: a job skips a sparse file's holes). Each
round runs twice, with the image dropped from the page cache (posix_fadvise DONTNEED, and
/proc/sys/vm/drop_caches as root) and with it warm in memory: it reads the image sequentially in
4 MiB blocks (the `dd` baseline, in a child process), puts the cache back in the same state and runs
`drctl agent run --type incremental --json` (a child process, method `none`); each job is compared
with the read just before it (paired rounds, medians of the ratios). The job's read speed
is image size / the disk's backup duration (the `disk-finished` event's `duration_s`: the data
phase, without process start and key derivation). It also times keyed BLAKE3 in one thread over
the image in memory: a format-2 job whose chunks are all known still computes it over every
non-zero byte (the chunk id). Markdown table on stdout, progress on stderr; everything written is
removed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import blake3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout
from benchmarks.restore_benchmark import MiB, Store, cpu_model, load, make_image, run, say
from benchmarks.targets import Row, median

BLOCK = 4 * MiB

# The source read baseline, in a child like the job so both pay the same process costs.
_READ = (
    "import os, sys, time\n"
    "fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)\n"
    "t = time.monotonic(); n = 0\n"
    "while b := os.read(fd, 4 << 20): n += len(b)\n"
    "print(n, time.monotonic() - t)\n"
)


def drop_cache(path: Path) -> None:
    """Evict the image from the page cache (clean pages only: it was written and synced before)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    try:  # as root, drop the whole page cache too: DONTNEED is advice the kernel may not follow
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    except OSError:
        pass


def densify(sparse: Path, dense: Path) -> None:
    """A copy of ``sparse`` with its holes written as zeros: a disk (a block device, an LV) has no
    holes, and a job skips the holes of a sparse file without reading them (SEEK_DATA), which would
    flatter it against a reader that reads every byte."""
    with open(sparse, "rb") as src, open(dense, "wb") as dst:
        while block := src.read(BLOCK):
            dst.write(block)
        dst.flush()
        os.fsync(dst.fileno())
    sparse.unlink()
    assert dense.stat().st_blocks * 512 >= dense.stat().st_size, "the copy still has holes"


def warm_cache(path: Path) -> None:
    """Read the image once so that the next read is served from memory."""
    with open(path, "rb") as f:
        while f.read(BLOCK):
            pass


def digest_speed(path: Path) -> float:
    """MiB/s of keyed BLAKE3 in one thread over the image in memory: the digest a format-2 job
    computes over every non-zero byte even when every chunk is already stored (its chunk id, which
    is also the chunk's digest); the job spreads it over its worker threads."""
    key = secrets.token_bytes(32)
    spent = 0.0
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            t = time.perf_counter()
            blake3.blake3(block, key=key).digest()
            spent += time.perf_counter() - t
    return path.stat().st_size / MiB / spent


def write_agent(work: Path, url: str, image: Path) -> Path:
    from drctl.agent import records
    from drctl.agent.config import AgentConfig, DiskConfig, ScheduleEntry, write_config

    key = work / "bench.agent-key"
    records.generate_agent_key(key)
    cfg = AgentConfig(
        client="bench",
        stack="bench",
        server="bench",
        repository=url,
        state_dir=work / "state",
        key=key,
        disks=(DiskConfig("system", str(image)),),
        schedule=(ScheduleEntry("incremental", 86400),),
    )
    return write_config(cfg, work / "bench.agent.yaml")


def events(stdout: str) -> list[dict]:
    import json

    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", choices=("local", "env"), default="local")
    ap.add_argument("--bucket", default="drctl-bench", help="created if missing, deleted if created")
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args(argv)

    start_load, t_start = load(), time.monotonic()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="drctl-agent-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    prefix = f"agent-{time.strftime('%Y%m%d%H%M%S')}"
    store = Store(args.store, args.bucket)
    store.up()
    url = f"s3://{args.bucket}/{prefix}"
    env = dict(os.environ, DRCTL_PASSWORD=secrets.token_urlsafe(24))
    drctl = [sys.executable, "-m", "drctl.cli"]
    rows: list[Row] = []
    try:
        image = work / "disk.img"
        size = args.size_mib * MiB
        say(f"generating a {args.size_mib} MiB image in {work}")
        make_image(work / "sparse.img", size)
        densify(work / "sparse.img", image)
        config = write_agent(work, url, image)
        run(drctl + ["repo", "init", url], env, "drctl repo init")
        say("first job (full): uploads the image's chunks")
        first = events(
            run(
                drctl + ["agent", "run", "--config", str(config), "--type", "full", "--json"], env, "full job"
            ).stdout
        )
        stored = first[-1]
        reads: dict[str, list[float]] = {"cold": [], "warm": []}
        jobs: dict[str, list[float]] = {"cold": [], "warm": []}
        walls, rss, uploaded = [], [], []

        def prepare(cache: str) -> None:
            drop_cache(image) if cache == "cold" else warm_cache(image)

        for rnd in range(args.rounds):
            for cache in ("cold", "warm"):
                prepare(cache)
                n, secs = run(
                    [sys.executable, "-c", _READ, str(image)], env, "sequential read"
                ).stdout.split()
                reads[cache].append(int(n) / MiB / float(secs))
                prepare(cache)
                child = run(
                    drctl + ["agent", "run", "--config", str(config), "--type", "incremental", "--json"],
                    env,
                    "job",
                )
                evs = events(child.stdout)
                disk = next(e for e in evs if e["event"] == "disk-finished")
                jobs[cache].append(size / MiB / disk["duration_s"])
                walls.append(child.wall_s)
                rss.append(child.maxrss_kib / 1024)
                uploaded.append(evs[-1]["bytes_uploaded"])
                say(
                    f"round {rnd + 1} ({cache} cache): source {reads[cache][-1]:.0f} MiB/s, "
                    f"job {jobs[cache][-1]:.0f} MiB/s, RSS {rss[-1]:.0f} MiB"
                )
        digest = digest_speed(image)
        # paired: each job against the read measured just before it, in the same cache state
        ratio = {c: median([j / r for j, r in zip(jobs[c], reads[c], strict=True)]) for c in jobs}
        runs = lambda xs: ", ".join(f"{x:.0f}" for x in xs)  # noqa: E731
        rows += [
            Row("image", f"{args.size_mib} MiB; first job uploaded {stored['bytes_uploaded'] / MiB:.0f} MiB"),
            *(
                row
                for cache, what in (
                    ("cold", "cold cache: from the disk"),
                    ("warm", "warm cache: from memory"),
                )
                for row in (
                    Row(
                        f"source sequential read, {what}",
                        f"{median(reads[cache]):.0f} MiB/s (runs {runs(reads[cache])})",
                    ),
                    Row(
                        f"agent job, unchanged disk, data phase, {what}",
                        f"{median(jobs[cache]):.0f} MiB/s (runs {runs(jobs[cache])})",
                    ),
                )
            ),
            Row("bytes uploaded by the jobs (all chunks known)", f"{max(uploaded)}", "0", max(uploaded) == 0),
            Row("agent job, whole CLI (process, key derivation, locks, record)", f"{median(walls):.1f} s"),
            Row(
                "job / source read speed, cold cache (median of paired rounds)",
                f"{ratio['cold']:.2f}",
                ">= 0.8",
                ratio["cold"] >= 0.8,
            ),
            Row("job / source read speed, warm cache (the job's own CPU bound)", f"{ratio['warm']:.2f}"),
            Row(
                "one thread, image in memory: keyed BLAKE3 (format 2's per-byte digest)",
                f"{digest:.0f} MiB/s",
            ),
            Row("job peak RSS (max of the runs)", f"{max(rss):.0f} MiB", "< 256 MiB", max(rss) < 256),
        ]
    finally:
        store.clean([prefix])
        for p in sorted(work.rglob("*"), reverse=True):
            p.unlink() if not p.is_dir() else p.rmdir()
        work.rmdir()
    print(
        f"Machine: {os.uname().nodename}, {cpu_model()}, {os.cpu_count()} CPUs, Python "
        f"{sys.version.split()[0]}; store: {'embedded SeaweedFS' if args.store == 'local' else store.endpoint}; "
        f"load average at start {start_load}, at end {load()}; {time.monotonic() - t_start:.0f} s\n"
    )
    print("| measure | result | target | verdict |\n|---|---|---|---|")
    for row in rows:
        print(row.cells())
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
