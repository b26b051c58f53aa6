"""Benchmark: `drctl wal push` as PostgreSQL's archive_command, segments per second, with and
without the unlocked-key cache (docs/benchmarks.md).

    .venv/bin/python benchmarks/wal_benchmark.py                  # its own embedded SeaweedFS
    #   --segments 20 --rounds 3 --port-base 21200 --workdir DIR

PostgreSQL runs archive_command once per 16 MiB WAL segment, one at a time, and cannot recycle a
segment before it returns: segments/s of sequential `drctl wal push` processes bounds how much WAL
a server may write per second before archiving falls behind. Each round pushes ``--segments``
fresh segments (each a new process, exactly as PostgreSQL runs it, password from a 0600 file) once
without ``--key-cache`` (every call lists the key slots and runs scrypt) and once with it (the first
call derives the key and writes the cache, the others read it). The segments look like WAL of a
busy OLTP server: 8 KiB pages, about a third random (full-page images of data pages), a third
record-like text, a third zero fill. Markdown table on stdout, progress on stderr; the store it
starts (its own state directory and ports) is stopped and everything written is removed.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout
from benchmarks.restore_benchmark import MiB, cpu_model, load, say
from benchmarks.targets import Row, median

SEGMENT = 16 * MiB
PAGE = 8192


def make_segment(path: Path, seed: int) -> None:
    rng = random.Random(seed)
    text = b"".join(
        f"INSERT INTO orders VALUES ({i}, 'customer-{i % 977}', {i * 7 % 10007}.{i % 100:02d}, now());\n".encode()
        for i in range(200)
    )
    pages = []
    for _ in range(SEGMENT // PAGE):
        kind = rng.random()
        if kind < 0.34:
            pages.append(rng.randbytes(PAGE))
        elif kind < 0.67:
            start = rng.randrange(len(text) - PAGE)
            pages.append(text[start : start + PAGE])
        else:
            pages.append(bytes(PAGE))
    path.write_bytes(b"".join(pages))


def segment_name(n: int) -> str:
    return f"00000001{n // 256:08X}{n % 256:08X}"


def push_all(drctl: list[str], base: list[str], segments: list[Path], first: int, env: dict) -> float:
    """Push every segment in its own process, one after the other; the wall time."""
    t = time.monotonic()
    for i, seg in enumerate(segments):
        argv = [*drctl, "wal", "push", *base, str(seg), segment_name(first + i)]
        p = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if p.returncode != 0:
            raise SystemExit(f"benchmark: wal push failed (exit {p.returncode}): {p.stderr.strip()[-600:]}")
    return time.monotonic() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segments", type=int, default=20, help="segments pushed per round and mode")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--port-base", type=int, default=21200, help="the embedded store's five ports")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args(argv)

    from drctl.devstore import LocalStore, LocalStorePorts

    start_load, t_start = load(), time.monotonic()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="drctl-wal-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    store = LocalStore(work / "store", LocalStorePorts.from_base(args.port_base))
    rows: list[Row] = []
    try:
        say(f"embedded SeaweedFS on port {args.port_base} (state in {work / 'store'})")
        info = store.up(buckets=(("wal-bench", False),))
        env = dict(
            os.environ,
            AWS_ENDPOINT_URL=info.endpoint,
            AWS_ACCESS_KEY_ID=info.access_key_id or "",
            AWS_SECRET_ACCESS_KEY=Path(info.secret_file).read_text().strip(),
            AWS_DEFAULT_REGION="us-east-1",
            DRCTL_S3_ADDRESSING="path",
        )
        env.pop("DRCTL_PASSWORD", None)
        password = work / "repo.pw"
        password.write_text(secrets.token_urlsafe(24) + "\n")
        password.chmod(0o600)
        url = "s3://wal-bench/repo"
        drctl = [sys.executable, "-m", "drctl.cli"]
        subprocess.run(
            [*drctl, "repo", "init", url, "--password-file", str(password)],
            env=env,
            check=True,
            capture_output=True,
        )
        say(f"generating {args.segments} segments of 16 MiB")
        segments = []
        for i in range(args.segments):
            segments.append(work / f"seg{i}")
            make_segment(segments[-1], seed=i)
        cache = work / "wal.key"
        speeds: dict[str, list[float]] = {"password": [], "cache": []}
        n = 0
        for rnd in range(args.rounds):
            for mode in ("password", "cache") if rnd % 2 == 0 else ("cache", "password"):
                cache.unlink(missing_ok=True)  # each cached round pays its one derivation too
                base = ["--repo", url, "--server", f"bench-{mode}", "--password-file", str(password)]
                if mode == "cache":
                    base += ["--key-cache", str(cache)]
                wall = push_all(drctl, base, segments, n, env)
                n += len(segments)
                speeds[mode].append(len(segments) / wall)
                say(f"round {rnd + 1}, {mode}: {speeds[mode][-1]:.2f} segments/s")
        pw, ca = median(speeds["password"]), median(speeds["cache"])
        runs = lambda xs: ", ".join(f"{x:.2f}" for x in xs)  # noqa: E731
        rows += [
            Row(
                "wal push without --key-cache (scrypt every call)",
                f"{pw:.2f} segments/s = {pw * 16:.0f} MiB/s of WAL (runs {runs(speeds['password'])})",
            ),
            Row(
                "wal push with --key-cache",
                f"{ca:.2f} segments/s = {ca * 16:.0f} MiB/s of WAL (runs {runs(speeds['cache'])})",
            ),
            Row("key cache speed-up", f"{ca / pw:.2f}x", "> 1", ca > pw),
            Row("time per push saved by the cache", f"{(1 / pw - 1 / ca) * 1000:.0f} ms"),
        ]
    finally:
        store.down()
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"Machine: {os.uname().nodename}, {cpu_model()}, {os.cpu_count()} CPUs, Python "
        f"{sys.version.split()[0]}; store: embedded SeaweedFS; {args.segments} segments x {args.rounds} "
        f"rounds per mode; load average at start {start_load}, at end {load()}; "
        f"{time.monotonic() - t_start:.0f} s\n"
    )
    print("| measure | result | target | verdict |\n|---|---|---|---|")
    for row in rows:
        print(row.cells())
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
