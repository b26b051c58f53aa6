"""The boto3 S3 client drctl uses, and botocore errors translated into drctl's storage errors.

Endpoint and credentials come from the standard chain (``AWS_ENDPOINT_URL`` /
``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID``..., ``AWS_PROFILE`` and the config files).
``DRCTL_S3_ADDRESSING`` = ``path`` | ``virtual`` | ``auto`` picks the addressing style; when the
endpoint is not AWS it defaults to ``path`` (what Swift, SeaweedFS and most private stores want).

botocore errors are translated where they enter (:func:`translate_error`): missing object/bucket,
access refused, and unavailable (network, timeouts, 5xx, throttling: the only ones the retry
wrapper retries). botocore's own retries are off so that :mod:`drctl.storage.retry` holds the one
retry budget.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.exceptions as bce
import botocore.session
import botocore.utils
from botocore.config import Config

from drctl.storage.base import (
    BucketMissing,
    ObjectMissing,
    StorageAccessDenied,
    StorageError,
    StorageUnavailable,
)

DEFAULT_MAX_CONNECTIONS = 64  # parallel restore keeps this many GETs in flight
ADDRESSING_ENV = "DRCTL_S3_ADDRESSING"

MISSING_KEY_CODES = {"NoSuchKey", "NotFound", "404"}
DENIED_CODES = {
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
TRANSIENT_CODES = {
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


def _parse_timestamp(value: str) -> datetime:
    """ISO-8601 times (what S3 lists) the fast way; anything else as botocore parses it."""
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return botocore.utils.parse_timestamp(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def make_client(
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    addressing: str | None = None,
    endpoint_url: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    region: str | None = None,
    fast_timestamps: bool = False,
) -> Any:
    """A boto3 S3 client tuned for many parallel GETs. Endpoint, credentials and region come from
    the standard chain unless given (tests talk to several servers from one process).
    ``fast_timestamps``: parse response times with ``datetime.fromisoformat`` instead of dateutil,
    which is most of a large listing's CPU time (``drctl status`` lists thousands of records)."""
    _quiet_wire_loggers()
    core = None
    if fast_timestamps:
        core = botocore.session.get_session()
        core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_parse_timestamp)
    session = boto3.session.Session(
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        region_name=region,
        botocore_session=core,
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
        if error_code(e) in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            return
        raise translate_error(e, f"s3://{bucket}", client.meta.endpoint_url, bucket=bucket) from e
    except bce.BotoCoreError as e:
        raise translate_error(e, f"s3://{bucket}", client.meta.endpoint_url, bucket=bucket) from e


def error_code(e: bce.ClientError) -> str:
    """The S3 error code of a botocore ClientError (``NoSuchKey``, ``AccessDenied``...), or ''."""
    return str(e.response.get("Error", {}).get("Code", ""))


def http_status(e: bce.ClientError) -> int:
    """The HTTP status of a botocore ClientError, or 0 when the response carried none."""
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def translate_error(
    e: Exception, where: str, endpoint: str | None, *, bucket: str, key: str | None = None
) -> StorageError:
    """One botocore error -> the matching StorageError, with a message naming the object."""
    at = f" at {endpoint}" if endpoint else ""
    if isinstance(e, bce.ClientError):
        code, status = error_code(e), http_status(e)
        msg = e.response.get("Error", {}).get("Message", "") or code
        if code == "NoSuchBucket":
            return BucketMissing(
                f"bucket {bucket!r} does not exist{at}: create the repository with `drctl repo init {where}`"
            )
        if key is not None and (code in MISSING_KEY_CODES or status == 404):
            return ObjectMissing(key, where)
        if code in DENIED_CODES or status in (401, 403):
            return StorageAccessDenied(
                f"{where}{at} refused access ({code}: {msg}): check the credentials "
                "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE) and the bucket policy"
            )
        if code in TRANSIENT_CODES or status >= 500 or status == 429:
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
