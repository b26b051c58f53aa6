"""A repository in a local directory: one file per key, written atomically.

Writes go to a temporary file in the same directory, are fsync'ed, then renamed over the final
name (and the directory fsync'ed), so a reader sees either the old object or the whole new one,
never a partial one. A local directory has no Object Lock: ``lock_support`` says so.
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from drctl.errors import LocalIOError
from drctl.storage.base import BucketMissing, LockSupport, ObjectInfo, ObjectMissing, StorageError

log = logging.getLogger(__name__)

# Temporary files carry this prefix; ``list`` hides them (a crashed writer may leave one behind).
_TMP_PREFIX = ".tmp-"


class LocalDirStorage:
    """Objects as files under ``root``; ``/`` in keys maps to sub-directories."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return str(self.root)

    def create(self, *, object_lock: bool = False) -> None:
        """Create the directory (for ``drctl repo init``); an existing one is left as it is.
        ``object_lock`` is accepted for symmetry with S3 and has no effect here."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise self._io_error("create directory", self.root, e) from e

    # -- helpers -------------------------------------------------------------------------------

    def _check_root(self) -> None:
        if not self.root.is_dir():
            raise BucketMissing(
                f"repository directory {self.root} does not exist: create it with `drctl repo init {self.root}`"
            )

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") or p.startswith(_TMP_PREFIX) for p in parts):
            raise ValueError(f"invalid object key {key!r}")
        return self.root.joinpath(*parts)

    def _collision(self, key: str) -> StorageError:
        # S3 keys are flat; here "a" and "a/b" cannot both exist (the repository layout never
        # asks for that).
        return StorageError(
            f"cannot store {key!r} in {self.root}: it collides with another key used as a directory "
            "(a local repository cannot hold both 'x' and 'x/...')"
        )

    def _io_error(self, what: str, path: Path, e: OSError) -> LocalIOError:
        hint = "free some space" if e.errno == errno.ENOSPC else "check the path and its permissions"
        return LocalIOError(f"cannot {what} {path}: {e.strerror or e}; {hint}")

    # -- Storage -------------------------------------------------------------------------------

    def get(self, key: str, byte_range: tuple[int, int] | None = None) -> bytes:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                if byte_range is None:
                    return f.read()
                start, end = byte_range
                if start < 0 or end < start:
                    raise ValueError(f"invalid byte range {byte_range!r} for {key!r}")
                f.seek(start)
                return f.read(end - start)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
            self._check_root()
            raise ObjectMissing(key, str(self.root)) from e
        except OSError as e:
            raise self._io_error("read", path, e) from e

    def get_into(self, key: str, buf: memoryview) -> memoryview:
        path = self._path(key)
        try:
            with open(path, "rb", buffering=0) as f:
                size = os.fstat(f.fileno()).st_size
                if size > len(buf):
                    return memoryview(f.read())
                got = 0
                while n := f.readinto(buf[got:size]):  # a file that shrank meanwhile: what is left
                    got += n
                return buf[:got]
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
            self._check_root()
            raise ObjectMissing(key, str(self.root)) from e
        except OSError as e:
            raise self._io_error("read", path, e) from e

    def put(
        self, key: str, data: bytes | bytearray | memoryview, *, retain_until: datetime | None = None
    ) -> None:
        # retain_until is accepted and ignored: a local directory cannot enforce retention
        # (lock_support reports it); the caller decides whether that is acceptable.
        self._check_root()
        path = self._path(key)
        try:
            tmp = _write_temp(path, data)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
            _fsync_dir(path.parent)
        except (IsADirectoryError, NotADirectoryError, FileExistsError) as e:
            raise self._collision(key) from e
        except OSError as e:
            raise self._io_error("write", path, e) from e

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """The data goes to a temporary file first, which is then hard-linked to the final name:
        ``link`` fails when the name exists (like ``O_CREAT | O_EXCL``) and, unlike an exclusive
        open, never shows a reader an empty or partial object, even after a crash."""
        self._check_root()
        path = self._path(key)
        try:
            tmp = _write_temp(path, data)
            try:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    if path.is_file():
                        return False
                    raise IsADirectoryError(errno.EISDIR, "is a directory", str(path)) from None
            finally:
                os.unlink(tmp)
            _fsync_dir(path.parent)
            return True
        except (IsADirectoryError, NotADirectoryError, FileExistsError) as e:
            raise self._collision(key) from e
        except OSError as e:
            raise self._io_error("write", path, e) from e

    def exists(self, key: str) -> bool:
        self._check_root()
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self._check_root()
        found: list[ObjectInfo] = []
        # Walk only the directory the prefix can live in (prefix "data/ab" -> walk "data/").
        base_dir = self.root.joinpath(*prefix.split("/")[:-1]) if "/" in prefix else self.root
        if not base_dir.is_dir():
            return iter(())
        for dirpath, _dirnames, filenames in os.walk(base_dir):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
            for name in filenames:
                if name.startswith(_TMP_PREFIX):
                    continue
                key = rel_dir + name
                if key.startswith(prefix):
                    try:
                        size = os.stat(os.path.join(dirpath, name)).st_size
                    except FileNotFoundError:  # deleted while listing
                        continue
                    found.append(ObjectInfo(key=key, size=size))
        found.sort(key=lambda o: o.key)
        return iter(found)

    def delete(self, key: str) -> None:
        self._check_root()
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as e:
            raise self._io_error("delete", path, e) from e

    def delete_many(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.delete(key)

    def extend_retention(self, key: str, until: datetime) -> None:
        """A local directory keeps no retention (``lock_support`` says so): only checks ``key``."""
        self._check_root()
        if not self._path(key).is_file():
            raise ObjectMissing(key, self.describe())

    def lock_support(self) -> LockSupport:
        self._check_root()
        return LockSupport(
            enforced=False,
            detail=f"local directory {self.root} has no object lock: retention is not enforced",
        )


def _write_temp(path: Path, data: bytes | bytearray | memoryview) -> str:
    """``data`` written and fsynced to a new temporary file beside ``path`` (its directory created):
    the caller renames or links it into place, so no reader ever sees a partial object."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _fsync_dir(path: Path) -> None:
    """Make the rename durable. Best effort: some filesystems refuse fsync on directories."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
