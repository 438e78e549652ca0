"""Serving an alert's evidence: always by alert id, through the store check, never by a path from the client.

The path comes from the database row of an alert the person may see, and must still lie inside the
configured evidence directory once resolved (a row pointing elsewhere, or a symlink out of it, is refused as
if the file were missing).  Every view and download is audited.
"""

from __future__ import annotations

import logging
import mimetypes
from pathlib import Path
from typing import Literal

from fastapi import Request
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from alerts.desk.audit import AuditAction, record_for
from alerts.desk.queries import AlertNotFound
from alerts.desk.roles import Principal
from alerts.desk.web_auth import Forbidden, client_address, desk

log = logging.getLogger("aislewatch.desk.evidence")

EvidenceKind = Literal["snapshot", "video"]


def contained(path: str | None, root: Path) -> Path | None:
    """``path`` resolved, if it is an existing file inside ``root``; None otherwise."""
    if not path:
        return None
    try:
        resolved = Path(path).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not resolved.is_file() or not resolved.is_relative_to(root.resolve()):
        if resolved.is_file():
            log.warning("evidence %s is outside the evidence directory %s; not served", resolved, root)
        return None
    return resolved


async def evidence_response(
    request: Request, principal: Principal, alert_id: str, kind: EvidenceKind, *, download: bool = False
) -> FileResponse:
    state = desk(request)
    if download and not principal.can_download_evidence:
        raise Forbidden("only a manager or an admin can download evidence")
    snapshot, video = await run_in_threadpool(state.queries.evidence_paths, principal, alert_id)
    view = await run_in_threadpool(state.queries.alert, principal, alert_id)
    path = contained(snapshot if kind == "snapshot" else video, Path(state.evidence_dir))
    if path is None:
        raise AlertNotFound(alert_id)
    action = AuditAction.EVIDENCE_DOWNLOADED if download else AuditAction.EVIDENCE_VIEWED
    await run_in_threadpool(record_for, state.db, action, principal, store_id=view.store_id, target_id=alert_id,
                            address=client_address(request), detail=kind)
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    filename = f"{alert_id}-{kind}{path.suffix}"
    return FileResponse(
        path, media_type=media_type, filename=filename if download else None,
        content_disposition_type="attachment" if download else "inline",
        headers={"Cache-Control": "private, no-store"},
    )
