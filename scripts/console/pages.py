"""The console's pages: fleet overview (operators), a client's synthesis, its tests (the table of
the service description's 8.2, each report's signature checked on display), a run with its
timeline, the signed report itself (audited), and ``/metrics`` (operators)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from drctl.console.app import address_of, console_of, operator_only, render, visible_client
from drctl.console.fleet import STATES, due_text
from drctl.runs.report import AXIS_H, BAR_H, LABEL_W, ROW_H, timeline_layout
from drctl.runs.store import StoredRun

# The stored report is a self-contained page (inline CSS and SVG, nothing else).
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"


async def overview(request: Request) -> Response:
    operator_only(request)
    fleet = console_of(request).status
    rows = fleet.overview()
    counts = {s: sum(1 for r in rows if r.state == s) for s in STATES}
    return render(
        request,
        "overview.html.j2",
        title="Fleet overview",
        rows=rows,
        counts=counts,
        snapshot=fleet.snapshot(),
        due_text=due_text,
    )


async def metrics(request: Request) -> Response:
    """The OpenMetrics exposition of the latest status (operators only)."""
    operator_only(request)
    snap = console_of(request).status.snapshot()
    if snap is None:
        raise HTTPException(503, "The protection status is being collected: try again in a minute.")
    return Response(
        snap.metrics(),
        media_type="application/openmetrics-text; version=1.0.0; charset=utf-8",
        headers={"Cache-Control": "no-store"},
    )


async def client_page(request: Request) -> Response:
    stack = request.path_params["client"]
    _, client = visible_client(request, stack)
    console = console_of(request)
    runs = console.data.runs(stack)
    return render(
        request,
        "client.html.j2",
        title=client.name,
        client=client,
        servers=console.status.servers(client),
        sites=console.status.sites(client),
        contacts=[c for c in client.plan.contacts if c.can_activate] if client.plan else [],
        last=runs[0].summary if runs else None,
        due_text=due_text,
        status=console.status.client_status(stack),
        snapshot=console.status.snapshot(),
        cost=console.status.cost(client),
    )


async def tests_page(request: Request) -> Response:
    stack = request.path_params["client"]
    _, client = visible_client(request, stack)
    data = console_of(request).data
    rows = [(r.summary, data.signature(r)) for r in data.runs(stack)]
    return render(request, "tests.html.j2", title=f"Tests of {client.name}", client=client, rows=rows)


def _run(request: Request) -> tuple[StoredRun, str]:
    stack = request.path_params["client"]
    _, client = visible_client(request, stack)
    run = console_of(request).data.run(stack, request.path_params["run_id"])
    if run is None:
        raise HTTPException(404)
    return run, client.name


async def run_page(request: Request) -> Response:
    run, client_name = _run(request)
    s = run.summary
    levels = s.dependency_levels()
    return render(
        request,
        "run.html.j2",
        title=f"Run {s.run_id}",
        client_name=client_name,
        stack=request.path_params["client"],
        s=s,
        servers=sorted(s.servers, key=lambda v: (levels[v.name], v.name)),
        levels=levels,
        signature=console_of(request).data.signature(run),
        tl=timeline_layout(s),
        bar_h=BAR_H,
        row_h=ROW_H,
        axis_h=AXIS_H,
        label_w=LABEL_W,
    )


async def report(request: Request) -> Response:
    """The signed report page, only when its signature is valid (a tampered one is refused)."""
    run, _ = _run(request)
    console = console_of(request)
    session = request.state.session
    check = console.data.signature(run)
    fields = {"client": request.path_params["client"], "run_id": run.summary.run_id}
    if check.ok is False:
        console.audit.record(
            "report-download", user=session.user, address=address_of(request), outcome="refused",
            reason="signature", **fields,
        )  # fmt: skip
        raise HTTPException(409, f"This report fails its signature check and is not shown: {check.text}")
    try:
        body = run.html_path.read_bytes()
    except OSError as e:
        raise HTTPException(404) from e
    console.audit.record(
        "report-download", user=session.user, address=address_of(request), outcome="success", **fields
    )
    headers = {
        "Content-Security-Policy": REPORT_CSP,
        "X-Drctl-Signature": "valid" if check.ok else "not checked",
    }
    return Response(body, media_type="text/html; charset=utf-8", headers=headers)


def routes() -> list[BaseRoute]:
    return [
        Route("/overview", overview),
        Route("/metrics", metrics),
        Route("/clients/{client}", client_page),
        Route("/clients/{client}/tests", tests_page),
        Route("/clients/{client}/runs/{run_id}", run_page),
        Route("/clients/{client}/runs/{run_id}/report.html", report),
    ]
