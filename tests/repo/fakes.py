"""Boundary fakes and helpers for the repository tests: a wrapper that fails after N gets, and
realistic test images (the in-memory backend itself is :mod:`drctl.storage.memory`).

No tests here; imported by the repository test modules."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

from drctl.storage.base import StorageUnavailable

MiB = 1024 * 1024


class FailingAfter:
    """Delegates to ``inner`` but every ``get`` of a ``data/`` object after the first ``n`` fails
    as an unreachable store would."""

    def __init__(self, inner, n: int) -> None:
        self.inner = inner
        self.n = n
        self.data_gets = 0
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _count(self, key: str) -> None:
        if key.startswith("data/"):
            with self._lock:
                self.data_gets += 1
                fail = self.data_gets > self.n
            if fail:
                raise StorageUnavailable(f"simulated outage reading {key}")

    def get(self, key: str, byte_range=None) -> bytes:
        self._count(key)
        return self.inner.get(key, byte_range)

    def get_into(self, key: str, buf):
        self._count(key)
        return self.inner.get_into(key, buf)


def make_image(path: Path, size: int, seed: int = 1, chunk: int = MiB) -> Path:
    """A realistic disk image: ~40 % zero chunks, ~30 % compressible text, ~30 % random, with a
    few repeated blocks; ``size`` need not be a multiple of ``chunk``."""
    rng = random.Random(seed)
    words = [b"kernel", b"systemd", b"nginx", b"GET /index.html", b"postgres", b"\n", b"error", b"ok "]
    pool = b" ".join(rng.choice(words) for _ in range(2 * chunk // 6))
    with open(path, "wb") as f:
        written = 0
        while written < size:
            n = min(chunk, size - written)
            r = rng.random()
            if r < 0.4:
                f.seek(n, os.SEEK_CUR)  # sparse zeros
            elif r < 0.7:
                off = rng.randrange(0, len(pool) - n) if len(pool) > n else 0
                tag = f"block {written} seed {seed}\n".encode()  # unique, still compressible
                f.write((tag + pool[off : off + n])[:n].ljust(n, b"."))
            else:
                f.write(rng.randbytes(n))
            written += n
        f.truncate(size)
    return path


def mutate(path: Path, fraction: float, chunk: int = MiB, seed: int = 7) -> int:
    """Overwrite 64 bytes in ``fraction`` of the chunks; returns how many chunks changed."""
    size = path.stat().st_size
    n = -(-size // chunk)
    rng = random.Random(seed)
    picks = rng.sample(range(n), max(1, round(n * fraction)))
    with open(path, "r+b") as f:
        for i in picks:
            f.seek(i * chunk + rng.randrange(0, min(chunk, size - i * chunk) - 64))
            f.write(rng.randbytes(64))
    return len(picks)


class PausableStorage:
    """Delegates to ``inner``; while paused, every call blocks until :meth:`resume`: seen from the
    store, the process using it is stopped (SIGSTOP, a suspended VM), its lock refresh thread too.
    ``pause_at(method, key)`` pauses at the first matching call, before it reaches the store."""

    def __init__(self, inner, pause_at=None) -> None:
        self.inner = inner
        self.pause_at = pause_at
        self.running = threading.Event()
        self.running.set()
        self.paused = threading.Event()

    def pause(self) -> None:
        self.running.clear()
        self.paused.set()

    def resume(self) -> None:
        self.pause_at = None
        self.running.set()

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            at = self.pause_at
            if at is not None and args and at(name, args[0]):
                self.pause()
            self.running.wait()
            return attr(*args, **kwargs)

        return call


class LocksUnreachable:
    """Delegates to ``inner``, but while ``down`` is set every call on a ``locks/`` key fails as an
    unreachable store would (the lock cannot be refreshed; it is not removed either)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.down = threading.Event()

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            if self.down.is_set() and args and str(args[0]).startswith("locks/"):
                raise StorageUnavailable(f"simulated outage: {name} {args[0]}")
            return attr(*args, **kwargs)

        return call


class AtFinish:
    """A progress sink that runs ``action`` when the backup has stored every chunk, just before it
    writes the manifest (``backup_disk`` calls ``finish`` there)."""

    def __init__(self, action) -> None:
        self.action = action

    def start(self, phase: str, total_bytes: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def finish(self) -> None:
        self.action()


def v2_digest_of(repo, image: Path, chunk_size: int) -> str:
    """The format-2 image digest of ``image`` computed from its definition (docs/repository-format.md
    §2.4), independently of the backup code: keyed BLAKE3 of every non-zero chunk under the key
    derived from the chunk-id key, the zero-chunk constant, BLAKE3 over the domain, sizes and list."""
    import blake3

    key = blake3.blake3(repo.keys.id_key, derive_key_context="drctl 2026-11 chunk id v2").digest()
    zero_digest = blake3.blake3(b"drctl/zero-chunk/v2").digest()
    data = image.read_bytes()
    h = blake3.blake3(
        b"drctl/image/v2\x00" + len(data).to_bytes(8, "little") + chunk_size.to_bytes(8, "little")
    )
    for off in range(0, len(data), chunk_size):
        block = data[off : off + chunk_size]
        h.update(zero_digest if not block.strip(b"\0") else blake3.blake3(block, key=key).digest())
    return h.hexdigest()
