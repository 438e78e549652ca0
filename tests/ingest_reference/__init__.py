"""The ingest path as it was before issue 12 item 6 (ingest close to decode), kept to prove clips unchanged.

``motion.py`` and ``clips.py`` here are verbatim copies of ``ingest/motion.py`` and ``ingest/clips.py`` at
commit 9d0f95d (only the import of ``MotionResult`` points here): every frame decoded with
``cv2.VideoCapture.read``, placed by ``common.frame_time.FrameTimer`` exactly as ``ingest.capture`` placed it,
gated by the full-rate motion detector and fed to the clip cutter.  :func:`reference_clips` runs that path on a
file; ``tests/unit/ingest/test_same_clips.py`` checks that the production worker publishes the same clips (ids,
times, model-input bytes) on the demo's synthetic streams, on real footage and on the benchmark's stream.

Do not edit these copies to follow a change of the production code: they are the yardstick.  Only a change
that is *meant* to change which clips are cut may update them, and it must say so.

Issue 15 meant to change two things, and changes them here by injection, the copies untouched: the frames of
a clip are picked on the window's own time grid (``common.model_input.sample_times`` with the window's start
``k * stride`` and ``window_s``, in place of the copy's first-to-last spread: :class:`GridPicks`), and a clip's
frames keep ``clip.bits`` bits (``common.model_input.quantize`` of the clip the copy cut).  Everything else
(which windows are cut, when, their times, their ids, the frames' conversion) is still the copy's, bit for bit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

import common.model_input as model_input
import tests.ingest_reference.clips as reference
from common.frame_time import FrameTimer
from common.settings import CameraSettings
from ingest.capture import Frame
from tests.ingest_reference.clips import ClipCutter, CutClip
from tests.ingest_reference.motion import MotionDetector


class GridPicks:
    """The picker the copy calls (its module's ``sample_times`` and ``model_clip``), told the window it is
    deciding: while :meth:`ClipCutter._decide` runs for window ``k``, picks are made on that window's grid."""

    def __init__(self) -> None:
        self.start = 0.0
        self.span = 4.0

    def sample_times(self, times: Sequence[float], count: int) -> np.ndarray:
        return model_input.sample_times(times, count, start=self.start, span=self.span)

    def model_clip(self, window: Sequence[np.ndarray], count: int, size: int,
                   times: Sequence[float] | None = None) -> np.ndarray:
        return model_input.model_clip(window, count, size, times, start=self.start, span=self.span)


_PICKS = GridPicks()
reference.sample_times = _PICKS.sample_times  # type: ignore[assignment]
reference.model_clip = _PICKS.model_clip  # type: ignore[assignment]


class GridClipCutter(ClipCutter):
    """The copied cutter, its windows' frames picked on their grid and kept to ``clip.bits`` (see above)."""

    def _decide(self, k: int) -> CutClip | None:
        _PICKS.start, _PICKS.span = k * self.stride_s, self.window_s
        clip = super()._decide(k)
        if clip is None:
            return None
        return dataclasses.replace(clip, frames=model_input.quantize(clip.frames, self.clip.bits))


@dataclass(frozen=True)
class ReferenceRun:
    """What the old path cut from one file, and the gate's verdict for every frame (for evidence video)."""

    clips: list[CutClip]
    moving: list[bool]
    frames: int


def _as_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def reference_clips(path: Path, camera: CameraSettings, session_started_at: datetime) -> ReferenceRun:
    """The clips the pre-item-6 ingest path cut from the file at ``path`` with ``camera``'s settings."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open {path}")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    fps = fps if 1.0 <= fps <= 240.0 else camera.fps
    timer = FrameTimer(fps)
    detector: MotionDetector | None = None
    cutter = GridClipCutter(camera.clip, camera.motion, fps)
    clips: list[CutClip] = []
    moving: list[bool] = []
    index = 0
    try:
        while True:
            ok, image = cap.read()
            if not ok or image is None:
                break
            t = timer.place(cap.get(cv2.CAP_PROP_POS_MSEC))
            frame = Frame(index, _as_bgr(image), t, session_started_at + timedelta(seconds=t))
            index += 1
            if detector is None:
                detector = MotionDetector(camera.motion, frame.image.shape[1], frame.image.shape[0])
            result = detector.update(frame.image)
            moving.append(result.moving)
            clips += cutter.push(frame, result)
    finally:
        cap.release()
    clips += cutter.flush()
    return ReferenceRun(clips, moving, index)
