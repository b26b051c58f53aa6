"""Errors of the backup repository. Each names the object at fault and the next step; exit codes
come from :mod:`drctl.errors` (docs/repository-format.md §6)."""

from __future__ import annotations

from drctl.errors import (
    EXIT_INTEGRITY,
    EXIT_LOCKED,
    EXIT_REPO_MISSING,
    EXIT_WRONG_PASSWORD,
    DrctlError,
    InvalidInput,
    LocalIOError,
)


class RepoMissing(DrctlError):
    """No repository here."""

    exit_code = EXIT_REPO_MISSING


class RepoExists(InvalidInput):
    """A repository already exists here."""


class RepoLocked(DrctlError):
    """The repository is locked by another process."""

    exit_code = EXIT_LOCKED


class LockLost(RepoLocked):
    """This command's repository lock was lost: removed, or not refreshed in time."""


class WrongPassword(DrctlError):
    """No key slot of the repository opens with this password."""

    exit_code = EXIT_WRONG_PASSWORD


class IntegrityError(DrctlError):
    """Repository data failed authentication or verification."""

    exit_code = EXIT_INTEGRITY


class ChunkCorrupt(IntegrityError):
    def __init__(self, chunk_id: str, key: str, why: str) -> None:
        super().__init__(
            f"chunk {chunk_id} (object {key!r}) is corrupt: {why}. The object was modified in the "
            f"store; restore another point, or run `drctl check REPO --read-data` to list every "
            f"damaged point"
        )
        self.chunk_id = chunk_id
        self.key = key


class ChunkMissing(IntegrityError):
    def __init__(self, chunk_id: str, key: str) -> None:
        super().__init__(
            f"chunk {chunk_id} (object {key!r}) is missing from the repository; restore another "
            f"point, or run `drctl check REPO` to list every damaged point"
        )
        self.chunk_id = chunk_id
        self.key = key


class ChunkVanished(IntegrityError):
    """A chunk a backup counted on is missing (or cannot be valid) just before its manifest."""

    def __init__(self, chunk_id: str, key: str, where: str, why: str) -> None:
        super().__init__(
            f"chunk {chunk_id} (object {key!r}), which this backup references, {why} in {where} "
            f"just before its restore point was to be written (another process removed or changed "
            f"it). No restore point was written: run the backup again (it uploads the chunk again)"
        )
        self.chunk_id = chunk_id
        self.key = key


class ManifestCorrupt(IntegrityError):
    def __init__(self, key: str, why: str) -> None:
        super().__init__(
            f"restore point manifest {key!r} is corrupt: {why}. Restore another "
            f"point; `drctl check REPO` lists every damaged object"
        )
        self.key = key


class ForeignManifest(IntegrityError):
    def __init__(self, key: str, owner: str, expected: str) -> None:
        super().__init__(
            f"manifest {key!r} belongs to repository {owner[:16]}..., not to this repository "
            f"{expected[:16]}...; it was copied in from elsewhere: delete it, or restore from the "
            f"repository it came from"
        )
        self.key = key


class KeyFileCorrupt(IntegrityError):
    """A key slot or the config is unreadable or fails its MAC."""


class ImageMismatch(IntegrityError):
    """The restored image's digest (sha256 or BLAKE3 list) differs from the manifest's."""


class RepoNeedsUpgrade(InvalidInput):
    """A backup into a repository of an older format: ``drctl repo upgrade`` raises it first."""


class RepoKeyMismatch(InvalidInput):
    """Two repositories a copy would join do not share their key material."""


class SourceChanged(LocalIOError):
    """The backup source changed size while it was being read."""


class SourceUnreadable(LocalIOError):
    """The backup source cannot be read."""


class OutputError(LocalIOError):
    """The restore output cannot be written."""


class DiskFull(LocalIOError):
    """The local disk is full."""
