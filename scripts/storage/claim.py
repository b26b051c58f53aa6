"""Create-if-absent on a store that has no conditional write (Swift's s3api answers
``If-None-Match: *`` with NotImplemented; some stores ignore it).

It is the repository lock's write-then-list protocol (docs/repository-format.md §2.5) applied to
one key. A writer:

1. returns False if ``key`` exists;
2. writes a claim ``<key>.claim-<ms since epoch>-<random>`` (unique, so it never collides);
3. lists the claims of ``key``, then checks ``key`` again (in that order);
4. alone and ``key`` still absent: writes ``key``, then deletes its claim, and has won;
   otherwise it deletes its claim and backs off (random delay), then starts again.

Two writers A and B cannot both win: each lists after writing its own claim, so the one that
lists second sees the other's claim, unless that claim is already deleted, which the winner does
only after writing ``key``: then the check of step 3 sees ``key``. Both may back off at once;
the random delay makes a repeat unlikely and the attempts are bounded (:class:`KeyContended`).
This needs a store whose listing shows every write that completed before it (S3 and Swift
listings are read-after-write consistent; a local directory is). A claim older than
``CLAIM_STALE_AFTER`` (a writer that died between steps 2 and 4) is ignored and removed: clocks
of the hosts sharing a store must agree to well within that.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable

from drctl.storage.base import KeyContended, Storage, StorageError

log = logging.getLogger(__name__)

CLAIM_INFIX = ".claim-"
CLAIM_STALE_AFTER_S = 600.0
DEFAULT_ATTEMPTS = 12
BACKOFF_S = (0.02, 0.25)  # a random delay in this range, growing with the attempt


def put_if_absent_by_claim(
    storage: Storage,
    key: str,
    data: bytes,
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
    rng: random.Random | None = None,
) -> bool:
    """``Storage.put_if_absent`` for ``storage`` built from put, list, exists and delete."""
    rng = rng or random.Random()
    prefix = key + CLAIM_INFIX
    for attempt in range(attempts):
        if storage.exists(key):
            return False
        claim = f"{prefix}{int(clock() * 1000):013d}-{uuid.uuid4().hex}"
        storage.put(claim, b"")
        try:
            rivals = _live_rivals(storage, prefix, claim, clock())
            if not rivals and not storage.exists(key):
                storage.put(key, data)
                return True
        finally:
            _delete_quietly(storage, claim)
        if storage.exists(key):
            return False
        if attempt == attempts - 1:
            break
        delay = rng.uniform(*BACKOFF_S) * (1 + attempt)
        log.debug(
            "%s: %d other writer(s) claim %s; retrying in %.2fs", storage.describe(), len(rivals), key, delay
        )
        sleep(delay)
    raise KeyContended(
        f"{storage.describe()}: could not create {key!r}: other writers kept claiming it at the same "
        f"time ({attempts} attempts); retry"
    )


def _live_rivals(storage: Storage, prefix: str, mine: str, now: float) -> list[str]:
    rivals = []
    for obj in storage.list(prefix):
        if obj.key == mine:
            continue
        written_ms = obj.key[len(prefix) :].split("-", 1)[0]
        if written_ms.isdigit() and now - int(written_ms) / 1000 > CLAIM_STALE_AFTER_S:
            log.warning("%s: removing the stale claim %s (its writer died)", storage.describe(), obj.key)
            _delete_quietly(storage, obj.key)
            continue
        rivals.append(obj.key)
    return rivals


def _delete_quietly(storage: Storage, key: str) -> None:
    """A claim that cannot be deleted goes stale; it must not hide the outcome of the call."""
    try:
        storage.delete(key)
    except StorageError as e:
        log.warning("could not delete claim %s from %s: %s", key, storage.describe(), e)
