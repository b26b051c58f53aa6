"""The rows of the fleet overview and of a client's synthesis: the plan, the stack and the run
store, with the protection status of :mod:`drctl.console.status_feed` when it has been collected.

A client's state, worst first: ``unreadable`` (its vault or its stack cannot be read), ``failing``
(an RPO breached, a job failed, a test overdue, drift; before the status is collected: its last
test failed a server), ``warning`` (an RPO at risk, a test agreed within 30 days, an untrusted
record; or its last test ended with warnings), ``unknown`` (status not collected and no test yet),
``ok``.
"""

from __future__ import annotations

from dataclasses import dataclass

from drctl.console.clients import ClientInfo, ProjectData, last_run_of_server
from drctl.console.costs import ClientCost, client_cost
from drctl.console.status_feed import StatusFeed, StatusSnapshot
from drctl.plan.model import Server
from drctl.runs.model import RunSummary, SiteReconnection
from drctl.status.model import ClientState, NextTest, ServerState, describe_due

STATES = ("unreadable", "failing", "warning", "unknown", "ok")
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
    next_test: NextTest | None = None
    status: ClientState | None = None


@dataclass(frozen=True)
class ServerRow:
    """One server of a client's synthesis."""

    server: Server
    template: str
    disks: str
    last_test: RunSummary | None
    last_status: str | None
    status: ServerState | None = None


@dataclass(frozen=True)
class SiteRow:
    """A client site and its reconnection state in the last drill that tested it."""

    name: str
    peer_address: str
    subnets: str
    reconnection: SiteReconnection | None
    tested_in: str | None  # run id


def _client_state(client: ClientInfo, last: RunSummary | None) -> tuple[str, str]:
    """The state from the plan and the run store alone (the status not collected yet)."""
    if client.error:
        return "unreadable", f"cannot be read: {client.error}"
    if last is None:
        return "unknown", "no test or activation recorded yet"
    outcome = str(last.outcome)
    c = last.counts()
    if outcome in ("failed", "not-started"):
        return (
            "failing",
            f"last {last.kind} {last.run_id}: {c['failed']} failed, {c['not-started']} not started",
        )
    if outcome == "warning":
        return "warning", f"last {last.kind} {last.run_id}: {c['warning']} server(s) with warnings"
    return "ok", f"last {last.kind} {last.run_id}: every server available"


def _status_reason(c: ClientState) -> str:
    if c.unreadable:
        return c.unreadable
    problems = [f"{s.name}: {p}" for s in sorted(c.servers, key=lambda s: -s.health) for p in s.problems()]
    problems += [f"{name}: not in the plan (drift)" for name in c.not_in_plan]
    if c.retention is not None and c.retention.retain_days and not c.retention.enforced:
        problems.append(f"retention not enforced: {c.retention.detail}")
    if not problems:
        return "every RPO met, no job failed, tests on time"
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return "; ".join(problems[:3]) + more


class FleetView:
    """Overview and synthesis rows for the console's pages."""

    def __init__(self, data: ProjectData, feed: StatusFeed | None = None) -> None:
        self.data = data
        self.feed = feed

    def snapshot(self) -> StatusSnapshot | None:
        return self.feed.latest() if self.feed is not None else None

    def client_status(self, stack: str) -> ClientState | None:
        snap = self.snapshot()
        return snap.clients.get(stack) if snap is not None else None

    def cost(self, client: ClientInfo) -> ClientCost:
        """The client's cost section, with the latest measured backup space (never measured here)."""
        space = self.feed.space.latest(client.stack) if self.feed is not None else None
        return client_cost(client, space)

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
            status = None if client.error else self.client_status(stack)
            if status is not None:
                state, reason = status.health.label, _status_reason(status)
            test = status.test_due if status is not None else None
            rows.append(ClientRow(stack, client.name, state, servers, last, reason, test, status))
        return sorted(rows, key=lambda r: (STATES.index(r.state), r.name.lower(), r.stack))

    def servers(self, client: ClientInfo) -> list[ServerRow]:
        if client.plan is None:
            return []
        runs = self.data.runs(client.stack)
        status = self.client_status(client.stack)
        states = {s.name: s for s in status.servers} if status is not None else {}
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
                    status=states.get(s.name),
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


def due_text(test: NextTest | None) -> str:
    """A test due date in words: the date and where it comes from, or that it is overdue."""
    if test is None:
        return "no test (backup-only)"
    text = describe_due(test)
    return f"overdue: {text}" if test.overdue else text
