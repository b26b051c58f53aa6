"""The S3 vault's dynamic provider, for real against the embedded SeaweedFS through the provider's
own CRUD methods: buckets with versioning and Object Lock, read back from the store; a delete
refused while locked (or any) backups remain."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from drctl.components.s3_vault import S3VaultBucketProvider
from drctl.storage.s3_client import create_bucket
from drctl.storage.vault_bucket import (
    VaultBucketUnsafe,
    VaultDeleteRefused,
    diff_bucket,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def store(seaweed_server, monkeypatch):
    for k in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    for k, v in seaweed_server.env.items():
        monkeypatch.setenv(k, v)
    return seaweed_server.client()


def _props(**extra):
    name = f"t-vault-{uuid.uuid4().hex[:10]}"
    return {
        "bucket": name,
        "endpoint": "",
        "region": "",
        "retention_days": 0,
        "tags": {"client": "bravo", "purpose": "backups"},
        **extra,
    }


def test_create_makes_a_versioned_object_lock_bucket_and_read_sees_it(store) -> None:
    provider = S3VaultBucketProvider()
    props = _props()
    created = provider.create(props)
    assert created.id == props["bucket"]
    assert created.outs["versioning"] is True and created.outs["object_lock"] is True
    # what the store itself says, not what the provider returned
    assert store.get_bucket_versioning(Bucket=props["bucket"])["Status"] == "Enabled"
    lock = store.get_object_lock_configuration(Bucket=props["bucket"])["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    read = provider.read(props["bucket"], props)
    assert read.id == props["bucket"] and read.outs["object_lock"] is True
    provider.delete(props["bucket"], props)  # empty: deleted
    assert provider.read(props["bucket"], props).id is None


def test_delete_is_refused_while_a_locked_backup_exists(store) -> None:
    provider = S3VaultBucketProvider()
    props = _props()
    provider.create(props)
    bucket = props["bucket"]
    until = datetime.now(UTC) + timedelta(days=1)
    store.put_object(
        Bucket=bucket,
        Key="repo/data/ab/chunk",
        Body=b"x" * 10,
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=until,
    )
    with pytest.raises(
        VaultDeleteRefused,
        match=rf"s3://{bucket} holds 1 object version\(s\) under Object Lock \(retained until",
    ):
        provider.delete(bucket, props)
    assert store.get_object(Bucket=bucket, Key="repo/data/ab/chunk")["Body"].read() == b"x" * 10
    # cleanup: governance retention may be bypassed by the test, never by the provider
    for v in store.list_object_versions(Bucket=bucket).get("Versions", []):
        store.delete_object(
            Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"], BypassGovernanceRetention=True
        )


def test_delete_is_refused_while_unlocked_backups_remain_too(store) -> None:
    provider = S3VaultBucketProvider()
    props = _props()
    provider.create(props)
    store.put_object(Bucket=props["bucket"], Key="repo/config", Body=b"c")
    with pytest.raises(VaultDeleteRefused, match="still holds 1 object version"):
        provider.delete(props["bucket"], props)
    assert provider.read(props["bucket"], props).id == props["bucket"]


def test_a_bucket_without_object_lock_is_not_adopted(store) -> None:
    props = _props()
    create_bucket(store, props["bucket"], object_lock=False)
    with pytest.raises(VaultBucketUnsafe, match="exists without Object Lock"):
        S3VaultBucketProvider().create(props)


def test_diff_replaces_on_a_new_name_and_updates_tags_in_place(store) -> None:
    provider = S3VaultBucketProvider()
    props = _props()
    provider.create(props)
    retagged = {**props, "tags": {"client": "bravo", "purpose": "backups", "owner": "ops"}}
    d = provider.diff(props["bucket"], props, retagged)
    assert d.changes is True and d.replaces == []
    provider.update(props["bucket"], props, retagged)
    tags = {t["Key"]: t["Value"] for t in store.get_bucket_tagging(Bucket=props["bucket"])["TagSet"]}
    assert tags["owner"] == "ops"
    assert diff_bucket(props, {**props, "bucket": "other"}) == (True, ["bucket"])
    assert diff_bucket(props, dict(props)) == (False, [])
    provider.delete(props["bucket"], props)
