"""Serving an alert's evidence: always by alert id, through the store check, never by a path from the client.

The path comes from the database row of an alert the person may see, and must still lie inside the
configured evidence directory once resolved (a row pointing elsewhere, or a symlink out of it, is refused as
if the file were missing).  Every view and download is audited: once per playback of a video, not once per
byte range a player asks for while it seeks (only a request from the file's start is a view).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from fastapi import Request
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from alerts.desk.audit import AuditAction, record_for
from alerts.desk.queries import AlertNotFound
from alerts.desk.roles import Principal
from alerts.desk.web_auth import Forbidden, client_address, desk, refuse_cross_site

log = logging.getLogger("aislewatch.desk.evidence")

EvidenceKind = Literal["snapshot", "video"]
_MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".mp4": "video/mp4",
                ".webm": "video/webm"}


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
    if download:
        refuse_cross_site(request)
    snapshot, video, store_id = await run_in_threadpool(state.queries.evidence_paths, principal, alert_id)
    path = contained(snapshot if kind == "snapshot" else video, Path(state.evidence_dir))
    if path is None:
        raise AlertNotFound(alert_id)
    action = AuditAction.EVIDENCE_DOWNLOADED if download else AuditAction.EVIDENCE_VIEWED
    # A video player fetches a file in many Range requests: one audit row per viewing, not one per chunk.
    # A viewing is the first request of this person for this file in VIEWING_S, whatever range it asks for
    # (keying on "starts at byte 0" would let `Range: bytes=1-` fetch a file unaudited).
    viewings: Viewings = request.app.state.viewings
    if download or viewings.first(principal.user_id, alert_id, kind):
        await run_in_threadpool(record_for, state.db, action, principal, store_id=store_id, target_id=alert_id,
                                address=client_address(request), detail=kind)
    # FileResponse answers a Range request with 206 and the bytes asked for: what lets a <video> seek.
    media_type = _MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")
    filename = f"{alert_id}-{kind}{path.suffix}"
    return FileResponse(
        path, media_type=media_type, filename=filename if download else None,
        content_disposition_type="attachment" if download else "inline",
        headers={"Cache-Control": "private, no-store"},
    )


VIEWING_S = 600.0


class Viewings:
    """Who fetched which evidence file lately, per app (one per replica: a viewing that goes on on another
    replica is audited there too, once)."""

    def __init__(self, window_s: float = VIEWING_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.clock = clock
        self._seen: dict[tuple[int, str, str], float] = {}
        self._lock = threading.Lock()

    def first(self, user_id: int, alert_id: str, kind: str) -> bool:
        now = self.clock()
        key = (user_id, alert_id, kind)
        with self._lock:
            if len(self._seen) > 10_000:  # forget old viewings rather than grow without bound
                self._seen = {k: t for k, t in self._seen.items() if now - t < self.window_s}
            last = self._seen.get(key)
            self._seen[key] = now
        return last is None or now - last >= self.window_s

