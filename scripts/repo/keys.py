"""Key slots (``keys/<key-id>``): a password-derived KEK wrapping the repository's master keys
(docs/repository-format.md §2.2). Pure encoding here; the storage calls live in repository.py."""

from __future__ import annotations

import base64
import binascii
import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from drctl.input_files import loads_json
from drctl.repo.crypto import (
    DEFAULT_KDF,
    KdfParams,
    MasterKeys,
    derive_kek,
    key_slot_ad,
    unwrap_keys,
    wrap_keys,
)
from drctl.repo.errors import KeyFileCorrupt

KEYS_PREFIX = "keys/"
SALT_LEN = 16


@dataclass(frozen=True)
class KeySlotInfo:
    """What ``drctl key list`` shows: never anything secret."""

    key_id: str
    label: str
    created: str
    hostname: str
    kdf: str
    problem: str | None = None  # why the slot cannot be read (then the other fields are empty)


def new_key_id() -> str:
    return os.urandom(16).hex()


def slot_key(key_id: str) -> str:
    return KEYS_PREFIX + key_id


def seal_slot(
    repo_id: bytes,
    key_id: str,
    keys: MasterKeys,
    password: bytes,
    label: str,
    params: KdfParams = DEFAULT_KDF,
) -> bytes:
    """A new key slot document (JSON bytes) opening ``keys`` with ``password``."""
    salt = os.urandom(SALT_LEN)
    kdf = params.as_dict(salt)
    kek = derive_kek(password, salt, params)
    nonce, data = wrap_keys(kek, keys, key_slot_ad(repo_id, key_id, kdf))
    doc = {
        "version": 1,
        "label": label,
        "created": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "hostname": socket.gethostname(),
        "kdf": kdf,
        "nonce": base64.b64encode(nonce).decode(),
        "data": base64.b64encode(data).decode(),
    }
    return json.dumps(doc, indent=1).encode()


def parse_slot(key_id: str, blob: bytes | bytearray) -> dict[str, Any]:
    """The slot document, its KDF parameters checked against the bounds before any KDF runs.
    KeyFileCorrupt (naming the slot and how to remove it) if it is not a usable key slot."""
    try:
        doc = loads_json(blob)
        if not isinstance(doc, dict) or doc.get("version") != 1:
            raise ValueError("not a version-1 key slot")
        kdf = doc["kdf"]
        if not isinstance(kdf, dict) or kdf.get("name") != "scrypt":
            raise ValueError(f"unknown KDF {kdf.get('name') if isinstance(kdf, dict) else kdf!r}")
        KdfParams(kdf["n"], kdf["r"], kdf["p"]).check()
        return doc
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise KeyFileCorrupt(
            f"key file {slot_key(key_id)!r} is unreadable: {e}; remove it with "
            f"`drctl key remove REPO {key_id}` if another key still opens the "
            f"repository"
        ) from e


def slot_created(doc: dict[str, Any]) -> datetime:
    """When the slot says it was written (not authenticated: only orders the slots to try)."""
    try:
        t = datetime.fromisoformat(str(doc.get("created", "")).replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def slot_info(key_id: str, blob: bytes | bytearray) -> KeySlotInfo:
    doc = parse_slot(key_id, blob)
    kdf = doc["kdf"]
    return KeySlotInfo(
        key_id=key_id,
        label=str(doc.get("label", "")),
        created=str(doc.get("created", "")),
        hostname=str(doc.get("hostname", "")),
        kdf=f"scrypt n={kdf['n']} r={kdf['r']} p={kdf['p']}",
    )


def damaged_slot_info(key_id: str, problem: str) -> KeySlotInfo:
    """What ``drctl key list`` shows for a slot that cannot be read (so it can still be removed)."""
    return KeySlotInfo(key_id=key_id, label="?", created="", hostname="", kdf="", problem=problem)


def open_slot(repo_id: bytes, key_id: str, blob: bytes | bytearray, password: bytes) -> MasterKeys | None:
    """The master keys if ``password`` opens this slot, else None (wrong password or a tampered
    slot: AES-GCM cannot tell them apart). Raises KeyFileCorrupt if the file is not a slot at all."""
    doc = parse_slot(key_id, blob)
    kdf = doc["kdf"]
    try:
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(doc["nonce"], validate=True)
        data = base64.b64decode(doc["data"], validate=True)
    except (binascii.Error, KeyError, TypeError) as e:
        raise KeyFileCorrupt(f"key file {slot_key(key_id)!r} has a malformed field: {e}") from e
    if len(nonce) != 12 or len(salt) < 8:
        return None
    try:
        kek = derive_kek(password, salt, KdfParams(kdf["n"], kdf["r"], kdf["p"]))
    except (ValueError, MemoryError) as e:  # parse_slot bounded the parameters; scrypt still refused
        raise KeyFileCorrupt(f"key file {slot_key(key_id)!r}: its KDF cannot run: {e}") from e
    return unwrap_keys(kek, nonce, data, key_slot_ad(repo_id, key_id, kdf))
