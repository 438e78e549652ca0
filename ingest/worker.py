"""One camera's ingest loop: read a frame, gate on motion, cut clips, save evidence, publish.

Evidence video (``ingest.evidence_video``) sees every frame with the motion gate's verdict and writes H.264
segments around motion; its failures are counted and logged there, never raised here.

Health events on ``Topic.CAMERA_HEALTH``: ONLINE on the first frame after each (re)connect, OFFLINE when a
live source stops delivering (read timeout = ``offline_after_s``) or cannot be reached, ENDED at the end of a
non-looping file, ERROR for a file that cannot be opened or decoded.  Source problems never escape ``run``.

Publishing never blocks capture and loses nothing within a disk budget (``ingest.publishing``): a clip
counts as published once the bus acknowledged it; one the bus refuses or fails to deliver is sent again in
order; what waits beyond a small in-memory queue is spooled to disk, and only past the spool's budget are
the oldest clips dropped, counted and logged.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from common.bus import Bus, Publisher
from common.clock import Clock, SystemClock
from common.redaction import redact
from common.schemas import CameraHealthMessage, CameraState, ClipHeader, ClipMessage, Topic, clip_id_for
from common.settings import CameraSettings, EvidenceSettings, Settings, StoreSettings
from common.worker import Worker
from ingest.capture import (
    Backoff,
    Frame,
    SourceConnectionError,
    SourceCorruptError,
    SourceEnded,
    SourceError,
    SourceFatalError,
    VideoSource,
)
from ingest.clip_chain import ChainEncoder
from ingest.clips import ClipCutter, CutClip
from ingest.evidence_video import EvidenceRecorder
from ingest.motion import Arrived, MotionGate, MotionResult, gate_for
from ingest.publishing import PublishQueue, ack_timeout_for
from ingest.snapshot import save_snapshot
from ingest.spool import Spool

RETRY_BACKOFF = Backoff(initial_s=0.5, max_s=10.0)


class FrameSource(Protocol):
    """What the worker needs from a source (``VideoSource`` or a test double)."""

    live: bool
    fps: float
    session: str
    reconnects: int
    frames_dropped: int

    def read(self) -> Frame: ...

    def close(self) -> None: ...


SourceFactory = Callable[[CameraSettings, threading.Event, Clock], FrameSource]


def default_source_factory(camera: CameraSettings, stop: threading.Event, clock: Clock) -> FrameSource:
    return VideoSource.from_camera(camera, stop=stop, clock=clock)


@dataclass(frozen=True, slots=True)
class IngestCounters:
    """A snapshot of one camera worker's counters (the lead maps them to Prometheus)."""

    camera_id: str
    frames_read: int = 0
    frames_dropped: int = 0
    clips_cut: int = 0
    windows_incomplete: int = 0
    clips_published: int = 0
    clips_dropped: int = 0
    publish_retries: int = 0
    messages_unacknowledged: int = 0
    messages_spooled: int = 0
    spool_bytes: int = 0
    health_events: int = 0
    reconnects: int = 0
    errors: int = 0
    evidence_segments: int = 0
    evidence_bytes: int = 0
    evidence_encode_seconds: float = 0.0
    evidence_errors: int = 0
    state: str = "starting"


class CameraWorker(Worker):
    """Reads one camera and publishes its motion-gated clips and health events."""

    def __init__(
        self,
        store_id: str,
        camera: CameraSettings,
        publisher: Publisher,
        evidence_dir: Path,
        clock: Clock | None = None,
        stop: threading.Event | None = None,
        source_factory: SourceFactory | None = None,
        retry_queue_size: int = 32,
        retry_backoff: Backoff = RETRY_BACKOFF,
        spool: Spool | None = None,
        max_in_flight: int = 32,
        ack_timeout_s: float = 60.0,
        evidence: EvidenceSettings | None = None,
        chained: bool = True,
    ) -> None:
        """``retry_queue_size`` messages wait in memory while the bus cannot take them, and beyond that go
        to ``spool`` (or, without one, the oldest are dropped); ``max_in_flight`` await acknowledgement.
        ``evidence`` records motion video under ``evidence_dir`` (None, or ``video: false``: no video)."""
        self.name = f"capture:{camera.id}"
        super().__init__(stop)
        self.store_id = store_id
        self.camera = camera
        self.publisher = publisher
        self.evidence_dir = Path(evidence_dir)
        self.clock = clock or SystemClock()
        self._source_factory = source_factory or default_source_factory
        self.source: FrameSource | None = None
        self.motion: MotionGate[Arrived] | None = None
        self.cutter: ClipCutter | None = None
        self.recorder = (
            EvidenceRecorder.for_camera(evidence, camera, self.evidence_dir) if evidence is not None else None
        )
        self.outbox = PublishQueue(
            publisher, camera.id, self.clock, spool=spool, max_in_flight=max_in_flight,
            max_waiting=retry_queue_size, backoff=retry_backoff, ack_timeout_s=ack_timeout_s,
        )
        # each frame once on the bus (bus.clip_format "chained"); None: every clip whole
        self.chain = ChainEncoder(store_id, camera.id, camera.clip.bits) if chained else None
        self._session_online = False
        self._offline_reported = False
        self._frames_read = 0
        self._clips_cut = 0
        self._windows_incomplete_before = 0  # of the cutters of earlier capture sessions
        self._health_events = 0
        self._errors = 0
        self._state = "starting"
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, store: StoreSettings, camera: CameraSettings, bus: Bus, stop: threading.Event
    ) -> CameraWorker:
        """A worker for ``camera`` publishing on ``bus`` with the service's evidence directory and, when the
        ingest settings give it a budget, a spool under ``ingest.spool_dir/<camera id>``."""
        ingest = settings.ingest
        spool = None
        if ingest.spool_max_mb > 0:
            spool = Spool(ingest.spool_dir / camera.id, camera.id, ingest.spool_max_mb * 1_000_000)
        return cls(
            store.id, camera, bus.publisher(), settings.service.evidence_dir, stop=stop,
            retry_queue_size=ingest.memory_queue, max_in_flight=ingest.max_in_flight, spool=spool,
            ack_timeout_s=ack_timeout_for(settings.bus), evidence=settings.evidence,
            chained=settings.bus.clip_format == "chained",
        )

    # -- counters ----------------------------------------------------------------------------------
    def counters(self) -> IngestCounters:
        source = self.source
        publishing = self.outbox.counters()
        video = self.recorder.counters() if self.recorder is not None else None
        with self._lock:
            return IngestCounters(
                camera_id=self.camera.id,
                frames_read=self._frames_read,
                frames_dropped=getattr(source, "frames_dropped", 0),
                clips_cut=self._clips_cut,
                windows_incomplete=self._windows_incomplete_before
                + (self.cutter.windows_incomplete if self.cutter is not None else 0),
                clips_published=publishing.clips_published,
                clips_dropped=publishing.clips_dropped,
                publish_retries=publishing.publish_retries,
                messages_unacknowledged=publishing.in_flight + publishing.waiting,
                messages_spooled=publishing.spooled,
                spool_bytes=publishing.spool_bytes,
                health_events=self._health_events,
                reconnects=getattr(source, "reconnects", 0),
                errors=self._errors,
                evidence_segments=video.segments_written if video else 0,
                evidence_bytes=video.bytes_written if video else 0,
                evidence_encode_seconds=video.encode_seconds if video else 0.0,
                evidence_errors=video.errors if video else 0,
                state=self._state,
            )

    # -- lifecycle ---------------------------------------------------------------------------------
    def setup(self) -> None:
        self.source = self._source_factory(self.camera, self.stop_event, self.clock)

    def step(self) -> bool:
        self.outbox.pump()
        assert self.source is not None
        try:
            frame = self.source.read()
        except SourceEnded as exc:
            self._finish()
            self._health(CameraState.ENDED, str(exc))
            return False
        except SourceConnectionError as exc:
            self._on_connection_lost(exc)
            return True
        except (SourceCorruptError, SourceFatalError, SourceError) as exc:
            with self._lock:
                self._errors += 1
            self._finish()
            self._health(CameraState.ERROR, str(exc), level=logging.ERROR)
            return False
        self._on_frame(frame)
        return True

    def shutdown(self) -> None:
        try:
            if self.cutter is not None and self.stop_event.is_set():
                # stopped from outside: windows still open are cut short, not published
                self.cutter = None
            self._end_chain()  # the consumer lets go of this camera's frames (and of its commit hold)
            self.outbox.close(timeout_s=5.0)
            c = self.counters()
            self.log.info("camera %s: %d clips cut, %d published, %d dropped, %d messages left in the spool",
                          self.camera.id, c.clips_cut, c.clips_published, c.clips_dropped, c.messages_spooled)
        finally:
            if self.recorder is not None:
                self.recorder.close("shutdown")
                v = self.recorder.counters()
                if v.segments_written or v.errors:
                    self.log.info("camera %s: %d evidence segments (%.1f MB, %.1f s encoding), %d errors",
                                  self.camera.id, v.segments_written, v.bytes_written / 1e6, v.encode_seconds,
                                  v.errors)
            if self.source is not None:
                self.source.close()
            with self._lock:
                if self._state not in ("ended", "error"):
                    self._state = "stopped"

    # -- frames ------------------------------------------------------------------------------------
    def _on_frame(self, frame: Frame) -> None:
        assert self.source is not None
        with self._lock:
            self._frames_read += 1
        if not self._session_online:
            self._start_session(frame)
        assert self.motion is not None and self.cutter is not None
        for decided, result in self.motion.push(Arrived(frame, self.cutter.prepare(frame))):
            self._on_decided(decided, result)

    def _on_decided(self, arrived: Arrived, result: MotionResult) -> None:
        """A frame with its motion verdict (the gate hands frames on in order, up to a gate interval late)."""
        assert self.cutter is not None
        if self.recorder is not None:
            self.recorder.push(arrived.frame, result.moving)
        for clip in self.cutter.push(arrived.frame, result, arrived.small):
            self._emit(clip)
        chain = self.chain
        if chain is not None and chain.holding:
            end = chain.release_below(self.cutter.reusable_from_id, arrived.frame.captured_at)
            if end is not None:  # the camera's motion ended: no later clip uses the frames sent
                self.outbox.submit(Topic.CLIPS, end, is_clip=False)

    def _start_session(self, frame: Frame) -> None:
        assert self.source is not None
        height, width = frame.image.shape[:2]
        if (
            self.motion is None
            or (self.motion.detector.frame_width, self.motion.detector.frame_height) != (width, height)
            or self.source.live
        ):
            self.motion = gate_for(self.camera, width, height)
        if self.cutter is None or self.source.live:
            if self.cutter is not None:
                self._windows_incomplete_before += self.cutter.windows_incomplete
            self.cutter = ClipCutter(self.camera.clip, self.camera.motion, self.source.fps)
            self._end_chain()  # the new cutter numbers its frames afresh
        if self.recorder is not None:
            self.recorder.close("new capture session")  # a fresh pre-roll: the old frames are of another session
        self._session_online = True
        self._offline_reported = False
        detail = f"streaming {width}x{height} at {self.source.fps:g} fps"
        self._health(CameraState.ONLINE, detail)

    def _on_connection_lost(self, exc: SourceConnectionError) -> None:
        if self.stop_event.is_set():
            return
        with self._lock:
            self._errors += 1
        if self._session_online:
            self._finish()
        self._session_online = False
        if not self._offline_reported:
            self._health(CameraState.OFFLINE, str(exc), level=logging.WARNING)
            self._offline_reported = True

    def _finish(self) -> None:
        """Cut what the current session still holds (end of file, stream lost)."""
        if self.motion is not None and self.cutter is not None:
            for frame, result in self.motion.flush():
                self._on_decided(frame, result)
        if self.cutter is not None:
            for clip in self.cutter.flush():
                self._emit(clip)
        self._end_chain()  # flush reset the cutter, and its frame ids with it
        if self.recorder is not None:
            self.recorder.close("source ended or lost")

    def _end_chain(self) -> None:
        if self.chain is not None:
            end = self.chain.end(self.clock.now())
            if end is not None:
                self.outbox.submit(Topic.CLIPS, end, is_clip=False)

    # -- publishing --------------------------------------------------------------------------------
    def _emit(self, clip: CutClip) -> None:
        assert self.source is not None
        clip_id = clip_id_for(self.camera.id, clip.window_index, self.source.session)
        snapshot: str | None = None
        try:
            snapshot = str(
                save_snapshot(
                    clip.snapshot,
                    self.evidence_dir,
                    self.camera.id,
                    clip_id,
                    clip.captured_at,
                    self.camera.clip.snapshot_quality,
                )
            )
        except OSError as exc:
            with self._lock:
                self._errors += 1
            self.log.error("camera %s clip %s: snapshot not saved: %s", self.camera.id, clip_id, exc)
        header = ClipHeader(
            clip_id=clip_id,
            store_id=self.store_id,
            camera_id=self.camera.id,
            captured_at=clip.captured_at,
            start_at=clip.start_at,
            source_start_s=clip.source_start_s,
            source_end_s=clip.source_end_s,
            shape=tuple(clip.frames.shape),  # type: ignore[arg-type]
            motion_area=clip.motion_area,
            snapshot_path=snapshot,
            published_at=self.clock.now(),
        )
        with self._lock:
            self._clips_cut += 1
        if self.chain is not None:
            message = self.chain.encode(header, clip)
        else:
            message = ClipMessage(header, clip.frames).to_bytes()
        self.outbox.submit(Topic.CLIPS, message, is_clip=True)

    def _health(self, state: CameraState, detail: str, *, level: int = logging.INFO) -> None:
        """Publish a health event and log it: the one log line of each camera event."""
        message = CameraHealthMessage(
            event_id=uuid.uuid4().hex,
            store_id=self.store_id,
            camera_id=self.camera.id,
            state=state,
            at=self.clock.now(),
            detail=redact(detail)[:500],
            reconnects=getattr(self.source, "reconnects", 0),
        )
        with self._lock:
            self._health_events += 1
            self._state = state.value
        self.log.log(level, "camera %s %s: %s", self.camera.id, state.value, message.detail)
        self.outbox.submit(Topic.CAMERA_HEALTH, message.to_bytes(), is_clip=False)

    @property
    def pending(self) -> int:
        """Messages the bus has not acknowledged yet, in memory or in the spool."""
        return self.outbox.unacknowledged


def counters_of(workers: dict[str, Any]) -> list[IngestCounters]:
    """Counter snapshots of every worker that has them."""
    return [w.counters() for w in workers.values() if hasattr(w, "counters")]
