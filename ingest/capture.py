"""Frames from any OpenCV source (video file or RTSP URL), with an explicit state machine and reconnects.

``VideoSource.read()`` is one bounded unit of work: it returns the next ``Frame`` or raises

- ``SourceEnded``             the file is finished (not for ``loop`` files, which start again);
- ``SourceConnectionError``   retryable: a live source could not be opened, timed out or dropped.  The next
                              ``read()`` waits the backoff delay (interruptible by the stop event) and
                              reconnects; the caller reports the camera offline in between;
- ``SourceFatalError``        the source can never be read (missing file, unsupported URL);
- ``SourceCorruptError``      a file that exists but cannot be decoded (or stops decoding part-way).

Frames are placed by their own time (``Frame.source_time_s``): a file's frames by their container
timestamps (``common.frame_time.FrameTimer``, so a header that lies about the frame rate, or a variable
rate, changes nothing), a live stream's by their arrival since connect.  A file read with ``realtime`` is
paced by those timestamps too.

Credentials in a URL never appear in log lines or exception messages: everything goes through ``redact``.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from common.clock import Clock, SystemClock
from common.frame_time import FrameTimer
from common.redaction import redact
from common.settings import CameraSettings

log = logging.getLogger("aislewatch.ingest.capture")

_UINT8 = np.dtype(np.uint8)  # what decoders return: checked by identity first (per frame), then by value
_POS_MSEC = cv2.CAP_PROP_POS_MSEC

LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
# TCP avoids UDP packet loss on busy store networks; a 1 s stream analysis (FFmpeg's default is 5 s)
# brings a camera online faster after each reconnect, and RTSP's SDP already names the codec.
_RTSP_OPTIONS = "rtsp_transport;tcp|analyzeduration;1000000"


class SourceError(Exception):
    """Base of every error a video source raises; messages are already redacted."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class SourceConnectionError(SourceError):
    """Retryable: cannot connect, read timed out, or the stream dropped."""


class SourceFatalError(SourceError):
    """Not retryable: the source does not exist or can never be read."""


class SourceCorruptError(SourceFatalError):
    """A file that exists but cannot be opened or decoded as video."""


class SourceEnded(SourceError):
    """A (non-looping) file has no more frames."""


class SourceState(StrEnum):
    CONNECTING = "connecting"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame.  ``source_time_s`` is the frame's own position in the file (its container
    timestamp, from 0 at the first frame) or its arrival since connect (live); ``captured_at`` is the
    session start plus that position (files) or the arrival time (live)."""

    index: int
    image: np.ndarray = field(repr=False)
    source_time_s: float
    captured_at: datetime

    def __post_init__(self) -> None:
        img = self.image
        if (img.dtype is not _UINT8 and img.dtype != np.uint8) or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"frame image must be (H, W, 3) uint8 BGR, got {img.shape} {img.dtype}")
        if self.captured_at.tzinfo is None:
            raise ValueError("frame captured_at must be timezone-aware")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with full-range jitter: delay(n) in [base*(1-jitter), base], base=min(cap, initial*factor**n)."""

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        base = min(self.max_s, self.initial_s * self.factor ** max(0, attempt))
        r = (rng or random).random()
        return base * (1.0 - self.jitter * r)


DEFAULT_BACKOFF = Backoff()


def is_live(source: str) -> bool:
    """True for network streams (RTSP and friends); False for files (including file:// URLs)."""
    return source.strip().lower().startswith(LIVE_SCHEMES)


def redacted(source: str) -> str:
    """The source as it may appear in logs and messages."""
    return redact(source)


Opener = Callable[[str, list[int]], Any]


def _open_capture(source: str, params: list[int]) -> Any:
    return cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)


class VideoSource:
    """A file or live stream, read frame by frame; reconnects live streams with capped, jittered backoff.

    Not thread-safe: one reader (the camera's worker thread) owns it.
    """

    def __init__(
        self,
        source: str,
        *,
        fps: float = 15.0,
        realtime: bool = False,
        loop: bool = False,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 10.0,
        clock: Clock | None = None,
        stop: threading.Event | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        rng: random.Random | None = None,
        opener: Opener = _open_capture,
    ) -> None:
        self.source = source
        self.live = is_live(source)
        self.name = redacted(source)
        self.default_fps = fps
        self.realtime = realtime
        self.loop = loop
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.clock = clock or SystemClock()
        self.stop_event = stop or threading.Event()
        self.backoff = backoff
        self.rng = rng or random.Random()
        self._opener = opener
        self._cap: Any = None
        self.state = SourceState.CONNECTING
        self.fps = fps
        self.frame_count = 0
        self.reconnects = 0
        self.frames_read = 0
        self.frames_dropped = 0
        self.session = ""
        self.session_started_at: datetime | None = None
        self._session_mono = 0.0
        self._attempt = 0
        self._index = 0
        self._file_index = 0
        self.timer = FrameTimer(fps)  # a file's frames placed by their own timestamps
        self._pass_start_s = 0.0  # source time where the current pass over a (looping) file began
        self._connected_once = False

    @classmethod
    def from_camera(
        cls, camera: CameraSettings, *, stop: threading.Event | None = None, clock: Clock | None = None
    ) -> VideoSource:
        """A source configured from a camera's settings (timeouts follow ``offline_after_s``)."""
        timeout = max(1.0, min(camera.offline_after_s, 30.0))
        return cls(
            camera.resolved_source(),
            fps=camera.fps,
            realtime=camera.realtime,
            loop=camera.loop,
            open_timeout_s=timeout,
            read_timeout_s=timeout,
            clock=clock,
            stop=stop,
        )

    # -- state -------------------------------------------------------------------------------------
    def _set_state(self, state: SourceState) -> None:
        if state != self.state:
            log.debug("source %s: %s -> %s", self.name, self.state, state)
            self.state = state

    @property
    def next_retry_delay_s(self) -> float:
        """The backoff delay the next reconnect attempt will wait (without jitter: the upper bound)."""
        return min(self.backoff.max_s, self.backoff.initial_s * self.backoff.factor ** max(0, self._attempt))

    # -- opening -----------------------------------------------------------------------------------
    def _file_session(self) -> str:
        path = Path(self.source.removeprefix("file://"))
        try:
            st = path.stat()
        except OSError:
            return str(path)
        return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"

    def open(self) -> None:
        """Open (or re-open) the source; raises SourceConnectionError (live) or SourceFatalError (files)."""
        self.close_capture()
        self._set_state(SourceState.CONNECTING if not self._connected_once else SourceState.RECONNECTING)
        params: list[int] = []
        if self.live:
            if self.source.lower().startswith(("rtsp://", "rtsps://")):
                # FFmpeg reads its options from the environment at open time; TCP avoids UDP packet loss.
                os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", _RTSP_OPTIONS)
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                int(self.open_timeout_s * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                int(self.read_timeout_s * 1000),
            ]
        else:
            path = Path(self.source.removeprefix("file://"))
            if not path.is_file():
                self._set_state(SourceState.FAILED)
                raise SourceFatalError(f"{path} is a directory, not a video file" if path.is_dir()
                                       else f"video file not found: {path}")
        try:
            cap = self._opener(self.source, params)
            opened = bool(cap is not None and cap.isOpened())
        except cv2.error as exc:
            cap, opened = None, False
            reason = str(exc)
        else:
            reason = ""
        if not opened:
            if cap is not None:
                cap.release()
            if self.live:
                raise SourceConnectionError(
                    f"cannot open stream {self.name}{': ' + reason if reason else ''}"
                )
            self._set_state(SourceState.FAILED)
            raise SourceCorruptError(
                f"cannot open video file {self.source}: not a readable video (corrupt, truncated or "
                f"unsupported){': ' + reason if reason else ''}"
            )
        self._cap = cap
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 1.0 <= fps <= 240.0 else self.default_fps
        self.frame_count = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        if not self.live:
            if self._connected_once:
                self.timer.restart()  # a looping file starts again after its last frame
            else:
                self.timer = FrameTimer(self.fps)
            self._pass_start_s = self.timer.end_s
        self._file_index = 0
        now = self.clock.now()
        if self.live or not self._connected_once:
            self.session_started_at = now
            self._session_mono = self.clock.monotonic()
            self.session = f"live:{now.isoformat()}" if self.live else self._file_session()
        if self._connected_once and self.live:
            self.reconnects += 1
        self._connected_once = True
        self._set_state(SourceState.STREAMING)

    def close_capture(self) -> None:
        if self._cap is not None:
            try:
                self._cap.release()
            finally:
                self._cap = None

    def close(self) -> None:
        """Release the capture; the source cannot be read again."""
        self.close_capture()
        self._set_state(SourceState.CLOSED)

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------------------
    def _reconnect_once(self) -> None:
        delay = self.backoff.delay(self._attempt, self.rng)
        self._attempt += 1
        log.info("source %s: reconnecting in %.1f s (attempt %d)", self.name, delay, self._attempt)
        if self.stop_event.wait(delay):
            raise SourceConnectionError(f"stopped while reconnecting to {self.name}")
        self.open()

    def _lost(self, reason: str) -> SourceConnectionError:
        self.close_capture()
        self._set_state(SourceState.RECONNECTING)
        return SourceConnectionError(f"stream {self.name} {reason}")

    def read(self) -> Frame:
        """The next frame; see the module docstring for what it raises."""
        if self.state is SourceState.STREAMING and self._cap is not None:  # the usual case, first
            return self._read_live() if self.live else self._read_file()
        if self.state in (SourceState.ENDED, SourceState.FAILED, SourceState.CLOSED):
            if self.state == SourceState.ENDED:
                raise SourceEnded(f"{self.name} has ended")
            raise SourceFatalError(f"{self.name} is {self.state.value}")
        if self._cap is None:
            try:
                if self.state == SourceState.RECONNECTING:
                    self._reconnect_once()
                else:
                    self.open()
            except SourceConnectionError:
                self._set_state(SourceState.RECONNECTING)
                raise
        if self.live:
            return self._read_live()
        return self._read_file()

    def _read_live(self) -> Frame:
        try:
            ok, image = self._cap.read()
        except cv2.error as exc:
            raise self._lost(f"read failed: {exc}") from None
        if not ok or image is None:
            raise self._lost("returned no frame (timed out or dropped)")
        self._attempt = 0
        index = self._index
        self._index += 1
        self.frames_read += 1
        return Frame(
            index=index,
            image=_as_bgr(image),
            source_time_s=max(0.0, self.clock.monotonic() - self._session_mono),
            captured_at=self.clock.now(),
        )

    def _read_file(self) -> Frame:
        realtime = self.realtime
        if realtime:
            self._skip_late_frames()
        cap = self._cap
        try:
            ok, image = cap.read()
        except cv2.error as exc:
            ok, image = False, None
            log.warning(
                "source %s: decode error at frame %d: %s", self.name, self._file_index, redact(str(exc))
            )
        if not ok or image is None:
            return self._file_end()
        index = self._index
        self._index = index + 1
        self._file_index += 1
        self.frames_read += 1
        source_time = self.timer.place(cap.get(_POS_MSEC))
        if realtime:
            self._wait_until(source_time)
        started = self.session_started_at
        assert started is not None
        if image.ndim != 3 or image.shape[2] != 3:
            image = _as_bgr(image)
        return Frame(index, image, source_time, started + timedelta(seconds=source_time))

    def _file_end(self) -> Frame:
        decoded = self._file_index
        expected = self.frame_count
        if decoded == 0:
            self.close_capture()
            self._set_state(SourceState.FAILED)
            raise SourceCorruptError(f"video file {self.source} opened but no frame could be decoded")
        # Ended early in frames: truncated, unless the frames' own timestamps reach the declared length
        # (a header that overstates the frame rate, e.g. vtest.avi: 682 frames at 50 fps declared, 341 at 25).
        pass_s = self.timer.end_s - self._pass_start_s
        reached_the_end = self.fps > 0 and pass_s >= expected / self.fps - max(1.0, 2.0 / self.fps)
        if expected and decoded < int(expected * 0.98) - 1 and not reached_the_end:
            self.close_capture()
            self._set_state(SourceState.FAILED)
            raise SourceCorruptError(
                f"video file {self.source} stopped decoding at frame {decoded} of {expected} (truncated or corrupt)"
            )
        if self.loop and not self.stop_event.is_set():
            self.open()
            return self._read_file()
        self.close_capture()
        self._set_state(SourceState.ENDED)
        raise SourceEnded(f"{self.name} ended after {self._index} frames")

    def _wait_until(self, source_time_s: float) -> None:
        """Realtime files: hold a frame until its own time has come since the session started."""
        ahead = self._session_mono + source_time_s - self.clock.monotonic()
        if ahead > 0:
            self.stop_event.wait(ahead)

    def _skip_late_frames(self) -> None:
        """Realtime files far behind (a slow consumer): drop frames whose time has long passed, placing each
        by its own timestamp, until the next one is due within two frame intervals."""
        if self.timer.last_s is None or self._file_index == 0:
            return
        while self._session_mono + self.timer.end_s < self.clock.monotonic() - 2 * self.timer.interval_s:
            if not self._cap.grab():
                break
            self.timer.place(self._cap.get(cv2.CAP_PROP_POS_MSEC))
            self._index += 1
            self._file_index += 1
            self.frames_dropped += 1


def _as_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image
