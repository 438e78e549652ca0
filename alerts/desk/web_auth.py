"""Who is asking: the session cookie or API token behind each request, CSRF, and signing in and out.

Every route outside ``PUBLIC_PATHS`` depends on ``require_user`` (the routers declare it; a test walks every
route of the app and fails on one that answers signed out): a signed-out browser is sent to the sign-in
page, an API client gets 401.  A state-changing request from a browser session must carry the session's CSRF
token (form field ``csrf_token`` or header ``X-CSRF-Token``); API-token requests carry no cookie and so need
none.  Sign-in attempts are limited per user and per address from the audit log itself, which every replica
shares, so a second replica is no way around the limit.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from alerts.desk.accounts import Accounts, DeskBusy, SessionInfo, single_store
from alerts.desk.audit import AuditAction, record_for
from alerts.desk.feed import Feed
from alerts.desk.queries import DeskQueries
from alerts.desk.roles import Principal
from common.db import Database
from common.settings import DeskSettings
from common.words import count

SESSION_COOKIE = "aw_session"
LOGIN_CSRF_COOKIE = "aw_login_csrf"
CSRF_HEADER = "x-csrf-token"
PUBLIC_PATHS = ("/login", "/healthz", "/livez", "/static/")
"""The only routes a signed-out request may reach (``/static/`` is a prefix)."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class DeskState:
    """What every route needs, kept on ``app.state.desk``."""

    settings: DeskSettings
    db: Database
    accounts: Accounts
    queries: DeskQueries
    feed: Feed
    evidence_dir: Any  # Path
    templates: Any  # Jinja2Templates
    videos: bool = True  # evidence.video: suspicious-activity alerts get a video (the page says one is coming)


class SignInRequired(Exception):
    """No valid session or token: pages redirect to /login, the API answers 401."""


class CsrfRefused(Exception):
    """A state-changing browser request without the session's CSRF token: 403."""


class Forbidden(Exception):
    """Signed in, but this role may not do this: 403."""


def desk(request: Request) -> DeskState:
    return request.app.state.desk  # type: ignore[no-any-return]


def client_address(request: Request) -> str:
    """The address a request came from.  Behind a proxy we run (``desk.trust_forwarded``) it is the last
    X-Forwarded-For entry, the one our proxy added: entries to its left came from the client and can be
    anything, so trusting them would let a guesser pick a new address for every try."""
    state = desk(request)
    if state.settings.trust_forwarded:
        forwarded = [part.strip() for part in request.headers.get("x-forwarded-for", "").split(",") if part.strip()]
        if forwarded:
            return forwarded[-1][:64]
    return (request.client.host if request.client else "")[:64]


def is_https(request: Request) -> bool:
    state = desk(request)
    if state.settings.trust_forwarded and request.headers.get("x-forwarded-proto"):
        return request.headers["x-forwarded-proto"].split(",")[-1].strip() == "https"
    return request.url.scheme == "https"


def secure_cookies(request: Request) -> bool:
    mode = desk(request).settings.secure_cookies
    return mode == "always" or (mode == "auto" and is_https(request))


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def require_user(request: Request) -> Principal:
    """The signed-in user (or API token) of this request, checking CSRF on state-changing browser requests."""
    state = desk(request)
    token = _bearer(request)
    if token is not None:
        principal = await run_in_threadpool(state.accounts.token_principal, token)
        if principal is None:
            raise SignInRequired
        request.state.principal, request.state.session = principal, None
        return principal
    cookie = request.cookies.get(SESSION_COOKIE)
    session: SessionInfo | None = await run_in_threadpool(state.accounts.session, cookie) if cookie else None
    if session is None:
        raise SignInRequired
    request.state.principal, request.state.session = session.principal, session
    if request.method not in SAFE_METHODS:
        await _check_csrf(request, session.csrf_token)
    return session.principal


async def _check_csrf(request: Request, expected: str) -> None:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        sent = str((await request.form()).get("csrf_token") or "")
    if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused


def refuse_cross_site(request: Request) -> None:
    """Evidence downloads are GETs, so SameSite=Lax still sends the cookie when another site links to one:
    a browser that says the request came from another site (``Sec-Fetch-Site: cross-site``) is refused, so
    no page elsewhere can make a manager's browser build a bundle or log a download."""
    if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
        raise Forbidden("evidence downloads are only followed from the desk's own pages")


def csrf_token(request: Request) -> str:
    session: SessionInfo | None = getattr(request.state, "session", None)
    return session.csrf_token if session is not None else ""


def safe_next(target: str | None) -> str:
    """Only a path on this site: never ``//host`` or ``https://host`` (an open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def sign_in_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


router = APIRouter()


@router.get("/login", include_in_schema=False)
async def login_page(request: Request, next: str = "/") -> Response:
    state = desk(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie and await run_in_threadpool(state.accounts.session, cookie) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_form(request, next=safe_next(next))


def _login_form(request: Request, *, next: str, error: str = "", status: int = 200,
                username: str = "", headers: dict[str, str] | None = None) -> Response:
    # Login CSRF: a double-submit token, since there is no session yet to hold one.
    token = secrets.token_urlsafe(32)
    response = desk(request).templates.TemplateResponse(
        request, "login.html", {"next": next, "error": error, "login_csrf": token, "username": username},
        status_code=status, headers=headers,
    )
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=secure_cookies(request),
                        max_age=3600, path="/login")
    return response


@router.post("/login", include_in_schema=False)
async def login(
    request: Request, username: str = Form(""), password: str = Form(""), csrf_token: str = Form(""),
    next: str = Form("/"),
) -> Response:
    state = desk(request)
    address = client_address(request)
    username = username.strip().lower()
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected.encode(), csrf_token.encode()):
        return _login_form(request, next=safe_next(next), status=403, username=username,
                           error="The sign-in form expired. Please try again.")
    try:
        result = await run_in_threadpool(state.accounts.sign_in, username, password, address=address,
                                         user_agent=request.headers.get("user-agent", "")[:300])
    except DeskBusy:
        return _login_form(request, next=safe_next(next), status=503, username=username,
                           headers={"Retry-After": "5"}, error="The desk is busy signing people in. Try again.")
    if result.blocked:
        minutes = state.settings.login_window_minutes
        return _login_form(request, next=safe_next(next), status=429, username=username,
                           headers={"Retry-After": str(minutes * 60)},
                           error=f"Too many failed sign-ins. Try again in {count(minutes, 'minute')}.")
    if result.session is None:
        return _login_form(request, next=safe_next(next), status=401, username=username,
                           error="Wrong username or password.")
    new = result.session
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:  # a new sign-in replaces whatever session this browser held: no session outlives its cookie
        await run_in_threadpool(state.accounts.revoke_session, previous)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(SESSION_COOKIE, new.token, httponly=True, samesite="lax", secure=secure_cookies(request),
                        max_age=state.settings.session_max_hours * 3600, path="/")
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    state = desk(request)
    principal = await require_user(request)  # CSRF-checked: nobody signs a guard out from another site
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await run_in_threadpool(state.accounts.revoke_session, cookie)
    await run_in_threadpool(record_for, state.db, AuditAction.SIGN_OUT, principal,
                            store_id=_only_store(principal), address=client_address(request))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _only_store(principal: Principal) -> str | None:
    return single_store(principal.stores)
