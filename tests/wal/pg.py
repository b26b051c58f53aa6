"""A real PostgreSQL 15 cluster archiving into the repository on SeaweedFS (shared by tests/wal).

PostgreSQL refuses to run as root: the clusters run as the ``postgres`` user (Debian's package
creates it) in a directory it owns; its archive_command and restore_command are this checkout's
``drctl`` with the store's credentials in the server's environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drctl.repo.crypto import KdfParams
from drctl.repo.repository import init_repository

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PASSWORD = b"wal pitr test password, long enough"
DRCTL = str(Path(sys.executable).with_name("drctl"))
WAL_STATE = "wal-state.json"  # in pg_root: what `wal push --state` records for the agent
BUNDLES = Path("/var/tmp/drctl-test-agent-bundles")  # readable by the postgres user


def _drctl_for_postgres(root: Path) -> str:
    """This checkout's drctl as a database server runs it: the agent bundle (a wheel of this
    checkout and its runtime dependencies, Debian's python3.11), in a directory the postgres user
    can read wherever the checkout lives (the test venv may sit under /root)."""
    from drctl.demo.images.agent_bundle import build_agent_bundle

    BUNDLES.mkdir(mode=0o755, exist_ok=True)
    bundle = build_agent_bundle(BUNDLES)
    script = root / "drctl"
    # -S: only the bundle's packages, never Debian's older dist-packages
    script.write_text(
        f'#!/bin/sh\nPYTHONPATH={bundle / "opt-drctl"} exec /usr/bin/python3 -S -m drctl.cli "$@"\n'
    )
    script.chmod(0o755)
    return str(script)


def _as_postgres(
    argv: list[str], env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    full = ["runuser", "-u", "postgres", "--", "env", *(f"{k}={v}" for k, v in (env or {}).items()), *argv]
    return subprocess.run(full, capture_output=True, text=True, check=check, timeout=120)


class Cluster:
    def __init__(self, root: Path, name: str, env: dict[str, str]) -> None:
        self.data = root / name
        self.sock = root / f"{name}-sock"
        self.sock.mkdir()
        shutil.chown(self.sock, "postgres")
        self.log = root / f"{name}.log"
        self.env = env

    def start(self, check: bool = True) -> bool:
        opts = f"-c listen_addresses='' -k {self.sock}"
        proc = _as_postgres(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-o",
                opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
            self.env,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"pg_ctl start failed: {proc.stderr}\n{self.log.read_text()}")
        return proc.returncode == 0

    def stop(self) -> None:
        _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"], check=False)

    def sql(self, query: str) -> str:
        proc = _as_postgres(
            [
                str(PG_BIN / "psql"),
                "-h",
                str(self.sock),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-Atq",
                "-c",
                query,
            ]
        )
        return proc.stdout.strip()

    @property
    def conninfo(self) -> str:
        return f"host={self.sock} user=postgres dbname=postgres"


@pytest.fixture
def pg_root() -> Iterator[Path]:
    if not (PG_BIN / "initdb").exists():
        pytest.fail(
            "PostgreSQL 15 is not installed (Debian: postgresql-15; .ci/install-system-deps installs it)"
        )
    root = Path(tempfile.mkdtemp(prefix="drctl-pg-", dir="/var/tmp"))
    root.chmod(0o755)
    shutil.chown(root, "postgres")
    clusters: list[Cluster] = []
    yield root
    for c in clusters:
        c.stop()
    subprocess.run(["pkill", "-u", "postgres", "-f", str(root)], check=False)
    shutil.rmtree(root, ignore_errors=True)


def _segment_of(c: Cluster) -> str:
    return c.sql("select pg_walfile_name(pg_current_wal_lsn())")


def _switch_and_wait_archived(c: Cluster) -> str:
    seg = _segment_of(c)
    c.sql("select pg_switch_wal()")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        last = c.sql("select coalesce(last_archived_wal, '') from pg_stat_archiver")
        if last >= seg:
            return seg
        time.sleep(0.2)
    failed = c.sql("select last_failed_wal, failed_count from pg_stat_archiver")
    raise AssertionError(
        f"segment {seg} not archived in time (failures: {failed}): {c.log.read_text()[-2000:]}"
    )


def _restore_and_start(
    root: Path, name: str, repo_url: str, target: str, env: dict[str, str], pw: Path
) -> Cluster:
    c = Cluster(root, name, env)
    proc = subprocess.run(
        [DRCTL, "wal", "restore", "--repo", repo_url, "--server", "db01", "--password-file", str(pw)]
        + ["--to", target, "--datadir", str(c.data), "--drctl", str(root / "drctl")],
        check=False,
        env={**os.environ, **env},
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    subprocess.run(["chown", "-R", "postgres:postgres", str(c.data)], check=True)
    return c


def _wait_promoted(c: Cluster) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if c.sql("select pg_is_in_recovery()") == "f":
            return
        time.sleep(0.3)
    raise AssertionError(f"{c.data} never finished recovery: {c.log.read_text()[-2000:]}")


@pytest.fixture
def archiving(pg_root: Path, seaweed_s3):
    """A primary archiving into a fresh repository; yields (cluster, repo, url, env, password file)."""
    url = seaweed_s3.url("repo")
    repo = init_repository(seaweed_s3.storage("repo"), PASSWORD, kdf=KdfParams(n=2**12, r=8, p=1))
    pw = pg_root / "db01.pw"
    pw.write_bytes(PASSWORD + b"\n")
    pw.chmod(0o600)
    shutil.chown(pw, "postgres")
    env = {**seaweed_s3.env, "PATH": "/usr/bin:/bin", "TZ": "UTC"}
    pg_drctl = _drctl_for_postgres(pg_root)
    primary = Cluster(pg_root, "primary", env)
    _as_postgres([str(PG_BIN / "initdb"), "-D", str(primary.data), "-A", "trust", "-U", "postgres"], env)
    cache = pg_root / "wal.key"
    archive_command = (
        f"{pg_drctl} wal push --repo {url} --server db01 --password-file {pw} --key-cache {cache} "
        f"--state {pg_root / WAL_STATE} %p %f"
    )
    with open(primary.data / "postgresql.conf", "a") as f:
        f.write(
            "wal_level = replica\narchive_mode = on\n"
            f"archive_command = '{archive_command}'\n"
            "log_timezone = 'UTC'\ntimezone = 'UTC'\nshared_buffers = 16MB\nmax_wal_senders = 2\n"
        )
    primary.start()
    yield primary, repo, url, env, pw
    primary.stop()


def _base(c: Cluster, url: str, pw: Path, env: dict[str, str], root: Path) -> None:
    proc = subprocess.run(
        [DRCTL, "wal", "base", "--repo", url, "--server", "db01", "--password-file", str(pw)]
        + ["--conninfo", c.conninfo, "--workdir", str(root), "--timeout", "90"],
        check=False,
        env={**os.environ, **env},
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"{proc.stderr}\n{c.log.read_text()[-3000:]}"


def _now(c: Cluster) -> str:
    time.sleep(1.1)
    t = c.sql("select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US+00:00')")
    time.sleep(1.1)
    return t
