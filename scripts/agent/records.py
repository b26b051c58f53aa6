"""Job status records: what each agent job did, signed by the agent, readable without the client's key.

The provider's monitoring (``drctl status``) must know whether every server's backups run, but it
must not hold the key that decrypts the client's data. So each job writes one small, unencrypted
record beside the repository, under ``status/``, holding no data content and no secret: server,
disks, job type, times, byte counts, restore point ids, result and error class. The agent signs it
with its own Ed25519 key (created by ``drctl agent config``; the public key is recorded in the stack
config under ``agent_keys.<server>``), so a record can be trusted without the client's key and a
forged or altered one is shown as such.

Object key (job end time in UTC first, so that a listing in key order is chronological)::

    status/<server>/<YYYYmmddTHHMMSSffffffZ>-<job id>.json

Body (UTF-8 JSON)::

    {"format": "drctl-status-v1", "key_id": "<16 hex>", "signature": "<hex>", "record": {...}}

The signature is Ed25519 over ``b"drctl-status-v1\\0" || canonical(record)`` where ``canonical`` is
JSON with sorted keys, no spaces, ASCII only. A record is trusted only if it verifies with the key
recorded for the server its object key names, and names that same server itself: one server's
agent cannot speak for another.

A record that cannot be uploaded (store unreachable) is kept in a local spool directory (0600 files)
and published by the next job (:func:`flush_spool`).
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from drctl.errors import DrctlError, InvalidInput, LocalIOError
from drctl.input_files import loads_json
from drctl.private_files import write_private_file
from drctl.storage.base import Storage, StorageError

log = logging.getLogger(__name__)

FORMAT = "drctl-status-v1"
PREFIX = "status/"
_DOMAIN = b"drctl-status-v1\0"
MAX_RECORD_BYTES = 64 * 1024
JOB_TYPES = ("full", "incremental", "differential", "log", "prune")
RESULTS = ("ok", "failed", "skipped")
_NAME = r"[a-z][a-z0-9-]{0,62}"  # the plan's server names
_JOB_ID = r"[a-z0-9][a-z0-9-]{0,63}"
_KEY_RE = re.compile(rf"status/({_NAME})/(\d{{8}}T\d{{12}}Z)-({_JOB_ID})\.json")
_TIME_FORMAT = "%Y%m%dT%H%M%S%fZ"


class Trust(enum.Enum):
    """What the monitoring may conclude from a stored record."""

    VERIFIED = "verified"  # signed by the key recorded for its server
    UNSIGNED = "unsigned"  # no key is recorded for this server: shown, never trusted
    FORGED = "forged"  # bad signature, another key, or names another server
    MALFORMED = "malformed"  # not a status record at all


@dataclass(frozen=True)
class JobRecord:
    """One job of one server's agent. No data content, no secret."""

    client: str
    server: str
    job_id: str
    type: str
    started: datetime
    ended: datetime
    result: str
    disks: tuple[str, ...] = ()
    points: Mapping[str, str] = field(default_factory=dict)  # disk -> restore point id
    bytes_read: int = 0
    bytes_new: int = 0
    bytes_uploaded: int = 0
    error_class: str | None = None
    error: str | None = None
    host: str = ""
    detail: Mapping[str, str | int | float | bool | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in JOB_TYPES:
            raise InvalidInput(f"status record: job type {self.type!r} is not one of {', '.join(JOB_TYPES)}")
        if self.result not in RESULTS:
            raise InvalidInput(f"status record: result {self.result!r} is not one of {', '.join(RESULTS)}")
        if not re.fullmatch(_NAME, self.server) or not re.fullmatch(_JOB_ID, self.job_id):
            raise InvalidInput(f"status record: server {self.server!r} or job id {self.job_id!r} is invalid")

    @property
    def object_key(self) -> str:
        return f"{PREFIX}{self.server}/{self.ended.astimezone(UTC).strftime(_TIME_FORMAT)}-{self.job_id}.json"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["started"] = self.started.astimezone(UTC).isoformat()
        d["ended"] = self.ended.astimezone(UTC).isoformat()
        d["disks"] = list(self.disks)
        d["points"] = dict(self.points)
        d["detail"] = dict(self.detail)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JobRecord:
        try:
            return cls(
                client=str(d["client"]),
                server=str(d["server"]),
                job_id=str(d["job_id"]),
                type=str(d["type"]),
                started=_utc(d["started"]),
                ended=_utc(d["ended"]),
                result=str(d["result"]),
                disks=tuple(str(x) for x in d.get("disks", ())),
                points={str(k): str(v) for k, v in dict(d.get("points", {})).items()},
                bytes_read=int(d.get("bytes_read", 0)),
                bytes_new=int(d.get("bytes_new", 0)),
                bytes_uploaded=int(d.get("bytes_uploaded", 0)),
                error_class=None if d.get("error_class") is None else str(d["error_class"]),
                error=None if d.get("error") is None else str(d["error"]),
                host=str(d.get("host", "")),
                detail=dict(d.get("detail", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise InvalidInput(f"status record: field {e} is missing or invalid") from e


def _utc(value: Any) -> datetime:
    t = datetime.fromisoformat(str(value))
    if t.tzinfo is None:
        raise ValueError(f"time {value!r} has no time zone")
    return t.astimezone(UTC)


def _canonical(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


# --- keys ---------------------------------------------------------------------------------------


def key_id(public: Ed25519PublicKey) -> str:
    return hashlib.sha256(public_key_text(public).encode()).hexdigest()[:16]


def public_key_text(public: Ed25519PublicKey) -> str:
    """The form recorded in the stack config: ``ed25519:<hex of the 32 raw bytes>``."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + raw.hex()


def parse_public_key(text: str, *, where: str) -> Ed25519PublicKey:
    try:
        kind, _, value = str(text).partition(":")
        if kind != "ed25519":
            raise ValueError("not ed25519")
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(value))
    except ValueError as e:
        raise InvalidInput(
            f"{where}: {text!r} is not an agent public key (expected ed25519:<64 hex digits>, "
            "as written by `drctl agent config`)"
        ) from e


def generate_agent_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """A new agent signing key, written to ``path`` (PKCS#8 PEM, 0600, never over an existing file)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    if Path(path).exists():
        raise LocalIOError(f"agent key {path} already exists: keep it, or remove it to make a new one")
    write_private_file(path, pem)
    return key


def load_agent_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    path = Path(path)
    try:
        st = path.stat()
        if st.st_mode & 0o077:
            raise LocalIOError(f"agent key {path} is readable by other users: chmod 600 {path}")
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as e:
        raise LocalIOError(f"cannot read the agent key {path}: {e.strerror or e}") from e
    except ValueError as e:
        raise LocalIOError(f"agent key {path} is not a PEM private key: {e}") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise LocalIOError(f"agent key {path} is not an Ed25519 key")
    return key


# --- signing and reading ------------------------------------------------------------------------


def sign(record: JobRecord, key: Ed25519PrivateKey) -> bytes:
    body = record.to_dict()
    return json.dumps(
        {
            "format": FORMAT,
            "key_id": key_id(key.public_key()),
            "signature": key.sign(_DOMAIN + _canonical(body)).hex(),
            "record": body,
        },
        indent=1,
        sort_keys=True,
    ).encode()


@dataclass(frozen=True)
class StoredRecord:
    """A record as read back: the record (when parseable), how far it can be trusted, and why."""

    key: str
    trust: Trust
    record: JobRecord | None = None
    problem: str = ""

    @property
    def trusted(self) -> bool:
        return self.trust is Trust.VERIFIED


def parse(key: str, body: bytes, trusted_keys: Mapping[str, Ed25519PublicKey]) -> StoredRecord:
    """Read one stored record; ``trusted_keys`` maps a server name to its agent's public key."""
    m = _KEY_RE.fullmatch(key)
    if not m:
        return StoredRecord(key, Trust.MALFORMED, problem="object key is not a status record's")
    server = m.group(1)
    if len(body) > MAX_RECORD_BYTES:
        return StoredRecord(key, Trust.MALFORMED, problem=f"larger than {MAX_RECORD_BYTES} bytes")
    try:
        doc = loads_json(body)
        if (
            not isinstance(doc, dict)
            or doc.get("format") != FORMAT
            or not isinstance(doc.get("record"), dict)
        ):
            raise ValueError(f"not a {FORMAT} document")
        record = JobRecord.from_dict(doc["record"])
    except (DrctlError, ValueError) as e:
        return StoredRecord(key, Trust.MALFORMED, problem=str(e))
    public = trusted_keys.get(server)
    if public is None:
        return StoredRecord(key, Trust.UNSIGNED, record, f"no agent key is recorded for server {server}")
    try:
        signature = bytes.fromhex(str(doc.get("signature", "")))
        public.verify(signature, _DOMAIN + _canonical(doc["record"]))
    except (ValueError, InvalidSignature):
        return StoredRecord(key, Trust.FORGED, record, f"signature does not verify with {server}'s agent key")
    if record.server != server:
        return StoredRecord(key, Trust.FORGED, record, f"signed by {server}'s agent for {record.server}")
    return StoredRecord(key, Trust.VERIFIED, record)


def list_keys(storage: Storage, server: str | None = None) -> list[str]:
    """Record keys, oldest first (one listing, no object read)."""
    prefix = f"{PREFIX}{server}/" if server else PREFIX
    return sorted(o.key for o in storage.list(prefix))


def read(
    storage: Storage,
    keys: Iterable[str],
    trusted_keys: Mapping[str, Ed25519PublicKey],
    *,
    parallel: int = 16,
) -> list[StoredRecord]:
    """Read and verify records in parallel, in the order of ``keys``."""

    def one(key: str) -> StoredRecord:
        try:
            return parse(key, bytes(storage.get(key)), trusted_keys)
        except StorageError as e:
            return StoredRecord(key, Trust.MALFORMED, problem=f"cannot be read: {e}")

    keys = list(keys)
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(keys) or 1))) as pool:
        return list(pool.map(one, keys))


# --- publishing, with a local spool when the store is away ----------------------------------------


def publish(storage: Storage, record: JobRecord, key: Ed25519PrivateKey, spool_dir: Path | None) -> bool:
    """Store the signed record; when the store fails and a spool is given, keep it there and return
    False (the next :func:`flush_spool` publishes it). Raises the storage error without a spool."""
    body = sign(record, key)
    try:
        storage.put(record.object_key, body)
        return True
    except StorageError as e:
        if spool_dir is None:
            raise
        path = Path(spool_dir) / record.object_key.replace("/", "__")
        write_private_file(path, body)
        log.warning("status record of job %s kept in %s: %s", record.job_id, path, e.message)
        return False


def flush_spool(storage: Storage, spool_dir: Path) -> int:
    """Publish the records a store outage left in the spool; returns how many were published.
    Stops at the first storage error (the rest stay for the next time)."""
    spool = Path(spool_dir)
    if not spool.is_dir():
        return 0
    done = 0
    for path in sorted(spool.glob("status__*.json")):
        key = path.name.replace("__", "/")
        if not _KEY_RE.fullmatch(key):
            continue
        storage.put(key, path.read_bytes())
        path.unlink()
        done += 1
    return done
