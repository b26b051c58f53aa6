"""The rows of the fleet overview and of a client's synthesis, computed from the plan, the stack
and the run store.

A client's state, worst first: ``critical`` (its last test failed a server, or it cannot be read),
``warning`` (its last test ended with warnings), ``untested`` (no test yet), ``ok``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from drctl.console.clients import ClientInfo, ProjectData, last_run_of_server
from drctl.plan.model import Server
from drctl.runs.model import RunSummary, SiteReconnection

STATES = ("critical", "warning", "untested", "ok")
"""Client states, worst first (the overview's order)."""


@dataclass(frozen=True)
class ClientRow:
    """One line of the fleet overview."""

    stack: str
    name: str
    state: str
    servers: int
    last_test: RunSummary | None
    reason: str


@dataclass(frozen=True)
class ServerRow:
    """One server of a client's synthesis."""

    server: Server
    template: str
    disks: str
    last_test: RunSummary | None
    last_status: str | None


@dataclass(frozen=True)
class SiteRow:
    """A client site and its reconnection state in the last drill that tested it."""

    name: str
    peer_address: str
    subnets: str
    reconnection: SiteReconnection | None
    tested_in: str | None  # run id


def _client_state(client: ClientInfo, last: RunSummary | None) -> tuple[str, str]:
    if client.error:
        return "critical", f"cannot be read: {client.error}"
    if last is None:
        return "untested", "no test or activation recorded yet"
    outcome = str(last.outcome)
    c = last.counts()
    if outcome in ("failed", "not-started"):
        return (
            "critical",
            f"last {last.kind} {last.run_id}: {c['failed']} failed, {c['not-started']} not started",
        )
    if outcome == "warning":
        return "warning", f"last {last.kind} {last.run_id}: {c['warning']} server(s) with warnings"
    return "ok", f"last {last.kind} {last.run_id}: every server available"


class FleetView:
    """Overview and synthesis rows for the console's pages."""

    def __init__(self, data: ProjectData) -> None:
        self.data = data

    def overview(self) -> list[ClientRow]:
        """Every client, worst state first, then by name."""
        rows = []
        for stack in self.data.stacks():
            client = self.data.client(stack)
            if client is None:
                continue
            runs = self.data.runs(stack)
            last = runs[0].summary if runs else None
            state, reason = _client_state(client, last)
            servers = len(client.plan.servers) if client.plan else 0
            rows.append(ClientRow(stack, client.name, state, servers, last, reason))
        return sorted(rows, key=lambda r: (STATES.index(r.state), r.name.lower(), r.stack))

    def servers(self, client: ClientInfo) -> list[ServerRow]:
        if client.plan is None:
            return []
        runs = self.data.runs(client.stack)
        rows = []
        for s in client.plan.servers:
            last = last_run_of_server(runs, s.name)
            disks = ", ".join(f"{d.name} {d.size_gb} GB{' (boot)' if d.boot else ''}" for d in s.disks)
            rows.append(
                ServerRow(
                    server=s,
                    template=client.template(s),
                    disks=disks,
                    last_test=last[0] if last else None,
                    last_status=last[1] if last else None,
                )
            )
        return rows

    def sites(self, client: ClientInfo) -> list[SiteRow]:
        if client.plan is None:
            return []
        runs = self.data.runs(client.stack)
        rows = []
        for site in client.plan.sites:
            found: tuple[SiteReconnection, str] | None = None
            for r in runs:
                match = next((x for x in r.summary.reconnection if x.site == site.name), None)
                if match is not None:
                    found = (match, r.summary.run_id)
                    break
            rows.append(
                SiteRow(
                    name=site.name,
                    peer_address=site.peer_address,
                    subnets=", ".join(f"{sn.name} {sn.cidr}" for sn in site.subnets),
                    reconnection=found[0] if found else None,
                    tested_in=found[1] if found else None,
                )
            )
        return rows


def age_text(then: datetime | None, now: datetime) -> str:
    from drctl.runs.report import fmt_duration

    return "\u2014" if then is None else fmt_duration((now - then).total_seconds()) + " ago"
