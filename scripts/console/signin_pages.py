"""The sign-in pages: password, then the TOTP code (or, the first time, the enrolment with its QR
code and secret), and signing out. Every step is audited; every form carries the CSRF token."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import segno
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from drctl.console.app import address_of, checked_form, console_of, render, session_of, signed_in_user
from drctl.console.sessions import new_session
from drctl.console.signin import accept_code, new_totp_secret, provisioning_uri
from drctl.console.users import MIN_PASSWORD_LENGTH, User, hash_password, password_matches

WRONG = "Wrong user name or password."


def _redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


def _locked_message(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    return f"Too many failed attempts: this account is locked for {minutes} more minute(s). Try again later."


def _refuse_early(request: Request, name: str, step: str, page: str, **context: Any) -> Response | None:
    """The rate limit and the lockout, before any secret is checked (audited as refused)."""
    console, address = console_of(request), address_of(request)
    if not console.guard.address_allowed(address):
        console.audit.record(
            "signin", user=name, address=address, outcome="refused", step=step, reason="rate-limited"
        )
        return render(
            request, page, 429, error="Too many attempts from your address: wait a minute.", **context
        )
    locked = console.guard.locked_for(name)
    if locked > 0:
        console.audit.record(
            "signin", user=name, address=address, outcome="refused", step=step, reason="locked-out"
        )
        return render(request, page, 429, error=_locked_message(locked), **context)
    return None


async def login_page(request: Request) -> Response:
    if session_of(request).signed_in:
        return _redirect("/")
    return render(request, "login.html.j2", title="Sign in", error=None)


async def login(request: Request) -> Response:
    form = await checked_form(request)
    name, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
    console, address = console_of(request), address_of(request)
    refused = _refuse_early(request, name, "password", "login.html.j2", title="Sign in")
    if refused is not None:
        return refused
    user = console.users.get(name) if name else None
    if not await run_in_threadpool(password_matches, user, password) or user is None:
        locked = console.guard.failed(name)
        console.audit.record(
            "signin", user=name, address=address, outcome="failure", step="password", reason="wrong-password"
        )
        error = _locked_message(console.guard.lockout_s) if locked else WRONG
        return render(request, "login.html.j2", 401, title="Sign in", error=error)
    if user.totp_confirmed:
        request.state.session = new_session(user.name, "password")
        return _redirect("/login/code")
    if user.totp_required:
        if not user.totp_secret:
            console.users.update(user.name, lambda u: replace(u, totp_secret=new_totp_secret()))
        request.state.session = new_session(user.name, "enrol")
        return _redirect("/login/enrol")
    console.guard.succeeded(user.name)
    console.audit.record("signin", user=user.name, address=address, outcome="success", step="password")
    return _signed_in(request, user)


def _signed_in(request: Request, user: User) -> Response:
    """Both factors passed: signed in, unless the one-time password must be replaced first."""
    if user.password_expired:
        request.state.session = new_session(user.name, "new-password")
        return _redirect("/login/new-password")
    request.state.session = new_session(user.name, "signed-in")
    return _redirect("/")


def _pending_user(request: Request, stage: str) -> User | None:
    session = session_of(request)
    if session.stage != stage or not session.user:
        return None
    return console_of(request).users.get(session.user)


def _enrol_context(user: User) -> dict[str, Any]:
    secret = user.totp_secret or ""
    qr = segno.make(provisioning_uri(user, secret), error="m")
    grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    return {
        "title": "Set up your second factor",
        "qr_svg": qr.svg_inline(scale=5, omitsize=True),
        "secret": grouped,
    }


async def code_page(request: Request) -> Response:
    user = _pending_user(request, "password")
    if user is None:
        return _redirect("/login")
    return render(request, "code.html.j2", title="Second factor", error=None)


async def enrol_page(request: Request) -> Response:
    user = _pending_user(request, "enrol")
    if user is None or user.totp_confirmed or not user.totp_secret:
        return _redirect("/login")
    return render(request, "enrol.html.j2", error=None, **_enrol_context(user))


async def _check_code(request: Request, stage: str) -> Response:
    form = await checked_form(request)
    user = _pending_user(request, stage)
    if user is None:
        return _redirect("/login")
    page = "code.html.j2" if stage == "password" else "enrol.html.j2"
    context = {"title": "Second factor"} if stage == "password" else _enrol_context(user)
    step = "totp" if stage == "password" else "enrol"
    refused = _refuse_early(request, user.name, step, page, **context)
    if refused is not None:
        return refused
    console, address = console_of(request), address_of(request)
    check = await run_in_threadpool(accept_code, console.users, user.name, str(form.get("code", "")))
    if not check.ok:
        locked = console.guard.failed(user.name)
        console.audit.record(
            "signin", user=user.name, address=address, outcome="failure", step=step, reason=check.reason
        )
        if locked:
            request.state.session = new_session()
            return render(
                request, "login.html.j2", 429, title="Sign in", error=_locked_message(console.guard.lockout_s)
            )
        error = (
            "This code was already used: wait for the next one in your app."
            if check.reason == "replayed"
            else "Wrong code: type the 6 digits your app shows now."
        )
        return render(request, page, 401, error=error, **context)
    console.guard.succeeded(user.name)
    console.audit.record("signin", user=user.name, address=address, outcome="success", step=step)
    return _signed_in(request, user)


async def code(request: Request) -> Response:
    return await _check_code(request, "password")


async def enrol(request: Request) -> Response:
    return await _check_code(request, "enrol")


async def new_password_page(request: Request) -> Response:
    if _pending_user(request, "new-password") is None:
        return _redirect("/login")
    return render(request, "new_password.html.j2", title="Choose your password", error=None)


async def new_password(request: Request) -> Response:
    form = await checked_form(request)
    user = _pending_user(request, "new-password")
    if user is None:
        return _redirect("/login")
    first, second = str(form.get("password", "")), str(form.get("password_again", ""))
    error = None
    if first != second:
        error = "The two passwords differ."
    elif len(first) < MIN_PASSWORD_LENGTH:
        error = f"Use at least {MIN_PASSWORD_LENGTH} characters."
    elif password_matches(user, first):
        error = "Choose a password other than the one-time password."
    if error:
        return render(request, "new_password.html.j2", 400, title="Choose your password", error=error)
    hashed = await run_in_threadpool(hash_password, first)
    console_of(request).users.update(
        user.name, lambda u: replace(u, password_hash=hashed, password_expired=False)
    )
    console_of(request).audit.record(
        "password-changed", user=user.name, address=address_of(request), outcome="success"
    )
    request.state.session = new_session(user.name, "signed-in")
    return _redirect("/")


async def logout(request: Request) -> Response:
    await checked_form(request)
    session = session_of(request)
    console = console_of(request)
    if session.user:
        console.audit.record("signout", user=session.user, address=address_of(request), outcome="success")
    console.codec.end(session)
    request.state.session = None
    return _redirect("/login")


async def home(request: Request) -> Response:
    user = signed_in_user(request)
    return _redirect("/overview" if user.is_operator else f"/clients/{user.client}")


def routes() -> list[BaseRoute]:
    return [
        Route("/", home),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/login/code", code_page, methods=["GET"]),
        Route("/login/code", code, methods=["POST"]),
        Route("/login/enrol", enrol_page, methods=["GET"]),
        Route("/login/enrol", enrol, methods=["POST"]),
        Route("/login/new-password", new_password_page, methods=["GET"]),
        Route("/login/new-password", new_password, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]
