"""Create-if-absent on S3: ``PutObject`` with ``If-None-Match: *``, and the probe that tells
whether a store honours it.

SeaweedFS and AWS S3 refuse the second write of a key with 412 PreconditionFailed; Swift's
s3api answers NotImplemented; a store may also accept the header and overwrite anyway. So the
answer is never assumed from the store's name or a status code alone: :func:`probe` writes a key
twice with the condition and reads it back. botocore errors leave these functions untranslated;
:class:`drctl.storage.s3.S3Storage` translates them where it calls them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import botocore.exceptions as bce

from drctl.storage.base import StorageUnavailable
from drctl.storage.s3_client import error_code, http_status

log = logging.getLogger(__name__)

# How stores without conditional writes answer one: Swift's s3api says NotImplemented (501),
# others reject the header as an invalid argument.
_NOT_IMPLEMENTED = {"NotImplemented", "InvalidArgument", "InvalidRequest", "501"}


@dataclass(frozen=True)
class ConditionalPutSupport:
    """Whether the store honours ``If-None-Match: *`` on PutObject, as observed on a probe."""

    honoured: bool
    detail: str


def _refused(e: bce.ClientError) -> bool:
    """The store refused the write because the key exists."""
    return error_code(e) == "PreconditionFailed" or http_status(e) == 412


def put_if_none_match(client: Any, bucket: str, key: str, data: bytes, where: str) -> bool:
    """True when this call created ``key``, False when it existed (412)."""
    try:
        client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
    except bce.ClientError as e:
        if _refused(e):
            return False
        if error_code(e) == "ConditionalRequestConflict" or http_status(e) == 409:
            # AWS: another conditional write of this key is in flight; asking again settles it.
            raise StorageUnavailable(f"{where}: a concurrent write of {key!r} is in flight") from e
        raise
    return True


def probe(client: Any, bucket: str, key: str, where: str) -> ConditionalPutSupport:
    """Write ``key`` twice with ``If-None-Match: *``, read it back, delete every version made."""
    versions: list[str | None] = []
    try:
        try:
            versions.append(
                client.put_object(Bucket=bucket, Key=key, Body=b"first", IfNoneMatch="*").get("VersionId")
            )
        except bce.ClientError as e:
            if error_code(e) in _NOT_IMPLEMENTED or http_status(e) == 501:
                return ConditionalPutSupport(
                    False,
                    f"{where}: the store does not implement conditional writes ({error_code(e) or http_status(e)}); "
                    "create-if-absent uses the write-then-list protocol",
                )
            raise
        try:
            versions.append(
                client.put_object(Bucket=bucket, Key=key, Body=b"second", IfNoneMatch="*").get("VersionId")
            )
        except bce.ClientError as e:
            if not _refused(e):
                raise
        else:
            return ConditionalPutSupport(
                False,
                f"{where}: the store accepted If-None-Match but overwrote the probe: it ignores the "
                "condition; create-if-absent uses the write-then-list protocol",
            )
        with client.get_object(Bucket=bucket, Key=key)["Body"] as body:
            kept = body.read()
    finally:
        for version in versions or [None]:
            _delete_quietly(client, bucket, key, version, where)
    if kept != b"first":
        return ConditionalPutSupport(
            False,
            f"{where}: the store refused the second conditional write but changed the probe: "
            "create-if-absent uses the write-then-list protocol",
        )
    return ConditionalPutSupport(True, f"{where}: conditional writes (If-None-Match: *) are honoured")


def _delete_quietly(client: Any, bucket: str, key: str, version: str | None, where: str) -> None:
    try:
        client.delete_object(Bucket=bucket, Key=key, **({"VersionId": version} if version else {}))
    except (bce.ClientError, bce.BotoCoreError) as e:
        log.info("could not remove the conditional-write probe %s from %s: %s", key, where, e)
