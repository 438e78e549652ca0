"""Alert videos: every suspicious-activity alert gets the few seconds of video around its clips.

Ingest writes a camera's motion as closed H.264 segments (``common.evidence``); this loop, on its own thread in
the alerts role, puts together each alert's video from them once they cover it: the alert's span is its clips'
time span (``start_at`` of the first .. ``captured_at`` of the last, on the clips' clock), widened by
``evidence.margin_before_s`` / ``margin_after_s``.  The video is made as soon as the camera's segments cover
that window: a closed segment reaches its end, or, ``margin_after_s + segment_s`` after the span on the clock,
no segment of the camera starting before the window's end is still being written (``.part``).  A camera that
is still writing it (a file slower than real time, an ingest stall, skewed clocks) is waited for up to the
alert's deadline (``video_deadline``: ``video_wait_s`` past that); then the video is made from the closed
segments there are, logged and counted ``partial``.  The segments are copied packet by packet into
``<evidence_dir>/<camera>/<day>/videos/<alert id>.mp4`` (``common.evidence.cut_video``: no decoding, no
re-encoding; a segment of another frame size or encoder header ends the video there, also ``partial``).  The
path goes into ``alerts.evidence_video_path`` together with an ``evidence_ready`` alert event (the desk's live
feed) in one transaction, and the alert's e-mails that were waiting for it are made due.  Each pass lists each
camera's segment folders once (``SegmentIndex``), however many alerts are pending.

An alert whose camera recorded no video is settled without one at its deadline: logged once,
counted, never retried.  Whether an alert is settled is in the database (``evidence_video_settled_at``), so a
restarted worker picks up exactly the alerts still pending.  When every camera is a file that has ended (an
embedded run), every segment is closed: ``make_due(streams_ended=True)`` settles everything pending at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, update

from common.clock import Clock
from common.db import Database, DatabaseUnavailable
from common.evidence import CutResult, SegmentIndex, alert_video_path, cut_video
from common.models import Alert, AlertDelivery, AlertEvent, ClipResult
from common.schemas import AlertEventKind, AlertKind, DeliveryStatus
from common.settings import EvidenceSettings, Settings
from common.worker import Worker

log = logging.getLogger("aislewatch.alerts.video")



@dataclass(frozen=True)
class PendingVideo:
    """A suspicious-activity alert still waiting for its video."""

    alert_id: str
    store_id: str
    camera_id: str
    raised_at: datetime
    clip_ids: tuple[str, ...]


@dataclass(frozen=True)
class VideoWindow:
    """The stretch of a camera's video an alert's video covers: its clips' span plus the margins."""

    start: datetime
    end: datetime  # the span's end + margin_after_s
    ready_at: datetime  # end + segment_s: by then the segment holding ``end`` is normally closed
    deadline: datetime  # the last moment to wait: a video is made from what there is, or the alert has none

    @classmethod
    def around(cls, span_start: datetime, span_end: datetime, settings: EvidenceSettings,
               raised_at: datetime | None = None) -> VideoWindow:
        end = span_end + timedelta(seconds=settings.margin_after_s)
        ready_at = end + timedelta(seconds=settings.segment_s)
        return cls(span_start - timedelta(seconds=settings.margin_before_s), end, ready_at,
                   video_deadline(raised_at if raised_at is not None else span_end, settings))


def video_deadline(raised_at: datetime, settings: EvidenceSettings) -> datetime:
    """Until when an alert raised at ``raised_at`` waits for its video: its margin after, a segment's length
    (the segment holding the margin's end closes), then ``video_wait_s`` for a camera or ingest running behind.
    The video maker settles every alert by then, and the alert's e-mail waits exactly as long (alerts.outbox):
    one function, so the two cannot drift apart."""
    return raised_at + timedelta(seconds=settings.margin_after_s + settings.segment_s + settings.video_wait_s)


class AlertVideoMaker(Worker):
    """Makes the evidence video of each pending suspicious-activity alert; one thread, driven by ``step``."""

    name = "alert-video"

    def __init__(
        self,
        db: Database,
        evidence_dir: Path,
        settings: EvidenceSettings,
        clock: Clock,
        *,
        stop: threading.Event | None = None,
        poll_s: float = 1.0,
        batch_size: int = 200,
        on_settled: Callable[[], None] | None = None,
    ) -> None:
        """``on_settled`` is called after a pass that settled alerts (the outbox's ``wake``: e-mails that waited
        for a video can go now)."""
        super().__init__(stop)
        self.db = db
        self.evidence_dir = Path(evidence_dir)
        self.settings = settings
        self.clock = clock
        self.poll_s = poll_s
        self.batch_size = batch_size
        self.on_settled = on_settled
        self._wake = threading.Event()
        self._lock = threading.Lock()  # one pass at a time: the loop's, or a caller's final one
        self._windows: dict[str, VideoWindow] = {}  # alert id → window, while pending
        self._failed: set[str] = set()  # alerts whose remux failed (logged once; settled at their deadline)
        self.made = 0  # videos stored
        self.without_video = 0  # alerts settled with none (their camera recorded none)
        self.partial = 0  # videos made at the deadline that stop short of their window (or at a format change)
        self.failures = 0  # remux attempts that failed (a corrupt segment, a full disk)
        self.pending = 0  # alerts still waiting, as of the last pass
        self.video_bytes = 0  # bytes of the videos made

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        db: Database,
        clock: Clock,
        *,
        stop: threading.Event | None = None,
        on_settled: Callable[[], None] | None = None,
    ) -> AlertVideoMaker:
        return cls(db, settings.service.evidence_dir, settings.evidence, clock, stop=stop, on_settled=on_settled)

    def wake(self) -> None:
        """New alerts were stored: look at once instead of at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        super().stop()
        self._wake.set()

    def counters(self) -> dict[str, int]:
        return {"made": self.made, "partial": self.partial, "without_video": self.without_video,
                "failed": self.failures,
                "pending": self.pending, "bytes": self.video_bytes}

    # -- the loop --------------------------------------------------------------------------------
    def step(self) -> bool:
        try:
            self.make_due()
        except DatabaseUnavailable:  # only raised once stop is set: the alerts stay pending for the restart
            return False
        self._wake.wait(self.poll_s)
        self._wake.clear()
        return True

    def make_due(self, *, streams_ended: bool = False) -> int:
        """One pass over the pending alerts: make the video of each whose window is recorded, settle without one
        each whose wait is over; how many were settled.  ``streams_ended``: every camera has ended and closed its
        segments, so nothing more will come and every pending alert is settled now."""
        with self._lock:
            now = self.clock.now()
            pending = self.db.retrying(self._pending, self.stop_event, "alert video read")
            index = SegmentIndex(self.evidence_dir)  # each camera's day folders listed once in this pass
            settled = sum(1 for alert in pending if self._try(alert, now, streams_ended, index))
            self.pending = len(pending) - settled
        if settled and self.on_settled is not None:
            self.on_settled()
        return settled

    def _pending(self) -> list[PendingVideo]:
        stmt = (
            select(Alert.alert_id, Alert.store_id, Alert.camera_id, Alert.raised_at, Alert.clip_ids)
            .where(Alert.kind == AlertKind.SUSPICIOUS_ACTIVITY.value, Alert.evidence_video_settled_at.is_(None),
                   Alert.evidence_video_path.is_(None), Alert.evidence_deleted_at.is_(None))
            .order_by(Alert.id)
            .limit(self.batch_size)
        )
        with self.db.sessions() as session:
            return [PendingVideo(a, s, c, r, tuple(ids or ())) for a, s, c, r, ids in session.execute(stmt)]

    def window(self, alert: PendingVideo) -> VideoWindow:
        """The alert's video window, from its clips' stored span (the alert's time when none is stored)."""
        known = self._windows.get(alert.alert_id)
        if known is not None:
            return known
        span_start: datetime | None = None
        span_end: datetime | None = None
        if alert.clip_ids:
            with self.db.sessions() as session:
                span_start, span_end = session.execute(
                    select(func.min(ClipResult.start_at), func.max(ClipResult.captured_at))
                    .where(ClipResult.clip_id.in_(list(alert.clip_ids)))
                ).one()
        if span_start is None or span_end is None:
            span_start = span_end = alert.raised_at
        known = VideoWindow.around(span_start, span_end, self.settings, alert.raised_at)
        self._windows[alert.alert_id] = known
        return known

    def _try(self, alert: PendingVideo, now: datetime, streams_ended: bool, index: SegmentIndex) -> bool:
        """Settle ``alert`` if its time has come; whether it was settled.

        The video is made once the camera's segments cover the window: a closed segment reaches its end, or
        (``ready_at`` passed) no segment starting before its end is still being written.  A camera or ingest
        running behind (a file slower than real time, a stall, another clock) keeps it waiting, up to the
        deadline; then the video is made from what there is and counted ``partial``."""
        window = self.db.retrying(lambda: self.window(alert), self.stop_event, "alert video read")
        final = streams_ended or now >= window.deadline
        segments = index.overlapping(alert.camera_id, window.start, window.end)
        reaches_end = bool(segments) and max(s.end for s in segments) >= window.end
        complete = streams_ended or reaches_end or (
            now >= window.ready_at and not index.open_before(alert.camera_id, window.end))
        if not complete and not final:
            return False
        if segments:
            out = alert_video_path(self.evidence_dir, alert.camera_id, alert.alert_id, window.start)
            try:
                cut = cut_video(self.evidence_dir, alert.camera_id, window.start, window.end, out, index=index)
            except Exception as exc:  # a corrupt segment or a full disk: tried again until the deadline
                self.failures += 1
                if alert.alert_id not in self._failed:
                    self._failed.add(alert.alert_id)
                    log.error("alert %s (camera %s): its video could not be put together from %d segments: %s",
                              alert.alert_id, alert.camera_id, len(segments), exc)
            else:
                if cut is not None:
                    self._made(alert, window, cut, now, short=not complete)
                    return True
        if not final:
            return False  # ingest may be behind: wait for the segments up to the deadline
        reason = "its video could not be put together" if alert.alert_id in self._failed else (
            "its camera recorded no video of it")
        if self._store(alert, None, now):
            self.without_video += 1
            log.warning("alert %s (camera %s, %s .. %s): %s; it has none", alert.alert_id, alert.camera_id,
                        window.start.isoformat(), window.end.isoformat(), reason)
        return True

    def _made(self, alert: PendingVideo, window: VideoWindow, cut: CutResult, now: datetime, *, short: bool) -> None:
        """Store a video made; ``short``: its camera's segment holding the window's end was still being written
        at the deadline."""
        if not self._store(alert, cut.path, now):
            return
        self.made += 1
        self.video_bytes += cut.path.stat().st_size
        if short or cut.partial:
            self.partial += 1
            why = cut.reason or (f"the segment holding {window.end.isoformat()} was still being written at the "
                                 f"deadline (evidence.video_wait_s)")
            log.warning("alert %s (camera %s): partial video %s, %.1f s of %.1f s from %d segments: %s",
                        alert.alert_id, alert.camera_id, cut.path, min(cut.end, window.end).timestamp()
                        - max(cut.start, window.start).timestamp(), (window.end - window.start).total_seconds(),
                        cut.segments, why)
        else:
            log.info("alert %s (camera %s): video %s from %d segments (%.1f s)", alert.alert_id,
                     alert.camera_id, cut.path, cut.segments, cut.covered_s)

    def _store(self, alert: PendingVideo, path: Path | None, now: datetime) -> bool:
        """Settle the alert (with its video, or none) and, in the same transaction, add its ``evidence_ready``
        event and make its waiting deliveries due; False when it was settled already."""

        def write() -> bool:
            with self.db.engine.begin() as connection:
                changed: Any = connection.execute(
                    update(Alert)
                    .where(Alert.alert_id == alert.alert_id, Alert.evidence_video_settled_at.is_(None))
                    .values(evidence_video_path=str(path) if path is not None else None,
                            evidence_video_settled_at=now)
                )
                if changed.rowcount != 1:
                    return False
                if path is not None:
                    connection.execute(insert(AlertEvent).values(
                        alert_id=alert.alert_id, store_id=alert.store_id, event=AlertEventKind.EVIDENCE_READY.value,
                        at=now, actor=None))
                connection.execute(
                    update(AlertDelivery)
                    .where(AlertDelivery.alert_id == alert.alert_id,
                           AlertDelivery.status == DeliveryStatus.PENDING.value, AlertDelivery.attempts == 0,
                           AlertDelivery.next_attempt_at > now)
                    .values(next_attempt_at=now)
                )
                return True

        stored = self.db.retrying(write, self.stop_event, "alert video write")
        self._windows.pop(alert.alert_id, None)
        self._failed.discard(alert.alert_id)
        return stored


