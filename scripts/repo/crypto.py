"""Pure cryptography of the repository format (docs/repository-format.md §2): KDF, key wrap, chunk
ids, chunk and manifest sealing. No I/O; every failure to authenticate raises an error of
:mod:`drctl.repo.errors` naming the object.

Size: just over 400 lines: every primitive of the format in one pure module, read beside the
format document; opening a chunk exists twice (allocating, and into the restore's reused buffers)."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import threading
from dataclasses import dataclass
from typing import Any

import blake3
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from drctl.input_files import loads_json
from drctl.repo.errors import ChunkCorrupt, ForeignManifest, ManifestCorrupt

KEY_LEN = 32
NONCE_LEN = 12
TAG_LEN = 16
ZSTD_LEVEL = 3
# The compressibility probe of a chunk (:func:`_worth_compressing`): samples, their size, and the
# output/input ratio a sample must beat for the whole chunk to be compressed.
PROBES = 4
PROBE_SPAN = 16 * 1024
PROBE_GAIN = 0.97

CHUNK_VERSION = 0x01  # format 1: HMAC-SHA256 chunk ids
CHUNK_VERSION_2 = 0x02  # format 2: keyed BLAKE3 chunk ids
CHUNK_VERSIONS = (CHUNK_VERSION, CHUNK_VERSION_2)
COMP_NONE = 0x00
COMP_ZSTD = 0x01
CHUNK_HEADER_LEN = 2
CHUNK_AD_DOMAIN = b"drctl/chunk/v1"
CHUNK_AD_DOMAINS = {CHUNK_VERSION: CHUNK_AD_DOMAIN, CHUNK_VERSION_2: b"drctl/chunk/v2"}
# Format 2: the chunk-id key of BLAKE3 is derived from the master chunk-id key (never the same key
# under two algorithms); the image digest is BLAKE3 over the per-chunk digests in image order.
ID_KEY_CONTEXT_V2 = "drctl 2026-11 chunk id v2"
IMAGE_DIGEST_DOMAIN_V2 = b"drctl/image/v2\x00"
# The digest of an all-zero chunk in the image digest: a constant, so zero runs are never hashed.
# It is BLAKE3 of a label, not a keyed hash of anything: no chunk id equals it but by a collision.
ZERO_CHUNK_DIGEST = blake3.blake3(b"drctl/zero-chunk/v2").digest()
CHUNK_OVERHEAD = CHUNK_HEADER_LEN + NONCE_LEN + TAG_LEN

# Bounds on a key slot's scrypt parameters, checked before the KDF runs: a planted or damaged slot
# must not make opening the repository allocate gigabytes or run for minutes.
MAX_KDF_MEMORY = 256 * 2**20  # bytes (scrypt uses 128 * n * r): 8 times the default
MAX_KDF_WORK = 2**22  # n * r * p: 16 times the default (a few seconds)

MANIFEST_MAGIC = b"DRCTLM"
MANIFEST_HEADER_LEN = len(MANIFEST_MAGIC) + 2 + 32
MANIFEST_AD_DOMAIN = b"drctl/manifest/v1"
KEY_AD_DOMAIN = b"drctl/key/v1"
CONFIG_MAC_LABEL = b"drctl/config-mac/v1"


@dataclass(frozen=True)
class KdfParams:
    """scrypt parameters, recorded in each key slot so they can be raised later."""

    n: int = 2**15
    r: int = 8
    p: int = 1

    def check(self) -> None:
        """Raise ValueError, naming the parameter, unless scrypt can run with these parameters
        within the bounds (``MAX_KDF_MEMORY``, ``MAX_KDF_WORK``)."""
        for name in ("n", "r", "p"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"scrypt parameter {name}={value!r} is not a positive integer")
        if self.n < 2 or self.n & (self.n - 1):
            raise ValueError(f"scrypt parameter n={self.n} is not a power of two")
        if 128 * self.n * self.r > MAX_KDF_MEMORY:
            raise ValueError(
                f"scrypt n={self.n} r={self.r} needs {128 * self.n * self.r >> 20} MiB, more than the "
                f"{MAX_KDF_MEMORY >> 20} MiB allowed"
            )
        if self.n * self.r * self.p > MAX_KDF_WORK:
            raise ValueError(
                f"scrypt n={self.n} r={self.r} p={self.p} costs n*r*p = {self.n * self.r * self.p}, more "
                f"than the {MAX_KDF_WORK} allowed (16 times the default)"
            )

    def as_dict(self, salt: bytes) -> dict[str, Any]:
        import base64

        return {
            "name": "scrypt",
            "n": self.n,
            "r": self.r,
            "p": self.p,
            "salt": base64.b64encode(salt).decode(),
        }


DEFAULT_KDF = KdfParams()


@dataclass(frozen=True, repr=False)
class MasterKeys:
    """The two random master keys of a repository. ``repr`` never shows them."""

    enc_key: bytes
    id_key: bytes

    def __repr__(self) -> str:
        return "MasterKeys(<secret>)"

    @classmethod
    def generate(cls) -> MasterKeys:
        return cls(os.urandom(KEY_LEN), os.urandom(KEY_LEN))

    def to_bytes(self) -> bytes:
        return self.enc_key + self.id_key

    @functools.cached_property
    def id_key_v2(self) -> bytes:
        """The keyed-BLAKE3 key of format-2 chunk ids, derived from the chunk-id key."""
        return blake3.blake3(self.id_key, derive_key_context=ID_KEY_CONTEXT_V2).digest()

    @classmethod
    def from_bytes(cls, raw: bytes) -> MasterKeys:
        if len(raw) != 2 * KEY_LEN:
            raise ValueError("master key material must be 64 bytes")
        return cls(raw[:KEY_LEN], raw[KEY_LEN:])


def canonical_json(obj: Any) -> bytes:
    """The one serialisation that MACs and associated data are computed over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def derive_kek(password: bytes, salt: bytes, params: KdfParams) -> bytes:
    """Key-encryption key from the password (scrypt, memory-hard). ValueError if ``params`` are
    out of bounds (checked before any work)."""
    params.check()
    maxmem = 128 * params.r * params.n * params.p + 16 * 2**20
    return hashlib.scrypt(
        password, salt=salt, n=params.n, r=params.r, p=params.p, maxmem=maxmem, dklen=KEY_LEN
    )


def wrap_keys(kek: bytes, keys: MasterKeys, ad: bytes) -> tuple[bytes, bytes]:
    """AES-256-GCM wrap of the master keys; returns (nonce, ciphertext+tag)."""
    nonce = os.urandom(NONCE_LEN)
    return nonce, AESGCM(kek).encrypt(nonce, keys.to_bytes(), ad)


def unwrap_keys(kek: bytes, nonce: bytes, data: bytes, ad: bytes) -> MasterKeys | None:
    """The master keys, or None when the tag does not verify (wrong password or tampered slot)."""
    try:
        raw = AESGCM(kek).decrypt(nonce, data, ad)
    except (InvalidTag, ValueError):
        return None
    try:
        return MasterKeys.from_bytes(raw)
    except ValueError:
        return None


def key_slot_ad(repo_id: bytes, key_id: str, kdf: dict[str, Any]) -> bytes:
    return KEY_AD_DOMAIN + repo_id + key_id.encode() + canonical_json(kdf)


def config_mac(keys: MasterKeys, body: dict[str, Any]) -> str:
    mac_key = hmac.digest(keys.enc_key, CONFIG_MAC_LABEL, "sha256")
    return hmac.digest(mac_key, canonical_json(body), "sha256").hex()


def chunk_id(keys: MasterKeys, plaintext: bytes | bytearray | memoryview) -> bytes:
    """Keyed id of a format-1 chunk: HMAC-SHA256(chunk-id key, plaintext). Reveals nothing without
    the key."""
    return hmac.digest(keys.id_key, plaintext, "sha256")


def chunk_id_v2(keys: MasterKeys, plaintext: bytes | bytearray | memoryview) -> bytes:
    """Keyed id of a format-2 chunk: keyed BLAKE3 (one pass, releases the GIL). It is also the
    chunk's digest in the image digest (:func:`image_digest_v2`)."""
    return blake3.blake3(plaintext, key=keys.id_key_v2).digest()


def chunk_id_for(version: int, keys: MasterKeys, plaintext: bytes | bytearray | memoryview) -> bytes:
    """The chunk id of ``plaintext`` under format ``version`` (1 or 2)."""
    return chunk_id_v2(keys, plaintext) if version == 2 else chunk_id(keys, plaintext)


def image_digest_v2(size: int, chunk_size: int, digests: list[bytes | None]) -> str:
    """Format-2 image digest: BLAKE3 of the domain, the image size and chunk size (8 bytes each,
    little-endian) and every chunk's 32-byte digest in image order, ``ZERO_CHUNK_DIGEST`` for an
    all-zero chunk (``None``). Hex."""
    h = blake3.blake3(IMAGE_DIGEST_DOMAIN_V2 + size.to_bytes(8, "little") + chunk_size.to_bytes(8, "little"))
    for d in digests:
        h.update(ZERO_CHUNK_DIGEST if d is None else d)
    return h.hexdigest()


_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    c = getattr(_local, "cctx", None)
    if c is None:
        c = _local.cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "dctx", None)
    if d is None:
        d = _local.dctx = zstandard.ZstdDecompressor()
    return d


def _decompress_into(frame: bytes | bytearray | memoryview, out: memoryview) -> int | None:
    """Decompress one zstd ``frame`` straight into ``out`` (no allocation, no copy of the output):
    the bytes written, or None when the frame holds more than ``len(out)`` bytes."""
    with _decompressor().stream_reader(frame, read_size=len(frame), closefd=False) as reader:
        got = 0
        while got < len(out):
            n = reader.readinto(out[got:])
            if not n:
                return got
            got += n
        return None if reader.read(1) else got


def _chunk_ad(header: bytes | bytearray | memoryview, repo_id: bytes, cid: bytes) -> bytes:
    return CHUNK_AD_DOMAINS[header[0]] + header + repo_id + cid


def _worth_compressing(plaintext: bytes | bytearray) -> bool:
    """Whether a chunk may compress: False only when every one of ``PROBES`` samples spread over it
    (start to end) fails to shrink by ``PROBE_GAIN`` under zstd. The probe costs about 1/60 of
    compressing a 4 MiB chunk; data that is already compressed or encrypted (random to zstd) is then
    stored raw without the full attempt, which cost ~0.3 CPU-s per 600 MiB of it (borg's
    ``auto`` compression makes the same decision with an lz4 probe). A function of the plaintext
    alone, like the packing it decides: the stored size of a chunk stays computable
    (:func:`chunk_object_size`)."""
    n = len(plaintext)
    if n < 4 * PROBES * PROBE_SPAN:
        return True  # small chunks: the full attempt is as cheap as the probe
    view, cctx = memoryview(plaintext), _compressor()
    for k in range(PROBES):
        off = (n - PROBE_SPAN) * k // (PROBES - 1)
        if len(cctx.compress(view[off : off + PROBE_SPAN])) < PROBE_SPAN * PROBE_GAIN:
            return True
    return False


def _pack(plaintext: bytes | bytearray) -> tuple[int, bytes | bytearray]:
    """(compression byte, body): zstd only when the probe finds the chunk compressible and the
    output is smaller."""
    if _worth_compressing(plaintext):
        packed = _compressor().compress(plaintext)
        if len(packed) < len(plaintext):
            return COMP_ZSTD, packed
    return COMP_NONE, plaintext


def chunk_object_size(plaintext: bytes | bytearray) -> int:
    """The exact size of the object :func:`seal_chunk` stores for ``plaintext``: ``CHUNK_OVERHEAD``
    plus the plaintext, or plus its zstd output when that is smaller (deterministic for a given
    zstd version)."""
    return CHUNK_OVERHEAD + len(_pack(plaintext)[1])


def stored_chunk_fits(size: int, plaintext: bytes | bytearray) -> bool:
    """Whether an object of ``size`` bytes can be the stored chunk of ``plaintext``. A chunk stored
    raw is exactly ``len + CHUNK_OVERHEAD`` (no compression needed to tell); a smaller object must
    match the compressed size, so a 0-byte or truncated object never fits."""
    raw = len(plaintext) + CHUNK_OVERHEAD
    return size == raw or (size < raw and size == chunk_object_size(plaintext))


def seal_chunk(
    keys: MasterKeys,
    repo_id: bytes,
    cid: bytes,
    plaintext: bytes | bytearray,
    version: int = CHUNK_VERSION,
    out: bytearray | None = None,
) -> memoryview:
    """Compress (when it helps) then encrypt one chunk of format ``version``; the stored object
    bytes, encrypted in place after the header and nonce (no second copy of the ciphertext). They
    are written into ``out`` when it is large enough (the backup's reused per-thread buffer: no
    zero-filled 4 MiB allocation per chunk), else into a new buffer."""
    if version not in CHUNK_VERSIONS:
        raise ValueError(f"unknown chunk format {version}")
    comp, body = _pack(plaintext)
    header = bytes((version, comp))
    nonce = os.urandom(NONCE_LEN)
    size = CHUNK_OVERHEAD + len(body)
    blob = memoryview(out if out is not None and len(out) >= size else bytearray(size))[:size]
    blob[:CHUNK_HEADER_LEN], blob[CHUNK_HEADER_LEN : CHUNK_HEADER_LEN + NONCE_LEN] = header, nonce
    AESGCM(keys.enc_key).encrypt_into(
        nonce, body, _chunk_ad(header, repo_id, cid), blob[CHUNK_HEADER_LEN + NONCE_LEN :]
    )
    return blob


def _chunk_header(
    blob: bytes | bytearray | memoryview, cid_hex: str, key: str, version: int | None
) -> bytes | bytearray | memoryview:
    """The header of a stored chunk, checked (length, values, required format) before all else."""
    if len(blob) < CHUNK_HEADER_LEN + NONCE_LEN + TAG_LEN:
        raise ChunkCorrupt(cid_hex, key, f"truncated ({len(blob)} bytes)")
    header = blob[:CHUNK_HEADER_LEN]
    if header[0] not in CHUNK_VERSIONS or header[1] not in (COMP_NONE, COMP_ZSTD):
        raise ChunkCorrupt(cid_hex, key, "unknown header")
    if version is not None and header[0] != version:
        raise ChunkCorrupt(
            cid_hex, key, f"chunk format {header[0]}, its restore point needs format {version}"
        )
    return header


def open_chunk(
    keys: MasterKeys,
    repo_id: bytes,
    cid: bytes,
    blob: bytes | bytearray | memoryview,
    expected_len: int,
    key: str,
    *,
    verify_id: bool = True,
    version: int | None = None,
) -> bytes:
    """Authenticate, decrypt, decompress and (with ``verify_id``) re-identify one stored chunk, all
    before returning any plaintext. Raises ChunkCorrupt naming the chunk id and the object key.
    ``version``: the chunk format the referring manifest requires (None: either).

    The GCM tag already binds the chunk id (associated data); the id recheck (with the id function
    of the chunk's format) is defence in depth for format 1, skipped by a format-1 restore, whose
    final image sha256 proves every byte anyway."""
    cid_hex = cid.hex()
    header = _chunk_header(blob, cid_hex, key, version)
    nonce = blob[CHUNK_HEADER_LEN : CHUNK_HEADER_LEN + NONCE_LEN]
    try:
        body = AESGCM(keys.enc_key).decrypt(
            nonce, blob[CHUNK_HEADER_LEN + NONCE_LEN :], _chunk_ad(header, repo_id, cid)
        )
    except InvalidTag:
        raise ChunkCorrupt(
            cid_hex, key, "authentication tag does not verify (tampered, truncated or swapped object)"
        ) from None
    if header[1] == COMP_ZSTD:
        try:
            plain = _decompressor().decompress(body, max_output_size=expected_len)
        except zstandard.ZstdError as e:
            raise ChunkCorrupt(cid_hex, key, f"does not decompress: {e}") from e
    else:
        plain = body
    if len(plain) != expected_len:
        raise ChunkCorrupt(cid_hex, key, f"{len(plain)} bytes, the manifest expects {expected_len}")
    if verify_id and not hmac.compare_digest(chunk_id_for(header[0], keys, plain), cid):
        raise ChunkCorrupt(cid_hex, key, "content does not match its chunk id")
    return plain


def open_chunk_into(
    keys: MasterKeys,
    repo_id: bytes,
    cid: bytes,
    blob: bytes | bytearray | memoryview,
    expected_len: int,
    key: str,
    out: memoryview,
    scratch: memoryview,
    *,
    version: int | None = None,
) -> memoryview:
    """:func:`open_chunk` (id verified) into ``out``: returns ``out[:expected_len]``; ``scratch``
    takes a zstd chunk's compressed body. Same checks, same order, all before returning; after
    ChunkCorrupt ``out`` holds nothing usable. Reused buffers: no fresh allocation per chunk, and a
    zstd body is decompressed straight into ``out``."""
    cid_hex = cid.hex()
    header = _chunk_header(blob, cid_hex, key, version)
    body_len = len(blob) - CHUNK_OVERHEAD
    raw = header[1] == COMP_NONE
    if (raw and body_len != expected_len) or body_len > len(scratch) or expected_len > len(out):
        # A length no valid object of this chunk has: the allocating path reports it after the tag.
        plain = open_chunk(keys, repo_id, cid, blob, expected_len, key, version=version)
        out[:expected_len] = plain
        return out[:expected_len]
    body = (out if raw else scratch)[:body_len]
    try:
        AESGCM(keys.enc_key).decrypt_into(
            blob[CHUNK_HEADER_LEN : CHUNK_HEADER_LEN + NONCE_LEN],
            blob[CHUNK_HEADER_LEN + NONCE_LEN :],
            _chunk_ad(header, repo_id, cid),
            body,
        )
    except InvalidTag:
        raise ChunkCorrupt(
            cid_hex, key, "authentication tag does not verify (tampered, truncated or swapped object)"
        ) from None
    view = out[:expected_len]
    if not raw:
        try:
            got = _decompress_into(body, view)
        except zstandard.ZstdError as e:
            raise ChunkCorrupt(cid_hex, key, f"does not decompress: {e}") from e
        if got != expected_len:
            told = f"more than {expected_len}" if got is None else str(got)
            raise ChunkCorrupt(cid_hex, key, f"{told} bytes, the manifest expects {expected_len}")
    if not hmac.compare_digest(chunk_id_for(header[0], keys, view), cid):
        raise ChunkCorrupt(cid_hex, key, "content does not match its chunk id")
    return view


def _manifest_header(repo_id: bytes) -> bytes:
    return MANIFEST_MAGIC + bytes((0x01, COMP_ZSTD)) + repo_id


def seal_manifest(keys: MasterKeys, repo_id: bytes, point_id: str, doc: dict[str, Any]) -> bytes:
    header = _manifest_header(repo_id)
    nonce = os.urandom(NONCE_LEN)
    body = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(canonical_json(doc))
    ad = MANIFEST_AD_DOMAIN + header + point_id.encode()
    return header + nonce + AESGCM(keys.enc_key).encrypt(nonce, body, ad)


def open_manifest(
    keys: MasterKeys, repo_id: bytes, point_id: str, blob: bytes | bytearray, key: str
) -> dict[str, Any]:
    """Authenticate and decode one manifest object; the JSON document."""
    if len(blob) < MANIFEST_HEADER_LEN + NONCE_LEN + TAG_LEN or not blob.startswith(MANIFEST_MAGIC):
        raise ManifestCorrupt(key, "not a drctl manifest or truncated")
    header = blob[:MANIFEST_HEADER_LEN]
    if header[len(MANIFEST_MAGIC)] != 0x01 or header[len(MANIFEST_MAGIC) + 1] != COMP_ZSTD:
        raise ManifestCorrupt(key, "unknown manifest version")
    owner = header[len(MANIFEST_MAGIC) + 2 :]
    if owner != repo_id:
        raise ForeignManifest(key, owner.hex(), repo_id.hex())
    nonce = blob[MANIFEST_HEADER_LEN : MANIFEST_HEADER_LEN + NONCE_LEN]
    ad = MANIFEST_AD_DOMAIN + header + point_id.encode()
    try:
        body = AESGCM(keys.enc_key).decrypt(nonce, blob[MANIFEST_HEADER_LEN + NONCE_LEN :], ad)
    except InvalidTag:
        raise ManifestCorrupt(
            key,
            "authentication tag does not verify (tampered, truncated, renamed, or from another repository)",
        ) from None
    try:
        doc = loads_json(zstandard.ZstdDecompressor().decompress(body, max_output_size=1 << 30))
    except (zstandard.ZstdError, ValueError) as e:
        raise ManifestCorrupt(key, f"authenticated but undecodable: {e}") from e
    if not isinstance(doc, dict):
        raise ManifestCorrupt(key, "not a JSON object")
    return doc
