"""The desk's HTML pages: the live feed, an alert with its evidence and verdict form, the audit log, users.

Each route depends on ``require_user`` (through the router), reads only through ``DeskQueries`` with the
signed-in principal, and renders a Jinja2 template.  Forms post back here and redirect (303) on success.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from alerts.desk import audit
from alerts.desk.bundle import bundle_response
from alerts.desk.evidence import evidence_response
from alerts.desk.queries import ActionConflict, ActionNotAllowed, AlertFilter, AlertView
from alerts.desk.roles import Principal
from alerts.desk.timeline import timeline_chart
from alerts.desk.web_auth import Forbidden, client_address, csrf_token, desk, require_user
from common.schemas import AlertKind, AlertStatus, Verdict

router = APIRouter(dependencies=[Depends(require_user)], include_in_schema=False)


def render(request: Request, template: str, principal: Principal, status: int = 200, **context: Any) -> Response:
    state = desk(request)
    base = {"user": principal, "csrf_token": csrf_token(request), "sound": state.settings.sound, "videos": state.videos,
            "verdicts": list(Verdict), "kinds": list(AlertKind), "statuses": list(AlertStatus)}
    return state.templates.TemplateResponse(request, template, base | context, status_code=status,
                                            headers={"Cache-Control": "no-store"})


def _filter(store: str, camera: str, kind: str, status: str) -> AlertFilter:
    return AlertFilter(store_id=store or None, camera_id=camera or None, kind=kind or None, status=status or None)


@router.get("/")
async def feed_page(
    request: Request, store: str = "", camera: str = "", kind: str = "", status: str = "",
    principal: Principal = Depends(require_user),
) -> Response:
    state = desk(request)
    where = _filter(store, camera, kind, status)

    def load() -> dict[str, Any]:
        # The position first: an alert raised (or committed late) while the list loads then arrives through the
        # stream too; the page applies it by alert id, so one already listed is not shown twice.
        last_event = state.feed.resume_from(state.queries.last_event_id(principal.store_filter()))
        return {
            "last_event_id": last_event,
            "alerts": state.queries.list_alerts(principal, where),
            "stores": state.queries.store_counts(principal),
            "cameras": state.queries.cameras(principal),
        }

    return render(request, "feed.html", principal, where=where, **await run_in_threadpool(load))


@router.get("/alerts/{alert_id}")
async def alert_page(request: Request, alert_id: str, principal: Principal = Depends(require_user)) -> Response:
    return await _alert_page(request, principal, alert_id)


async def _alert_page(request: Request, principal: Principal, alert_id: str, *, status: int = 200,
                      problem: str = "", view: AlertView | None = None) -> Response:
    state = desk(request)

    def load() -> dict[str, Any]:
        # The event id first: a video made while the page loads then arrives through the stream too.
        last_event = state.queries.last_event_id(principal.store_filter())
        alert = view or state.queries.alert(principal, alert_id)  # AlertNotFound → 404
        points = state.queries.clip_timeline(alert)
        return {"alert": alert, "chart": timeline_chart(points), "clips": len(points), "last_event_id": last_event,
                "history": state.queries.history(principal, alert_id)}

    return render(request, "alert.html", principal, status=status, problem=problem, **await run_in_threadpool(load))


@router.post("/alerts/{alert_id}/acknowledge")
async def acknowledge(
    request: Request, alert_id: str, verdict: str = Form(...), note: str = Form(""), version: int = Form(...),
    principal: Principal = Depends(require_user),
) -> Response:
    state = desk(request)
    try:
        choice = Verdict(verdict)
    except ValueError:
        return await _alert_page(request, principal, alert_id, status=422, problem="Choose a verdict.")
    return await _act(request, principal, alert_id, lambda: state.queries.acknowledge(
        principal, alert_id, choice, version=version, note=note, address=client_address(request)))


@router.post("/alerts/{alert_id}/reopen")
async def reopen(request: Request, alert_id: str, version: int = Form(...),
                 principal: Principal = Depends(require_user)) -> Response:
    state = desk(request)
    return await _act(request, principal, alert_id, lambda: state.queries.reopen(
        principal, alert_id, version=version, address=client_address(request)))


@router.post("/alerts/{alert_id}/resolve")
async def resolve(request: Request, alert_id: str, version: int = Form(...),
                  principal: Principal = Depends(require_user)) -> Response:
    state = desk(request)
    return await _act(request, principal, alert_id, lambda: state.queries.resolve(
        principal, alert_id, version=version, address=client_address(request)))


@router.post("/alerts/{alert_id}/hold")
async def hold(request: Request, alert_id: str, version: int = Form(...),
               principal: Principal = Depends(require_user)) -> Response:
    state = desk(request)
    return await _act(request, principal, alert_id, lambda: state.queries.hold(
        principal, alert_id, version=version, address=client_address(request)))


@router.post("/alerts/{alert_id}/release")
async def release(request: Request, alert_id: str, version: int = Form(...),
                  principal: Principal = Depends(require_user)) -> Response:
    state = desk(request)
    return await _act(request, principal, alert_id, lambda: state.queries.release(
        principal, alert_id, version=version, address=client_address(request)))


async def _act(request: Request, principal: Principal, alert_id: str, action: Any) -> Response:
    try:
        await run_in_threadpool(action)
    except ActionConflict as conflict:
        return await _alert_page(request, principal, alert_id, status=409, view=conflict.current,
                                 problem=conflict.message)
    except ActionNotAllowed as refused:
        return await _alert_page(request, principal, alert_id, status=403, problem=str(refused))
    return RedirectResponse(f"/alerts/{alert_id}", status_code=303)


@router.get("/alerts/{alert_id}/snapshot")
async def snapshot(request: Request, alert_id: str, principal: Principal = Depends(require_user)) -> Response:
    return await evidence_response(request, principal, alert_id, "snapshot")


@router.get("/alerts/{alert_id}/snapshot/download")
async def snapshot_download(request: Request, alert_id: str,
                            principal: Principal = Depends(require_user)) -> Response:
    return await evidence_response(request, principal, alert_id, "snapshot", download=True)


@router.get("/alerts/{alert_id}/video")
async def video(request: Request, alert_id: str, principal: Principal = Depends(require_user)) -> Response:
    return await evidence_response(request, principal, alert_id, "video")


@router.get("/alerts/{alert_id}/video/download")
async def video_download(request: Request, alert_id: str, principal: Principal = Depends(require_user)) -> Response:
    return await evidence_response(request, principal, alert_id, "video", download=True)


@router.get("/alerts/{alert_id}/bundle.zip")
async def bundle(request: Request, alert_id: str, principal: Principal = Depends(require_user)) -> Response:
    return await bundle_response(request, principal, alert_id)


@router.get("/audit")
async def audit_page(request: Request, action: str = "", before: int | None = None,
                     principal: Principal = Depends(require_user)) -> Response:
    if not principal.can_view_audit:
        raise Forbidden("only managers and admins see the audit log")
    state = desk(request)
    rows = await run_in_threadpool(
        lambda: audit.entries(state.db, principal, limit=200, before_id=before, action=action or None))
    return render(request, "audit.html", principal, rows=rows, action=action,
                  actions=[a.value for a in audit.AuditAction])


@router.get("/users")
async def users_page(request: Request, principal: Principal = Depends(require_user)) -> Response:
    if not principal.can_manage_users:
        raise Forbidden("only admins see the users")
    state = desk(request)
    users = await run_in_threadpool(state.accounts.list_users)
    return render(request, "users.html", principal, users=users)
