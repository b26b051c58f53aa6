"""Reading a backup source (a file or a block device) as fixed-size chunks."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from drctl.repo.errors import SourceChanged, SourceUnreadable
from drctl.repo.manifest import chunk_count, chunk_length

READ_AHEAD = 4  # chunks the disk is asked to read ahead of the one being read


class DiskSource:
    """An open source image; ``size`` is taken with lseek(SEEK_END) so block devices work."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self.fd = os.open(self.path, os.O_RDONLY)
        except OSError as e:
            raise SourceUnreadable(
                f"cannot open backup source {self.path}: {e.strerror}; check the "
                f"path and that this user may read it"
            ) from e
        self.size = self.current_size()

    def current_size(self) -> int:
        try:
            return os.lseek(self.fd, 0, os.SEEK_END)
        except OSError as e:
            raise SourceUnreadable(f"cannot size backup source {self.path}: {e.strerror}") from e

    def chunks(
        self, chunk_size: int, buffer: Callable[[], bytearray] | None = None
    ) -> Iterator[tuple[int, bytes | bytearray | None]]:
        """(index, bytes) in order; ``None`` instead of the bytes for a chunk that lies wholly in a
        hole of a sparse file (``SEEK_DATA``): it reads as zeros, so it is not read at all (no
        kernel copy of zeros, no comparison). A short read means the source shrank: SourceChanged.
        ``buffer``, when given, returns a ``chunk_size`` bytearray each whole chunk is read into (the
        caller's reused buffers: no fresh 4 MiB allocation, no page faults, per chunk); the caller
        must not hand it out again before it is done with the chunk read into it."""
        advise = hasattr(os, "posix_fadvise")
        if advise:
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        next_data = 0  # no data before this offset, from the last SEEK_DATA
        advised = 0  # the disk was asked to read ahead up to here
        for i in range(chunk_count(self.size, chunk_size)):
            off, want = i * chunk_size, chunk_length(i, self.size, chunk_size)
            if off >= next_data:
                next_data = self._next_data(off)
            if next_data >= off + want:
                yield i, None
                continue
            try:
                if advise:  # the disk reads the next chunks while this one is hashed on the pool
                    self._read_ahead(off, chunk_size, advised)
                    advised = off + (READ_AHEAD + 1) * chunk_size
                if buffer is not None and want == chunk_size:
                    data: bytes | bytearray = buffer()
                    got = os.preadv(self.fd, [data], off)
                    if got != want:
                        data = data[:got]
                else:
                    data = os.pread(self.fd, want, off)
            except OSError as e:
                raise SourceUnreadable(
                    f"cannot read backup source {self.path} at offset {off}: {e.strerror}; "
                    f"no restore point was written. Check that the device is still there and healthy "
                    f"(the kernel log says why a read failed), then back it up again"
                ) from e
            if len(data) != want:
                raise SourceChanged(
                    f"backup source {self.path} shrank while it was read (short read "
                    f"at offset {off}); no restore point was written. "
                    f"Back up a stable snapshot of the disk"
                )
            yield i, data

    def _read_ahead(self, off: int, chunk_size: int, advised: int) -> None:
        """Ask the disk for the ``READ_AHEAD`` chunks after the one at ``off``, only the part not
        asked for yet: on a source already in the page cache, asking again for the same pages
        walks them again (four times each, ~3 % of a backup's CPU, measured with perf)."""
        start = max(advised, off + chunk_size)
        end = off + (READ_AHEAD + 1) * chunk_size
        if end > start:
            os.posix_fadvise(self.fd, start, end - start, os.POSIX_FADV_WILLNEED)

    def _next_data(self, off: int) -> int:
        """The first offset at or after ``off`` that may hold data: ``off`` itself where the
        filesystem or device cannot tell (block devices, no SEEK_DATA), the size past the last data."""
        try:
            return os.lseek(self.fd, off, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # only a hole from here to the end
                return self.size
            return off
        except AttributeError:  # pragma: no cover - a platform without SEEK_DATA
            return off

    def check_unchanged(self) -> None:
        now = self.current_size()
        if now != self.size:
            raise SourceChanged(
                f"backup source {self.path} changed size during the backup ({self.size} "
                f"-> {now} bytes); no restore point was written. Back up a stable "
                f"snapshot of the disk"
            )

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> DiskSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
