"""S3 backend: a repository's objects under ``prefix/`` in one bucket of any S3 store (AWS S3,
Flexible Engine OBS, Swift's s3api, SeaweedFS, MinIO...).

The client, its configuration and the translation of botocore errors are
:mod:`drctl.storage.s3_client`; GETs, PUTs without retention and listings, the hot paths of
restore, backup and status, go through :mod:`drctl.storage.s3_lean`. Object Lock: retention on
put, read back by :meth:`S3Storage.lock_support` to tell a store that enforces it from one that
ignores it.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import botocore.exceptions as bce

from drctl.storage import s3_conditional
from drctl.storage.base import LockSupport, ObjectInfo, StorageError
from drctl.storage.claim import put_if_absent_by_claim
from drctl.storage.s3_client import (
    DENIED_CODES,
    MISSING_KEY_CODES,
    create_bucket,
    error_code,
    http_status,
    make_client,
    translate_error,
)
from drctl.storage.s3_lean import lean_client

log = logging.getLogger(__name__)

T = TypeVar("T")

LOCK_MODE_ENV = "DRCTL_S3_LOCK_MODE"  # COMPLIANCE (default) or GOVERNANCE


class RetentionRejected(StorageError):
    """The store refused an object written with Object Lock retention."""


class S3Storage:
    """Objects under ``prefix/`` in ``bucket``, through one shared boto3 client (thread-safe)."""

    def __init__(self, bucket: str, prefix: str, client: Any) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.endpoint: str = client.meta.endpoint_url
        self._bucket_seen = False
        self._lean = lean_client(client, (client.meta.config.s3 or {}).get("addressing_style", ""))
        self._conditional_put: s3_conditional.ConditionalPutSupport | None = None

    @classmethod
    def from_environment(cls, bucket: str, prefix: str = "", **client_kwargs: Any) -> S3Storage:
        return cls(bucket, prefix, make_client(**client_kwargs))

    def create(self, *, object_lock: bool = False) -> None:
        """Create the bucket (for ``drctl repo init``); an existing bucket of ours is kept."""
        create_bucket(self.client, self.bucket, object_lock=object_lock)
        self._bucket_seen = True

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _key(self, key: str) -> str:
        if not key or key.startswith("/"):
            raise ValueError(f"invalid object key {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _err(self, e: Exception, key: str | None = None) -> StorageError:
        return translate_error(e, self.describe(), self.endpoint, bucket=self.bucket, key=key)

    def _check_bucket(self) -> None:
        """A bare 404 (HEAD has no body) does not say whether the bucket or the key is missing."""
        if self._bucket_seen:
            return
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except bce.ClientError as e:
            if http_status(e) == 404 or error_code(e) in ("NoSuchBucket", "404", "NotFound"):
                raise translate_error(
                    bce.ClientError({"Error": {"Code": "NoSuchBucket"}}, "HeadBucket"),
                    self.describe(),
                    self.endpoint,
                    bucket=self.bucket,
                ) from e
            raise self._err(e) from e
        except bce.BotoCoreError as e:
            raise self._err(e) from e
        self._bucket_seen = True

    # -- Storage -------------------------------------------------------------------------------

    def get(self, key: str, byte_range: tuple[int, int] | None = None) -> bytes | bytearray:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if byte_range is not None:
            start, end = byte_range
            if start < 0 or end < start:
                raise ValueError(f"invalid byte range {byte_range!r} for {key!r}")
            if end == start:
                return b""
            kwargs["Range"] = f"bytes={start}-{end - 1}"
        lean = self._lean
        if lean is not None:  # the restore's hot path (drctl.storage.s3_lean)
            return self._translated(key, lambda: lean.get(self.bucket, kwargs["Key"], byte_range))
        return self._translated(key, lambda: self._botocore_get(kwargs))

    def get_into(self, key: str, buf: memoryview) -> memoryview:
        lean = self._lean
        if lean is not None:
            return self._translated(key, lambda: lean.get_into(self.bucket, self._key(key), buf))
        kwargs = {"Bucket": self.bucket, "Key": self._key(key)}
        return memoryview(self._translated(key, lambda: self._botocore_get(kwargs)))

    def _botocore_get(self, kwargs: dict[str, Any]) -> bytes:
        resp = self.client.get_object(**kwargs)
        with resp["Body"] as body:
            data: bytes = body.read()
        return data

    def _translated(self, key: str, call: Callable[[], T]) -> T:
        """``call`` (a request on ``key``), its botocore errors translated to the storage errors."""
        try:
            data = call()
        except bce.ClientError as e:
            raise self._err(e, key) from e
        except bce.BotoCoreError as e:
            raise self._err(e, key) from e
        self._bucket_seen = True
        return data

    def put(
        self, key: str, data: bytes | bytearray | memoryview, *, retain_until: datetime | None = None
    ) -> None:
        lean = self._lean
        if lean is not None and retain_until is None:  # the backup's chunk uploads
            self._translated(key, lambda: lean.put(self.bucket, self._key(key), data))
            return
        body = bytes(data) if isinstance(data, memoryview) else data  # botocore takes no memoryview
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key), "Body": body}
        if retain_until is not None:
            kwargs["ObjectLockMode"] = os.environ.get(LOCK_MODE_ENV, "COMPLIANCE").upper()
            kwargs["ObjectLockRetainUntilDate"] = retain_until
        try:
            self.client.put_object(**kwargs)
        except bce.ClientError as e:
            if retain_until is not None and error_code(e) in ("InvalidRequest", "InvalidArgument"):
                raise RetentionRejected(
                    f"{self.describe()} refused {key!r} with Object Lock retention "
                    f"({error_code(e)}: {e.response.get('Error', {}).get('Message', '')}): the bucket has "
                    "no Object Lock; recreate it with Object Lock or back up without retention"
                ) from e
            raise self._err(e) from e
        except bce.BotoCoreError as e:
            raise self._err(e) from e
        self._bucket_seen = True

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """A conditional put (``If-None-Match: *``) where the store honours it, as a probe showed
        once per instance (:meth:`conditional_put_support`); otherwise the write-then-list
        protocol of :mod:`drctl.storage.claim`."""
        if not self.conditional_put_support().honoured:
            return put_if_absent_by_claim(self, key, data)
        try:
            created = s3_conditional.put_if_none_match(
                self.client, self.bucket, self._key(key), data, self.describe()
            )
        except (bce.ClientError, bce.BotoCoreError) as e:
            raise self._err(e, key) from e
        self._bucket_seen = True
        return created

    def conditional_put_support(self) -> s3_conditional.ConditionalPutSupport:
        """Whether this store honours conditional writes: probed once, then remembered."""
        if self._conditional_put is None:
            key = self._key(f"put-if-absent-probe/{uuid.uuid4().hex}")
            try:
                self._conditional_put = s3_conditional.probe(self.client, self.bucket, key, self.describe())
            except (bce.ClientError, bce.BotoCoreError) as e:
                raise self._err(e, key) from e
            log.info("%s", self._conditional_put.detail)
        return self._conditional_put

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except bce.ClientError as e:
            if http_status(e) == 404 or error_code(e) in MISSING_KEY_CODES:
                self._check_bucket()
                return False
            raise self._err(e) from e
        except bce.BotoCoreError as e:
            raise self._err(e) from e
        self._bucket_seen = True
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = f"{self.prefix}/" if self.prefix else ""
        if self._lean is not None:  # the lean path: listings of thousands of keys (drctl status)
            yield from self._lean_list(base, prefix)
            return
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base + prefix):
                self._bucket_seen = True
                for obj in page.get("Contents", ()):
                    yield ObjectInfo(key=obj["Key"][len(base) :], size=int(obj["Size"]))
        except bce.ClientError as e:
            raise self._err(e) from e
        except bce.BotoCoreError as e:
            raise self._err(e) from e

    def _lean_list(self, base: str, prefix: str) -> Iterator[ObjectInfo]:
        assert self._lean is not None
        token: str | None = None
        while True:
            try:
                items, token = self._lean.list_page(self.bucket, base + prefix, token)
            except (bce.ClientError, bce.BotoCoreError) as e:
                raise self._err(e) from e
            self._bucket_seen = True
            for key, size in items:
                yield ObjectInfo(key=key[len(base) :], size=size)
            if token is None:
                return

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except bce.ClientError as e:
            if error_code(e) in ("NoSuchKey", "NotFound") or (
                http_status(e) == 404 and error_code(e) != "NoSuchBucket"
            ):
                return
            raise self._err(e) from e
        except bce.BotoCoreError as e:
            raise self._err(e) from e

    def delete_many(self, keys: Sequence[str]) -> None:
        """Bulk delete (DeleteObjects, 1000 keys a request); missing keys are not an error."""
        for i in range(0, len(keys), 1000):
            batch = [{"Key": self._key(k)} for k in keys[i : i + 1000]]
            try:
                resp = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            except bce.ClientError as e:
                raise self._err(e) from e
            except bce.BotoCoreError as e:
                raise self._err(e) from e
            errors = [err for err in resp.get("Errors", ()) if err.get("Code") != "NoSuchKey"]
            if errors:
                first = errors[0]
                raise StorageError(
                    f"{self.describe()}: could not delete {len(errors)} object(s), first "
                    f"{first.get('Key')!r} ({first.get('Code')}: {first.get('Message')})"
                )

    def lock_support(self) -> LockSupport:
        """Write a probe with a short retention, read the retention back, then try to delete
        that very version: only a store that reports the lock AND refuses the delete enforces it."""
        key = self._key(f"lock-probe/{uuid.uuid4().hex}")
        until = (datetime.now(UTC) + timedelta(seconds=60)).replace(microsecond=0)
        where = self.describe()
        try:
            put = self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=b"drctl object lock probe",
                ObjectLockMode="COMPLIANCE",
                ObjectLockRetainUntilDate=until,
            )
        except bce.ClientError as e:
            if error_code(e) in ("InvalidRequest", "InvalidArgument", "NotImplemented"):
                return LockSupport(
                    False,
                    f"{where}: the store refused Object Lock retention ({error_code(e)}): "
                    "the bucket was not created with Object Lock",
                )
            raise self._err(e) from e
        except bce.BotoCoreError as e:
            raise self._err(e) from e
        version = put.get("VersionId")
        try:
            head = self.client.head_object(
                Bucket=self.bucket, Key=key, **({"VersionId": version} if version else {})
            )
        except (bce.ClientError, bce.BotoCoreError) as e:
            raise self._err(e, key) from e
        mode = head.get("ObjectLockMode")
        got_until = head.get("ObjectLockRetainUntilDate")
        if mode != "COMPLIANCE" or got_until is None or abs((got_until - until).total_seconds()) > 1:
            self._delete_quietly(key, version)
            return LockSupport(
                False,
                f"{where}: Object Lock accepted but not recorded (read back mode={mode!r}, "
                f"until={got_until}): the store ignores it, retention is NOT enforced",
            )
        if not version:
            self._delete_quietly(key, None)
            return LockSupport(
                False, f"{where}: retention is reported but the bucket keeps no versions: not enforced"
            )
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key, VersionId=version)
        except bce.ClientError as e:
            if error_code(e) in DENIED_CODES or http_status(e) == 403:
                # The locked version stays until `until` (60 s); the key only holds the probe.
                self.client.delete_object(Bucket=self.bucket, Key=key)  # a delete marker hides it
                return LockSupport(
                    True,
                    f"{where}: Object Lock enforced (COMPLIANCE retention read back, "
                    "deleting the locked version was refused)",
                )
            raise self._err(e, key) from e
        except bce.BotoCoreError as e:
            raise self._err(e, key) from e
        return LockSupport(
            False, f"{where}: the store reports retention but deleted the locked version: NOT enforced"
        )

    def extend_retention(self, key: str, until: datetime) -> None:
        mode = os.environ.get(LOCK_MODE_ENV, "COMPLIANCE").upper()
        try:
            self.client.put_object_retention(
                Bucket=self.bucket, Key=self._key(key), Retention={"Mode": mode, "RetainUntilDate": until}
            )
        except bce.ClientError as e:
            if error_code(e) in DENIED_CODES or http_status(e) == 403:
                # Stores refuse to shorten a retention: fine when the object is kept longer already.
                current = self._retained_until(key)
                if current is not None and current >= until:
                    return
            raise self._err(e, key) from e
        except bce.BotoCoreError as e:
            raise self._err(e, key) from e

    def _retained_until(self, key: str) -> datetime | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except (bce.ClientError, bce.BotoCoreError) as e:
            raise self._err(e, key) from e
        return head.get("ObjectLockRetainUntilDate")

    def _delete_quietly(self, key: str, version: str | None) -> None:
        try:
            self.client.delete_object(
                Bucket=self.bucket, Key=key, **({"VersionId": version} if version else {})
            )
        except (bce.ClientError, bce.BotoCoreError) as e:
            log.info("could not remove lock probe %s from %s: %s", key, self.describe(), e)
