"""The unlocked-key cache of ``drctl wal push|fetch`` (``--key-cache FILE``).

PostgreSQL runs ``archive_command`` once per WAL segment. Opening the repository each time costs a
listing of the key slots, one GET per slot and an scrypt derivation (about 0.1 s of CPU) per call,
which would bound archiving at a few segments per second on a busy server. With ``--key-cache``
the first call opens the repository with the password and writes the master keys to FILE; later
calls read FILE instead, and still check the repository's config MAC with them (one GET), so a
cache that does not belong to this repository is never used.

The cache holds what the password file next to it already gives (anyone who can read the password
file can derive these keys), so it is protected the same way: created 0600 by this process, never
followed through a symlink, and refused when another user owns it or can read it. Removing FILE
(or changing the password with ``drctl key passwd`` and removing it) forces a new derivation.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import os
import stat
from pathlib import Path

from drctl.errors import DrctlError, LocalIOError
from drctl.input_files import loads_json
from drctl.private_files import write_private_file
from drctl.repo import crypto
from drctl.repo.crypto import MasterKeys
from drctl.repo.password import read_password
from drctl.repo.repository import Repository, open_repository, read_config
from drctl.storage.base import Storage

log = logging.getLogger(__name__)
FORMAT = "drctl-wal-key-cache-v1"


def _read_cache(path: Path) -> dict | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise LocalIOError(f"cannot open the WAL key cache {path}: {e.strerror or e}") from e
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise LocalIOError(
                f"WAL key cache {path} is owned by another user or readable by others: remove it "
                "(the next push recreates it, mode 0600)"
            )
        try:
            doc = loads_json(f.read(64 * 1024))
        except (DrctlError, ValueError) as e:  # a damaged cache is rebuilt from the password
            log.warning("WAL key cache %s is unreadable (%s): opening with the password", path, e)
            return None
    return doc if isinstance(doc, dict) and doc.get("format") == FORMAT else None


def open_with_cache(
    storage: Storage,
    *,
    password_file: str | None,
    password_command: str | None,
    cache: str | os.PathLike[str] | None,
) -> Repository:
    """The opened repository: from the cache when it belongs to this repository, otherwise with
    the password (and then the cache is written)."""
    if cache is None:
        return open_repository(storage, read_password(password_file, password_command))
    path = Path(cache)
    cfg, mac = read_config(storage)
    doc = _read_cache(path)
    if doc is not None and doc.get("repo") == cfg.id:
        try:
            keys = MasterKeys.from_bytes(base64.b64decode(doc["keys"]))
            if hmac.compare_digest(crypto.config_mac(keys, cfg.body()), mac):
                return Repository(storage, cfg, keys, str(doc.get("key_id", "")))
        except (KeyError, ValueError, TypeError):
            pass
        log.warning("WAL key cache %s does not open %s: opening with the password", path, storage.describe())
    repo = open_repository(storage, read_password(password_file, password_command))
    body = {
        "format": FORMAT,
        "repo": cfg.id,
        "key_id": repo.key_id,
        "keys": base64.b64encode(repo.keys.to_bytes()).decode(),
    }
    try:
        write_private_file(path, json.dumps(body).encode())
    except LocalIOError as e:
        log.warning("cannot write the WAL key cache %s (each push opens the repository): %s", path, e)
    return repo
