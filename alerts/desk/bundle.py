"""The evidence bundle: one alert's evidence and record as a zip a manager can hand over (``/alerts/{id}/bundle.zip``).

    video.mp4                the alert's video (if it has one and it is still on disk)
    snapshots/<name>.jpg     the alert's snapshot and the snapshots of its clips
    alert.json               the alert row, every column
    clips.json               the clip_results rows of its clips
    audit.json               every audit entry that targets this alert, oldest first
    manifest.sha256          "<sha256>  <name>" for every other file, the format ``sha256sum -c`` checks

The zip is written to a temporary file (media stored as they are, JSON deflated), each file streamed in chunks
and hashed on the way, so a large video is never held in memory; the response streams that file and deletes
it afterwards.  A file deleted by the janitor while the bundle is built is left out (and the manifest only
lists what is in the zip).  Paths come from the database and must resolve inside the evidence directory, as
for every evidence response.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from alerts.desk.audit import AuditAction, record_for
from alerts.desk.evidence import contained
from alerts.desk.roles import Principal
from alerts.desk.web_auth import Forbidden, client_address, desk, refuse_cross_site
from common.db import Database
from common.models import Alert, AuditEntry, ClipResult
from common.schemas import utc_now

MANIFEST = "manifest.sha256"
CHUNK = 1024 * 1024


def _row(obj: Any) -> dict[str, Any]:
    """Every column of an ORM row, as JSON-safe values."""
    data: dict[str, Any] = {}
    for column in obj.__table__.columns:
        value = getattr(obj, column.key)
        data[column.key] = value.isoformat() if isinstance(value, datetime) else value
    return data


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False) + "\n").encode()


def bundle_records(db: Database, alert_id: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]],
                                                          list[str | None]]:
    """(alert, its clips, the audit entries targeting it, its media paths: video first) of one alert.  The
    caller has checked that the person may see it."""
    with db.sessions() as session:
        alert = session.scalar(select(Alert).where(Alert.alert_id == alert_id))
        if alert is None:
            raise LookupError(alert_id)
        clip_ids = list(alert.clip_ids or ())
        clips = list(session.scalars(
            select(ClipResult).where(ClipResult.clip_id.in_(clip_ids)).order_by(ClipResult.captured_at)
        )) if clip_ids else []
        audit = list(session.scalars(select(AuditEntry).where(AuditEntry.target == alert_id).order_by(AuditEntry.id)))
        media = [alert.evidence_video_path, alert.evidence_path, *(c.evidence_path for c in clips)]
        return _row(alert), [_row(c) for c in clips], [_row(a) for a in audit], media


class _HashingZip:
    """A zip being written, recording the sha256 of every member for the manifest."""

    def __init__(self, target: Path) -> None:
        self.zip = zipfile.ZipFile(target, "w", allowZip64=True)
        self.hashes: list[tuple[str, str]] = []

    def add_bytes(self, name: str, data: bytes) -> None:
        self.zip.writestr(zipfile.ZipInfo(name, date_time=_now_tuple()), data, compress_type=zipfile.ZIP_DEFLATED)
        self.hashes.append((hashlib.sha256(data).hexdigest(), name))

    def add_file(self, name: str, path: Path) -> bool:
        """Copy ``path`` in chunks (stored: media are compressed already); False when it vanished."""
        try:
            source = path.open("rb")
        except FileNotFoundError:
            return False
        digest = hashlib.sha256()
        with source, self.zip.open(zipfile.ZipInfo(name, date_time=_now_tuple()), "w", force_zip64=True) as out:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
        self.hashes.append((digest.hexdigest(), name))
        return True

    def close(self) -> None:
        manifest = "".join(f"{digest}  {name}\n" for digest, name in self.hashes)
        self.zip.writestr(zipfile.ZipInfo(MANIFEST, date_time=_now_tuple()), manifest,
                          compress_type=zipfile.ZIP_DEFLATED)
        self.zip.close()


def _now_tuple() -> tuple[int, int, int, int, int, int]:
    now = utc_now()
    return (now.year, now.month, now.day, now.hour, now.minute, now.second)


def _media_names(paths: Iterable[str | None], root: Path) -> list[tuple[str, Path]]:
    """(name in the zip, real path) of the media on disk inside ``root``: the first is the video when the
    alert has one; each file once, and no two members with the same name."""
    seen: set[Path] = set()
    names: set[str] = set()
    out: list[tuple[str, Path]] = []
    paths = list(paths)
    for index, stored in enumerate(paths):
        path = contained(stored, root)
        if path is None or path in seen:
            continue
        seen.add(path)
        name = f"video{path.suffix}" if index == 0 else f"snapshots/{path.name}"
        base, n = name, 1
        while name in names:
            n += 1
            name = f"{Path(base).parent}/{Path(base).stem}-{n}{Path(base).suffix}"
        names.add(name)
        out.append((name, path))
    return out


def build_bundle(db: Database, alert_id: str, evidence_dir: Path, *, directory: Path | None = None) -> Path:
    """Write the bundle of ``alert_id`` to a new temporary file and return its path (the caller deletes it)."""
    alert, clips, audit, media = bundle_records(db, alert_id)
    handle = tempfile.NamedTemporaryFile(prefix=f"bundle-{alert_id[:40]}-", suffix=".zip", dir=directory,
                                         delete=False)
    handle.close()
    target = Path(handle.name)
    try:
        archive = _HashingZip(target)
        try:
            for name, path in _media_names(media, Path(evidence_dir)):
                archive.add_file(name, path)
            archive.add_bytes("alert.json", _json(alert))
            archive.add_bytes("clips.json", _json(clips))
            archive.add_bytes("audit.json", _json(audit))
        finally:
            archive.close()
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


async def bundle_response(request: Request, principal: Principal, alert_id: str) -> StreamingResponse:
    """The evidence bundle of one alert (``alerts.desk.bundle``), for managers and admins; audited as a download
    with detail ``bundle`` once it is built.  The temporary zip is unlinked as soon as it is open, so it leaves
    nothing behind however the download ends (a client that hangs up included)."""
    state = desk(request)
    if not principal.can_download_evidence:
        raise Forbidden("only a manager or an admin can download evidence")
    refuse_cross_site(request)
    view = await run_in_threadpool(state.queries.alert, principal, alert_id)  # AlertNotFound → 404
    path = await run_in_threadpool(build_bundle, state.db, alert_id, Path(state.evidence_dir))
    try:
        handle = path.open("rb")
    finally:
        path.unlink(missing_ok=True)
    try:
        size = os.fstat(handle.fileno()).st_size
        await run_in_threadpool(record_for, state.db, AuditAction.EVIDENCE_DOWNLOADED, principal,
                                store_id=view.store_id, target_id=alert_id, address=client_address(request),
                                detail="bundle")
    except BaseException:
        handle.close()
        raise

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while chunk := await run_in_threadpool(handle.read, 1024 * 1024):
                yield chunk
        finally:
            handle.close()

    return StreamingResponse(chunks(), media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="{quote(alert_id)}-evidence.zip"',
        "Content-Length": str(size), "Cache-Control": "private, no-store",
    })
