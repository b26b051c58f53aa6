"""The storage interface every backend implements, and its errors.

Keys are ``/``-separated relative names (``keys/<id>``, ``data/<2 hex>/<id>``, ...). Backends
are stacked as small wrappers (retry over S3) in the spirit of restic. Backends never interpret
data: encryption and integrity live above them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from drctl.errors import EXIT_REPO_MISSING, EXIT_STORAGE, DrctlError


class StorageError(DrctlError):
    """The object store failed."""

    exit_code = EXIT_STORAGE


class StorageUnavailable(StorageError):
    """The object store cannot be reached (network, DNS, server down). Transient: retried."""


class StorageAccessDenied(StorageError):
    """The object store refused the credentials or the operation. Never retried."""


class ObjectMissing(StorageError):
    """An object the caller asked for does not exist."""

    def __init__(self, key: str, where: str = "") -> None:
        super().__init__(f"object {key!r} not found{' in ' + where if where else ''}")
        self.key = key


class BucketMissing(StorageError):
    """The bucket / directory holding the repository does not exist."""

    exit_code = EXIT_REPO_MISSING


class KeyContended(StorageError):
    """Several writers kept racing to create the same object; none could be sure to be alone."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


@dataclass(frozen=True)
class LockSupport:
    """What the store does with S3 Object Lock, as read back from it (never from a status code)."""

    enforced: bool
    detail: str


class Storage(Protocol):
    """A flat key -> bytes store."""

    def describe(self) -> str:
        """Where this is, for messages: ``s3://bucket/prefix`` or a directory path."""

    def get(self, key: str, byte_range: tuple[int, int] | None = None) -> bytes | bytearray:
        """Whole object, or bytes ``[start, end)`` (bytes-like: a large body may come back as a
        bytearray, never copied). Raises ObjectMissing."""

    def get_into(self, key: str, buf: memoryview) -> memoryview:
        """The whole object, read into ``buf`` when it fits (the restore's reused download buffers:
        no allocation per object); a larger object comes back in a buffer of its own. The caller
        uses the returned view only. Raises ObjectMissing."""

    def put(
        self, key: str, data: bytes | bytearray | memoryview, *, retain_until: datetime | None = None
    ) -> None:
        """Write atomically (readers never see a partial object). ``retain_until`` asks for
        Object Lock retention where the store supports it. ``data`` is not kept once the call
        returns: callers reuse their buffers."""

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create ``key`` with ``data`` only if no object has that key: True when this call created
        it, False when an object was already there (and nothing was written). Of several callers
        racing for one key, exactly one gets True, also across processes and hosts. Raises
        KeyContended when a store without conditional writes kept seeing other writers.

        A retried request can return False for an object an earlier attempt of the same call
        created: callers that must know put a unique token in ``data`` and read it back."""

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order."""

    def delete(self, key: str) -> None:
        """Remove; deleting a missing object is not an error."""

    def delete_many(self, keys: Sequence[str]) -> None:
        """Remove several objects (one bulk request where the store has one)."""

    def create(self, *, object_lock: bool = False) -> None:
        """Create the bucket / directory (with S3 Object Lock enabled when asked)."""

    def lock_support(self) -> LockSupport:
        """Whether written retention is really enforced (write a probe, read it back)."""

    def extend_retention(self, key: str, until: datetime) -> None:
        """Keep ``key`` at least until ``until`` (S3 PutObjectRetention); never shortens a longer
        retention. A no-op where the store has no Object Lock. Raises ObjectMissing."""
