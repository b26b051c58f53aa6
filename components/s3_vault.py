"""The vault's buckets on an S3-only cloud (Flexible Engine's OBS has no Swift): a Pulumi dynamic
provider on boto3 that creates each bucket with versioning and Object Lock. The operations are
:mod:`drctl.storage.vault_bucket`'s:

- create: the bucket with Object Lock enabled (only possible at creation), versioning on, tags,
  and a default retention when ``retention_days`` > 0; an existing bucket is adopted only if it
  already has both (Object Lock cannot be turned on later);
- read: what the store says now (versioning, Object Lock, default retention);
- diff: a new bucket name or endpoint replaces the bucket, new tags or retention update it;
- delete: refused while any object version is under retention or legal hold, and refused while
  the bucket holds anything (a vault is never emptied by a stack operation), else the empty
  bucket is deleted.

Credentials come from the standard AWS chain of the process running the provider (never inputs:
those are stored in the stack's state). The CRUD functions take a boto3 client so tests run them
against a real store; :class:`S3VaultBucketProvider` only builds the client.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi.dynamic as dyn

from drctl.storage.vault_bucket import (
    apply_settings,
    create_bucket,
    delete_bucket,
    diff_bucket,
    read_bucket,
    vault_client,
)


class S3VaultBucketProvider(dyn.ResourceProvider):
    """The dynamic provider: builds a client from the inputs' endpoint and region, then calls the
    CRUD functions above."""

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        state = create_bucket(vault_client(props.get("endpoint", ""), props.get("region", "")), props)
        return dyn.CreateResult(props["bucket"], {**props, **state})

    def read(self, id_: str, props: dict[str, Any]) -> dyn.ReadResult:
        state = read_bucket(vault_client(props.get("endpoint", ""), props.get("region", "")), id_)
        if state is None:
            return dyn.ReadResult(None, {})
        return dyn.ReadResult(id_, {**props, **state})

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        changes, replaces = diff_bucket(olds, news)
        return dyn.DiffResult(changes=changes, replaces=replaces, delete_before_replace=False)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        client = vault_client(news.get("endpoint", ""), news.get("region", ""))
        apply_settings(client, news)
        return dyn.UpdateResult({**news, **(read_bucket(client, news["bucket"]) or {})})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        delete_bucket(vault_client(props.get("endpoint", ""), props.get("region", "")), id_)


class S3VaultBucket(dyn.Resource):
    """One vault bucket on an S3 store, versioned and with Object Lock."""

    bucket: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        bucket: str,
        tags: dict[str, str],
        endpoint: str = "",
        region: str = "",
        retention_days: int = 0,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            S3VaultBucketProvider(),
            name,
            {
                "bucket": bucket,
                "endpoint": endpoint,
                "region": region,
                "retention_days": retention_days,
                "tags": tags,
                "versioning": None,
                "object_lock": None,
            },
            opts,
        )
