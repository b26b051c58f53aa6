"""Reading a backup source (a file or a block device) as fixed-size chunks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from drctl.repo.errors import SourceChanged, SourceUnreadable
from drctl.repo.manifest import chunk_count, chunk_length


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

    def chunks(self, chunk_size: int) -> Iterator[tuple[int, bytes]]:
        """(index, bytes) in order; a short read means the source shrank: SourceChanged."""
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        for i in range(chunk_count(self.size, chunk_size)):
            want = chunk_length(i, self.size, chunk_size)
            try:
                data = os.pread(self.fd, want, i * chunk_size)
            except OSError as e:
                raise SourceUnreadable(
                    f"cannot read backup source {self.path} at offset {i * chunk_size}: {e.strerror}; "
                    f"no restore point was written. Check that the device is still there and healthy "
                    f"(the kernel log says why a read failed), then back it up again"
                ) from e
            if len(data) != want:
                raise SourceChanged(
                    f"backup source {self.path} shrank while it was read (short read "
                    f"at offset {i * chunk_size}); no restore point was written. "
                    f"Back up a stable snapshot of the disk"
                )
            yield i, data

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
