"""Repository format 2 (docs/repository-format.md): keyed BLAKE3 chunk ids proven by the restore's
decoders, the image digest over the per-chunk digests, the v1 fixture that still restores, the
refusal to mix formats and `drctl repo upgrade`. Restores run through the CLI as a user runs them:
a damaged repository ends in exit 13 and nothing at PATH."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import blake3
import pytest

from drctl.repo import crypto
from drctl.repo.backup import backup_disk
from drctl.repo.crypto import MasterKeys
from drctl.repo.errors import ChunkCorrupt, ImageMismatch
from drctl.repo.manifest import Manifest, chunk_key, point_key
from drctl.repo.repository import open_repository, read_config
from drctl.repo.restore import restore_disk
from drctl.storage.local import LocalDirStorage
from tests.repo.fakes import MiB, make_image, v2_digest_of
from tests.repo.test_cli import drctl, no_traceback
from tests.support.events import error_of, result_of

REPO = bytes(range(32))
V1_FIXTURE = Path(__file__).parents[1] / "data" / "repo-v1"
V1_PASSWORD = "fixture-password-v1"  # the fixture's only key slot (a test repository, no secret)
V1_POINT = "781eed4c79eb9e4123b92ea29d08d2e3"
V1_SHA256 = "99a62503c5d5ce76d8e575cda199ce5e72f82b754578ef0aed93993d4cdabae8"
V1_CHUNK = 64 * 1024


def v1_image() -> bytes:
    """The image the fixture holds (web-1/vda): text, a zero chunk, a repeated chunk, a short tail."""
    text = b"".join(b"line %05d of the v1 fixture disk\n" % i for i in range(4000))
    a, zero = text[:V1_CHUNK], bytes(V1_CHUNK)
    return a + zero + a + text[V1_CHUNK : 2 * V1_CHUNK] + zero + text[:10000]


@pytest.fixture
def v1_repo(tmp_path) -> Path:
    """A copy of the committed fixture (commands write locks into the repository)."""
    return Path(shutil.copytree(V1_FIXTURE, tmp_path / "repo-v1"))


def v1(*args: str):
    return drctl(*args, password=V1_PASSWORD)


# -- digest and chunk ids -----------------------------------------------------------------------


def test_blake3_is_the_reference_keyed_hash_and_the_v2_chunk_id_is_pinned():
    # BLAKE3's official test vector (keyed_hash, empty input, key "whats the Elvish word for friend").
    assert blake3.blake3(b"", key=b"whats the Elvish word for friend").hexdigest() == (
        "92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26"
    )
    keys = MasterKeys(enc_key=bytes(32), id_key=bytes(range(32)))
    derived = blake3.blake3(keys.id_key, derive_key_context="drctl 2026-11 chunk id v2").digest()
    assert crypto.chunk_id_v2(keys, b"Hi There") == blake3.blake3(b"Hi There", key=derived).digest()
    # Pinned: every format-2 repository depends on this value never changing.
    assert crypto.chunk_id_v2(keys, b"Hi There").hex() == PINNED_V2_ID
    assert crypto.chunk_id_v2(keys, b"Hi There") != crypto.chunk_id(keys, b"Hi There")
    assert crypto.chunk_id_v2(MasterKeys.generate(), b"x") != crypto.chunk_id_v2(MasterKeys.generate(), b"x")


PINNED_V2_ID = "a1795bdd213493faac7c0fe525ba8977547651668c5c3de0fab5d40269c0f897"


def test_image_digest_binds_order_size_and_zero_chunks_without_hashing_them():
    a, b = b"A" * 32, b"B" * 32
    base = crypto.image_digest_v2(100, 40, [a, None, b])
    assert base == crypto.image_digest_v2(100, 40, [a, crypto.ZERO_CHUNK_DIGEST, b])  # zero = a constant
    assert base != crypto.image_digest_v2(100, 40, [b, None, a])  # two chunks swapped
    assert base != crypto.image_digest_v2(100, 40, [a, b])  # a chunk dropped
    assert base != crypto.image_digest_v2(101, 40, [a, None, b])  # another size
    assert base != crypto.image_digest_v2(100, 40, [a, b"\0" * 32, b])
    keys = MasterKeys.generate()
    assert crypto.ZERO_CHUNK_DIGEST not in {crypto.chunk_id_v2(keys, bytes(n)) for n in (1, 40, 4 * MiB)}


def test_v2_chunk_every_flipped_byte_and_a_v1_object_under_a_v2_point_are_refused():
    keys = MasterKeys.generate()
    plain = b"systemd nginx postgres " * 20
    cid = crypto.chunk_id_v2(keys, plain)
    blob = crypto.seal_chunk(keys, REPO, cid, plain, 2)
    assert blob[0] == 2
    assert crypto.open_chunk(keys, REPO, cid, blob, len(plain), "data/x", version=2) == plain
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        with pytest.raises(ChunkCorrupt) as e:
            crypto.open_chunk(keys, REPO, cid, bytes(bad), len(plain), "data/aa/obj", version=2)
        assert cid.hex() in e.value.message and "data/aa/obj" in e.value.message
    relabelled = bytes((1,)) + blob[1:]  # the header is in the associated data
    with pytest.raises(ChunkCorrupt):
        crypto.open_chunk(keys, REPO, cid, relabelled, len(plain), "data/x")
    old = crypto.seal_chunk(keys, REPO, cid, plain, 1)
    with pytest.raises(ChunkCorrupt, match="needs format 2"):
        crypto.open_chunk(keys, REPO, cid, old, len(plain), "data/x", version=2)
    # Sealed under an id that is not its content's (only a key holder could): the id proof fails.
    wrong = crypto.seal_chunk(keys, REPO, cid, b"x" * len(plain), 2)
    with pytest.raises(ChunkCorrupt, match="does not match its chunk id"):
        crypto.open_chunk(keys, REPO, cid, wrong, len(plain), "data/x", version=2)


# -- the v1 fixture, mixing, upgrade -----------------------------------------------------------


def test_v1_fixture_made_by_the_format_1_code_restores_bit_identical(v1_repo, tmp_path):
    assert hashlib.sha256(v1_image()).hexdigest() == V1_SHA256
    out = tmp_path / "web-1.img"
    r = v1("restore", str(v1_repo), "--server", "web-1", "--out", str(out), "--json")
    no_traceback(r)
    assert r.returncode == 0, r.stderr
    res = result_of(r.stdout)
    assert res["point"] == V1_POINT and res["repo_format"] == 1 and res["sha256"] == V1_SHA256
    assert out.read_bytes() == v1_image()
    c = v1("check", str(v1_repo), "--read-data")
    assert c.returncode == 0 and "no problems" in c.stdout, c.stdout + c.stderr


def test_v1_fixture_tampered_chunk_is_still_exit_13_and_nothing_at_path(v1_repo, tmp_path):
    victim = next((v1_repo / "data").glob("*/*"))
    blob = bytearray(victim.read_bytes())
    blob[-20] ^= 0x01
    victim.write_bytes(bytes(blob))
    out = tmp_path / "web-1.img"
    r = v1("restore", str(v1_repo), "--server", "web-1", "--out", str(out))
    no_traceback(r)
    assert r.returncode == 13 and victim.name in r.stderr
    assert not out.exists()


def test_backup_into_a_v1_repository_refuses_until_upgraded_then_both_formats_restore(v1_repo, tmp_path):
    img = make_image(tmp_path / "disk.img", 3 * MiB + 77, seed=9)
    snapshots = sorted(p.name for p in (v1_repo / "snapshots").iterdir())
    r = v1("backup", str(v1_repo), "--server", "web-1", "--disk", "vdb", str(img), "--json")
    no_traceback(r)
    assert r.returncode == 1
    err = error_of(r.stdout)
    assert err["error"] == "RepoNeedsUpgrade" and err["exit_code"] == 1
    assert f"drctl repo upgrade {v1_repo}" in err["message"] and "format version 1" in err["message"]
    assert sorted(p.name for p in (v1_repo / "snapshots").iterdir()) == snapshots  # nothing written
    assert not list((v1_repo / "locks").glob("*"))  # no lock left (the directory may not exist)

    up = v1("repo", "upgrade", str(v1_repo), "--json")
    assert up.returncode == 0, up.stderr
    upgraded = result_of(up.stdout)
    assert (upgraded["from"], upgraded["version"], upgraded["changed"]) == (1, 2, True)
    again = v1("repo", "upgrade", str(v1_repo))
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert json.loads((v1_repo / "config").read_text())["version"] == 2
    assert not list((v1_repo / "locks").glob("*"))  # no lock left (the directory may not exist)

    b = v1("backup", str(v1_repo), "--server", "web-1", "--disk", "vdb", str(img), "--json")
    assert b.returncode == 0, b.stderr
    assert result_of(b.stdout)["repo_format"] == 2
    for disk, expected in (("vda", v1_image()), ("vdb", img.read_bytes())):
        out = tmp_path / f"{disk}.img"
        r = v1("restore", str(v1_repo), "--server", "web-1", "--disk", disk, "--out", str(out))
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == expected


def test_upgrade_takes_the_exclusive_lock_and_a_tampered_config_is_never_re_signed(v1_repo):
    storage = LocalDirStorage(v1_repo)
    repo = open_repository(storage, V1_PASSWORD.encode())
    with repo.lock(exclusive=False, operation="restore"):
        r = v1("repo", "upgrade", str(v1_repo))
    no_traceback(r)
    assert r.returncode == 11 and "restore" in r.stderr
    assert read_config(storage)[0].version == 1

    doc = json.loads((v1_repo / "config").read_text())
    doc["chunk_size"] = 2 * doc["chunk_size"]  # a writer of the bucket edits the config
    (v1_repo / "config").write_text(json.dumps(doc))
    r = v1("repo", "upgrade", str(v1_repo))
    no_traceback(r)
    assert r.returncode == 13 and "MAC" in r.stderr
    assert json.loads((v1_repo / "config").read_text())["version"] == 1


def test_repo_init_creates_format_2(tmp_path):
    r = drctl("repo", "init", str(tmp_path / "r"))
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "r" / "config").read_text())["version"] == 2


# -- tampering with a v2 repository: exit 13, nothing at PATH ------------------------------------


@pytest.fixture
def v2_point(tmp_path):
    """A format-2 directory repository with one point of web/vda (1 MiB chunks, zero runs)."""
    r = drctl("repo", "init", str(tmp_path / "repo"), "--chunk-size", "1")
    assert r.returncode == 0, r.stderr
    img = make_image(tmp_path / "disk.img", 12 * MiB + 4321, seed=5)
    b = drctl("backup", str(tmp_path / "repo"), "--server", "web", "--disk", "vda", str(img), "--json")
    assert b.returncode == 0, b.stderr
    summary = result_of(b.stdout)
    assert summary["repo_format"] == 2 and summary["sha256"] is None
    repo = open_repository(LocalDirStorage(tmp_path / "repo"), b"Tr0ub4dor&3-cli-secret")
    assert summary["image_digest"] == "blake3-list:" + v2_digest_of(repo, img, MiB)
    return repo, img, repo.load_point(summary["point"])


def restore_fails(repo, tmp_path) -> str:
    out = tmp_path / "out.img"
    r = drctl("restore", str(repo.storage.root), "--server", "web", "--out", str(out))
    no_traceback(r)
    assert r.returncode == 13, r.stderr
    assert not out.exists()
    for left in tmp_path.glob("out.img.partial*"):  # the next case starts afresh, not from a resume
        left.unlink()
    return r.stderr


def chunk_file(repo, cid: bytes) -> Path:
    return repo.storage.root / chunk_key(cid)


def test_v2_flipped_byte_dropped_chunk_and_swapped_chunks_end_in_exit_13(v2_point, tmp_path):
    repo, img, point = v2_point
    a, b = sorted(point.chunk_ids())[:2]
    fa, fb = chunk_file(repo, a), chunk_file(repo, b)
    blob_a, blob_b = fa.read_bytes(), fb.read_bytes()

    fa.write_bytes(blob_a[:100] + bytes((blob_a[100] ^ 1,)) + blob_a[101:])
    assert a.hex() in restore_fails(repo, tmp_path)
    fa.write_bytes(blob_a)

    fb.unlink()
    assert "missing" in restore_fails(repo, tmp_path)

    fa.write_bytes(blob_b)  # object A holds chunk B and the other way round
    fb.write_bytes(blob_a)
    assert "tag does not verify" in restore_fails(repo, tmp_path)

    fa.write_bytes(blob_a)
    fb.write_bytes(blob_b)
    out = tmp_path / "ok.img"
    r = drctl("restore", str(repo.storage.root), "--server", "web", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == img.read_bytes()


def _rewrite_point(repo, point: Manifest, **changes) -> None:
    """What only a key holder (a buggy backup) could write: the same point with other fields."""
    bad = Manifest(**{**point.__dict__, **changes})
    repo.storage.put(
        point_key(point.id), crypto.seal_manifest(repo.keys, repo.repo_id, point.id, bad.to_doc())
    )


def test_the_image_digest_catches_a_manifest_whose_chunks_were_swapped_or_dropped(v2_point, tmp_path):
    repo, img, point = v2_point
    entries = list(point.chunks)
    first, second = [i for i, e in enumerate(entries) if isinstance(e, bytes)][:2]
    swapped = list(entries)
    swapped[first], swapped[second] = entries[second], entries[first]
    _rewrite_point(repo, point, chunks=tuple(swapped))  # every chunk still proves its own id
    err = restore_fails(repo, tmp_path)
    assert "digest" in err and point.id in err
    assert not (tmp_path / "out.img.partial").exists()  # a partial that failed its digest is deleted

    dropped = list(entries)
    dropped[first] = 1  # a data chunk replaced by a zero run
    _rewrite_point(repo, point, chunks=tuple(dropped), stored_sizes={})
    assert "digest" in restore_fails(repo, tmp_path)

    _rewrite_point(repo, point, image_digest="0" * 64)
    with pytest.raises(ImageMismatch):
        restore_disk(repo, server="web", out=tmp_path / "api.img")
    assert not (tmp_path / "api.img").exists()


def test_v2_resume_reverifies_the_partial_file_with_blake3(v2_point, tmp_path):
    repo, img, point = v2_point
    out = tmp_path / "out.img"
    restore_disk(repo, server="web", out=out)
    # A journal claiming every chunk, over a partial file with one flipped byte in a data chunk.
    out.rename(tmp_path / "out.img.partial")
    idx = next(i for i, c in point.iter_chunks() if c is not None)
    with open(tmp_path / "out.img.partial", "r+b") as f:
        f.seek(idx * MiB + 10)
        byte = f.read(1)
        f.seek(idx * MiB + 10)
        f.write(bytes((byte[0] ^ 0xFF,)))
    done = [str(i) for i, c in point.iter_chunks() if c is not None]
    (tmp_path / "out.img.partial.done").write_text("\n".join([f"point {point.id}", *done]) + "\n")
    res = restore_disk(repo, server="web", out=out)
    assert res.resumed_chunks == len(done) - 1 and res.fetched_chunks >= 1
    assert out.read_bytes() == img.read_bytes()


def test_backup_result_keeps_its_fields_and_adds_the_digest(v2_point, tmp_path):
    repo, img, _ = v2_point
    res = backup_disk(repo, img, server="web", disk="vda", chunk_size=MiB, parallel=2)
    assert res.new_chunks == 0 and res.point.version == 2
    summary = res.summary()
    assert summary["image_digest"] == "blake3-list:" + res.point.image_digest
    assert {"point", "chunks", "new_chunks", "uploaded_bytes", "sha256", "repo_format"} <= summary.keys()
