"""Reading one client's vault for ``drctl status``, without the client's key and without data.

Per vault: one listing of ``status/`` (never of ``data/``: no chunk is listed or read), the
repository's config (its retention) and, when it asks for retention, the store's Object Lock
read back (:meth:`~drctl.storage.base.Storage.lock_support`, as a backup does). Then the newest
status records of each plan server, read in parallel, going further back only for a server whose
disks are not all covered by a verified successful job yet. With the client's password (the
operator holds the key), the repository's restore-point list fills in what no trusted record says.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from drctl.agent import records
from drctl.agent.records import StoredRecord, Trust
from drctl.plan.model import Plan
from drctl.repo.errors import IntegrityError, RepoMissing, WrongPassword
from drctl.status.model import Retention
from drctl.storage.base import Storage, StorageError

log = logging.getLogger(__name__)

FIRST_BATCH = 1  # records per server read first: the newest job usually answers everything
RETRY_ATTEMPTS = 3  # status should say soon that a vault is away, not wait out a backup's budget
RETRY_BUDGET_S = 10.0


class VaultUnreadable(StorageError):
    """A client's vault (status records, repository config) cannot be read."""


@dataclass
class VaultReading:
    """What one vault says: status records per server (newest first, only those read), the
    servers it has records or restore points of, its retention and the latest restore points."""

    records: dict[str, list[StoredRecord]] = field(default_factory=dict)
    servers_seen: set[str] = field(default_factory=set)
    retention: Retention | None = None
    points: dict[tuple[str, str], tuple[datetime, str]] = field(default_factory=dict)  # (server, disk)
    notes: list[str] = field(default_factory=list)


class VaultOpener:
    """Opens vaults by URL; every ``s3://`` vault shares one S3 client (building one per client
    would cost more than reading its records)."""

    def __init__(self) -> None:
        self._client: Any = None
        self._lock = threading.Lock()

    def __call__(self, url: str) -> Storage:
        if not url.startswith("s3://"):
            from drctl.storage import open_storage

            return open_storage(url, retry_attempts=RETRY_ATTEMPTS, retry_budget=RETRY_BUDGET_S)
        from urllib.parse import urlparse

        from drctl.storage.retry import RetryingStorage
        from drctl.storage.s3 import S3Storage
        from drctl.storage.s3_client import make_client

        with self._lock:
            if self._client is None:
                self._client = make_client(fast_timestamps=True)
        parsed = urlparse(url)
        storage = S3Storage(parsed.netloc, parsed.path.strip("/"), self._client)
        return RetryingStorage(storage, attempts=RETRY_ATTEMPTS, budget_seconds=RETRY_BUDGET_S)


def _covered(stored: list[StoredRecord], disks: set[str]) -> bool:
    """Whether the verified successful jobs among ``stored`` back up every one of ``disks``."""
    done: set[str] = set()
    for s in stored:
        if s.trusted and s.record is not None and s.record.result == "ok":
            done |= set(s.record.points or s.record.disks)
    return disks <= done


def read_records(
    storage: Storage, plan: Plan, trusted_keys: Mapping[str, Ed25519PublicKey], *, parallel: int = 16
) -> tuple[dict[str, list[StoredRecord]], set[str]]:
    """Records per plan server, newest first, and every server name that has records."""
    by_server: dict[str, list[str]] = {}
    for key in records.list_keys(storage):
        parts = key.split("/")
        if len(parts) == 3:
            by_server.setdefault(parts[1], []).append(key)
    pending = {s.name: list(reversed(by_server.get(s.name, []))) for s in plan.servers}
    disks = {s.name: {d.name for d in s.disks} for s in plan.servers}
    got: dict[str, list[StoredRecord]] = {s.name: [] for s in plan.servers}
    batch = FIRST_BATCH
    while True:
        wanted: list[str] = []
        for name, keys in pending.items():
            if keys and not _covered(got[name], disks[name]):
                wanted += keys[:batch]
                pending[name] = keys[batch:]
        if not wanted:
            break
        for stored in records.read(storage, wanted, trusted_keys, parallel=parallel):
            got[stored.key.split("/")[1]].append(stored)
        batch *= 4
    return got, set(by_server)


def read_retention(storage: Storage, notes: list[str]) -> Retention | None:
    """The repository's retention (its config, readable without a key) and, when it asks for one,
    whether the store enforces it (a probe read back)."""
    from drctl.repo.repository import read_config

    try:
        config, _ = read_config(storage)
    except RepoMissing:
        notes.append(f"no repository at {storage.describe()} yet (`drctl repo init`)")
        return None
    except IntegrityError as e:
        notes.append(e.message)
        return None
    days = (config.object_lock or {}).get("retain_days")
    if not days:
        return Retention(
            None, False, "the repository asks for no retention (`drctl repo init --retain DAYS`)"
        )
    support = storage.lock_support()
    return Retention(int(days), support.enforced, support.detail)


def read_points(
    storage: Storage, password: bytes, notes: list[str]
) -> dict[tuple[str, str], tuple[datetime, str]]:
    """The newest readable restore point of every (server, disk), with the client's key."""
    from drctl.repo.points import load_readable_points
    from drctl.repo.repository import open_repository

    try:
        repo = open_repository(storage, password)
    except WrongPassword:
        notes.append("the password given does not open this vault: its restore points were not read")
        return {}
    listing = load_readable_points(repo)
    for d in listing.damaged:
        notes.append(f"restore point skipped: {d.reason}")
    return {(p.server, p.disk): (p.created, p.id) for p in listing.points}  # oldest first: newest wins


def read_vault(
    storage: Storage,
    plan: Plan,
    trusted_keys: Mapping[str, Ed25519PublicKey],
    *,
    password: bytes | None = None,
    parallel: int = 16,
) -> VaultReading:
    """Everything status reads from one vault. Raises :class:`VaultUnreadable` naming the vault."""
    reading = VaultReading()
    where = storage.describe()
    try:
        reading.records, reading.servers_seen = read_records(storage, plan, trusted_keys, parallel=parallel)
        reading.retention = read_retention(storage, reading.notes)
        if password is not None and reading.retention is not None:
            reading.points = read_points(storage, password, reading.notes)
            reading.servers_seen |= {server for server, _ in reading.points}
    except StorageError as e:
        raise VaultUnreadable(f"vault {where} of client {plan.client.id} cannot be read: {e.message}") from e
    except IntegrityError as e:  # a damaged key slot: the records still say what they say
        reading.notes.append(e.message)
    unreadable = [s for got in reading.records.values() for s in got if s.trust is Trust.MALFORMED]
    if unreadable:
        log.info("%s: %d status record(s) could not be used", where, len(unreadable))
    return reading
