"""The cost section of a client's synthesis: what an activation costs (per day and for a typical
test) and what the backup space costs per month, computed by :mod:`drctl.stack.cost` exactly as
``drctl cost`` does.

The backup space needs a listing of the client's repository, which takes as long as the store
does: :class:`BackupSpace` measures it in the console's background status collection, at most
every ``every_s`` seconds per client, and a page only reads the latest measurement (with its time).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from drctl.errors import DrctlError

if TYPE_CHECKING:
    from drctl.console.clients import ClientInfo
    from drctl.storage.base import Storage

log = logging.getLogger(__name__)

TYPICAL_TEST_DAYS = 2
"""The activation length the page prices besides one day: a recovery test usually lasts two days."""


@dataclass(frozen=True)
class SpaceMeasure:
    """One listing of a client's repository: the bytes it stores, or why it could not be listed."""

    url: str
    stored_bytes: int | None
    measured_at: datetime
    seconds: float
    error: str | None = None


class BackupSpace:
    """The latest backup-space measurement of each client stack."""

    def __init__(self, open_vault: Callable[[str], Storage], every_s: float = 3600) -> None:
        self.open_vault = open_vault
        self.every_s = every_s
        self._latest: dict[str, SpaceMeasure] = {}
        self._lock = threading.Lock()

    def latest(self, stack: str) -> SpaceMeasure | None:
        with self._lock:
            return self._latest.get(stack)

    def due(self, stack: str, url: str) -> bool:
        """Whether ``stack`` has no measurement of ``url`` younger than ``every_s``."""
        last = self.latest(stack)
        if last is None or last.url != url:
            return True
        return (datetime.now(UTC) - last.measured_at).total_seconds() >= self.every_s

    def measure(self, stack: str, url: str) -> SpaceMeasure:
        """List the repository at ``url`` now (a store that cannot be listed is recorded as such)."""
        from drctl.stack.cost import stored_bytes

        started = time.monotonic()
        size: int | None = None
        error = None
        try:
            size = stored_bytes(self.open_vault(url))
        except DrctlError as e:
            log.warning("backup space of %s not measured: %s", stack, e.message)
            error = e.message
        m = SpaceMeasure(url, size, datetime.now(UTC), round(time.monotonic() - started, 3), error)
        with self._lock:
            self._latest[stack] = m
        return m


@dataclass(frozen=True)
class ClientCost:
    """What the cost section shows. ``problem`` (no price table, or an unusable one) replaces the
    figures; ``figures`` are ``drctl cost --json``'s for one day, plus the typical test's total."""

    problem: str | None
    no_prices: bool = False
    currency: str = ""
    label: str = ""
    illustrative: bool = False
    figures: Mapping[str, Any] | None = None
    typical_days: int = TYPICAL_TEST_DAYS
    typical_total: float | None = None
    space: SpaceMeasure | None = None


NO_PRICES = "No price table in the stack"


def is_illustrative(raw: Mapping[str, Any]) -> bool:
    """Whether a price table is the illustrative one ``drctl client new`` writes: its label says
    so, or its prices are still exactly those."""
    from drctl.stack.cost import ILLUSTRATIVE_PRICES

    if "illustrative" in str(raw.get("label") or "").lower():
        return True
    rates = {k: v for k, v in ILLUSTRATIVE_PRICES.items() if k not in ("label", "currency")}
    return all(raw.get(k) == v for k, v in rates.items())


def client_cost(client: ClientInfo, space: SpaceMeasure | None) -> ClientCost:
    """The cost section of ``client``, with the backup space of ``space`` when it was measured."""
    from drctl.stack.cost import estimate, parse_prices

    if client.plan is None or client.settings is None:
        return ClientCost(problem=client.error or "The stack cannot be read")
    if space is not None and space.url != client.settings.repository_url(client.plan):
        space = None  # measured before the stack named another repository
    raw = client.settings.prices
    if not raw:
        return ClientCost(problem=NO_PRICES, no_prices=True, space=space)
    where = f"stacks/Pulumi.{client.stack}.yaml"
    stored = space.stored_bytes if space is not None else None
    try:
        prices = parse_prices(raw, where=where)
        figures = {
            days: estimate(
                client.plan, client.settings, prices, days=days, stored_bytes=stored, where=where
            ).as_dict()
            for days in (1, TYPICAL_TEST_DAYS)
        }
    except DrctlError as e:
        return ClientCost(problem=f"The stack's price table cannot be used: {e.message}", space=space)
    return ClientCost(
        problem=None,
        currency=prices.currency,
        label=prices.label,
        illustrative=is_illustrative(raw),
        figures=figures[1],
        typical_total=figures[TYPICAL_TEST_DAYS]["activation_total"],
        space=space,
    )
