"""Finding restore points for the commands that read them (restore, snapshots, backup's parent).

One unreadable object under ``snapshots/`` must not block a restore: a point asked for by id is
loaded alone, and otherwise damaged manifests are skipped and named. Prune and forget keep the
strict :meth:`Repository.load_points` (a manifest they cannot read may reference chunks)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from drctl.errors import InvalidInput
from drctl.repo.errors import IntegrityError
from drctl.repo.manifest import Manifest, is_point_id, point_key, select_point
from drctl.repo.repository import Repository
from drctl.storage.base import ObjectMissing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DamagedPoint:
    """A manifest that cannot be read: its object key and the error reading it."""

    key: str
    error: IntegrityError

    @property
    def reason(self) -> str:
        return self.error.message


@dataclass(frozen=True)
class PointListing:
    points: list[Manifest]  # readable points, oldest first
    damaged: list[DamagedPoint]


def _load(repo: Repository, point_id: str) -> Manifest | DamagedPoint | None:
    try:
        return repo.load_point(point_id)
    except ObjectMissing:
        return None  # deleted since the listing
    except IntegrityError as e:
        return DamagedPoint(point_key(point_id), e)


def load_readable_points(repo: Repository, point_ids: list[str] | None = None) -> PointListing:
    """Every readable restore point (or those of ``point_ids``) and the damaged manifests.
    Storage failures are raised, not skipped: only what was read and found corrupt is."""
    ids = repo.point_ids() if point_ids is None else point_ids
    with ThreadPoolExecutor(max_workers=8) as ex:
        loaded = list(ex.map(lambda pid: _load(repo, pid), ids))
    points = sorted((m for m in loaded if isinstance(m, Manifest)), key=lambda p: p.created)
    return PointListing(points, [d for d in loaded if isinstance(d, DamagedPoint)])


def warn_damaged(damaged: list[DamagedPoint]) -> None:
    for d in damaged:
        log.warning(
            "%s. It was skipped; to restore a given point, pass its id with --point (`drctl "
            "snapshots REPO` lists the readable ones)",
            d.reason,
        )


def find_point(repo: Repository, server: str, disk: str | None, selector: str = "latest") -> Manifest:
    """The point to restore (``latest``, an id prefix or an ISO time, as :func:`select_point`).
    An id reads only the manifests whose id it prefixes; otherwise damaged manifests are skipped
    with a warning naming each. When no readable point matches and a manifest could not be read,
    that manifest's integrity error is raised."""
    if is_point_id(selector):
        matches = [pid for pid in repo.point_ids() if pid.startswith(selector)]
        if len(matches) == 1:
            point = repo.load_point(matches[0])  # a damaged one is an error naming it
            if point.server != server or disk not in (None, point.disk):
                raise InvalidInput(
                    f"point {point.id} is a backup of {point.server}/{point.disk}, not of "
                    f"{server}{'/' + disk if disk else ''} (see `drctl snapshots REPO`)"
                )
            return point
        listing = load_readable_points(repo, matches)
    else:
        listing = load_readable_points(repo)
    warn_damaged(listing.damaged)
    try:
        return select_point(listing.points, server, disk, selector)
    except InvalidInput as e:
        if not listing.damaged:
            raise
        # Nothing readable matches, and something could not be read: the damage is the likely
        # cause, so it is the error (exit 13, naming the manifest); the warnings name the others.
        raise listing.damaged[0].error from e
