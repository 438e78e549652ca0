"""The ingest path as it was before issue 12 item 6 (ingest close to decode), kept to prove clips unchanged.

``motion.py`` and ``clips.py`` here are verbatim copies of ``ingest/motion.py`` and ``ingest/clips.py`` at
commit 9d0f95d (only the import of ``MotionResult`` points here): every frame decoded with
``cv2.VideoCapture.read``, placed by ``common.frame_time.FrameTimer`` exactly as ``ingest.capture`` placed it,
gated by the full-rate motion detector and fed to the clip cutter.  :func:`reference_clips` runs that path on a
file; ``tests/unit/ingest/test_same_clips.py`` checks that the production worker publishes the same clips (ids,
times, model-input bytes) on the demo's synthetic streams, on real footage and on the benchmark's stream.

Do not edit these copies to follow a change of the production code: they are the yardstick.  Only a change
that is *meant* to change which clips are cut may update them, and it must say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from common.frame_time import FrameTimer
from common.settings import CameraSettings
from ingest.capture import Frame
from tests.ingest_reference.clips import ClipCutter, CutClip
from tests.ingest_reference.motion import MotionDetector


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
    cutter = ClipCutter(camera.clip, camera.motion, fps)
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
