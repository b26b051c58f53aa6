"""Writing what must stay private (the NCA bundle and its VPN PSK, restored disk images, report
exports, policy configs) so that another local user can neither read it, nor swap it, nor make
drctl -- often run as root -- write somewhere else through a planted link.

The rules, for every output of drctl:

- a file is created new (``O_CREAT | O_EXCL | O_NOFOLLOW``), mode 0600, under a temporary name
  beside its destination, written and synced, then renamed into place: nobody sees half a file,
  and a symbolic link planted at the destination is replaced, never followed;
- an existing destination file is replaced only if it is a regular file of the caller; a symbolic
  link, another user's file or anything else is refused (:class:`UnsafeOutput`, exit 15);
- a directory of files is built in a fresh 0700 directory beside its target and renamed into
  place; an existing target must be the caller's own directory, writable by nobody else, and
  empty unless ``force`` (then it is replaced whole, never merged into);
- the destination's directory must not be writable by others unless it is sticky (like
  ``/tmp``): there anyone could rename the temporary name before it is moved into place.

All names are resolved against an open descriptor of the destination's directory, so a directory
swapped in the middle cannot redirect the write.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from drctl.errors import LocalIOError

FILE_MODE = 0o600
DIR_MODE = 0o700
_NEW_FILE = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeOutput(LocalIOError):
    """drctl refuses to write to this path: another user could read or redirect what it writes."""


def _fail(path: Path, what: str, e: OSError) -> LocalIOError:
    return LocalIOError(f"cannot {what} {path}: {e.strerror}; choose a writable path")


@contextmanager
def _directory(path: Path, *, create: bool = False) -> Iterator[int]:
    """An open descriptor of the directory ``path`` (created 0700 with its parents if ``create``),
    refused when others may rename entries in it."""
    try:
        if create:
            os.makedirs(path, mode=DIR_MODE, exist_ok=True)
        dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            raise LocalIOError(
                f"directory {path} does not exist (or is not a directory); create it first"
            ) from e
        raise _fail(path, "open the directory", e) from e
    try:
        st = os.fstat(dfd)
        if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
            raise UnsafeOutput(
                f"directory {path} is writable by every user and not sticky: another user could swap "
                "what drctl writes there; write somewhere private (or `chmod o-w` it)"
            )
        yield dfd
    finally:
        os.close(dfd)


def _lstat(name: str, dfd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _refuse_foreign(path: Path, st: os.stat_result, kind: str) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeOutput(
            f"{path} is a symbolic link: drctl never writes through one; remove it or choose another path"
        )
    is_kind = stat.S_ISDIR(st.st_mode) if kind == "directory" else stat.S_ISREG(st.st_mode)
    if not is_kind:
        raise UnsafeOutput(f"{path} exists and is not a {kind}; remove it or choose another path")
    if st.st_uid != os.geteuid():
        raise UnsafeOutput(
            f"{path} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()}): another user may "
            "read or change it; remove it or choose another path"
        )


def _output_path(path: str | os.PathLike[str]) -> Path:
    """``path`` made absolute (``.`` and ``..`` resolved by name only); the root is refused."""
    out = Path(os.path.abspath(path))
    if out == out.parent:
        raise UnsafeOutput(f"{os.fspath(path)!r} is the root directory; give a path for the output")
    return out


def _temp_name(name: str, suffix: str) -> str:
    return f".{name}.{secrets.token_hex(6)}.{suffix}"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _new_file(name: str, dfd: int, data: bytes) -> None:
    fd = os.open(name, os.O_WRONLY | _NEW_FILE, FILE_MODE, dir_fd=dfd)
    try:
        os.fchmod(fd, FILE_MODE)  # the umask may have taken bits away, never adds: make it exact
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data


def write_private_file(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` to ``path`` (mode 0600) by a new file renamed into place (see the module
    docstring); missing parent directories are created 0700. Replaces an existing regular file of
    the caller; refuses anything else."""
    out = _output_path(path)
    with _directory(out.parent, create=True) as dfd:
        st = _lstat(out.name, dfd)
        if st is not None:
            _refuse_foreign(out, st, "regular file")
        tmp = _temp_name(out.name, "tmp")
        try:
            _new_file(tmp, dfd, _as_bytes(data))
            os.rename(tmp, out.name, src_dir_fd=dfd, dst_dir_fd=dfd)  # replaces a link, never follows
            os.fsync(dfd)
        except OSError as e:
            _unlink_quietly(tmp, dfd)
            raise _fail(out, "write", e) from e
    return out


def write_private_tree(
    target: str | os.PathLike[str],
    files: Mapping[str, bytes | str],
    *,
    force: bool = False,
    replaceable: Collection[str] = (),
) -> list[Path]:
    """Write ``files`` (name -> content) as the directory ``target`` (0700, files 0600): built
    beside it, then renamed into place. An existing ``target`` must be the caller's directory,
    not writable by others, and empty; with ``force`` it may hold an earlier output (regular files
    named like ``files`` or ``replaceable``, nothing else), which is replaced whole."""
    out = _output_path(target)
    if any(not n or "/" in n or n in (".", "..") for n in files):
        raise ValueError(f"file names must be plain names: {sorted(files)}")
    with _directory(out.parent, create=True) as dfd:
        st = _lstat(out.name, dfd)
        replace_full = False
        if st is not None:
            _refuse_foreign(out, st, "directory")
            if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise UnsafeOutput(
                    f"directory {out} is writable by other users, who may have put files there; "
                    "remove it or choose another --out"
                )
            entries = _entries(out, dfd)
            replace_full = bool(entries)
            if replace_full and not force:
                raise UnsafeOutput(
                    f"directory {out} is not empty: drctl writes a whole new bundle, never into old "
                    "files; pass --force to replace it, or choose another --out"
                )
            foreign = sorted(set(entries) - set(files) - set(replaceable)) or sorted(
                n for n in entries if not _is_file(out / n)
            )
            if replace_full and foreign:
                raise UnsafeOutput(
                    f"directory {out} holds {', '.join(foreign[:5])}, which drctl did not write: "
                    "--force replaces only an earlier output; choose another --out"
                )
        tmp = _temp_name(out.name, "tmp")
        try:
            os.mkdir(tmp, DIR_MODE, dir_fd=dfd)
            tfd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            try:
                os.fchmod(tfd, DIR_MODE)
                for name, data in files.items():
                    _new_file(name, tfd, _as_bytes(data))
                os.fsync(tfd)
            finally:
                os.close(tfd)
            if replace_full:
                old = _temp_name(out.name, "old")
                os.rename(out.name, old, src_dir_fd=dfd, dst_dir_fd=dfd)
                os.rename(tmp, out.name, src_dir_fd=dfd, dst_dir_fd=dfd)
                shutil.rmtree(old, dir_fd=dfd)
            else:  # absent or empty: one rename (over an empty directory, atomically)
                os.rename(tmp, out.name, src_dir_fd=dfd, dst_dir_fd=dfd)
            os.fsync(dfd)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True, dir_fd=dfd)
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise UnsafeOutput(f"{out} appeared while the bundle was written; nothing was written") from e
            raise _fail(out, "write", e) from e
    return [out / name for name in files]


def _is_file(path: Path) -> bool:
    return stat.S_ISREG(os.lstat(path).st_mode)


def _entries(path: Path, dfd: int) -> list[str]:
    fd = os.open(path.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


def _unlink_quietly(name: str, dfd: int) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except OSError:
        pass


# --- files written in place (restores: large, resumable) -------------------------------------------


def create_private_file(path: str | os.PathLike[str]) -> int:
    """A new file at ``path`` opened read-write, mode 0600; nothing may exist there (a planted link
    or file is an error, never followed nor reused). Returns the descriptor."""
    out = Path(path)
    with _directory(out.parent) as dfd:
        try:
            fd = os.open(out.name, os.O_RDWR | _NEW_FILE, FILE_MODE, dir_fd=dfd)
        except FileExistsError as e:
            raise UnsafeOutput(f"{out} appeared meanwhile; remove it and run the command again") from e
        except OSError as e:
            raise _fail(out, "create", e) from e
    os.fchmod(fd, FILE_MODE)
    return fd


def open_private_file(path: str | os.PathLike[str]) -> int:
    """Open the existing file ``path`` read-write to continue it: it must be the caller's regular
    file with a single name (not a link planted by someone else). Returns the descriptor."""
    out = Path(path)
    try:
        fd = os.open(out, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafeOutput(
                f"{out} is a symbolic link: drctl never writes through one; remove it and run again"
            ) from e
        raise _fail(out, "open", e) from e
    st = os.fstat(fd)
    try:
        _refuse_foreign(out, st, "regular file")
        if st.st_nlink != 1:
            raise UnsafeOutput(f"{out} has {st.st_nlink} names (hard links); remove it and run again")
    except UnsafeOutput:
        os.close(fd)
        raise
    os.fchmod(fd, FILE_MODE)
    return fd


def publish(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Give the finished file ``src`` its final name ``dst`` in the same directory, only if nothing
    exists at ``dst`` (a planted link included): a new link then removing ``src``, so the check and
    the move are one step. Raises :class:`FileExistsError` when ``dst`` exists."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        # A filesystem without hard links: check, then rename (a rename still never follows).
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fspath(dst)) from e
        os.rename(src, dst)
        return
    os.unlink(src)


def private_temp_dir(parent: str | os.PathLike[str], name: str) -> Path:
    """A new 0700 directory beside ``parent / name`` for a tool that writes its own output file
    (``qemu-img``): inside it, no one else can plant a link for the tool to follow."""
    base = Path(parent)
    with _directory(base) as dfd:
        tmp = _temp_name(name, "tmpdir")
        try:
            os.mkdir(tmp, DIR_MODE, dir_fd=dfd)
        except OSError as e:
            raise _fail(base / tmp, "create", e) from e
    return base / tmp
