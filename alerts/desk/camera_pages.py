"""A camera's page: its recent clip probabilities, the thefts marked as missed on it, and (managers and admins)
the form that marks another one (``alerts.desk.missed``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from alerts.desk import missed
from alerts.desk.pages import render
from alerts.desk.roles import Principal
from alerts.desk.timeline import timeline_chart
from alerts.desk.web_auth import Forbidden, client_address, desk, require_user

router = APIRouter(dependencies=[Depends(require_user)], include_in_schema=False)

NOT_FOUND = "There is no such camera, or it is not one of your stores."
FORM_TIME = "%Y-%m-%dT%H:%M:%S"


def _form_time(text: str) -> datetime:
    """A ``datetime-local`` value (seconds optional), read as UTC like every time on the desk."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise missed.MarkRefused(f"{text!r} is not a time; use YYYY-MM-DDTHH:MM:SS (UTC).") from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


async def _camera_page(request: Request, principal: Principal, camera_id: str, *, status: int = 200,
                       problem: str = "", form: dict[str, str] | None = None) -> Response:
    state = desk(request)

    def load() -> dict[str, Any]:
        try:
            view = missed.camera(state.db, principal, camera_id)
        except missed.CameraNotFound:
            raise HTTPException(404, NOT_FOUND) from None
        points = missed.recent_clips(state.db, camera_id)
        newest = points[-1].captured_at if points else datetime.now(UTC)
        default = {"start": (newest - timedelta(seconds=10)).strftime(FORM_TIME), "end": newest.strftime(FORM_TIME),
                   "note": ""}
        return {"camera": view, "chart": timeline_chart(points), "clips": len(points),
                "marks": missed.missed_thefts(state.db, camera_id), "form": form or default}

    return render(request, "camera.html", principal, status=status, problem=problem, **await run_in_threadpool(load))


@router.get("/cameras/{camera_id}")
async def camera_page(request: Request, camera_id: str, principal: Principal = Depends(require_user)) -> Response:
    return await _camera_page(request, principal, camera_id)


@router.post("/cameras/{camera_id}/missed")
async def mark_missed(
    request: Request, camera_id: str, start: str = Form(...), end: str = Form(...), note: str = Form(""),
    principal: Principal = Depends(require_user),
) -> Response:
    state = desk(request)
    if not principal.can_mark_missed_theft:
        raise Forbidden("only a manager or an admin can mark a missed theft")
    form = {"start": start, "end": end, "note": note}
    try:
        at, until = _form_time(start), _form_time(end)
        await run_in_threadpool(lambda: missed.mark_missed_theft(
            state.db, principal, camera_id, at, until, evidence_dir=state.evidence_dir, note=note,
            address=client_address(request)))
    except missed.CameraNotFound:
        raise HTTPException(404, NOT_FOUND) from None
    except missed.MarkRefused as refused:
        return await _camera_page(request, principal, camera_id, status=422, problem=str(refused), form=form)
    return RedirectResponse(f"/cameras/{camera_id}?marked=1", status_code=303)
