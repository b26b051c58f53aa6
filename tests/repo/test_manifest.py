"""Pure parts: manifest run encoding and validation, point selection, the forget policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from drctl.errors import InvalidInput
from drctl.repo.errors import ManifestCorrupt
from drctl.repo.maintenance import KeepPolicy, plan_forget
from drctl.repo.manifest import Manifest, encode_chunks, manifest_from_doc, select_point

A, B = b"\xaa" * 32, b"\xbb" * 32
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)  # a Monday


def point(pid: str, created: datetime, server: str = "web", disk: str = "vda") -> Manifest:
    return Manifest(
        id=pid,
        repo="r" * 64,
        server=server,
        disk=disk,
        size=10,
        chunk_size=4,
        sha256="0" * 64,
        created=created,
        type="full",
        parent=None,
        chunks=(A, 2),
    )


def test_zero_chunks_become_runs_and_expand_back_in_order():
    entries = encode_chunks([None, None, A, None, B, B, None, None, None])
    assert entries == (2, A, 1, B, B, 3)
    m = Manifest(
        id="p",
        repo="r",
        server="s",
        disk="d",
        size=9 * 4 - 1,
        chunk_size=4,
        sha256="0" * 64,
        created=T0,
        type="full",
        parent=None,
        chunks=entries,
    )
    assert list(m.iter_chunks()) == [
        (0, None),
        (1, None),
        (2, A),
        (3, None),
        (4, B),
        (5, B),
        (6, None),
        (7, None),
        (8, None),
    ]
    assert m.chunk_ids() == {A, B} and m.stored_chunks == 3


def test_manifest_doc_round_trip_and_inconsistent_chunk_count_refused():
    m = point("p1", T0)
    assert manifest_from_doc(m.to_doc(), "snapshots/p1", "p1", "r" * 64) == m
    doc = m.to_doc()
    doc["chunks"] = [A.hex()]  # 1 chunk for 10 bytes in 4-byte chunks (needs 3)
    with pytest.raises(ManifestCorrupt, match="1 chunks listed"):
        manifest_from_doc(doc, "snapshots/p1", "p1", "r" * 64)
    with pytest.raises(ManifestCorrupt, match="another repository"):
        manifest_from_doc(m.to_doc(), "snapshots/p1", "p1", "s" * 64)
    with pytest.raises(ManifestCorrupt, match="stored under"):
        manifest_from_doc(m.to_doc(), "snapshots/p2", "p2", "r" * 64)


def test_select_point_latest_prefix_and_time():
    pts = [
        point("aaaa1111", T0),
        point("bbbb2222", T0 + timedelta(hours=1)),
        point("cccc3333", T0 + timedelta(hours=2)),
        point("dddd4444", T0, server="db"),
    ]
    assert select_point(pts, "web", None).id == "cccc3333"
    assert select_point(pts, "web", "vda", "bbbb").id == "bbbb2222"
    assert select_point(pts, "web", None, "2026-11-02T11:30:00Z").id == "bbbb2222"
    assert select_point(pts, "web", None, "2026-11-02T11:00:00+00:00").id == "bbbb2222"  # at = included
    with pytest.raises(InvalidInput, match="oldest is"):
        select_point(pts, "web", None, "2026-11-01T00:00:00Z")
    with pytest.raises(InvalidInput, match="servers in this repository: db, web"):
        select_point(pts, "mail", None)
    with pytest.raises(InvalidInput, match="no disk 'vdb'"):
        select_point(pts, "web", "vdb")


def test_select_point_asks_for_a_disk_when_several():
    pts = [point("a1", T0), point("b1", T0, disk="vdb")]
    with pytest.raises(InvalidInput, match="several disks"):
        select_point(pts, "web", None)
    assert select_point(pts, "web", "vdb").id == "b1"


def test_forget_keeps_one_per_day_newest_first_per_group():
    # 3 points on each of 4 days at 01:00, 09:00, 17:00; keep-daily 2 keeps the 17:00 point of the
    # two newest days (newest of each day), keep-last 1 is the newest (already kept).
    pts = [point(f"p{d}{h}", T0.replace(hour=h) + timedelta(days=d)) for d in range(4) for h in (1, 9, 17)]
    other = [point("x1", T0, server="db"), point("x2", T0 + timedelta(days=3), server="db")]
    kept, removed = plan_forget(pts + other, KeepPolicy(last=1, daily=2), server="web")
    assert sorted(p.id for p in kept if p.server == "web") == ["p217", "p317"]
    assert {p.id for p in kept if p.server == "db"} == {"x1", "x2"}  # other servers untouched
    assert len(removed) == 10


def test_forget_weekly_and_monthly_buckets():
    # one point a week for 10 weeks: keep-weekly 3 keeps the 3 newest; keep-monthly 2 adds the
    # newest point of the previous month.
    pts = [point(f"w{i}", T0 + timedelta(weeks=i)) for i in range(10)]  # Nov 2 .. Jan 4
    kept, _ = plan_forget(pts, KeepPolicy(weekly=3))
    assert {p.id for p in kept} == {"w9", "w8", "w7"}
    kept, _ = plan_forget(pts, KeepPolicy(monthly=2))
    # w9 = Jan 4 (January), w8 = Dec 28 (newest of December)
    assert {p.id for p in kept} == {"w9", "w8"}


def test_forget_refuses_an_empty_policy():
    with pytest.raises(InvalidInput, match="at least one --keep"):
        plan_forget([point("a", T0)], KeepPolicy())


def test_stored_sizes_round_trip_are_optional_and_checked():
    cid = bytes(range(32))
    base = point("p1", datetime(2026, 1, 1, tzinfo=UTC))
    m = Manifest(**{**base.__dict__, "chunks": encode_chunks([cid, None]), "size": 2 * base.chunk_size})
    sized = Manifest(**{**m.__dict__, "stored_sizes": {cid: 1234}})
    assert manifest_from_doc(sized.to_doc(), "snapshots/p1", "p1", "r" * 64).stored_sizes == {cid: 1234}
    assert "stored_sizes" not in m.to_doc()  # a point written before sizes were recorded reads back
    assert manifest_from_doc(m.to_doc(), "snapshots/p1", "p1", "r" * 64).stored_sizes == {}
    for bad in ({cid.hex(): 0}, {cid.hex(): "12"}, {"ab" * 32: 5}, [5], {cid.hex(): True}):
        doc = {**m.to_doc(), "stored_sizes": bad}
        with pytest.raises(ManifestCorrupt, match="stored size|stored_sizes"):
            manifest_from_doc(doc, "snapshots/p1", "p1", "r" * 64)
