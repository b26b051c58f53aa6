"""The S3 vault's buckets as storage operations: create (versioning and Object Lock), read back,
diff, and a delete refused while backups remain. Plain functions over a boto3 client, so the
Pulumi dynamic provider (:mod:`drctl.components.s3_vault`) and tests against a real store call
the same code.

- create: the bucket with Object Lock enabled (only possible at creation), versioning on, tags,
  and a default retention when ``retention_days`` > 0; an existing bucket is adopted only if it
  already has Object Lock (it cannot be turned on later);
- read: what the store says now (versioning, Object Lock, default retention);
- diff: a new bucket name or endpoint replaces the bucket, new tags or retention update it;
- delete: refused while any object version is under retention or legal hold, and refused while
  the bucket holds anything (a vault is never emptied by a stack operation), else the empty
  bucket is deleted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from drctl.errors import DrctlError

REPLACE_ON = ("bucket", "endpoint")


class VaultDeleteRefused(DrctlError):
    """A vault bucket still holds backups (locked or not); it is not deleted."""


class VaultBucketUnsafe(DrctlError):
    """An existing bucket cannot be a vault bucket (no Object Lock or no versioning)."""


def vault_client(endpoint: str, region: str) -> Any:
    from drctl.storage.s3_client import make_client

    return make_client(endpoint_url=endpoint or None, region=region or None, max_connections=4)


def _call(client: Any, bucket: str, op: str, **kwargs: Any) -> Any:
    """One S3 call, its errors translated into drctl's storage errors naming the bucket."""
    import botocore.exceptions as bce

    from drctl.storage.s3_client import translate_error

    try:
        return getattr(client, op)(Bucket=bucket, **kwargs)
    except (bce.ClientError, bce.BotoCoreError) as e:
        raise translate_error(e, f"s3://{bucket}", client.meta.endpoint_url, bucket=bucket) from e


def read_bucket(client: Any, bucket: str) -> dict[str, Any] | None:
    """The bucket's protection as the store reports it; None if the bucket does not exist."""
    import botocore.exceptions as bce

    from drctl.storage.s3_client import error_code, translate_error

    try:
        client.head_bucket(Bucket=bucket)
    except bce.ClientError as e:
        if error_code(e) in ("404", "NoSuchBucket", "NotFound"):
            return None
        raise translate_error(e, f"s3://{bucket}", client.meta.endpoint_url, bucket=bucket) from e
    versioning = _call(client, bucket, "get_bucket_versioning").get("Status", "")
    try:
        lock = client.get_object_lock_configuration(Bucket=bucket).get("ObjectLockConfiguration", {})
    except bce.ClientError as e:
        if error_code(e) not in ("ObjectLockConfigurationNotFoundError", "NoSuchObjectLockConfiguration"):
            raise
        lock = {}
    days = lock.get("Rule", {}).get("DefaultRetention", {}).get("Days", 0)
    return {
        "bucket": bucket,
        "versioning": versioning == "Enabled",
        "object_lock": lock.get("ObjectLockEnabled") == "Enabled",
        "retention_days": int(days or 0),
    }


def apply_settings(client: Any, props: dict[str, Any]) -> None:
    bucket = props["bucket"]
    _call(client, bucket, "put_bucket_versioning", VersioningConfiguration={"Status": "Enabled"})
    config: dict[str, Any] = {"ObjectLockEnabled": "Enabled"}
    if int(props.get("retention_days") or 0) > 0:
        config["Rule"] = {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": int(props["retention_days"])}}
    _call(client, bucket, "put_object_lock_configuration", ObjectLockConfiguration=config)
    tags = props.get("tags") or {}
    if tags:
        tag_set = [{"Key": str(k), "Value": str(v)} for k, v in sorted(tags.items())]
        _call(client, bucket, "put_bucket_tagging", Tagging={"TagSet": tag_set})


def create_bucket(client: Any, props: dict[str, Any]) -> dict[str, Any]:
    """Create (or adopt, if already protected) the bucket; returns what :func:`read_bucket` sees."""
    from drctl.storage.s3_client import create_bucket as create

    bucket = props["bucket"]
    existing = read_bucket(client, bucket)
    if existing is not None and not existing["object_lock"]:
        raise VaultBucketUnsafe(
            f"s3://{bucket} exists without Object Lock, which can only be enabled when a bucket is "
            "created; choose another client id or move its data and delete the bucket"
        )
    if existing is None:
        create(client, bucket, object_lock=True)
    apply_settings(client, props)
    state = read_bucket(client, bucket)
    if state is None or not (state["versioning"] and state["object_lock"]):
        raise VaultBucketUnsafe(
            f"s3://{bucket}: the store did not keep versioning and Object Lock on it ({state}); "
            "this object store cannot hold a vault"
        )
    return state


def diff_bucket(olds: dict[str, Any], news: dict[str, Any]) -> tuple[bool, list[str]]:
    """(changes, properties that force a replacement)."""
    keys = ("bucket", "endpoint", "region", "retention_days", "tags")
    changed = [k for k in keys if (olds.get(k) or None) != (news.get(k) or None)]
    return bool(changed), [k for k in changed if k in REPLACE_ON]


def locked_versions(
    client: Any, bucket: str, now: datetime | None = None
) -> tuple[int, int, datetime | None]:
    """(object versions, versions under retention or legal hold, the latest retain-until date)."""
    import botocore.exceptions as bce

    now = now or datetime.now(UTC)
    total = locked = 0
    latest: datetime | None = None
    pages = client.get_paginator("list_object_versions").paginate(Bucket=bucket)
    for page in pages:
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            total += 1
            if "Size" not in v:  # a delete marker carries no retention
                continue
            ref = {"Bucket": bucket, "Key": v["Key"], "VersionId": v["VersionId"]}
            try:
                until = client.get_object_retention(**ref).get("Retention", {}).get("RetainUntilDate")
            except bce.ClientError:
                until = None  # no retention on this version
            try:
                hold = client.get_object_legal_hold(**ref).get("LegalHold", {}).get("Status") == "ON"
            except bce.ClientError:
                hold = False
            if hold or (until is not None and until > now):
                locked += 1
                if until is not None and (latest is None or until > latest):
                    latest = until
    return total, locked, latest


def delete_bucket(client: Any, bucket: str) -> None:
    """Delete the vault bucket if it is empty; refuse (naming why) while it holds anything."""
    if read_bucket(client, bucket) is None:
        return
    total, locked, latest = locked_versions(client, bucket)
    if locked:
        until = f" (retained until {latest:%Y-%m-%d %H:%M} UTC)" if latest else " (legal hold)"
        raise VaultDeleteRefused(
            f"s3://{bucket} holds {locked} object version(s) under Object Lock{until}: the vault "
            "keeps the client's backups until their retention ends; it is not deleted"
        )
    if total:
        raise VaultDeleteRefused(
            f"s3://{bucket} still holds {total} object version(s): a vault is never emptied by a "
            "stack operation; move or delete the backups deliberately (drctl forget/prune), then retry"
        )
    _call(client, bucket, "delete_bucket")
