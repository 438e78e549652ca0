"""Cheap motion gating: is anything moving in this frame, how much, and where.

Everything runs on a small grey copy (``downscale_width`` wide, about 160x90 for 16:9): one
``cv2.resize(INTER_LINEAR)`` of the colour frame, a grey conversion and a 5x5 blur (which averages sensor
noise away), then either

- ``diff``: absolute difference to a running-average background (``accumulateWeighted``, updated
  ten times more slowly under what moves, so that people are not learnt as background), or
- ``mog2``: OpenCV's Gaussian-mixture background subtractor (shadows off),

a threshold at ``sensitivity``, the configured masks zeroed, a morphological open (drops speckles) and a
dilation (joins the parts of one person), and ``min_area`` as a fraction of the frame.  Of the changed
regions only those in which something moved within the last half second count: what a shopper moved and
left (a gap on a shelf) differs from the background for a long time, but is not motion.  The first
``warmup_frames`` frames only learn the background and never count as motion.

``diff`` is the cheaper method (about a third of mog2's cost per frame, see tests/bench/bench_ingest.py)
and, with the blur and the area threshold, ignores sensor noise as well; mog2 copes better with
repetitive background motion (flicker, swaying displays) at a higher cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from common.settings import MotionSettings

_BG_ALPHA = 0.02  # running-average learning rate where nothing moves: lighting drift is followed within ~3 s
# ...and where something does: a shopper standing at a shelf would otherwise be half absorbed within a few
# seconds, leaving a "ghost" that kept the gate open for seconds after they walked away; a parked trolley
# still fades into the background, in about half a minute.
_FG_ALPHA = 0.002
# Frame-to-frame change is remembered for 255 / _ACTIVITY_DECAY frames (about 0.5 s at 15 fps).  A changed
# region counts only while something has moved in it lately: an item taken from a shelf leaves a lasting
# difference from the background, but nothing moves there once the shopper has gone.
_ACTIVITY_DECAY = 32
_MIN_ACTIVE_PIXELS = 3
_KERNEL_OPEN = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))
_KERNEL_DILATE = cv2.getStructuringElement(cv2.MORPH_RECT, (5, 5))


@dataclass(frozen=True, slots=True)
class MotionResult:
    """Motion in one frame.  ``bbox`` is (x, y, w, h) of everything moving, in full-resolution pixels."""

    moving: bool
    area_fraction: float
    bbox: tuple[int, int, int, int] | None


NO_MOTION = MotionResult(False, 0.0, None)


def small_size(frame_width: int, frame_height: int, downscale_width: int) -> tuple[int, int]:
    """(width, height) of the motion frame: ``downscale_width`` wide (never upscaled), aspect kept."""
    width = max(8, min(downscale_width, frame_width))
    height = max(8, round(frame_height * width / frame_width))
    return width, height


def mask_image(masks: list[list[tuple[float, float]]], width: int, height: int) -> np.ndarray | None:
    """A uint8 image, 255 where motion counts and 0 inside the mask polygons (None when there are no masks)."""
    if not masks:
        return None
    image = np.full((height, width), 255, np.uint8)
    for polygon in masks:
        points = np.array([[round(x * (width - 1)), round(y * (height - 1))] for x, y in polygon], np.int32)
        cv2.fillPoly(image, [points], 0)
    return image


class MotionDetector:
    """Stateful per-camera motion detector; feed every frame in order to ``update``."""

    def __init__(self, settings: MotionSettings, frame_width: int, frame_height: int) -> None:
        if frame_width <= 0 or frame_height <= 0:
            raise ValueError(f"frame size must be positive, got {frame_width}x{frame_height}")
        self.settings = settings
        self.frame_width = frame_width
        self.frame_height = frame_height
        self.size = small_size(frame_width, frame_height, settings.downscale_width)
        self._sx = frame_width / self.size[0]
        self._sy = frame_height / self.size[1]
        self._pixels = self.size[0] * self.size[1]
        self._min_pixels = settings.min_area * self._pixels
        self._mask = mask_image(settings.masks, *self.size)
        self._frames = 0
        self._background: np.ndarray | None = None
        self._previous: np.ndarray | None = None
        self._activity: np.ndarray | None = None
        self._decay: np.ndarray | None = None
        self._mog2 = None
        if settings.method == "mog2":
            self._mog2 = cv2.createBackgroundSubtractorMOG2(
                history=max(50, settings.warmup_frames * 5),
                varThreshold=float(settings.sensitivity),
                detectShadows=False,
            )

    @property
    def warmed_up(self) -> bool:
        return self._frames > self.settings.warmup_frames

    def grey(self, image: np.ndarray) -> np.ndarray:
        """The small, blurred grey frame motion is computed on."""
        if image.shape[1] != self.frame_width or image.shape[0] != self.frame_height:
            raise ValueError(
                f"frame is {image.shape[1]}x{image.shape[0]}, detector was built for {self.frame_width}x{self.frame_height}"
            )
        small = image
        if self.size != (self.frame_width, self.frame_height):
            small = cv2.resize(image, self.size, interpolation=cv2.INTER_LINEAR)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        return cv2.GaussianBlur(grey, (5, 5), 0)

    def foreground(self, grey: np.ndarray) -> np.ndarray:
        """Binary (0/255) foreground mask of the small frame, before masks and morphology."""
        if self._mog2 is not None:
            rate = -1.0 if self.warmed_up else 1.0 / (self._frames + 1)
            return self._mog2.apply(grey, learningRate=rate)
        if self._background is None:
            self._background = grey.astype(np.float32)
            return np.zeros_like(grey)
        diff = cv2.absdiff(grey, cv2.convertScaleAbs(self._background))
        _, fg = cv2.threshold(diff, self.settings.sensitivity, 255, cv2.THRESH_BINARY)
        if not self.warmed_up:
            cv2.accumulateWeighted(grey, self._background, 1.0 / (self._frames + 1))
            return fg
        moving = cv2.dilate(fg, _KERNEL_DILATE)
        cv2.accumulateWeighted(grey, self._background, _BG_ALPHA, mask=cv2.bitwise_not(moving))
        cv2.accumulateWeighted(grey, self._background, _FG_ALPHA, mask=moving)
        return fg

    def recent_activity(self, grey: np.ndarray) -> np.ndarray:
        """Where the picture changed from one frame to the next lately: 255 on a change, fading to 0."""
        if self._previous is None or self._activity is None or self._decay is None:
            self._previous = grey
            self._activity = np.zeros_like(grey)
            self._decay = np.full_like(grey, _ACTIVITY_DECAY)
            return self._activity
        _, changed = cv2.threshold(cv2.absdiff(grey, self._previous), self.settings.sensitivity, 255, cv2.THRESH_BINARY)
        self._activity = cv2.max(cv2.subtract(self._activity, self._decay), changed)
        self._previous = grey
        return self._activity

    def update(self, image: np.ndarray) -> MotionResult:
        """Motion in this BGR frame compared with the background learned from the earlier ones."""
        grey = self.grey(image)
        fg = self.foreground(grey)
        activity = self.recent_activity(grey)
        self._frames += 1
        if not self.warmed_up:
            return NO_MOTION
        if self._mask is not None:
            fg = cv2.bitwise_and(fg, self._mask)
        if cv2.countNonZero(fg) < self._min_pixels:
            return NO_MOTION
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, _KERNEL_OPEN)
        if cv2.countNonZero(fg) < self._min_pixels:
            return NO_MOTION
        regions = cv2.dilate(fg, _KERNEL_DILATE)
        count, labels = cv2.connectedComponents(regions)
        active_per_region = np.bincount(labels[activity > 0], minlength=count)
        live = np.flatnonzero(active_per_region >= _MIN_ACTIVE_PIXELS)
        live = live[live != 0]
        if live.size == 0:
            return NO_MOTION
        if live.size < count - 1:  # drop the still regions
            keep = np.isin(labels, live)
            fg = np.where(keep, fg, 0).astype(np.uint8)
            regions = np.where(keep, regions, 0).astype(np.uint8)
        moving_pixels = cv2.countNonZero(fg)
        if moving_pixels < self._min_pixels:
            return NO_MOTION
        x, y, w, h = cv2.boundingRect(regions)
        fx, fy = int(x * self._sx), int(y * self._sy)
        bbox = (
            fx,
            fy,
            min(self.frame_width - fx, round(w * self._sx)),
            min(self.frame_height - fy, round(h * self._sy)),
        )
        return MotionResult(True, moving_pixels / self._pixels, bbox)
