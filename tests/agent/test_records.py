"""Signed job status records: what the monitoring may trust, on a real store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drctl.agent import records
from drctl.agent.records import JobRecord, Trust
from drctl.errors import InvalidInput, LocalIOError
from drctl.storage.base import StorageError
from drctl.storage.local import LocalDirStorage

T0 = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)


def _record(server: str = "db01", *, job_id: str = "j1", ended: datetime | None = None, **kw) -> JobRecord:
    fields = {
        "client": "demo",
        "server": server,
        "job_id": job_id,
        "type": "incremental",
        "started": T0,
        "ended": ended or T0 + timedelta(minutes=3),
        "result": "ok",
        "disks": ("system",),
        "points": {"system": "p1"},
        "bytes_read": 2 << 30,
        "bytes_new": 10 << 20,
        "bytes_uploaded": 4 << 20,
    }
    fields.update(kw)
    return JobRecord(**fields)


@pytest.fixture
def keys() -> dict[str, Ed25519PrivateKey]:
    return {name: Ed25519PrivateKey.generate() for name in ("db01", "web01")}


def _trusted(keys: dict[str, Ed25519PrivateKey]):
    return {name: k.public_key() for name, k in keys.items()}


def test_a_signed_record_round_trips_through_a_real_store_and_is_trusted(seaweed_s3, keys) -> None:
    storage = seaweed_s3.storage("repo")
    older = _record(job_id="a", ended=T0 + timedelta(hours=1))
    newer = _record(job_id="b", ended=T0 + timedelta(hours=2), result="failed", error_class="StorageError")
    for r in (newer, older):
        assert records.publish(storage, r, keys["db01"], spool_dir=None)
    found = records.list_keys(storage, "db01")
    assert found == [older.object_key, newer.object_key]  # chronological by key
    read = records.read(storage, found, _trusted(keys))
    assert [s.trust for s in read] == [Trust.VERIFIED, Trust.VERIFIED]
    assert read[1].record == newer
    assert read[1].record.error_class == "StorageError"


def test_no_secret_or_data_goes_into_a_record() -> None:
    body = records.sign(_record(), Ed25519PrivateKey.generate())
    doc = json.loads(body)
    assert set(doc) == {"format", "key_id", "signature", "record"}
    assert "password" not in body.decode() and "PRIVATE" not in body.decode()


def test_every_altered_byte_of_the_record_is_caught(keys) -> None:
    r = _record()
    body = records.sign(r, keys["db01"])
    record_start = body.index(b'"record"')
    for i in range(record_start, len(body)):
        altered = bytearray(body)
        altered[i] ^= 0x01
        got = records.parse(r.object_key, bytes(altered), _trusted(keys))
        assert got.trust in (Trust.FORGED, Trust.MALFORMED), (i, bytes(altered[i : i + 20]))
        assert not got.trusted


def test_unknown_key_other_server_and_foreign_path_are_never_trusted(keys) -> None:
    r = _record("db01")
    signed_by_web = records.sign(r, keys["web01"])
    assert records.parse(r.object_key, signed_by_web, _trusted(keys)).trust is Trust.FORGED
    # no key recorded for db01: shown as unsigned, not trusted
    unsigned = records.parse(
        r.object_key, records.sign(r, keys["db01"]), {"web01": keys["web01"].public_key()}
    )
    assert unsigned.trust is Trust.UNSIGNED and unsigned.record == r
    # web01's agent writing a record about db01 into its own folder
    moved = r.object_key.replace("status/db01/", "status/web01/")
    assert records.parse(moved, records.sign(r, keys["web01"]), _trusted(keys)).trust is Trust.FORGED
    # not a record at all
    assert records.parse(r.object_key, b"[]", _trusted(keys)).trust is Trust.MALFORMED
    assert records.parse("status/db01/x.json", b"{}", _trusted(keys)).trust is Trust.MALFORMED


def test_a_record_kept_in_the_spool_during_an_outage_is_published_later(tmp_path: Path, keys) -> None:
    spool = tmp_path / "spool"
    down = LocalDirStorage(tmp_path / "unmounted-nas")  # the store is away: its directory is missing
    r = _record()
    assert records.publish(down, r, keys["db01"], spool_dir=spool) is False
    kept = list(spool.iterdir())
    assert len(kept) == 1 and kept[0].stat().st_mode & 0o777 == 0o600
    with pytest.raises(StorageError):
        records.publish(down, r, keys["db01"], spool_dir=None)
    store = LocalDirStorage(tmp_path / "store")
    store.create()
    assert records.flush_spool(store, spool) == 1
    assert not list(spool.iterdir())
    [got] = records.read(store, records.list_keys(store), _trusted(keys))
    assert got.trusted and got.record == r


def test_invalid_records_and_keys_are_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="job type 'weekly'"):
        _record(type="weekly")
    with pytest.raises(InvalidInput, match="server 'DB_01'"):
        _record("DB_01")
    with pytest.raises(InvalidInput, match="stack agent_keys.db01"):
        records.parse_public_key("rsa:00", where="stack agent_keys.db01")
    key_path = tmp_path / "agent.key"
    key = records.generate_agent_key(key_path)
    assert key_path.stat().st_mode & 0o777 == 0o600
    assert records.public_key_text(records.load_agent_key(key_path).public_key()) == records.public_key_text(
        key.public_key()
    )
    with pytest.raises(LocalIOError, match="already exists"):
        records.generate_agent_key(key_path)
    key_path.chmod(0o644)
    with pytest.raises(LocalIOError, match="chmod 600"):
        records.load_agent_key(key_path)
    text = records.public_key_text(key.public_key())
    assert records.parse_public_key(text, where="x").public_bytes_raw() == key.public_key().public_bytes_raw()
