"""The console as a Starlette application: sessions, the access rule, templates, security headers.

The access rule, in one place (:func:`signed_in_user`, :func:`visible_client`,
:func:`operator_only`): a page needs a signed-in session (else a redirect to ``/login``); a page
or file under ``/clients/<stack>/`` answers 404 unless the user may see that client (operators:
every client; a client user: theirs), exactly as for a client that does not exist, so a client
user cannot even learn which other clients exist; operator pages (overview, ``/metrics``) answer
404 to client users for the same reason.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from drctl.console.audit import AuditLog
from drctl.console.clients import ClientInfo, ProjectData
from drctl.console.sessions import COOKIE, Session, SessionCodec, load_or_create_key, new_session
from drctl.console.signin import SignInGuard
from drctl.console.users import User, UserStore, console_dir
from drctl.errors import DrctlError
from drctl.repo.progress import human_bytes
from drctl.runs.report import fmt_duration, fmt_local, fmt_time
from drctl.storage.base import Storage

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


@dataclass
class Console:
    """Everything the handlers share: the data, the users, the sessions, the guard, the audit log."""

    data: ProjectData
    users: UserStore
    codec: SessionCodec
    guard: SignInGuard
    audit: AuditLog
    templates: Jinja2Templates
    status: Any = None  # the fleet status provider (drctl.console.fleet), set by create_app


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("drctl.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(duration=fmt_duration, time=fmt_time, local=fmt_local, size=human_bytes)
    return Jinja2Templates(env=env)


def console_of(request: Request) -> Console:
    return request.app.state.console


def session_of(request: Request) -> Session:
    return request.state.session


def address_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class SessionCookies(BaseHTTPMiddleware):
    """Reads the session cookie before a request and (re)issues it after: the idle timeout slides."""

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.url.path.startswith("/static/"):
            return await call_next(request)
        console = console_of(request)
        request.state.session = console.codec.loads(request.cookies.get(COOKIE)) or new_session()
        response = await call_next(request)
        session: Session | None = request.state.session
        if session is None:
            response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        else:
            response.set_cookie(
                COOKIE,
                console.codec.dumps(session),
                path="/",
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers.setdefault("Cache-Control", "no-store")
        return response


# --- the access rule ----------------------------------------------------------------------------


class SignInRequired(Exception):
    """No signed-in session: the handler redirects to the sign-in page."""


def signed_in_user(request: Request) -> User:
    session = session_of(request)
    user = console_of(request).users.get(session.user) if session.signed_in and session.user else None
    if user is None:
        raise SignInRequired()
    return user


def visible_client(request: Request, stack: str) -> tuple[User, ClientInfo]:
    """The client ``stack`` if the signed-in user may see it; 404 otherwise (and when unknown)."""
    user = signed_in_user(request)
    if not user.may_see(stack):
        raise HTTPException(404)
    client = console_of(request).data.client(stack)
    if client is None:
        raise HTTPException(404)
    return user, client


def operator_only(request: Request) -> User:
    user = signed_in_user(request)
    if not user.is_operator:
        raise HTTPException(404)
    return user


async def checked_form(request: Request) -> FormData:
    """The POSTed form, after its CSRF token was checked against the session's (else 403)."""
    form = await request.form()
    token = form.get("csrf_token")
    if not session_of(request).csrf_ok(token if isinstance(token, str) else None):
        raise HTTPException(403, "the form's CSRF token is missing or stale: reload the page and try again")
    return form


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    session = session_of(request)
    user = None
    if session.signed_in and session.user:
        user = console_of(request).users.get(session.user)
    context.setdefault("title", "Flexible Recovery")
    return console_of(request).templates.TemplateResponse(
        request, name, {"user": user, "csrf_token": session.csrf, **context}, status_code=status_code
    )


# --- errors -------------------------------------------------------------------------------------

_REASONS = {
    403: "Refused",
    404: "Not found",
    405: "Method not allowed",
    409: "Report refused",
    429: "Too many attempts",
    503: "Not ready yet",
}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if not hasattr(request.state, "session"):
        request.state.session = new_session()
    detail = exc.detail if exc.status_code != 404 else "There is no such page, or it is not yours to see."
    return render(
        request,
        "error.html.j2",
        status_code=exc.status_code,
        title=_REASONS.get(exc.status_code, "Error"),
        code=exc.status_code,
        detail=detail,
    )


async def _data_error(request: Request, exc: Exception) -> Response:
    """A file the console reads is unusable (its users file damaged, a state file unreadable): the
    page says which and what to do, the console keeps serving, and nothing is half-written."""
    assert isinstance(exc, DrctlError)
    log.error("console: %s", exc.message)
    if not hasattr(request.state, "session"):
        request.state.session = new_session()
    request.state.session = None  # the session may refer to what cannot be read: sign in again
    return console_of(request).templates.TemplateResponse(
        request,
        "error.html.j2",
        {
            "user": None,
            "csrf_token": "",
            "title": "The console cannot read its data",
            "code": 500,
            "detail": exc.message,
        },
        status_code=500,
    )


async def _to_sign_in(request: Request, exc: Exception) -> Response:
    return RedirectResponse("/login", status_code=303)


def create_app(
    *,
    project_dir: Path | None = None,
    state_dir: Path | None = None,
    idle_timeout_s: float = 900,
    guard: SignInGuard | None = None,
    status_every_s: float | None = 60,
    open_vault: Callable[[str], Storage] | None = None,
) -> Starlette:
    """The console application over this project and state directory. While it runs, the
    protection status is collected every ``status_every_s`` seconds (None: never in the
    background; ``app.state.console.status.feed.refresh()`` collects it on demand)."""
    from drctl.console import fleet
    from drctl.console.pages import routes as page_routes
    from drctl.console.signin_pages import routes as signin_routes
    from drctl.console.status_feed import StatusFeed

    directory = console_dir(state_dir)
    console = Console(
        data=ProjectData(project_dir, state_dir),
        users=UserStore(directory),
        codec=SessionCodec(load_or_create_key(directory / "session.key"), idle_timeout_s=idle_timeout_s),
        guard=guard or SignInGuard(),
        audit=AuditLog(directory / "audit.log"),
        templates=_templates(),
    )
    feed = StatusFeed(
        console.data.stacks,
        project_dir=console.data.project_dir,
        state_dir=state_dir,
        refresh_s=status_every_s or 60,
        open_vault=open_vault,
    )
    console.status = fleet.FleetView(console.data, feed)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if status_every_s is not None:
            feed.start()
        try:
            yield
        finally:
            feed.stop()

    app = Starlette(
        lifespan=lifespan,
        routes=[
            *signin_routes(),
            *page_routes(),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=[Middleware(SessionCookies)],
        exception_handlers={HTTPException: _http_error, SignInRequired: _to_sign_in, DrctlError: _data_error},
    )
    app.state.console = console
    return app
