"""Opening and creating a repository, and its object-level reads and writes (config, key slots,
manifests, chunks). docs/repository-format.md §2-§3."""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from drctl.errors import InvalidInput
from drctl.input_files import loads_json
from drctl.repo import crypto
from drctl.repo.crypto import DEFAULT_KDF, KdfParams, MasterKeys
from drctl.repo.errors import ChunkMissing, KeyFileCorrupt, RepoExists, RepoMissing, WrongPassword
from drctl.repo.keys import (
    KEYS_PREFIX,
    KeySlotInfo,
    damaged_slot_info,
    new_key_id,
    open_slot,
    parse_slot,
    seal_slot,
    slot_created,
    slot_info,
    slot_key,
)
from drctl.repo.locks import DEFAULT_LOCK_TIMING, LockTiming, RepoLock
from drctl.repo.manifest import (
    DATA_PREFIX,
    SNAPSHOTS_PREFIX,
    Manifest,
    chunk_key,
    manifest_from_doc,
    point_key,
    utc_iso,
)
from drctl.repo.password import check_new_password
from drctl.storage.base import BucketMissing, ObjectMissing, Storage

log = logging.getLogger(__name__)
_sealing = threading.local()  # each backup thread's buffer for the chunk object it uploads

CONFIG_KEY = "config"
DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024
MIN_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 64 * 1024 * 1024
# Format versions (docs/repository-format.md §2.1): ``repo init`` creates the newest; backups write
# only it; restore reads every one (each manifest says its own).
FORMAT_VERSION = 2
FORMAT_VERSIONS = (1, 2)


@dataclass(frozen=True)
class RepoConfig:
    id: str
    chunk_size: int
    created: str
    object_lock: dict[str, Any] | None
    version: int = FORMAT_VERSION

    @property
    def repo_id(self) -> bytes:
        return bytes.fromhex(self.id)

    def body(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "id": self.id,
            "chunk_size": self.chunk_size,
            "created": self.created,
            "object_lock": self.object_lock,
        }


def read_config(storage: Storage) -> tuple[RepoConfig, str]:
    """The config and its MAC (checked only once a key opens). RepoMissing if there is none."""
    where = storage.describe()
    try:
        raw = storage.get(CONFIG_KEY)
    except (ObjectMissing, BucketMissing) as e:
        raise RepoMissing(
            f"no repository at {where} (no {CONFIG_KEY!r} object); create one with "
            f"`drctl repo init {where}` or check the location"
        ) from e
    try:
        doc = loads_json(raw)
        cfg = RepoConfig(
            id=doc["id"],
            chunk_size=int(doc["chunk_size"]),
            created=doc["created"],
            object_lock=doc.get("object_lock"),
            version=doc["version"],
        )
        if cfg.version not in FORMAT_VERSIONS or isinstance(cfg.version, bool) or len(cfg.repo_id) != 32:
            raise ValueError("unknown version or bad id")
        if not (isinstance(doc["mac"], str) and doc["mac"].isascii()):
            raise ValueError("the MAC is not a hex string")
        return cfg, doc["mac"]
    except (ValueError, KeyError, TypeError) as e:
        raise KeyFileCorrupt(f"repository config {where}/{CONFIG_KEY} is unreadable: {e}") from e


@dataclass
class Repository:
    """An opened repository: storage plus the master keys of one key slot."""

    storage: Storage
    config: RepoConfig
    keys: MasterKeys = field(repr=False)
    key_id: str
    lock_timing: LockTiming = DEFAULT_LOCK_TIMING  # refresh period and staleness of this run's locks

    @property
    def repo_id(self) -> bytes:
        return self.config.repo_id

    def describe(self) -> str:
        return self.storage.describe()

    def lock(self, *, exclusive: bool, operation: str) -> RepoLock:
        return RepoLock(self.storage, exclusive=exclusive, operation=operation, timing=self.lock_timing)

    # -- chunks --------------------------------------------------------------------------------

    def chunk_objects(self) -> dict[bytes, int]:
        """Chunk id -> object size of every chunk in ``data/`` (one listing: the dedup index of a
        run; the sizes let a caller refuse an object that cannot be a valid chunk)."""
        out = {}
        for obj in self.storage.list(DATA_PREFIX):
            name = obj.key.rsplit("/", 1)[-1]
            if len(name) == 64:
                try:
                    out[bytes.fromhex(name)] = obj.size
                except ValueError:
                    continue
        return out

    def known_chunks(self) -> set[bytes]:
        """Every chunk id present in ``data/`` (one listing)."""
        return set(self.chunk_objects())

    def chunk_id(self, plaintext: bytes | bytearray | memoryview) -> bytes:
        """The id a backup gives this chunk (format ``FORMAT_VERSION``: keyed BLAKE3)."""
        return crypto.chunk_id_v2(self.keys, plaintext)

    def put_chunk(self, cid: bytes, plaintext: bytes | bytearray, retain_until: datetime | None) -> int:
        buf = getattr(_sealing, "buf", None)  # this thread's: the store keeps no reference to it
        if buf is None or len(buf) < len(plaintext) + crypto.CHUNK_OVERHEAD:
            buf = _sealing.buf = bytearray(len(plaintext) + crypto.CHUNK_OVERHEAD)
        blob = crypto.seal_chunk(self.keys, self.repo_id, cid, plaintext, FORMAT_VERSION, buf)
        self.storage.put(chunk_key(cid), blob, retain_until=retain_until)
        return len(blob)

    def extend_chunk_retention(self, cid: bytes, until: datetime) -> None:
        key = chunk_key(cid)
        try:
            self.storage.extend_retention(key, until)
        except ObjectMissing as e:
            raise ChunkMissing(cid.hex(), key) from e

    def fetch_chunk(self, cid: bytes) -> bytes | bytearray:
        key = chunk_key(cid)
        try:
            return self.storage.get(key)
        except ObjectMissing as e:
            raise ChunkMissing(cid.hex(), key) from e

    def fetch_chunk_into(self, cid: bytes, buf: memoryview) -> memoryview:
        """:meth:`fetch_chunk`, the object read into ``buf`` when it fits (see ``Storage.get_into``)."""
        key = chunk_key(cid)
        try:
            return self.storage.get_into(key, buf)
        except ObjectMissing as e:
            raise ChunkMissing(cid.hex(), key) from e

    def open_chunk(
        self,
        cid: bytes,
        blob: bytes | bytearray | memoryview,
        length: int,
        *,
        verify_id: bool = True,
        version: int | None = None,
    ) -> bytes:
        return crypto.open_chunk(
            self.keys, self.repo_id, cid, blob, length, chunk_key(cid), verify_id=verify_id, version=version
        )

    def open_chunk_into(
        self,
        cid: bytes,
        blob: bytes | bytearray | memoryview,
        length: int,
        out: memoryview,
        scratch: memoryview,
        *,
        version: int | None = None,
    ) -> memoryview:
        return crypto.open_chunk_into(
            self.keys, self.repo_id, cid, blob, length, chunk_key(cid), out, scratch, version=version
        )

    # -- manifests -----------------------------------------------------------------------------

    def point_ids(self) -> list[str]:
        return [o.key[len(SNAPSHOTS_PREFIX) :] for o in self.storage.list(SNAPSHOTS_PREFIX)]

    def load_point(self, point_id: str) -> Manifest:
        key = point_key(point_id)
        blob = self.storage.get(key)
        doc = crypto.open_manifest(self.keys, self.repo_id, point_id, blob, key)
        return manifest_from_doc(doc, key, point_id, self.config.id)

    def load_points(self) -> list[Manifest]:
        """Every restore point, oldest first. Any unreadable manifest is an error (never skipped:
        prune relies on seeing every reference)."""
        ids = self.point_ids()
        with ThreadPoolExecutor(max_workers=8) as ex:
            points = list(ex.map(self.load_point, ids))
        return sorted(points, key=lambda p: p.created)

    def save_point(self, m: Manifest) -> None:
        blob = crypto.seal_manifest(self.keys, self.repo_id, m.id, m.to_doc())
        self.storage.put(point_key(m.id), blob, retain_until=m.retain_until)

    # -- key slots -----------------------------------------------------------------------------

    def list_keys(self) -> list[KeySlotInfo]:
        """Every key slot; one that cannot be read is listed with its ``problem`` (so that it can be
        seen and removed), never an error."""
        out = []
        for o in self.storage.list(KEYS_PREFIX):
            key_id = o.key[len(KEYS_PREFIX) :]
            try:
                out.append(slot_info(key_id, self.storage.get(o.key)))
            except ObjectMissing:
                continue  # removed while we listed
            except KeyFileCorrupt as e:
                out.append(damaged_slot_info(key_id, e.message))
        return out

    def add_key(self, password: bytes, label: str, kdf: KdfParams = DEFAULT_KDF) -> str:
        check_new_password(password)
        key_id = new_key_id()
        blob = seal_slot(self.repo_id, key_id, self.keys, password, label, kdf)
        self.storage.put(slot_key(key_id), blob)
        # Read it back and open it before anyone relies on it.
        if open_slot(self.repo_id, key_id, self.storage.get(slot_key(key_id)), password) != self.keys:
            raise KeyFileCorrupt(
                f"key file {slot_key(key_id)!r} did not read back correctly; "
                f"remove it with `drctl key remove`"
            )
        log.info("added key slot %s (%s)", key_id, label)
        return key_id

    def remove_key(self, key_id: str) -> None:
        ids = [k.key_id for k in self.list_keys()]
        matches = [k for k in ids if k.startswith(key_id)] if key_id else []
        if len(matches) != 1:
            raise InvalidInput(f"key {key_id!r} matches {len(matches)} key slots; see `drctl key list REPO`")
        target = matches[0]
        if len(ids) == 1:
            raise InvalidInput(
                f"key {target} is the last key of the repository: removing it would make "
                f"every backup unrecoverable; add another key first"
            )
        if target == self.key_id:
            raise InvalidInput(
                f"key {target} is the one this password opened; to change its password "
                f"use `drctl key passwd`, or remove it using another key's password"
            )
        self.storage.delete(slot_key(target))

    def change_password(self, new_password: bytes, kdf: KdfParams = DEFAULT_KDF) -> str:
        old = self.key_id
        label = next((k.label for k in self.list_keys() if k.key_id == old), "client")
        new_id = self.add_key(new_password, label, kdf)
        self.storage.delete(slot_key(old))
        self.key_id = new_id
        return new_id


def _readable_slots(storage: Storage) -> tuple[list[tuple[str, bytes]], int]:
    """(key id, slot bytes) of every slot that parses, newest first; and how many were skipped.
    A slot that does not parse or whose KDF parameters are out of bounds is skipped with a
    warning naming it, before any KDF runs."""
    slots: list[tuple[datetime, str, bytes]] = []
    skipped = 0
    for o in storage.list(KEYS_PREFIX):
        key_id = o.key[len(KEYS_PREFIX) :]
        try:
            blob = storage.get(o.key)
            doc = parse_slot(key_id, blob)
        except ObjectMissing:
            continue  # removed while we listed
        except KeyFileCorrupt as e:
            log.warning("skipping key slot %s: %s", key_id, e.message)
            skipped += 1
            continue
        slots.append((slot_created(doc), key_id, bytes(blob)))
    slots.sort(key=lambda s: s[0], reverse=True)
    return [(key_id, blob) for _, key_id, blob in slots], skipped


def open_repository(storage: Storage, password: bytes) -> Repository:
    """Open with the newest key slot the password opens; WrongPassword if none does. Damaged
    slots are skipped with a warning."""
    cfg, mac = read_config(storage)
    slots, skipped = _readable_slots(storage)
    for key_id, blob in slots:
        try:
            keys = open_slot(cfg.repo_id, key_id, blob, password)
        except KeyFileCorrupt as e:
            log.warning("skipping key slot %s: %s", key_id, e.message)
            skipped += 1
            continue
        if keys is not None:
            if not hmac.compare_digest(crypto.config_mac(keys, cfg.body()), mac):
                raise KeyFileCorrupt(
                    f"repository config {storage.describe()}/{CONFIG_KEY} fails its "
                    f"MAC: it was modified; restore it from a copy of the repository"
                )
            return Repository(storage, cfg, keys, key_id)
    damaged = f", {skipped} damaged key file(s) skipped" if skipped else ""
    raise WrongPassword(
        f"no key of repository {storage.describe()} opens with this password ({len(slots)} key "
        f"file(s) tried{damaged}): check DRCTL_PASSWORD / --password-file / --password-command (or the key "
        f"files were modified)"
    )


def init_repository(
    storage: Storage,
    password: bytes,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    object_lock: dict[str, Any] | None = None,
    label: str = "client",
    kdf: KdfParams = DEFAULT_KDF,
) -> Repository:
    """Create a new repository: a key slot first, then ``config`` (its existence = the repository)."""
    check_new_password(password)
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise InvalidInput(f"chunk size {chunk_size} out of range [{MIN_CHUNK_SIZE}, {MAX_CHUNK_SIZE}]")
    try:
        storage.get(CONFIG_KEY, (0, 1))
        raise RepoExists(f"a repository already exists at {storage.describe()}; open it instead")
    except ObjectMissing:
        pass
    cfg = RepoConfig(
        id=os.urandom(32).hex(),
        chunk_size=chunk_size,
        created=utc_iso(datetime.now(UTC)),
        object_lock=object_lock,
    )
    keys = MasterKeys.generate()
    repo = Repository(storage, cfg, keys, "")
    repo.key_id = repo.add_key(password, label, kdf)
    doc = dict(cfg.body(), mac=crypto.config_mac(keys, cfg.body()))
    storage.put(CONFIG_KEY, json.dumps(doc, indent=1).encode())
    return repo


def upgrade_repository(repo: Repository) -> bool:
    """Raise the repository's format to ``FORMAT_VERSION`` (``drctl repo upgrade``): rewrite
    ``config`` with the new version and its MAC, under the exclusive lock (no backup runs
    meanwhile). Existing points and chunks are not touched and stay restorable. Idempotent: False
    when the repository already has that format."""
    with repo.lock(exclusive=True, operation="upgrade"):
        # Read again (another process may have upgraded it meanwhile) and check its MAC again: the
        # new MAC must never vouch for fields a writer of the bucket changed.
        current, mac = read_config(repo.storage)
        if not hmac.compare_digest(crypto.config_mac(repo.keys, current.body()), mac):
            raise KeyFileCorrupt(
                f"repository config {repo.describe()}/{CONFIG_KEY} fails its MAC: it was modified; "
                "restore it from a copy of the repository"
            )
        if current.version >= FORMAT_VERSION:
            repo.config = current
            return False
        cfg = RepoConfig(
            id=current.id,
            chunk_size=current.chunk_size,
            created=current.created,
            object_lock=current.object_lock,
            version=FORMAT_VERSION,
        )
        doc = dict(cfg.body(), mac=crypto.config_mac(repo.keys, cfg.body()))
        repo.storage.put(CONFIG_KEY, json.dumps(doc, indent=1).encode())
        repo.config = cfg
        log.info("repository %s upgraded to format %d", repo.describe(), FORMAT_VERSION)
        return True
