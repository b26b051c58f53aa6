"""The S3 backend against the real servers: errors as a user meets them, Object Lock, and the
Swift container <-> S3 bucket identity the stack relies on."""

from __future__ import annotations

import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from drctl.errors import EXIT_REPO_MISSING, EXIT_STORAGE
from drctl.storage import BucketMissing, StorageAccessDenied, StorageUnavailable, open_storage
from drctl.storage.retry import RetryingStorage
from drctl.storage.s3 import RetentionRejected, S3Storage
from drctl.storage.s3_client import make_client
from tests.conftest import S3Server, swift_request

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("server_fixture", ["seaweed_server", "swift_server"])
def test_bad_credentials_are_access_denied_and_not_retried(request, server_fixture):
    server: S3Server = request.getfixturevalue(server_fixture)
    wrong = S3Server(server.name, server.endpoint, server.access_key_id, "definitely-wrong-secret")
    sleeps: list[float] = []
    store = RetryingStorage(S3Storage("demo-backups", "", wrong.client()), sleep=sleeps.append)
    assert store.inner._lean is not None  # GETs take the lean path (drctl.storage.s3_lean)
    for call in (lambda: store.put("config", b"x"), lambda: store.get("config")):
        with pytest.raises(StorageAccessDenied) as exc:
            call()
        assert sleeps == []  # refused credentials are an answer, not a blip
        assert exc.value.exit_code == EXIT_STORAGE
        assert "definitely-wrong-secret" not in exc.value.message
        assert "credentials" in exc.value.message


@pytest.mark.parametrize("lean", ["1", "0"], ids=["lean-get", "botocore-get"])
def test_unreachable_endpoint_is_unavailable_after_the_retry_budget(monkeypatch, lean):
    port = _free_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("DRCTL_S3_LEAN_GET", lean)
    sleeps: list[float] = []
    store = RetryingStorage(
        S3Storage.from_environment("demo-backups", "repo"), attempts=3, budget_seconds=5, sleep=sleeps.append
    )
    assert (store.inner._lean is not None) is (lean == "1")
    with pytest.raises(StorageUnavailable) as exc:
        store.get("config")
    assert len(sleeps) == 2  # three tries
    msg = exc.value.message
    assert f"127.0.0.1:{port}" in msg and "drctl local status" in msg and "3 tries" in msg


@pytest.mark.parametrize("server_fixture", ["seaweed_server", "swift_server"])
def test_missing_bucket_is_repository_missing(request, server_fixture, monkeypatch):
    server: S3Server = request.getfixturevalue(server_fixture)
    for k, v in server.env.items():
        monkeypatch.setenv(k, v)
    store = open_storage("s3://no-such-bucket-drctl/repo")
    for op in (
        lambda: store.get("config"),
        lambda: store.exists("config"),
        lambda: store.put("config", b"x"),
        lambda: list(store.list("keys/")),
    ):
        with pytest.raises(BucketMissing) as exc:
            op()
        assert exc.value.exit_code == EXIT_REPO_MISSING
        assert "no-such-bucket-drctl" in exc.value.message and "drctl repo init" in exc.value.message


def test_retention_is_written_and_read_back_on_a_lock_bucket(seaweed_s3, monkeypatch):
    monkeypatch.setenv("DRCTL_S3_LOCK_MODE", "GOVERNANCE")
    until = (datetime.now(UTC) + timedelta(seconds=30)).replace(microsecond=0)
    seaweed_s3.storage("repo").put("snapshots/s1", b"manifest", retain_until=until)
    head = seaweed_s3.client().head_object(Bucket=seaweed_s3.bucket, Key="repo/snapshots/s1")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockRetainUntilDate"] == until


def test_retention_on_a_bucket_without_object_lock_is_refused_clearly(seaweed_s3_plain):
    store = seaweed_s3_plain.storage("repo")
    with pytest.raises(RetentionRejected) as exc:
        store.put("snapshots/s1", b"m", retain_until=datetime.now(UTC) + timedelta(seconds=30))
    assert "Object Lock" in exc.value.message and "snapshots/s1" in exc.value.message
    assert store.lock_support().enforced is False


def test_swift_ignores_object_lock_and_we_notice(swift_s3):
    store = swift_s3.storage("repo")
    # Swift answers 200 to a PUT with retention...
    store.put("snapshots/s1", b"m", retain_until=datetime.now(UTC) + timedelta(days=1))
    # ...but nothing is recorded, and lock_support says so.
    head = swift_s3.client().head_object(Bucket=swift_s3.bucket, Key="repo/snapshots/s1")
    assert "ObjectLockMode" not in head
    support = store.lock_support()
    assert support.enforced is False and "NOT enforced" in support.detail


def test_conditional_writes_are_probed_not_assumed(seaweed_s3, swift_s3):
    """SeaweedFS honours If-None-Match (412 on the second write); Swift's s3api does not
    implement it, and create-if-absent there falls back to the write-then-list protocol."""
    seaweed = seaweed_s3.storage("reports")
    support = seaweed.conditional_put_support()
    assert support.honoured is True, support.detail
    swift = swift_s3.storage("reports")
    support = swift.conditional_put_support()
    assert support.honoured is False and "NotImplemented" in support.detail
    for store in (seaweed, swift):
        assert store.put_if_absent("locks/activation.json", b"first") is True
        assert store.put_if_absent("locks/activation.json", b"second") is False
        assert store.get("locks/activation.json") == b"first"
        assert [o.key for o in store.list()] == ["locks/activation.json"]  # no probe, no claim left


def _drop_if_none_match(request, **_):
    """A proxy or store that loses the condition on its way: the PUT arrives unconditional."""
    if "If-None-Match" in request.headers:
        del request.headers["If-None-Match"]


def test_a_store_that_ignores_the_condition_is_detected_and_still_has_one_winner(seaweed_s3):
    client = seaweed_s3.client()
    client.meta.events.register("before-sign.s3.PutObject", _drop_if_none_match)
    store = S3Storage(seaweed_s3.bucket, "reports", client)
    support = store.conditional_put_support()
    assert support.honoured is False and "ignores the condition" in support.detail
    gate = threading.Barrier(4)

    def write(i):
        gate.wait()
        return store.put_if_absent("locks/activation.json", f"writer {i}".encode())

    with ThreadPoolExecutor(max_workers=4) as pool:
        won = list(pool.map(write, range(4)))
    assert won.count(True) == 1
    assert store.get("locks/activation.json") == f"writer {won.index(True)}".encode()
    assert [o.key for o in store.list()] == ["locks/activation.json"]


def test_swift_container_made_with_the_swift_api_is_the_s3_bucket(swift_container):
    """The stack declares a Swift container; the backup repository uses it as an S3 bucket."""
    token, url = swift_container.extra["token"], swift_container.extra["container_url"]
    store = open_storage_for(swift_container, "repo")
    # Written through S3, read through Swift...
    store.put("keys/client", b"wrapped key")
    status, _, body = swift_request("GET", f"{url}/repo/keys/client", token)
    assert (status, body) == (200, b"wrapped key")
    # ...written through Swift, read and listed through S3.
    status, _, _ = swift_request("PUT", f"{url}/repo/config", token, data=b"repo config")
    assert status == 201
    assert store.get("config") == b"repo config"
    assert [o.key for o in store.list()] == ["config", "keys/client"]
    # Bulk delete goes through s3api's DeleteObjects (needs the Content-MD5 handler).
    store.delete_many(["config", "keys/client"])
    status, _, body = swift_request("GET", f"{url}?prefix=repo/", token)
    assert (status, body) in ((200, b""), (204, b""))


def open_storage_for(target, prefix):
    return RetryingStorage(target.storage(prefix))


def test_the_standard_env_chain_reaches_the_server(seaweed_s3, monkeypatch):
    """`drctl` gets endpoint and keys from AWS_* variables, path-style, as `drctl local up` prints."""
    seaweed_s3.apply_env(monkeypatch)
    monkeypatch.delenv("DRCTL_S3_ADDRESSING")
    store = open_storage(seaweed_s3.url("repo"))
    store.put("config", b"c")
    assert seaweed_s3.client().get_object(Bucket=seaweed_s3.bucket, Key="repo/config")["Body"].read() == b"c"
    assert make_client().meta.config.s3["addressing_style"] == "path"


def test_restore_sized_parallel_gets_share_one_pool(seaweed_s3, caplog):
    """64 GETs in flight on one client: no "connection pool is full" (connections thrown away
    and re-opened, which is what a too-small pool does to a parallel restore)."""
    from concurrent.futures import ThreadPoolExecutor

    store = seaweed_s3.storage("repo")
    for i in range(64):
        store.put(f"data/{i:02d}", bytes([i]) * 100_000)
    with caplog.at_level(logging.WARNING, logger="urllib3"), ThreadPoolExecutor(64) as pool:
        got = list(pool.map(lambda i: store.get(f"data/{i:02d}"), range(64)))
    assert got == [bytes([i]) * 100_000 for i in range(64)]
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
