"""Object storage behind one small interface (see ``base.Storage``): local directory and S3.

Use :func:`open_storage` with a repository location; it returns the stacked backend
(``RetryingStorage`` over ``S3Storage`` for ``s3://``, ``LocalDirStorage`` for a path).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from drctl.errors import InvalidInput
from drctl.storage.base import (
    BucketMissing,
    LockSupport,
    ObjectInfo,
    ObjectMissing,
    Storage,
    StorageAccessDenied,
    StorageError,
    StorageUnavailable,
)

__all__ = [
    "BucketMissing",
    "LockSupport",
    "ObjectInfo",
    "ObjectMissing",
    "Storage",
    "StorageAccessDenied",
    "StorageError",
    "StorageUnavailable",
    "open_storage",
]


def open_storage(
    url: str, *, retry_attempts: int | None = None, retry_budget: float | None = None
) -> Storage:
    """Open the repository location ``url``.

    - ``s3://bucket[/prefix]``: S3 (endpoint and credentials from the standard AWS variables and
      config files, e.g. ``AWS_ENDPOINT_URL``), wrapped in retry with backoff for transient errors;
    - ``file:///path`` or a plain path: a local directory.

    Nothing is contacted here: the first operation reports an unreachable store or missing bucket.
    """
    if url.startswith("s3://"):
        parsed = urlparse(url)
        bucket = parsed.netloc
        if not bucket:
            raise InvalidInput(f"repository {url!r} has no bucket: use s3://BUCKET[/PREFIX]")
        prefix = parsed.path.strip("/")
        from drctl.storage.retry import DEFAULT_ATTEMPTS, DEFAULT_BUDGET_SECONDS, RetryingStorage
        from drctl.storage.s3 import S3Storage

        return RetryingStorage(
            S3Storage.from_environment(bucket, prefix),
            attempts=DEFAULT_ATTEMPTS if retry_attempts is None else retry_attempts,
            budget_seconds=DEFAULT_BUDGET_SECONDS if retry_budget is None else retry_budget,
        )
    if url.startswith("file://"):
        parsed = urlparse(url)
        if parsed.netloc not in ("", "localhost"):
            raise InvalidInput(f"repository {url!r}: only local file:// URLs are supported (file:///path)")
        path = unquote(parsed.path)
    elif "://" in url:
        raise InvalidInput(
            f"repository {url!r}: unknown scheme; use s3://BUCKET[/PREFIX] or a directory path"
        )
    else:
        path = url
    if not path:
        raise InvalidInput("repository location is empty: give s3://BUCKET[/PREFIX] or a directory path")
    from drctl.storage.local import LocalDirStorage

    return LocalDirStorage(Path(path).expanduser())
