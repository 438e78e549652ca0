"""The desk's FastAPI application: routers, error pages, security headers, the live feed's poller.

``create_app`` takes the settings and an open database; it holds no state of its own beyond the feed's
in-memory subscriptions, so any number of replicas can serve one chain behind a load balancer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alerts.desk import api, camera_pages, pages, web_auth
from alerts.desk.accounts import Accounts
from alerts.desk.evidence import Viewings
from alerts.desk.feed import Feed
from alerts.desk.queries import ActionConflict, AlertNotFound, DeskQueries
from alerts.desk.web_auth import CsrfRefused, DeskState, Forbidden, SignInRequired, sign_in_redirect
from common.db import Database
from common.settings import Settings

HERE = Path(__file__).resolve().parent

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    # No inline script or style anywhere: the page's script and stylesheet are static files.
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; script-src 'self'; "
     b"connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
]


class SecurityHeaders:
    """Pure ASGI (not BaseHTTPMiddleware), so the live stream's responses pass through unbuffered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        extra = list(SECURITY_HEADERS)
        if scope["path"].startswith("/api/"):
            extra.append((b"cache-control", b"no-store"))  # answers are per user: no shared cache keeps them

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"cache-control"
                           or not scope["path"].startswith("/api/")]
                message["headers"] = [*headers, *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", "")


def create_app(settings: Settings, db: Database) -> FastAPI:
    queries = DeskQueries(db)
    feed = Feed(queries, poll_s=settings.desk.feed_poll_s)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["verdict_label"] = _verdict_label
    templates.env.globals["kind_label"] = _kind_label
    templates.env.globals["event_label"] = _event_label

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(feed.run(), name="desk-feed")
        try:
            yield
        finally:
            feed.stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(title="AisleWatch security desk", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.desk = DeskState(settings=settings.desk, db=db, accounts=Accounts.from_settings(db, settings),
                               queries=queries, feed=feed, evidence_dir=settings.service.evidence_dir,
                               templates=templates, videos=settings.evidence.video)
    app.state.viewings = Viewings()
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(web_auth.router)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(camera_pages.router)

    @app.api_route("/livez", methods=["GET", "HEAD"], include_in_schema=False)
    async def livez() -> JSONResponse:
        """Liveness: the process answers.  Not the database: a database failover must not make an
        orchestrator restart every desk replica at once (that is what /healthz, readiness, reports)."""
        return JSONResponse({"alive": True})

    @app.api_route("/healthz", methods=["GET", "HEAD"], include_in_schema=False)
    async def healthz() -> JSONResponse:
        try:
            await run_in_threadpool(queries.last_event_id, frozenset())
            database = True
        except Exception:
            database = False
        status = {"database": database, "feed": feed.healthy()}
        return JSONResponse(status, status_code=200 if all(status.values()) else 503)

    _install_error_handlers(app, templates)
    return app


def _install_error_handlers(app: FastAPI, templates: Jinja2Templates) -> None:
    def error(request: Request, status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> Response:
        if _wants_json(request):
            return JSONResponse({"error": title, "detail": detail}, status_code=status, headers=headers)
        principal = getattr(request.state, "principal", None)
        return templates.TemplateResponse(request, "error.html", {"title": title, "detail": detail, "user": principal,
                                          "csrf_token": web_auth.csrf_token(request)},
                                          status_code=status, headers=headers)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, _exc: SignInRequired) -> Response:
        if _wants_json(request):
            return JSONResponse({"error": "sign-in required"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        return sign_in_redirect(request)

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, _exc: CsrfRefused) -> Response:
        return error(request, 403, "Refused", "This request did not carry the page's security token "
                     "(CSRF). Reload the page and try again.")

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        return error(request, 403, "Not allowed", str(exc) or "Your role does not allow this.")

    @app.exception_handler(AlertNotFound)
    async def _not_found(request: Request, _exc: AlertNotFound) -> Response:
        return error(request, 404, "Not found", "There is no such alert, or it is not one of your stores.")

    @app.exception_handler(ActionConflict)
    async def _conflict(_request: Request, exc: ActionConflict) -> Response:
        return JSONResponse({"error": "conflict", "detail": exc.message, "actor": exc.actor, "event": exc.event,
                             "alert": exc.current.as_json()}, status_code=409)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        title = "Not found" if exc.status_code == 404 else "Error"
        return error(request, exc.status_code, title, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        if _wants_json(request):
            return JSONResponse({"error": "invalid request", "detail": _plain(exc.errors())}, status_code=422)
        return error(request, 422, "Invalid request", "The form was incomplete. Go back and try again.")


def _plain(errors: Any) -> list[dict[str, Any]]:
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in errors]


def _verdict_label(verdict: str | None) -> str:
    from common.schemas import Verdict

    return Verdict.label_of(verdict)


_EVENT_LABELS = {"raised": "reached the desk", "acknowledged": "acknowledged", "reopened": "reopened", "resolved": "resolved",
                 "evidence_ready": "evidence video ready", "evidence_held": "evidence put on hold",
                 "evidence_released": "hold on the evidence released"}


def _event_label(event: str) -> str:
    return _EVENT_LABELS.get(event, event.replace("_", " "))


def _kind_label(kind: str) -> str:
    from common.schemas import AlertKind

    return AlertKind.label_of(kind)
