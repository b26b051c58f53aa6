"""Crypto of the repository format: known-answer vectors and "flip every byte" loops."""

from __future__ import annotations

import json

import pytest

from drctl.repo import crypto
from drctl.repo.crypto import KdfParams, MasterKeys
from drctl.repo.errors import ChunkCorrupt, ForeignManifest, KeyFileCorrupt, ManifestCorrupt
from drctl.repo.keys import open_slot, seal_slot

REPO = bytes(range(32))
FAST_KDF = KdfParams(n=2**10, r=8, p=1)  # only to keep byte-flip loops fast; defaults are n=2**15


def test_chunk_id_is_hmac_sha256_rfc4231_case_1():
    keys = MasterKeys(enc_key=bytes(32), id_key=b"\x0b" * 20)
    assert crypto.chunk_id(keys, b"Hi There").hex() == (
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    )


def test_kek_is_scrypt_rfc7914_vector():
    kek = crypto.derive_kek(b"password", b"NaCl", KdfParams(n=1024, r=8, p=16))
    assert kek.hex() == "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"


def test_default_kdf_is_memory_hard_enough():
    assert crypto.DEFAULT_KDF.n >= 2**15 and crypto.DEFAULT_KDF.r == 8 and crypto.DEFAULT_KDF.p == 1


def test_chunk_ids_differ_between_repositories_for_the_same_data():
    a, b = MasterKeys.generate(), MasterKeys.generate()
    assert crypto.chunk_id(a, b"same block") != crypto.chunk_id(b, b"same block")


def test_sealing_twice_uses_fresh_nonces_and_compresses_text_only():
    keys = MasterKeys.generate()
    text = b"GET /index.html 200\n" * 5000
    cid = crypto.chunk_id(keys, text)
    one, two = crypto.seal_chunk(keys, REPO, cid, text), crypto.seal_chunk(keys, REPO, cid, text)
    assert one[2:14] != two[2:14] and one != two
    assert one[1] == crypto.COMP_ZSTD and len(one) < len(text) // 10
    import os

    rnd = os.urandom(4096)
    sealed = crypto.seal_chunk(keys, REPO, crypto.chunk_id(keys, rnd), rnd)
    assert sealed[1] == crypto.COMP_NONE
    assert len(sealed) == 2 + 12 + 4096 + 16


def test_chunk_round_trip_and_every_flipped_byte_is_an_integrity_error():
    keys = MasterKeys.generate()
    plain = b"systemd nginx postgres " * 20
    cid = crypto.chunk_id(keys, plain)
    blob = crypto.seal_chunk(keys, REPO, cid, plain)
    assert crypto.open_chunk(keys, REPO, cid, blob, len(plain), "data/x") == plain
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        with pytest.raises(ChunkCorrupt) as e:
            crypto.open_chunk(keys, REPO, cid, bytes(bad), len(plain), "data/aa/obj")
        assert cid.hex() in e.value.message and "data/aa/obj" in e.value.message
    for n in range(len(blob)):
        with pytest.raises(ChunkCorrupt):
            crypto.open_chunk(keys, REPO, cid, blob[:n], len(plain), "data/aa/obj")


@pytest.mark.parametrize("kind", ["text", "random"])
def test_open_chunk_into_reused_buffers_gives_the_plaintext_and_every_flipped_byte_fails(kind):
    import os

    keys = MasterKeys.generate()
    plain = b"systemd nginx postgres " * 200 if kind == "text" else os.urandom(4600)
    cid = crypto.chunk_id_v2(keys, plain)
    blob = crypto.seal_chunk(keys, REPO, cid, plain, crypto.CHUNK_VERSION_2)
    assert blob[1] == (crypto.COMP_ZSTD if kind == "text" else crypto.COMP_NONE)
    out, scratch = memoryview(bytearray(8192)), memoryview(bytearray(8192))

    def open_into(b: bytes, expected: int = len(plain)) -> bytes:
        out[:] = b"\xaa" * len(out)  # what an earlier chunk left in the reused buffers
        scratch[:] = b"\x55" * len(scratch)
        return bytes(
            crypto.open_chunk_into(keys, REPO, cid, b, expected, "data/aa/obj", out, scratch, version=2)
        )

    assert open_into(blob) == plain
    assert open_into(blob) == crypto.open_chunk(keys, REPO, cid, blob, len(plain), "data/aa/obj", version=2)
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        with pytest.raises(ChunkCorrupt) as e:
            open_into(bytes(bad))
        assert cid.hex() in e.value.message and "data/aa/obj" in e.value.message
    for n in range(0, len(blob), 7):
        with pytest.raises(ChunkCorrupt):
            open_into(blob[:n])
    with pytest.raises(ChunkCorrupt, match="the manifest expects 4000"):
        open_into(blob, 4000)
    with pytest.raises(ChunkCorrupt, match="restore point needs format 1"):
        crypto.open_chunk_into(keys, REPO, cid, blob, len(plain), "data/aa/obj", out, scratch, version=1)


def test_swapped_chunk_and_chunk_of_another_repository_fail():
    keys = MasterKeys.generate()
    a, b = b"A" * 1000, b"B" * 1000
    ida, idb = crypto.chunk_id(keys, a), crypto.chunk_id(keys, b)
    blob_b = crypto.seal_chunk(keys, REPO, idb, b)
    with pytest.raises(ChunkCorrupt, match="tag does not verify"):
        crypto.open_chunk(keys, REPO, ida, blob_b, 1000, "data/a")  # object A holds chunk B
    other_repo = bytes(32)
    with pytest.raises(ChunkCorrupt):
        crypto.open_chunk(keys, other_repo, idb, blob_b, 1000, "data/b")


def test_manifest_every_flipped_byte_is_refused_and_foreign_repo_is_named():
    keys = MasterKeys.generate()
    doc = {"version": 1, "id": "p1", "server": "web", "chunks": [3, "ab" * 32]}
    blob = crypto.seal_manifest(keys, REPO, "p1", doc)
    assert crypto.open_manifest(keys, REPO, "p1", blob, "snapshots/p1") == doc
    repo_field = range(len(crypto.MANIFEST_MAGIC) + 2, crypto.MANIFEST_HEADER_LEN)
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x80
        expected = ForeignManifest if i in repo_field else ManifestCorrupt
        with pytest.raises(expected):
            crypto.open_manifest(keys, REPO, "p1", bytes(bad), "snapshots/p1")
    with pytest.raises(ManifestCorrupt):  # renamed: stored under another point id
        crypto.open_manifest(keys, REPO, "p2", blob, "snapshots/p2")
    with pytest.raises(ForeignManifest, match="belongs to repository"):
        crypto.open_manifest(keys, bytes(32), "p1", blob, "snapshots/p1")


def test_key_slot_opens_only_with_its_password_and_every_flip_fails():
    keys = MasterKeys.generate()
    slot = seal_slot(REPO, "k1", keys, b"correct horse", "client", FAST_KDF)
    assert open_slot(REPO, "k1", slot, b"correct horse") == keys
    assert open_slot(REPO, "k1", slot, b"wrong") is None
    assert open_slot(bytes(32), "k1", slot, b"correct horse") is None  # slot from another repo
    assert open_slot(REPO, "k2", slot, b"correct horse") is None  # renamed slot
    assert b"correct horse" not in slot and keys.enc_key not in slot
    opened = 0
    for i in range(len(slot)):
        bad = bytearray(slot)
        bad[i] ^= 0x01
        try:
            got = open_slot(REPO, "k1", bytes(bad), b"correct horse")
        except KeyFileCorrupt:
            continue
        if got is not None:
            # Only a flip that leaves the meaning unchanged may still open (JSON whitespace,
            # label, created, hostname, or base64 padding bits): the same keys, never others.
            assert got == keys
            opened += 1
    doc = json.loads(slot)
    for field in ("nonce", "data"):
        import base64

        raw = base64.b64decode(doc[field])
        for i in range(len(raw)):
            bad = bytearray(raw)
            bad[i] ^= 0x01
            forged = dict(doc, **{field: base64.b64encode(bytes(bad)).decode()})
            assert open_slot(REPO, "k1", json.dumps(forged).encode(), b"correct horse") is None
    forged = dict(doc, kdf=dict(doc["kdf"], n=2**11))
    assert open_slot(REPO, "k1", json.dumps(forged).encode(), b"correct horse") is None


def test_master_keys_never_show_in_repr():
    keys = MasterKeys.generate()
    assert keys.enc_key.hex() not in repr(keys) and "secret" in repr(keys)


def test_a_chunk_is_compressed_unless_every_probe_of_it_is_incompressible():
    import os

    keys = MasterKeys.generate()
    mib = 1024 * 1024
    text = (b"Nov 30 10:15:26 web01 nginx[812]: GET /index.html 200 " * 80_000)[: 2 * mib]
    cases = {
        "random": (os.urandom(4 * mib), crypto.COMP_NONE),  # encrypted or compressed data: raw
        "text": (text * 2, crypto.COMP_ZSTD),
        # mixed chunks (an archive followed by logs, logs followed by an archive) still compress
        "random then text": (os.urandom(3 * mib) + text[:mib], crypto.COMP_ZSTD),
        "text then random": (text[: mib // 2] + os.urandom(3 * mib + mib // 2), crypto.COMP_ZSTD),
        "small random": (os.urandom(100_000), crypto.COMP_NONE),  # tried in full, no gain
    }
    for name, (plain, comp) in cases.items():
        cid = crypto.chunk_id_v2(keys, plain)
        blob = crypto.seal_chunk(keys, REPO, cid, plain, crypto.CHUNK_VERSION_2)
        assert blob[1] == comp, name
        assert len(blob) == crypto.chunk_object_size(plain), name  # the size a dedup check expects
        assert crypto.open_chunk(keys, REPO, cid, blob, len(plain), "data/x", version=2) == plain, name
        if comp == crypto.COMP_ZSTD:
            assert len(blob) < len(plain) * 0.9, name
