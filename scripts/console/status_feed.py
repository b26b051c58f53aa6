"""The protection status (``drctl status``: RPO, jobs, tests due, drift) as the console serves it:
collected in a background thread every ``refresh_s`` seconds, pages reading the latest snapshot.

Collecting reads every client's vault (its agents' signed status records), which takes seconds for
a large fleet and depends on the object store; a page must not wait for it. Until the first
collection ends, pages show the plan and the run store only, and say so; ``/metrics`` answers 503.

After each collection, the same thread lists the repositories whose backup-space measurement
(:class:`~drctl.console.costs.BackupSpace`) is older than ``space_every_s``: the client page's cost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from drctl.console.costs import BackupSpace
from drctl.errors import DrctlError

if TYPE_CHECKING:  # the collection's modules are imported at its first run: a fast console start
    from drctl.status.clients import ClientSource
    from drctl.status.model import ClientState
    from drctl.storage.base import Storage

log = logging.getLogger(__name__)
SPACE_IN_PARALLEL = 4  # repositories listed at once for their backup space


@dataclass(frozen=True)
class StatusSnapshot:
    """One collection: every readable client's state by stack, when, and how long it took."""

    clients: dict[str, ClientState]
    collected_at: datetime
    seconds: float

    def metrics(self) -> bytes:
        """The OpenMetrics text of this snapshot (``drctl status --prometheus``'s, byte for byte)."""
        from drctl.status.metrics import exposition

        return exposition(list(self.clients.values()))


class StatusFeed:
    """Collects the status of the project's stacks now (:meth:`refresh`) or periodically (:meth:`start`)."""

    def __init__(
        self,
        stacks: Callable[[], Sequence[str]],
        *,
        project_dir: Path | None = None,
        state_dir: Path | None = None,
        refresh_s: float = 60,
        open_vault: Callable[[str], Storage] | None = None,
        space_every_s: float = 3600,
    ) -> None:
        self.stacks = stacks
        self.project_dir = project_dir
        self.state_dir = state_dir
        self.refresh_s = refresh_s
        self.open_vault = open_vault
        self.space = BackupSpace(self._open_vault, every_s=space_every_s)
        self._opener: Callable[[str], Storage] | None = None
        self._latest: StatusSnapshot | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _open_vault(self, url: str) -> Storage:
        if self.open_vault is not None:
            return self.open_vault(url)
        if self._opener is None:
            from drctl.status.vault import VaultOpener

            self._opener = VaultOpener()
        return self._opener(url)

    def latest(self) -> StatusSnapshot | None:
        return self._latest

    def refresh(self) -> StatusSnapshot:
        """Collect every client's status now (a stack that cannot be read is left out: the
        console shows that stack's own error)."""
        from drctl.status.clients import load_client
        from drctl.status.collect import collect

        started = time.monotonic()
        sources: list[ClientSource] = []
        for stack in self.stacks():
            try:
                sources.append(load_client(stack, self.project_dir))
            except DrctlError as e:
                log.warning("status of %s not collected: %s", stack, e.message)
        states = collect(sources, state_dir=self.state_dir, open_vault=self.open_vault)
        snapshot = StatusSnapshot(
            {c.stack: c for c in states}, datetime.now(UTC), round(time.monotonic() - started, 3)
        )
        self._latest = snapshot
        self._measure_space(sources)
        return snapshot

    def _measure_space(self, sources: Sequence[ClientSource]) -> None:
        """List the repositories whose backup space is due for a measurement, a few at a time."""
        from concurrent.futures import ThreadPoolExecutor

        due = [s for s in sources if self.space.due(s.stack, s.vault)]
        if due:
            with ThreadPoolExecutor(max_workers=min(SPACE_IN_PARALLEL, len(due))) as pool:
                list(pool.map(lambda s: self.space.measure(s.stack, s.vault), due))

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except DrctlError as e:
                log.warning("status collection failed: %s", e.message)
            except Exception:  # a bug must not stop the console; it is logged with its traceback
                log.exception("status collection failed")
            self._stop.wait(self.refresh_s)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="console-status", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
