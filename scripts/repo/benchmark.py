"""Benchmark: drctl backup/restore vs a raw parallel GET and vs restic, on the same S3 server.

    eval "$(drctl local up)"; python -m drctl.repo.benchmark --bucket demo-backups --size-mib 2048

Prints a Markdown table (not a test: figures depend on the machine and its load)."""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MiB = 1024 * 1024


def make_image(path: Path, size: int, seed: int = 42, chunk: int = 4 * MiB) -> None:
    """~40 % zero chunks, ~30 % compressible text, ~30 % random; size need not be chunk-aligned."""
    rng = random.Random(seed)
    words = [b"kernel", b"systemd", b"nginx", b"GET /index.html 200", b"postgres", b"\n", b"error"]
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
                f.write((f"block {done}\n".encode() + pool[off:off + n])[:n])
            else:
                f.write(rng.randbytes(n))
            done += n
        f.truncate(size)


def mutate(path: Path, fraction: float, chunk: int = 4 * MiB) -> None:
    size = path.stat().st_size
    rng = random.Random(7)
    with open(path, "r+b") as f:
        for i in rng.sample(range(size // chunk), max(1, int(size // chunk * fraction))):
            f.seek(i * chunk + 100)
            f.write(rng.randbytes(64))


def run(argv: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS of the child in KiB, stdout)."""
    t = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(argv, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(p.pid, 0)  # this child's own peak RSS
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t
        out.seek(0), err.seek(0)
        if p.returncode != 0:
            sys.exit(f"{' '.join(argv[:3])} failed ({p.returncode}): {err.read()[-500:]}")
        return wall, usage.ru_maxrss, out.read()


def raw_get(bucket: str, prefix: str, threads: int) -> tuple[float, int]:
    import boto3

    s3 = boto3.client("s3")
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])]
    t = time.monotonic()
    with ThreadPoolExecutor(threads) as ex:
        total = sum(ex.map(lambda k: len(s3.get_object(Bucket=bucket, Key=k)["Body"].read()), keys))
    return time.monotonic() - t, total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--concurrent", type=int, default=10, help="restores at once (0: skip)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--no-restic", action="store_true")
    args = ap.parse_args()
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="drctl-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    tag = time.strftime("%Y%m%d%H%M%S")
    # A throwaway password for throwaway repositories, passed to the children by environment only.
    env = dict(os.environ, DRCTL_PASSWORD=f"bench-{tag}", RESTIC_PASSWORD=f"bench-{tag}")
    drctl = [sys.executable, "-m", "drctl.cli"]
    url = f"s3://{args.bucket}/bench-{tag}"
    img = work / "disk.img"
    make_image(img, args.size_mib * MiB + 12345)
    size = img.stat().st_size
    rows: list[tuple[str, str]] = []

    run(drctl + ["repo", "init", url], env)
    t_b, _, out = run(drctl + ["backup", url, "--server", "bench", "--disk", "vda", str(img), "--json"], env)
    first = json.loads(out.splitlines()[-1])
    t_r, rss, _ = run(drctl + ["restore", url, "--server", "bench", "--out", str(work / "r.img")], env)
    same = subprocess.run(["cmp", str(img), str(work / "r.img")]).returncode == 0
    (work / "r.img").unlink()
    t_get, got = raw_get(args.bucket, f"bench-{tag}/data/", 16)
    rows += [("image", f"{size / MiB:.0f} MiB, stored {first['uploaded_bytes'] / MiB:.0f} MiB "
                       f"in {first['new_chunks']} chunks"),
             ("drctl backup", f"{t_b:.1f} s ({size / MiB / t_b:.0f} MiB/s of image)"),
             ("drctl restore", f"{t_r:.1f} s ({size / MiB / t_r:.0f} MiB/s of image), bit-identical: {same}"),
             ("raw parallel GET of the stored bytes (16 threads)", f"{t_get:.1f} s ({got / MiB / t_get:.0f} MiB/s)"),
             ("restore / raw GET time ratio (target >= 0.9)", f"{t_get / t_r:.2f}"),
             ("restore peak RSS (target <= 256 MiB)", f"{rss / 1024:.0f} MiB")]
    mutate(img, 0.01)
    _, _, out = run(drctl + ["backup", url, "--server", "bench", "--disk", "vda", str(img), "--json"], env)
    second = json.loads(out.splitlines()[-1])
    rows.append(("second backup after 1 % changed (target <= 2 %)",
                 f"{second['uploaded_bytes'] / MiB:.1f} MiB = {100 * second['uploaded_bytes'] / size:.2f} % of the image"))
    if args.concurrent:
        t = time.monotonic()
        procs = [subprocess.Popen(drctl + ["restore", url, "--server", "bench", "--out", str(work / f"c{i}.img")],
                                  env=env, stdout=subprocess.DEVNULL) for i in range(args.concurrent)]
        ok = all(p.wait() == 0 for p in procs)
        t_c = time.monotonic() - t
        for i in range(args.concurrent):
            (work / f"c{i}.img").unlink(missing_ok=True)
        rows.append((f"{args.concurrent} restores at once (total vs one)",
                     f"{t_c:.1f} s, {args.concurrent * size / MiB / t_c:.0f} MiB/s vs {size / MiB / t_r:.0f} MiB/s, all ok: {ok}"))
    if not args.no_restic and shutil.which("restic") and endpoint:
        repo = f"s3:{endpoint}/{args.bucket}/restic-{tag}"
        run(["restic", "-r", repo, "init"], env)
        t_rb, _, _ = run(["restic", "-r", repo, "backup", str(img)], env)
        rdir = work / "restic-out"
        t_rr, _, _ = run(["restic", "-r", repo, "restore", "latest", "--target", str(rdir)], env)
        shutil.rmtree(rdir, ignore_errors=True)
        rows += [("restic backup (of the 1 %-changed image, first backup)", f"{t_rb:.1f} s"),
                 ("restic restore", f"{t_rr:.1f} s"),
                 ("restore speed-up vs restic (target >= 1.5)", f"{t_rr / t_r:.2f}x")]
    img.unlink()
    print("| measure | result |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    print(f"\n(load average at the end: {open('/proc/loadavg').read().split()[0]}, {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
