"""PostgreSQL WAL archive inside the client's encrypted repository.

``drctl wal push`` is a server's ``archive_command`` and ``drctl wal fetch`` its ``restore_command``.
Each WAL file (segment, timeline history, backup history, ``.partial``) is one object::

    wal/<server>/<file name>

sealed like a chunk (zstd when it helps, AES-256-GCM with the repository's encryption key) with the
associated data ``"drctl/wal/v1" || header || repo id || server || file name``: an object copied
under another name, from another server's archive or from another repository fails authentication
(:class:`WalSegmentCorrupt`, exit 13), as does any flipped byte. Pushes are idempotent: a file
pushed again with the same content succeeds, with different content fails
(:class:`WalSegmentConflict`) so that PostgreSQL keeps the file and retries, never overwriting
archived history. Objects get the repository's Object Lock retention.

WAL pushes take no repository lock (one archive_command per segment would double its requests):
``prune`` only deletes segments older than the start of the oldest kept base backup, and PostgreSQL
only archives segments newer than its last base backup's start.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from drctl.errors import EXIT_INTEGRITY, DrctlError, InvalidInput
from drctl.repo import crypto
from drctl.repo.repository import Repository
from drctl.storage.base import ObjectMissing

log = logging.getLogger(__name__)

PREFIX = "wal/"
WAL_SEGMENT_SIZE_MAX = 1 << 30  # PostgreSQL's largest --wal-segsize
_AD_DOMAIN = b"drctl/wal/v1"
_VERSION = 1
_HEADER_LEN = 2
_NONCE_LEN = 12
_SEGMENT = re.compile(r"[0-9A-F]{24}")
_FILE = re.compile(r"[0-9A-F]{24}(\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history")
_SERVER = re.compile(r"[a-z][a-z0-9-]{0,62}")


class WalSegmentCorrupt(DrctlError):
    """An archived WAL file fails authentication: tampered, truncated, foreign or renamed."""

    exit_code = EXIT_INTEGRITY


class WalSegmentConflict(DrctlError):
    """A WAL file is already archived with different content (never overwritten)."""

    exit_code = EXIT_INTEGRITY


class WalSegmentMissing(DrctlError):
    """The archive has no such WAL file (the normal end of a replay)."""

    exit_code = 1


class WalGap(WalSegmentCorrupt):
    """A WAL segment is missing while later ones of its timeline are archived: history is lost."""


def check_name(server: str, name: str) -> None:
    if not _SERVER.fullmatch(server):
        raise InvalidInput(f"server name {server!r}: use the plan's name")
    if not _FILE.fullmatch(name):
        raise InvalidInput(
            f"{name!r} is not a WAL file name (24 hex digits, optionally .partial or .<offset>.backup, "
            "or <timeline>.history): pass PostgreSQL's %f"
        )


def object_key(server: str, name: str) -> str:
    check_name(server, name)
    return f"{PREFIX}{server}/{name}"


def is_segment(name: str) -> bool:
    return bool(_SEGMENT.fullmatch(name))


def _ad(header: bytes, repo: Repository, server: str, name: str) -> bytes:
    return _AD_DOMAIN + header + repo.repo_id + server.encode() + b"\0" + name.encode()


def seal(repo: Repository, server: str, name: str, data: bytes, archived_at: datetime | None = None) -> bytes:
    """The stored object: the archive time (8 bytes, microseconds since the epoch) and the file,
    both inside the authenticated ciphertext."""
    stamp = int((archived_at or datetime.now(UTC)).timestamp() * 1_000_000)
    comp, body = crypto._pack(struct.pack(">Q", stamp) + data)
    header = bytes((_VERSION, comp))
    nonce = os.urandom(_NONCE_LEN)
    return header + nonce + AESGCM(repo.keys.enc_key).encrypt(nonce, body, _ad(header, repo, server, name))


def unseal(repo: Repository, server: str, name: str, blob: bytes | bytearray) -> tuple[datetime, bytes]:
    """(archive time, file content) of a stored object, authenticated."""
    where = f"WAL file {name} of {server} ({repo.describe()}/{PREFIX}{server}/{name})"
    if len(blob) < _HEADER_LEN + _NONCE_LEN + 16:
        raise WalSegmentCorrupt(f"{where} is truncated ({len(blob)} bytes): restore it from a copy")
    header = bytes(blob[:_HEADER_LEN])
    if header[0] != _VERSION or header[1] not in (crypto.COMP_NONE, crypto.COMP_ZSTD):
        raise WalSegmentCorrupt(f"{where} has an unknown header")
    nonce = bytes(blob[_HEADER_LEN : _HEADER_LEN + _NONCE_LEN])
    try:
        body = AESGCM(repo.keys.enc_key).decrypt(
            nonce, bytes(blob[_HEADER_LEN + _NONCE_LEN :]), _ad(header, repo, server, name)
        )
    except InvalidTag:
        raise WalSegmentCorrupt(
            f"{where} fails authentication (tampered, truncated, renamed or from another repository "
            "or server): the replay stops here rather than end with a shorter history"
        ) from None
    if header[1] == crypto.COMP_ZSTD:
        body = crypto._decompressor().decompress(body, max_output_size=WAL_SEGMENT_SIZE_MAX + 8)
    if len(body) < 8:
        raise WalSegmentCorrupt(f"{where} has no archive time")
    (stamp,) = struct.unpack(">Q", body[:8])
    return datetime.fromtimestamp(stamp / 1_000_000, UTC), body[8:]


@dataclass(frozen=True)
class PushResult:
    name: str
    size: int
    stored: int  # bytes written to the store; 0 when it was already archived identically
    already_archived: bool

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "size": self.size,
            "stored_bytes": self.stored,
            "already_archived": self.already_archived,
        }


def push(repo: Repository, server: str, path: str | os.PathLike[str], name: str) -> PushResult:
    """Archive one WAL file (PostgreSQL's ``%p`` and ``%f``)."""
    key = object_key(server, name)
    try:
        with open(path, "rb") as f:
            data = f.read(WAL_SEGMENT_SIZE_MAX + 1)
    except OSError as e:
        raise InvalidInput(f"cannot read WAL file {path}: {e.strerror or e}") from e
    if len(data) > WAL_SEGMENT_SIZE_MAX:
        raise InvalidInput(f"{path} is larger than any WAL segment: pass PostgreSQL's %p")
    blob = seal(repo, server, name, data)
    if repo.storage.put_if_absent(key, blob):
        _retain(repo, key)
        return PushResult(name, len(data), len(blob), False)
    _, stored = unseal(repo, server, name, repo.storage.get(key))
    if hashlib.sha256(stored).digest() != hashlib.sha256(data).digest():
        raise WalSegmentConflict(
            f"WAL file {name} of {server} is already archived at {repo.describe()}/{key} with different "
            "content: nothing was overwritten. Two clusters archive as the same server, or the cluster "
            "was re-initialised: give it its own server name or archive location"
        )
    _retain(repo, key)  # a retried push whose first attempt stored it: make sure it is kept
    return PushResult(name, len(data), 0, True)


def _retain(repo: Repository, key: str) -> None:
    days = (repo.config.object_lock or {}).get("retain_days")
    if days:
        repo.storage.extend_retention(key, datetime.now(UTC) + timedelta(days=int(days)))


def fetch(repo: Repository, server: str, name: str, dest: str | os.PathLike[str]) -> int:
    """Restore one WAL file to ``dest`` (PostgreSQL's ``%p``); written only once authenticated.
    A missing file is :class:`WalSegmentMissing`, or :class:`WalGap` when later segments of its
    timeline are archived (a hole in the history)."""
    key = object_key(server, name)
    try:
        blob = repo.storage.get(key)
    except ObjectMissing:
        later = [n for n in archived_names(repo, server) if is_segment(n) and n[:8] == name[:8] and n > name]
        if is_segment(name) and later:
            raise WalGap(
                f"WAL segment {name} of {server} is missing from {repo.describe()} while {len(later)} later "
                f"segment(s) of its timeline are archived (first {later[0]}): the history after it cannot "
                "be replayed; the replay stops here"
            ) from None
        raise WalSegmentMissing(f"WAL file {name} of {server} is not archived") from None
    _, data = unseal(repo, server, name, blob)
    tmp = f"{dest}.drctl-tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dest)
    return len(data)


def archived_names(repo: Repository, server: str) -> list[str]:
    """Every archived WAL file name of ``server``, sorted (one listing)."""
    prefix = f"{PREFIX}{server}/"
    return sorted(o.key[len(prefix) :] for o in repo.storage.list(prefix) if "/" not in o.key[len(prefix) :])
