"""The in-memory backend: a dict of key -> bytes behind the Storage protocol, for tests and for
tools that need a throw-away repository. It runs the same contract suite as the real backends."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import datetime

from drctl.storage.base import LockSupport, ObjectInfo, ObjectMissing


class MemoryStorage:
    """A dict of key -> bytes behind the Storage protocol."""

    def __init__(self, name: str = "mem://test") -> None:
        self.name = name
        self.objects: dict[str, bytes] = {}
        self.retention: dict[str, datetime] = {}
        self.gets = 0
        self.puts = 0
        self._lock = threading.Lock()

    def describe(self) -> str:
        return self.name

    def get(self, key: str, byte_range: tuple[int, int] | None = None) -> bytes:
        with self._lock:
            self.gets += 1
            if key not in self.objects:
                raise ObjectMissing(key, self.name)
            data = self.objects[key]
        return data if byte_range is None else data[byte_range[0] : byte_range[1]]

    def get_into(self, key: str, buf: memoryview) -> memoryview:
        data = self.get(key)
        if len(data) > len(buf):
            return memoryview(data)
        buf[: len(data)] = data
        return buf[: len(data)]

    def put(
        self, key: str, data: bytes | bytearray | memoryview, *, retain_until: datetime | None = None
    ) -> None:
        with self._lock:
            self.puts += 1
            self.objects[key] = bytes(data)
            if retain_until:
                self.retention[key] = retain_until

    def put_if_absent(self, key: str, data: bytes) -> bool:
        with self._lock:
            if key in self.objects:
                return False
            self.puts += 1
            self.objects[key] = bytes(data)
            return True

    def exists(self, key: str) -> bool:
        with self._lock:
            return key in self.objects

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        with self._lock:
            items = sorted((k, len(v)) for k, v in self.objects.items() if k.startswith(prefix))
        return iter([ObjectInfo(k, n) for k, n in items])

    def delete(self, key: str) -> None:
        with self._lock:
            self.objects.pop(key, None)

    def delete_many(self, keys: Sequence[str]) -> None:
        with self._lock:
            for key in keys:
                self.objects.pop(key, None)

    def create(self, *, object_lock: bool = False) -> None:
        """Nothing to create: the dict exists. ``object_lock`` is accepted for symmetry."""

    def lock_support(self) -> LockSupport:
        return LockSupport(
            enforced=False, detail="in-memory storage has no object lock: retention is not enforced"
        )

    def extend_retention(self, key: str, until: datetime) -> None:
        with self._lock:
            if key not in self.objects:
                raise ObjectMissing(key, self.name)
            self.retention[key] = max(until, self.retention.get(key, until))
