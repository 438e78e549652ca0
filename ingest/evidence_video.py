"""Evidence video for one camera: H.264 segments while the camera has motion, each frame encoded once.

The alerts role later puts an alert's video together from the segments that cover its clips plus
``evidence.margin_before_s`` / ``margin_after_s`` (``common.evidence.remux``: packets copied, nothing
re-encoded), so ingest records exactly the span in which clips can be cut, plus those margins:

- a clip window (``ClipCutter``) can start up to ``clip.window_s`` before the first moving frame it holds,
  so a **pre-roll** of ``clip.window_s + margin_before_s`` is kept in memory while nothing moves;
- the last window is active up to ``motion.hold_s`` after the last moving frame and spans ``clip.window_s``,
  so recording goes on until ``hold_s + window_s + margin_after_s`` after the last motion.

Every frame first passes a frame-rate limit (at most ``evidence.video_fps``, on the frames' ``captured_at``
grid) and is scaled once to ``evidence.video_width`` (never up) and converted to planar I420, half the bytes of
BGR: the pre-roll holds at most ``ceil(pre-roll * video_fps) + 1`` such frames (about 36 MB at 640x360, 15
fps and 7 s).  When motion starts the pre-roll is written, oldest first, then the live frames; a new segment
(a keyframe) starts every ``evidence.segment_s``.  A frame leaves the pre-roll when it is written, and frames
written are never kept, so overlapping clip windows never encode a frame twice.  Segment names carry the
frames' ``captured_at``, the clock that stamps the clips (``ClipHeader.start_at``/``captured_at``).

``close`` ends the open segment (end of file, lost connection, shutdown, configuration reload).  An encoding
or disk error abandons the segment, is counted, logged once per episode (until a segment is written again),
and the frames of the next ``segment_s`` are let go before trying again; nothing of it reaches the caller, so
ingest and clip publishing carry on.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from common.evidence import Segment, SegmentEncoder
from common.settings import CameraSettings, EvidenceSettings
from ingest.capture import Frame

log = logging.getLogger("aislewatch.ingest.evidence")

EncoderFactory = Callable[..., SegmentEncoder]


@dataclass(frozen=True, slots=True)
class EvidenceCounters:
    """What one camera's recorder has done so far."""

    segments_written: int = 0
    bytes_written: int = 0
    frames_encoded: int = 0
    encode_seconds: float = 0.0
    errors: int = 0
    frames_lost: int = 0  # frames that should have been recorded but an error episode let go


def video_size(width: int, height: int, video_width: int) -> tuple[int, int]:
    """(width, height) of the evidence video: ``video_width`` wide (never upscaled), aspect kept, both even."""
    out_w = min(video_width, width)
    out_w -= out_w % 2
    out_h = max(2, 2 * round(height * out_w / width / 2))
    return max(2, out_w), out_h


@dataclass(slots=True)
class _Pending:
    image: np.ndarray  # I420, (h * 3 / 2, w)
    at: datetime
    t: float  # at as epoch seconds


class EvidenceRecorder:
    """Feed every frame of one camera, in order, with whether it moved; see the module docstring."""

    def __init__(
        self,
        settings: EvidenceSettings,
        evidence_dir: Path,
        camera_id: str,
        *,
        lookback_s: float,
        hold_s: float,
        encoder_factory: EncoderFactory = SegmentEncoder,
    ) -> None:
        """``lookback_s`` is how far a clip can reach back before its first moving frame (``clip.window_s``);
        ``hold_s`` how long clips are still cut after motion stops (``motion.hold_s``)."""
        self.settings = settings
        self.evidence_dir = Path(evidence_dir)
        self.camera_id = camera_id
        self.preroll_s = lookback_s + settings.margin_before_s
        self.postroll_s = hold_s + lookback_s + settings.margin_after_s
        self.interval_s = 1.0 / settings.video_fps
        self._tolerance_s = 0.2 * self.interval_s  # live timestamps jitter; the grid keeps the average rate
        self._encoder_factory = encoder_factory
        self._ring: deque[_Pending] = deque(maxlen=math.ceil(self.preroll_s * settings.video_fps) + 1)
        self._due: float | None = None
        self._record_until = -math.inf
        self._size: tuple[int, int] | None = None  # of the source frames
        self._video_size: tuple[int, int] = (0, 0)
        self._encoder: SegmentEncoder | None = None
        self._segment_start = 0.0
        self._failing = False
        self._retry_at = -math.inf
        self.segments: list[Segment] = []  # the last few closed segments (for tests and logs)
        self._segments_written = 0
        self._bytes = 0
        self._frames_encoded = 0
        self._encode_s = 0.0
        self._errors = 0
        self._frames_lost = 0

    @classmethod
    def for_camera(
        cls, settings: EvidenceSettings, camera: CameraSettings, evidence_dir: Path
    ) -> EvidenceRecorder | None:
        """The recorder of ``camera``, or None when ``evidence.video`` is off."""
        if not settings.video:
            return None
        return cls(settings, evidence_dir, camera.id, lookback_s=camera.clip.window_s, hold_s=camera.motion.hold_s)

    # -- state -------------------------------------------------------------------------------------
    @property
    def recording(self) -> bool:
        """True while a segment is open."""
        return self._encoder is not None

    @property
    def preroll_frames(self) -> int:
        return len(self._ring)

    def counters(self) -> EvidenceCounters:
        return EvidenceCounters(
            segments_written=self._segments_written,
            bytes_written=self._bytes,
            frames_encoded=self._frames_encoded,
            encode_seconds=self._encode_s,
            errors=self._errors,
            frames_lost=self._frames_lost,
        )

    # -- frames ------------------------------------------------------------------------------------
    def push(self, frame: Frame, moving: bool) -> None:
        """One frame of the camera and whether the motion gate saw it move."""
        t = frame.captured_at.timestamp()
        if moving:
            self._record_until = max(self._record_until, t + self.postroll_s)
        recording = t <= self._record_until
        if not recording and self._encoder is not None:
            self._close_segment()
        if not self._keep(t):
            return
        image = self._convert(frame.image)
        pending = _Pending(image, frame.captured_at, t)
        if not recording:
            self._ring.append(pending)
            while self._ring and self._ring[0].t < t - self.preroll_s:
                self._ring.popleft()
            return
        while self._ring:
            self._write(self._ring.popleft())
        self._write(pending)

    def close(self, reason: str = "") -> None:
        """End the open segment and forget the pre-roll (the source ended or changed, or the worker stops)."""
        if self._encoder is not None:
            self._close_segment()
            if reason:
                log.debug("camera %s: evidence segment closed (%s)", self.camera_id, reason)
        self._ring.clear()
        self._record_until = -math.inf
        self._due = None

    def _keep(self, t: float) -> bool:
        """The frame-rate limit: on a grid of ``1 / video_fps`` that never runs ahead of the frames."""
        if self._due is not None and t < self._due - self._tolerance_s:
            return False
        due = t if self._due is None else self._due
        self._due = max(due + self.interval_s, t + self.interval_s - self._tolerance_s)
        return True

    def _convert(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        if self._size != (width, height):
            if self._encoder is not None:  # the camera changed resolution: a segment has one frame size
                self._close_segment()
            self._ring.clear()
            self._size = (width, height)
            self._video_size = video_size(width, height, self.settings.video_width)
        out_w, out_h = self._video_size
        if (out_w, out_h) != (width, height):
            image = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)

    # -- segments ----------------------------------------------------------------------------------
    def _write(self, pending: _Pending) -> None:
        if pending.t < self._retry_at:
            self._frames_lost += 1
            return
        if self._encoder is not None and pending.t - self._segment_start >= self.settings.segment_s:
            self._close_segment()
            if pending.t < self._retry_at:  # closing it failed
                self._frames_lost += 1
                return
        started = time.perf_counter()
        try:
            if self._encoder is None:
                width, height = self._video_size
                self._encoder = self._encoder_factory(
                    self.evidence_dir, self.camera_id, pending.at, width=width, height=height,
                    crf=self.settings.crf, preset=self.settings.preset,
                )
                self._segment_start = pending.t
            self._encoder.add(pending.image, pending.at, "yuv420p")
            self._frames_encoded += 1
        except Exception as exc:  # evidence must never stop ingest: disk full, permissions, codec errors
            self._fail(exc, pending.t)
        finally:
            self._encode_s += time.perf_counter() - started

    def _close_segment(self) -> None:
        encoder, self._encoder = self._encoder, None
        if encoder is None:
            return
        started = time.perf_counter()
        try:
            segment = encoder.close()
        except Exception as exc:
            self._encoder = encoder
            self._fail(exc, encoder.end.timestamp())
            return
        finally:
            self._encode_s += time.perf_counter() - started
        if segment is None:
            return
        self._segments_written += 1
        self._bytes += encoder.bytes
        self.segments = [*self.segments[-15:], segment]
        if self._failing:
            log.info("camera %s: evidence video is being written again", self.camera_id)
            self._failing = False

    def _fail(self, exc: BaseException, t: float) -> None:
        self._errors += 1
        encoder, self._encoder = self._encoder, None
        if encoder is not None:
            _abandon(encoder)
        self._retry_at = t + self.settings.segment_s
        if not self._failing:
            log.error(
                "camera %s: evidence video not written (%s: %s); clips go on, trying again every %g s",
                self.camera_id, type(exc).__name__, exc, self.settings.segment_s,
            )
            self._failing = True


def _abandon(encoder: Any) -> None:
    try:
        encoder.abandon()
    except Exception as exc:  # nothing more can be done for a broken segment
        log.debug("abandoning a broken evidence segment failed: %s", exc)
