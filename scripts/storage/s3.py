"""S3 backend (boto3): AWS S3, Flexible Engine OBS, Swift's s3api, SeaweedFS, MinIO...

Endpoint and credentials come from the standard chain (``AWS_ENDPOINT_URL`` /
``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID``..., ``AWS_PROFILE`` and the config files).
``DRCTL_S3_ADDRESSING`` = ``path`` | ``virtual`` | ``auto`` picks the addressing style; when the
endpoint is not AWS it defaults to ``path`` (what Swift, SeaweedFS and most private stores want).

botocore errors are translated here, where they enter: missing object/bucket, access refused,
and unavailable (network, timeouts, 5xx, throttling: the only ones the retry wrapper retries).
botocore's own retries are off so that :mod:`drctl.storage.retry` holds the one retry budget.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.exceptions as bce
from botocore.config import Config

from drctl.storage import s3_conditional
from drctl.storage.base import (
    BucketMissing,
    LockSupport,
    ObjectInfo,
    ObjectMissing,
    StorageAccessDenied,
    StorageError,
    StorageUnavailable,
)
from drctl.storage.claim import put_if_absent_by_claim
from drctl.storage.s3_get import lean_getter

log = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTIONS = 64  # parallel restore keeps this many GETs in flight
LOCK_MODE_ENV = "DRCTL_S3_LOCK_MODE"  # COMPLIANCE (default) or GOVERNANCE
ADDRESSING_ENV = "DRCTL_S3_ADDRESSING"

_MISSING_KEY = {"NoSuchKey", "NotFound", "404"}
_DENIED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
    "ExpiredToken",
    "InvalidToken",
    "InvalidClientTokenId",
    "AccountProblem",
    "403",
    "401",
}
_TRANSIENT = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "RequestLimitExceeded",
    "TooManyRequests",
}


class RetentionRejected(StorageError):
    """The store refused an object written with Object Lock retention."""


def _add_content_md5(params: dict[str, Any], **_: Any) -> None:
    """Swift's s3api requires Content-MD5 on DeleteObjects; botocore >= 1.36 sends a CRC32
    checksum instead. Adding the MD5 is harmless for stores that do not need it."""
    body = params.get("body") or b""
    if isinstance(body, str):
        body = body.encode()
    params["headers"]["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()


def _quiet_wire_loggers() -> None:
    # botocore/urllib3 at DEBUG log request headers (Authorization signatures): `drctl -vv`
    # must not put those in a log. Our own modules keep their verbosity.
    for name in ("botocore", "boto3", "urllib3", "s3transfer"):
        lg = logging.getLogger(name)
        if lg.getEffectiveLevel() < logging.INFO:
            lg.setLevel(logging.INFO)


def make_client(
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    addressing: str | None = None,
    endpoint_url: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    region: str | None = None,
) -> Any:
    """A boto3 S3 client tuned for many parallel GETs. Endpoint, credentials and region come from
    the standard chain unless given (tests talk to several servers from one process)."""
    _quiet_wire_loggers()
    session = boto3.session.Session(
        aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key, region_name=region
    )
    explicit_endpoint = (
        endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    )
    style = (addressing or os.environ.get(ADDRESSING_ENV) or "").strip().lower() or None
    if style not in (None, "path", "virtual", "auto"):
        raise StorageError(f"{ADDRESSING_ENV}={style!r} is not one of path, virtual, auto")

    def build(addressing_style: str) -> Any:
        config = Config(
            max_pool_connections=max_connections,
            connect_timeout=5,
            read_timeout=60,
            tcp_keepalive=True,
            retries={"total_max_attempts": 1, "mode": "standard"},
            # Checksums only where the API requires them: Swift's s3api and OBS do not know the
            # new CRC trailers, and the repository authenticates every chunk itself.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": addressing_style},
        )
        client = session.client(
            "s3",
            region_name=session.region_name or "us-east-1",
            config=config,
            **({"endpoint_url": endpoint_url} if endpoint_url else {}),
        )
        client.meta.events.register("before-call.s3.DeleteObjects", _add_content_md5)
        return client

    if style is not None:
        return build(style)
    if explicit_endpoint:
        return build("path")
    client = build("auto")
    # An endpoint from a config profile: not AWS -> path-style, like the env-var case.
    if "amazonaws.com" not in (client.meta.endpoint_url or ""):
        client = build("path")
    return client


def create_bucket(client: Any, bucket: str, *, object_lock: bool = False) -> None:
    """Create ``bucket`` (with Object Lock enabled if asked); an existing one of ours is fine."""
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if object_lock:
        kwargs["ObjectLockEnabledForBucket"] = True
    region = client.meta.region_name
    if region and region != "us-east-1" and "amazonaws.com" in (client.meta.endpoint_url or ""):
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        client.create_bucket(**kwargs)
    except bce.ClientError as e:
        if _code(e) in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            return
        raise _translate(e, f"s3://{bucket}", client.meta.endpoint_url, bucket=bucket) from e
    except bce.BotoCoreError as e:
        raise _translate(e, f"s3://{bucket}", client.meta.endpoint_url, bucket=bucket) from e


def _code(e: bce.ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def _status(e: bce.ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _translate(
    e: Exception, where: str, endpoint: str | None, *, bucket: str, key: str | None = None
) -> StorageError:
    """One botocore error -> the matching StorageError, with a message naming the object."""
    at = f" at {endpoint}" if endpoint else ""
    if isinstance(e, bce.ClientError):
        code, status = _code(e), _status(e)
        msg = e.response.get("Error", {}).get("Message", "") or code
        if code == "NoSuchBucket":
            return BucketMissing(
                f"bucket {bucket!r} does not exist{at}: create the repository with `drctl repo init {where}`"
            )
        if key is not None and (code in _MISSING_KEY or status == 404):
            return ObjectMissing(key, where)
        if code in _DENIED or status in (401, 403):
            return StorageAccessDenied(
                f"{where}{at} refused access ({code}: {msg}): check the credentials "
                "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE) and the bucket policy"
            )
        if code in _TRANSIENT or status >= 500 or status == 429:
            return StorageUnavailable(f"{where}{at} is unavailable ({code or status}: {msg}); retry later")
        return StorageError(f"{where}{at} rejected the request ({code or status}: {msg})")
    if isinstance(e, (bce.NoCredentialsError, bce.PartialCredentialsError)):
        return StorageAccessDenied(
            f"no usable S3 credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or AWS_PROFILE); for the local store, `source .state/local/env`"
        )
    if isinstance(e, (bce.ConnectionError, bce.HTTPClientError, bce.IncompleteReadError)):
        return StorageUnavailable(
            f"cannot reach the object store{at} for {where} ({type(e).__name__}): is the server up? "
            "For the local store run `drctl local status`; otherwise check AWS_ENDPOINT_URL"
        )
    return StorageError(f"S3 request to {where}{at} failed: {e}")


class S3Storage:
    """Objects under ``prefix/`` in ``bucket``, through one shared boto3 client (thread-safe)."""

    def __init__(self, bucket: str, prefix: str, client: Any) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.endpoint: str = client.meta.endpoint_url
        self._bucket_seen = False
        self._lean = lean_getter(client, (client.meta.config.s3 or {}).get("addressing_style", ""))
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
        return _translate(e, self.describe(), self.endpoint, bucket=self.bucket, key=key)

    def _check_bucket(self) -> None:
        """A bare 404 (HEAD has no body) does not say whether the bucket or the key is missing."""
        if self._bucket_seen:
            return
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except bce.ClientError as e:
            if _status(e) == 404 or _code(e) in ("NoSuchBucket", "404", "NotFound"):
                raise _translate(
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

    def get(self, key: str, byte_range: tuple[int, int] | None = None) -> bytes:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if byte_range is not None:
            start, end = byte_range
            if start < 0 or end < start:
                raise ValueError(f"invalid byte range {byte_range!r} for {key!r}")
            if end == start:
                return b""
            kwargs["Range"] = f"bytes={start}-{end - 1}"
        try:
            if self._lean is not None:  # the restore's hot path (drctl.storage.s3_get)
                data = self._lean.get(self.bucket, kwargs["Key"], byte_range)
            else:
                resp = self.client.get_object(**kwargs)
                with resp["Body"] as body:
                    data = body.read()
        except bce.ClientError as e:
            raise self._err(e, key) from e
        except bce.BotoCoreError as e:
            raise self._err(e, key) from e
        self._bucket_seen = True
        return data

    def put(self, key: str, data: bytes, *, retain_until: datetime | None = None) -> None:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key), "Body": data}
        if retain_until is not None:
            kwargs["ObjectLockMode"] = os.environ.get(LOCK_MODE_ENV, "COMPLIANCE").upper()
            kwargs["ObjectLockRetainUntilDate"] = retain_until
        try:
            self.client.put_object(**kwargs)
        except bce.ClientError as e:
            if retain_until is not None and _code(e) in ("InvalidRequest", "InvalidArgument"):
                raise RetentionRejected(
                    f"{self.describe()} refused {key!r} with Object Lock retention "
                    f"({_code(e)}: {e.response.get('Error', {}).get('Message', '')}): the bucket has "
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
            if _status(e) == 404 or _code(e) in _MISSING_KEY:
                self._check_bucket()
                return False
            raise self._err(e) from e
        except bce.BotoCoreError as e:
            raise self._err(e) from e
        self._bucket_seen = True
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = f"{self.prefix}/" if self.prefix else ""
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

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except bce.ClientError as e:
            if _code(e) in ("NoSuchKey", "NotFound") or (_status(e) == 404 and _code(e) != "NoSuchBucket"):
                return
            raise self._err(e) from e
        except bce.BotoCoreError as e:
            raise self._err(e) from e

    def delete_many(self, keys: list[str]) -> None:
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
            if _code(e) in ("InvalidRequest", "InvalidArgument", "NotImplemented"):
                return LockSupport(
                    False,
                    f"{where}: the store refused Object Lock retention ({_code(e)}): "
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
            if _code(e) in _DENIED or _status(e) == 403:
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
            if _code(e) in _DENIED or _status(e) == 403:
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
