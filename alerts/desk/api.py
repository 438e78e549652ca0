"""The desk's JSON API and the live stream, for the page's script and for integrations (API tokens).

Same principal, same store filter, same actions as the pages: an alert outside the caller's stores is 404,
a stale version is 409 with the alert as it stands, a role that may not act is 403.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from alerts.desk import audit
from alerts.desk.feed import REPLAY_BATCH, FeedEvent
from alerts.desk.queries import ActionNotAllowed, AlertFilter, AlertView
from alerts.desk.roles import Principal
from alerts.desk.web_auth import SESSION_COOKIE, Forbidden, _bearer, client_address, desk, require_user
from common.schemas import Verdict

router = APIRouter(prefix="/api", dependencies=[Depends(require_user)])

MAX_ID = 2**62
_EVENT_ID = re.compile(r"[0-9]{1,18}")
REVALIDATE_S = 30.0
"""How often an open stream re-checks its session: a revoked or expired one is disconnected."""


class Acknowledgement(BaseModel):
    verdict: Verdict
    version: int = Field(ge=1)
    note: str | None = Field(None, max_length=2000)


class VersionOnly(BaseModel):
    version: int = Field(ge=1)


@router.get("/me")
async def me(principal: Principal = Depends(require_user)) -> dict[str, Any]:
    return {"username": principal.username, "role": principal.role.value, "stores": sorted(principal.stores),
            "all_stores": principal.store_filter() is None}


@router.get("/alerts")
async def list_alerts(
    request: Request, store: str = "", camera: str = "", kind: str = "", status: str = "", limit: int = 100,
    before: int | None = Query(None, ge=0, le=MAX_ID), principal: Principal = Depends(require_user),
) -> dict[str, Any]:
    state = desk(request)
    where = AlertFilter(store or None, camera or None, kind or None, status or None)
    views = await run_in_threadpool(state.queries.list_alerts, principal, where, limit=limit, before_id=before)
    return {"alerts": [v.as_json() for v in views]}


@router.get("/alerts/{alert_id}")
async def get_alert(request: Request, alert_id: str, principal: Principal = Depends(require_user)) -> dict[str, Any]:
    state = desk(request)

    def load() -> dict[str, Any]:
        view = state.queries.alert(principal, alert_id)
        points = state.queries.clip_timeline(view)
        return {"alert": view.as_json(),
                "clips": [{"captured_at": p.captured_at.isoformat(), "probability": p.probability,
                           "threshold": p.threshold, "in_alert": p.in_alert} for p in points]}

    return await run_in_threadpool(load)


@router.post("/alerts/{alert_id}/acknowledge")
async def acknowledge(request: Request, alert_id: str, body: Acknowledgement,
                      principal: Principal = Depends(require_user)) -> dict[str, Any]:
    state = desk(request)
    return await _act(lambda: state.queries.acknowledge(
        principal, alert_id, body.verdict, version=body.version, note=body.note, address=client_address(request)))


@router.post("/alerts/{alert_id}/reopen")
async def reopen(request: Request, alert_id: str, body: VersionOnly,
                 principal: Principal = Depends(require_user)) -> dict[str, Any]:
    state = desk(request)
    return await _act(lambda: state.queries.reopen(principal, alert_id, version=body.version,
                                                   address=client_address(request)))


@router.post("/alerts/{alert_id}/resolve")
async def resolve(request: Request, alert_id: str, body: VersionOnly,
                  principal: Principal = Depends(require_user)) -> dict[str, Any]:
    state = desk(request)
    return await _act(lambda: state.queries.resolve(principal, alert_id, version=body.version,
                                                    address=client_address(request)))


@router.post("/alerts/{alert_id}/hold")
async def hold(request: Request, alert_id: str, body: VersionOnly,
               principal: Principal = Depends(require_user)) -> dict[str, Any]:
    state = desk(request)
    return await _act(lambda: state.queries.hold(principal, alert_id, version=body.version,
                                                 address=client_address(request)))


@router.post("/alerts/{alert_id}/release")
async def release(request: Request, alert_id: str, body: VersionOnly,
                  principal: Principal = Depends(require_user)) -> dict[str, Any]:
    state = desk(request)
    return await _act(lambda: state.queries.release(principal, alert_id, version=body.version,
                                                    address=client_address(request)))


async def _act(action: Any) -> dict[str, Any]:
    try:
        view: AlertView = await run_in_threadpool(action)
    except ActionNotAllowed as refused:
        raise Forbidden(str(refused)) from None
    return {"alert": view.as_json()}


@router.get("/stores")
async def stores(request: Request, principal: Principal = Depends(require_user)) -> dict[str, Any]:
    counts = await run_in_threadpool(desk(request).queries.store_counts, principal)
    return {"stores": [{"id": c.store_id, "name": c.name, "open_alerts": c.open_alerts} for c in counts]}


@router.get("/audit")
async def audit_log(request: Request, action: str = "", before: int | None = None, limit: int = 200,
                    principal: Principal = Depends(require_user)) -> dict[str, Any]:
    if not principal.can_view_audit:
        raise Forbidden("only managers and admins see the audit log")
    state = desk(request)
    rows = await run_in_threadpool(lambda: audit.entries(state.db, principal, limit=min(limit, 1000),
                                                         before_id=before, action=action or None))
    return {"entries": [{"id": r.id, "at": r.at.isoformat(), "action": r.action, "success": r.success,
                         "username": r.username, "role": r.role, "store_id": r.store_id, "target": r.target,
                         "address": r.address, "detail": r.detail} for r in rows]}


@router.get("/stream")
async def stream(request: Request, after: int | None = Query(None, ge=0, le=MAX_ID),
                 principal: Principal = Depends(require_user)) -> EventSourceResponse:
    """Server-sent events: every alert event in the caller's stores after ``Last-Event-ID`` (a reconnect) or
    ``after`` (the id the page was rendered at), then live ones."""
    header = request.headers.get("last-event-id", "")
    last = int(header) if _EVENT_ID.fullmatch(header) else after
    # send_timeout: a client that stopped reading is dropped instead of holding its stream forever.
    return EventSourceResponse(_events(request, principal, last), ping=15, send_timeout=30,
                               headers={"Cache-Control": "no-store"})


async def _events(request: Request, principal: Principal, last: int | None) -> AsyncIterator[dict[str, str]]:
    state = desk(request)
    feed = state.feed
    stores = principal.store_filter()
    subscription = feed.subscribe(stores)  # before the replay: nothing falls between the two
    sent: set[int] = set()
    try:
        if last is not None:
            position = feed.resume_from(last)
            while True:  # page through a long absence instead of stopping at one batch
                batch = await run_in_threadpool(feed.replay, stores, position)
                for missed in batch:
                    sent.add(missed.id)
                    yield missed.sse()
                if len(batch) < REPLAY_BATCH:
                    break
                position = batch[-1].id
        yield {"event": "ready", "data": "{}"}
        revalidate_at = time.monotonic() + REVALIDATE_S
        while True:
            try:
                # Wake for the session check on time even when no event comes: a revoked session must not
                # keep a quiet stream open past REVALIDATE_S.
                wait_s = min(5.0, max(0.01, revalidate_at - time.monotonic()))
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can lose an item that arrives as it
                # times out (CPython gh-86296).
                async with asyncio.timeout(wait_s):
                    event: FeedEvent | None = await subscription.queue.get()
                if event is None:
                    return  # the feed is stopping, or this page fell too far behind: it reconnects and replays
            except TimeoutError:
                event = None  # quiet: only the session check below
            if time.monotonic() >= revalidate_at:
                if not await _still_signed_in(request, principal):
                    return
                revalidate_at = time.monotonic() + REVALIDATE_S
            # No "id <= last" filter: an event that committed late has a lower id than ones already sent.
            if event is None or event.id in sent:
                continue
            yield event.sse()
    finally:
        feed.unsubscribe(subscription)


async def _still_signed_in(request: Request, principal: Principal) -> bool:
    if principal.via_token:  # a revoked token, or its user disabled, ends the stream like a session does
        token = _bearer(request)
        current = await run_in_threadpool(desk(request).accounts.token_principal, token) if token else None
        return current is not None and current.user_id == principal.user_id
    cookie = request.cookies.get(SESSION_COOKIE)
    session = await run_in_threadpool(desk(request).accounts.session, cookie) if cookie else None
    return session is not None and session.principal.user_id == principal.user_id
