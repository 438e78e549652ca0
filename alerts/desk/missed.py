"""Missed thefts: a manager marks on a camera's timeline a time span the model did not alert on, and its video is
cut from the camera's motion segments at once (packet copy, no re-encoding) into
``<evidence_dir>/<camera>/<day>/missed/<id>.mp4``.  Motion segments that raised nothing are kept only
``evidence.keep_unflagged`` minutes, so the video is cut when the mark is made, or the mark is refused.
``aislewatch feedback export`` turns each mark into a positive training example.

Reads are scoped like the alerts: a camera of another store is not found, exactly like an unknown one.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from alerts.desk.audit import AuditAction, record_for
from alerts.desk.queries import ClipPoint
from alerts.desk.roles import Principal
from common.db import Database
from common.evidence import cut_video, missed_video_path, segments_overlapping
from common.models import Camera, ClipResult, MissedTheft, Store
from common.schemas import utc_now

log = logging.getLogger("aislewatch.desk.missed")

MAX_SPAN = timedelta(minutes=10)
FUTURE_SLACK = timedelta(minutes=1)
NOTE_MAX_CHARS = 2000


class CameraNotFound(LookupError):
    """No such camera, or not one of the stores this person sees (the same answer, on purpose)."""


class MarkRefused(ValueError):
    """The mark cannot be made as given (bad span, or no motion video left to cut); the message says why."""


class MarkNotAllowed(PermissionError):
    """This role may not mark missed thefts (a guard)."""


@dataclass(frozen=True)
class CameraView:
    camera_id: str
    name: str
    store_id: str
    store_name: str


@dataclass(frozen=True)
class MissedTheftView:
    id: int
    camera_id: str
    start_at: datetime
    end_at: datetime
    marked_by: str
    marked_at: datetime
    note: str | None
    video_path: str | None


def _view(row: MissedTheft) -> MissedTheftView:
    return MissedTheftView(row.id, row.camera_id, row.start_at, row.end_at, row.marked_by, row.marked_at, row.note,
                           row.video_path)


def camera(db: Database, principal: Principal, camera_id: str) -> CameraView:
    """The camera, if this person sees its store; CameraNotFound otherwise."""
    statement = (select(Camera.id, Camera.name, Camera.store_id, Store.name)
                 .outerjoin(Store, Store.id == Camera.store_id).where(Camera.id == camera_id))
    stores = principal.store_filter()
    if stores is not None:
        statement = statement.where(Camera.store_id.in_(sorted(stores)))
    with db.sessions() as session:
        row = session.execute(statement).first()
    if row is None:
        raise CameraNotFound(camera_id)
    return CameraView(row[0], row[1], row[2], row[3] or row[2])


def recent_clips(db: Database, camera_id: str, *, span: timedelta = timedelta(minutes=30),
                 limit: int = 400) -> list[ClipPoint]:
    """The camera's clips of the ``span`` up to its newest clip, oldest first (suspicious ones marked)."""
    with db.sessions() as session:
        newest = session.scalar(select(func.max(ClipResult.captured_at)).where(ClipResult.camera_id == camera_id))
        if newest is None:
            return []
        rows = session.execute(
            select(ClipResult.captured_at, ClipResult.probability, ClipResult.threshold, ClipResult.suspicious)
            .where(ClipResult.camera_id == camera_id, ClipResult.captured_at >= newest - span)
            .order_by(ClipResult.captured_at.desc()).limit(limit)
        ).all()
    return [ClipPoint(at, probability, threshold, bool(suspicious))
            for at, probability, threshold, suspicious in reversed(rows)]


def missed_thefts(db: Database, camera_id: str, *, limit: int = 50) -> list[MissedTheftView]:
    """The camera's marked missed thefts, newest first."""
    with db.sessions() as session:
        rows = session.scalars(select(MissedTheft).where(MissedTheft.camera_id == camera_id)
                               .order_by(MissedTheft.start_at.desc()).limit(limit)).all()
        return [_view(r) for r in rows]


def _discard(video: Path) -> None:
    video.unlink(missing_ok=True)
    video.with_name(video.name + ".part").unlink(missing_ok=True)


def mark_missed_theft(
    db: Database, principal: Principal, camera_id: str, start: datetime, end: datetime, *, evidence_dir: Path,
    note: str = "", address: str = "", now: datetime | None = None,
) -> MissedTheftView:
    """Record a missed theft on ``camera_id`` from ``start`` to ``end`` (UTC) and cut its video, in one go: the
    row, its video and its audit entry exist together or not at all.  The video is cut before the transaction,
    which then only inserts, renames and audits, so no database lock is held while video is copied.  Raises MarkNotAllowed for a guard,
    CameraNotFound outside this person's stores, MarkRefused for a bad span or when no motion video is left."""
    if not principal.can_mark_missed_theft:
        raise MarkNotAllowed("only a manager or an admin can mark a missed theft")
    view = camera(db, principal, camera_id)
    now = now or utc_now()
    if end <= start:
        raise MarkRefused("The end must be after the start.")
    if end - start > MAX_SPAN:
        raise MarkRefused(f"Mark at most {int(MAX_SPAN.total_seconds() // 60)} minutes at a time.")
    if start > now + FUTURE_SLACK:
        raise MarkRefused("That time span has not happened yet (times are UTC).")
    segments = segments_overlapping(Path(evidence_dir), camera_id, start, end)
    if not segments:
        raise MarkRefused(
            f"No motion video of {view.name} is left for {start:%Y-%m-%d %H:%M:%S} to {end:%H:%M:%S} UTC: video of "
            "motion that raised no alert is kept only a short time (evidence.keep_unflagged), or nothing moved."
        )
    text = note.strip()[:NOTE_MAX_CHARS] or None
    # Cut first, outside any transaction: a remux of minutes of video must not hold the database's write lock
    # (on SQLite every other writer would wait on it).  The id that names the video is not known yet, so the
    # cut goes to a pending name in the same folder and is renamed once the row exists: a rename, not a copy.
    pending = missed_video_path(Path(evidence_dir), camera_id, 0, start).with_name(f".pending-{uuid.uuid4().hex}.mp4")
    try:
        cut = cut_video(Path(evidence_dir), camera_id, start, end, pending)
    except Exception as exc:  # a damaged segment: refused with the reason, nothing is stored
        _discard(pending)
        raise MarkRefused(f"The motion video could not be cut: {exc}") from exc
    if cut is None:  # deleted since it was looked up
        raise MarkRefused("The motion video of that time span is gone.")
    video: Path | None = None
    try:
        with db.session() as session:  # short: insert, rename, audit, commit
            row = MissedTheft(store_id=view.store_id, camera_id=camera_id, start_at=start, end_at=end,
                              marked_by=principal.username, marked_at=now, note=text)
            session.add(row)
            session.flush()  # the id names the video
            video = missed_video_path(Path(evidence_dir), camera_id, row.id, start)
            os.replace(pending, video)
            row.video_path = str(video)
            record_for(session, AuditAction.MISSED_THEFT_MARKED, principal, store_id=view.store_id,
                       target_id=camera_id, address=address, at=now,
                       detail=f"missed theft {row.id} from {start.isoformat()} to {end.isoformat()}"
                       + (f"; note: {text}" if text else ""))
            session.flush()
            result = _view(row)
    except Exception:
        # the row and its audit entry rolled back: the video goes too, under whichever name it has
        _discard(pending)
        if video is not None:
            _discard(video)
        raise
    log.info("missed theft %s marked on %s by %s (%s)", result.id, camera_id, principal.username, video)
    return result
