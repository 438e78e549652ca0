"""Cheap motion gating: is anything moving in this frame, how much, and where.

Everything runs on a small grey frame: by default a copy ``downscale_width`` wide (about 160x90 for 16:9:
one ``cv2.resize(INTER_LINEAR)`` of the colour frame, a grey conversion and a 5x5 Gaussian blur, about 45
CPU us), or, with ``downscale_width: 0``, the 64x64 model frame that the clip cutter makes of every frame
anyway (``common.model_input.model_frame``, handed over by ``MotionGate`` from ``ClipCutter.prepare``), grey
and 3x3 box-blurred: about 5 CPU us, but less sensitive to small, slow movement (README, "Ingest speed").
The blur averages sensor noise away.  Then either

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

A camera's frames go through :class:`MotionGate`, which runs the ``diff`` detector on ``motion.gate_fps``
frames a second (5 by default) and gives every frame a verdict, rewinding to examine each frame where
motion starts or stops; the clips cut are those of a gate that examines every frame (see the class).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import cv2
import numpy as np

from common.model_input import CLIP_SIZE, RESIZE_INTERPOLATION
from common.settings import CameraSettings, CropMode, MotionSettings
from ingest.capture import Frame

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
# On the 64x64 model frame a pixel stands for about 2.5 x 1.4 of the 160x90 frame's, and the grey is
# averaged differently (a 2-tap resize by 10 x 5.6 and a 3x3 box, against 4 x 4 and a 5x5 Gaussian), so a
# faint object or a small, slow movement differs less there.  Both thresholds are scaled to find what the
# 160x90 frame found: the difference from the background counts from 0.9 x ``sensitivity`` (the benchmark's
# stream, a rectangle whose contrast is about ``sensitivity``, is found in every episode at every gate rate,
# as at 160x90), and frame-to-frame change from 0.8 x (the unit tests' slow hand of a still shopper is motion
# on every frame, as at 160x90).  Sensor noise stays far below both.  ``tests/unit/ingest/test_same_clips.py``
# checks the windows cut are those of the 160x90 path on the demo's cameras, vtest.avi and the benchmark's
# stream.  No scaling makes up for everything: a box creeping 2 px a frame over a textured 160x120 shelf
# (``tests.videos.write_moving_box_video``) is motion at 160x120 in its first seconds and not on the model
# frame (at 0.4 x the benchmark's stream gets windows the 160x90 frame does not cut), which is why the model
# frame is not the default.
_MODEL_FRAME_DIFFERENT = 0.9
_MODEL_FRAME_CHANGE = 0.8
_KERNEL_OPEN = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))
_KERNEL_DILATE = cv2.getStructuringElement(cv2.MORPH_RECT, (5, 5))


@dataclass(frozen=True, slots=True)
class MotionResult:
    """Motion in one frame.  ``bbox`` is (x, y, w, h) of everything moving, in full-resolution pixels."""

    moving: bool
    area_fraction: float
    bbox: tuple[int, int, int, int] | None


NO_MOTION = MotionResult(False, 0.0, None)


@dataclass(frozen=True, slots=True)
class _State:
    """A diff detector's state (``MotionDetector.snapshot``); the arrays are never written in place."""

    frames: int
    background: np.ndarray | None
    previous: np.ndarray | None
    activity: np.ndarray | None


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
        # 0: the model frame (square, whatever the aspect; a frame that already is one is used as it is)
        self.model_frame = settings.downscale_width == 0
        self.size = (CLIP_SIZE, CLIP_SIZE) if self.model_frame else small_size(
            frame_width, frame_height, settings.downscale_width
        )
        self._sx = frame_width / self.size[0]
        self._sy = frame_height / self.size[1]
        self._pixels = self.size[0] * self.size[1]
        self._min_pixels = settings.min_area * self._pixels
        self._mask = mask_image(settings.masks, *self.size)
        self._change = settings.sensitivity * (_MODEL_FRAME_CHANGE if self.model_frame else 1.0)
        self._different = settings.sensitivity * (_MODEL_FRAME_DIFFERENT if self.model_frame else 1.0)
        self._frames = 0
        self._background: np.ndarray | None = None
        self._previous: np.ndarray | None = None
        self._activity: np.ndarray | None = None
        self._decays: dict[int, np.ndarray] = {}
        self.keep_background = False  # set by MotionGate, which rewinds (see snapshot)
        self.last_grey: np.ndarray | None = None  # the grey frame of the last update
        # the regions of the last update that found regions but no motion (stage 2): a frame followed after it
        # that changes outside them may be motion away from what is in view (see ``follow``)
        self._still_regions: np.ndarray | None = None
        self._changed: np.ndarray | None = None  # the last frame-to-frame change recorded
        # how far the last update got: 0 nothing differs from the background, 1 only speckles, 2 changed
        # regions but none moved lately, 3 motion (MotionGate rewinds when this changes)
        self.stage = 0
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

    @property
    def rewindable(self) -> bool:
        """Whether :meth:`snapshot` / :meth:`restore` work (diff: yes; OpenCV's MOG2 cannot be copied)."""
        return self._mog2 is None

    def snapshot(self) -> _State:
        """The detector's state now, to :meth:`restore` later; cheap (no copy) when ``keep_background``."""
        if not self.rewindable:
            raise ValueError("a mog2 motion detector cannot be rewound")
        background = self._background
        if background is not None and not self.keep_background:
            background = background.copy()
        return _State(self._frames, background, self._previous, self._activity)

    def restore(self, state: _State) -> None:
        """Go back to a :meth:`snapshot` (the frames since are forgotten, as if never seen)."""
        self._frames, self._background = state.frames, state.background
        self._previous, self._activity = state.previous, state.activity
        if self._background is not None and not self.keep_background:
            self._background = self._background.copy()

    def grey(self, image: np.ndarray) -> np.ndarray:
        """The small, blurred grey frame motion is computed on (``image``: the frame, or, with the model frame,
        the frame's model frame, as ``ClipCutter.prepare`` made it)."""
        if self.model_frame:
            if image.shape[0] != CLIP_SIZE or image.shape[1] != CLIP_SIZE:
                if image.shape[1] != self.frame_width or image.shape[0] != self.frame_height:
                    raise ValueError(
                        f"frame is {image.shape[1]}x{image.shape[0]}, detector was built for "
                        f"{self.frame_width}x{self.frame_height} (or its {CLIP_SIZE}x{CLIP_SIZE} model frame)"
                    )
                image = cv2.resize(image, self.size, interpolation=RESIZE_INTERPOLATION)
            return cv2.blur(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), (3, 3))
        if image.shape[1] != self.frame_width or image.shape[0] != self.frame_height:
            raise ValueError(
                f"frame is {image.shape[1]}x{image.shape[0]}, detector was built for {self.frame_width}x{self.frame_height}"
            )
        small = image
        if self.size != (self.frame_width, self.frame_height):
            small = cv2.resize(image, self.size, interpolation=cv2.INTER_LINEAR)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        return cv2.GaussianBlur(grey, (5, 5), 0)

    def _grey_around(self, image: np.ndarray, like: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """``grey(image)`` around ``box`` (small-frame pixels; what moved there is all that counts) and ``like``
        elsewhere: computed on a crop, with a margin for the blur and the regions' dilation, so it costs what
        the box's area does.  The values in the box are those of ``grey`` when the frame is an integer multiple
        of the small size (bilinear resize at an integer factor reads only pixels inside the crop)."""
        x, y, w, h = box
        sw, sh = self.size
        margin = 6  # the 5x5 dilation of the regions (2), the 5x5 blur (2), and the resize's neighbours
        x0, y0 = max(0, x - margin), max(0, y - margin)
        x1, y1 = min(sw, x + w + margin), min(sh, y + h + margin)
        if (
            self.model_frame
            or (x1 - x0) * (y1 - y0) * 2 > sw * sh
            or self.size == (self.frame_width, self.frame_height)
        ):
            return self.grey(image)
        fx0, fx1 = math.floor(x0 * self._sx), min(self.frame_width, math.ceil(x1 * self._sx))
        fy0, fy1 = math.floor(y0 * self._sy), min(self.frame_height, math.ceil(y1 * self._sy))
        small = cv2.resize(image[fy0:fy1, fx0:fx1], (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        out = like.copy()
        out[y0:y1, x0:x1] = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (5, 5), 0)
        return out

    def _alphas(self, frames: int) -> tuple[float, float]:
        """The background's learning rates for one update standing for ``frames`` camera frames: the rate
        that many per-frame updates would have had (``1 - (1 - a) ** frames``), so time constants hold."""
        if frames == 1:
            return _BG_ALPHA, _FG_ALPHA
        return 1.0 - (1.0 - _BG_ALPHA) ** frames, 1.0 - (1.0 - _FG_ALPHA) ** frames

    def foreground(self, grey: np.ndarray, frames: int = 1) -> np.ndarray:
        """Binary (0/255) foreground mask of the small frame, before masks and morphology."""
        if self._mog2 is not None:
            rate = -1.0 if self.warmed_up else 1.0 / (self._frames + 1)
            return self._mog2.apply(grey, learningRate=rate)
        if self._background is None:
            self._background = grey.astype(np.float32)
            return np.zeros_like(grey)
        diff = cv2.absdiff(grey, cv2.convertScaleAbs(self._background))
        _, fg = cv2.threshold(diff, self._different, 255, cv2.THRESH_BINARY)
        if self.keep_background:  # a copy is kept to rewind to (MotionGate); the update goes to a new one
            self._background = self._background.copy()
        if not self.warmed_up:
            cv2.accumulateWeighted(grey, self._background, 1.0 / (self._frames + 1))
            return fg
        bg_alpha, fg_alpha = self._alphas(frames)
        if not cv2.countNonZero(fg):  # nothing differs: all of it learns at the still rate (the same bits as
            cv2.accumulateWeighted(grey, self._background, bg_alpha)  # the two masked updates below)
            return fg
        moving = cv2.dilate(fg, _KERNEL_DILATE)
        cv2.accumulateWeighted(grey, self._background, bg_alpha, mask=cv2.bitwise_not(moving))
        cv2.accumulateWeighted(grey, self._background, fg_alpha, mask=moving)
        return fg

    def recent_activity(self, grey: np.ndarray, frames: int = 1) -> np.ndarray:
        """Where the picture changed from one frame to the next lately: 255 on a change, fading to 0 (by
        ``_ACTIVITY_DECAY`` per camera frame; ``frames`` is how many this update stands for)."""
        if self._previous is None or self._activity is None:
            self._previous = grey
            self._activity = np.zeros_like(grey)
            return self._activity
        decay = self._decay(frames)
        _, changed = cv2.threshold(cv2.absdiff(grey, self._previous), self._change, 255, cv2.THRESH_BINARY)
        self._changed = changed
        self._activity = cv2.max(cv2.subtract(self._activity, decay), changed)
        self._previous = grey
        return self._activity

    def _fade(self, grey: np.ndarray, frames: int) -> None:
        """Recent change fades by ``frames`` camera frames, and nothing new is added (see ``update``)."""
        if self._activity is None:
            self.recent_activity(grey, frames)
            return
        self._activity = cv2.subtract(self._activity, self._decay(frames))
        self._previous = grey

    def _decay(self, frames: int) -> np.ndarray:
        decay = self._decays.get(frames)
        if decay is None:
            assert self._activity is not None
            decay = self._decays[frames] = np.full_like(self._activity, min(255, _ACTIVITY_DECAY * frames))
        return decay

    def follow(self, image: np.ndarray) -> tuple[np.ndarray, bool]:
        """A frame ``MotionGate`` holds back while something is in view: its frame-to-frame change is recorded
        as the full-rate detector records it (the background learns at the next ``update``, with
        ``followed``).  Returns the frame's grey copy, and whether, the view being still (stage 2), it changed
        outside the regions in view: something else moved there, which the next examined frame may no longer
        show, so the held frames must each be examined."""
        grey = self.grey(image)
        self._changed = None
        self.recent_activity(grey)
        regions, changed = self._still_regions, self._changed
        elsewhere = (
            self.stage == 2 and regions is not None and changed is not None
            and cv2.countNonZero(cv2.bitwise_and(changed, cv2.bitwise_not(regions))) >= _MIN_ACTIVE_PIXELS
        )
        return grey, elsewhere

    def _still(self, regions: np.ndarray) -> MotionResult:
        """The verdict of a frame with regions in view but no motion in them (stage 2)."""
        self.stage = 2
        self._still_regions = regions
        return NO_MOTION

    def update(
        self, image: np.ndarray, frames: int = 1, previous: np.ndarray | None = None, grey: np.ndarray | None = None,
        *, followed: bool = False,
    ) -> MotionResult:
        """Motion in this BGR frame compared with the background learned from the earlier ones.

        ``frames`` > 1: this frame stands for that many camera frames since the last update (``MotionGate``
        examines every k-th): learning and fading are scaled to keep their time constants (diff only), and
        ``previous`` is the camera frame just before this one, so that recent change is still measured from
        one frame to the next (a slow mover changes little between neighbours and much over k frames).  It
        is only looked at when something differs from the background: where nothing does, no change can
        make a region count, and the recent change just fades.  ``grey``: ``self.grey(image)`` when already
        computed (``last_grey`` after an earlier update of the same image; never changed in place).
        ``followed``: the frames since the last update were each given to :meth:`follow`, so the recent change
        is current and only the background's learning is scaled to ``frames``."""
        if grey is None:
            grey = self.grey(image)
        self.last_grey = grey
        fg = self.foreground(grey, frames)
        single_step = followed or (frames == 1 and previous is None)
        if single_step:  # the recent change exactly as the full-rate detector has it
            activity = self.recent_activity(grey)
        self._frames += 1
        if not self.warmed_up:
            if not single_step:
                self.recent_activity(grey, frames)
            self.stage = 0
            return NO_MOTION
        if self._mask is not None:
            fg = cv2.bitwise_and(fg, self._mask)
        if cv2.countNonZero(fg) >= self._min_pixels:
            fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, _KERNEL_OPEN)
            self.stage = 1 if cv2.countNonZero(fg) < self._min_pixels else 2
        else:
            self.stage = 0
        if not single_step:
            if self.stage < 2:
                self._fade(grey, frames)
            else:
                if previous is not None and self._previous is not None:
                    x, y, w, h = cv2.boundingRect(fg)
                    self._previous = self._grey_around(previous, grey, (x, y, w, h))
                activity = self.recent_activity(grey, frames)
        if self.stage < 2:
            return NO_MOTION
        regions = cv2.dilate(fg, _KERNEL_DILATE)
        active = cv2.bitwise_and(activity, regions)
        if cv2.countNonZero(active) < _MIN_ACTIVE_PIXELS:
            # fewer changed-lately pixels in all the regions together than one region needs to be live: none is
            # (the same verdict as counting them region by region below, without labelling the regions)
            return self._still(regions)
        count, labels = cv2.connectedComponents(regions)
        # changed-lately pixels per region (those outside every region are label 0's, which is never live)
        active_per_region = np.bincount(labels[active > 0], minlength=count)
        active_per_region[0] = 0
        live = (active_per_region >= _MIN_ACTIVE_PIXELS).nonzero()[0]
        if live.size == 0:
            return self._still(regions)
        if live.size < count - 1:  # drop the still regions: a 0/255 mask of the live ones, by label lookup
            # (the masks are 0/255, so and-ing them with it is ``np.where(np.isin(labels, live), mask, 0)``,
            # at a fraction of ``isin``'s cost on a frame of labels)
            if count <= 256:
                lookup = np.zeros(256, np.uint8)
                lookup[live] = 255
                keep = cv2.LUT(labels.astype(np.uint8), lookup)
            else:
                lookup = np.zeros(count, np.uint8)
                lookup[live] = 255
                keep = lookup[labels]
            fg = cv2.bitwise_and(fg, keep)
            regions = cv2.bitwise_and(regions, keep)
        moving_pixels = cv2.countNonZero(fg)
        if moving_pixels < self._min_pixels:
            return self._still(regions)
        x, y, w, h = cv2.boundingRect(regions)
        fx, fy = int(x * self._sx), int(y * self._sy)
        bbox = (
            fx,
            fy,
            min(self.frame_width - fx, round(w * self._sx)),
            min(self.frame_height - fy, round(h * self._sy)),
        )
        self.stage = 3
        return MotionResult(True, moving_pixels / self._pixels, bbox)


class GatedFrame(Protocol):
    """What :class:`MotionGate` needs of a frame (``ingest.capture.Frame``)."""

    @property
    def image(self) -> np.ndarray: ...

    @property
    def source_time_s(self) -> float: ...


F = TypeVar("F", bound=GatedFrame)


class Arrived:
    """A frame on its way through the gate with the clip cutter's copy of it, made on arrival while the
    decoded frame is still in the CPU's cache (``ClipCutter.prepare``).  A plain slotted class, made once a
    frame: the gate reads ``image`` and ``source_time_s`` as attributes (no dataclass or property calls)."""

    __slots__ = ("frame", "image", "small", "source_time_s")

    def __init__(self, frame: Frame, small: np.ndarray | None) -> None:
        self.frame = frame
        self.small = small
        self.image = frame.image
        self.source_time_s = frame.source_time_s

    def __repr__(self) -> str:
        return f"Arrived(frame={self.frame!r})"


def _settled(stage: int) -> int:
    """What must not change between two examined frames for the frames between to take the first's verdict:
    nothing there (stages 0 and 1: speckles only), still regions (2) or motion (3)."""
    return max(1, stage)


MAX_HELD_FRAMES = 16  # a gate interval never holds back more frames than this (fast cameras, slow gate rates)
# ...and while something is in view, fewer than the recent change lasts (255 / _ACTIVITY_DECAY frames): a
# movement in any held frame is still in the recent change when the next frame is examined
MAX_HELD_IN_VIEW = 255 // _ACTIVITY_DECAY - 1
_DUE_TOLERANCE_S = 0.01  # frame timestamps jitter: a frame this early still counts as due


class MotionGate(Generic[F]):
    """Every frame's motion verdict while examining only ``gate_fps`` frames a second.

    The detector examines one frame per gate interval (``1 / gate_fps`` of source time), its background's
    learning scaled to the frames it stands for.  The frames in between are held back, not copied, until the
    next examined frame decides them.  While nothing is in view (the last examined frame's regions do not
    differ from the background beyond speckles) they are not looked at; while something is, each is
    *followed* (``MotionDetector.follow``: its grey copy made and its frame-to-frame change recorded as the
    full-rate detector records it), and at most ``MAX_HELD_IN_VIEW`` are held, fewer than a change is
    remembered, so a shopper standing still who moves for one frame is still moving to the next examined
    frame.  When that frame's verdict (moving or not) is the same as the previous examined frame's, the frames
    between take the previous verdict; when it differs, motion started or stopped in between, so the detector
    is rewound to the previous examined frame and every held frame is examined in turn, which finds the first
    (or last) moving frame as a full-rate gate would.  Clips start and stop with those frames, so which clips
    are cut stays that of a full-rate gate (see ``tests/unit/ingest/test_same_clips.py``), while about
    ``camera fps / gate_fps`` times fewer frames are examined.  Frames leave the gate in order, at most one
    gate interval late.  What an empty view can miss: something that appears and is gone again within one
    gate interval (0.2 s at 5 fps) between two examined frames; ``gate_fps`` 0 examines every frame.

    The first ``warmup_frames`` frames are all examined (the background is learnt from each).  ``gate_fps``
    0 examines every frame, as does the ``mog2`` method (OpenCV's MOG2 cannot be rewound).
    """

    def __init__(self, settings: MotionSettings, frame_width: int, frame_height: int, gate_fps: float) -> None:
        self.detector = MotionDetector(settings, frame_width, frame_height)
        self.every_frame = gate_fps <= 0 or not self.detector.rewindable
        self.interval_s = 0.0 if self.every_frame else 1.0 / gate_fps
        self.detector.keep_background = not self.every_frame
        self._model_shape = (CLIP_SIZE, CLIP_SIZE, 3)
        self._held: list[F] = []
        self._held_greys: list[np.ndarray] = []  # of the frames held while something is in view (followed)
        self._moved_elsewhere = False  # a followed frame changed away from the still regions in view
        self._last = NO_MOTION
        self._state: _State | None = None
        self._due = -math.inf
        self.frames_examined = 0
        self.rewinds = 0

    @property
    def held(self) -> int:
        """Frames waiting for the next examined frame's verdict."""
        return len(self._held)

    def _image(self, frame: F) -> np.ndarray:
        """What the detector reads of ``frame``: its model frame when the cutter made one on arrival
        (``Arrived.small``, the detector's own frame: nothing to resize), else the decoded frame."""
        if self.detector.model_frame:
            small = getattr(frame, "small", None)  # an ``Arrived``; a plain ``Frame`` has none
            if small is not None and small.shape == self._model_shape:
                return small  # type: ignore[no-any-return]
        return frame.image

    def _examine(self, frame: F, frames: int = 1) -> MotionResult:
        self.frames_examined += 1
        return self.detector.update(self._image(frame), frames)

    def push(self, frame: F) -> list[tuple[F, MotionResult]]:
        """Add the next frame; returns the frames decided by it, in order, each with its verdict."""
        if self.every_frame:
            return [(frame, self._examine(frame))]
        if not self.detector.warmed_up:
            self._last = self._examine(frame)
            self._state = self.detector.snapshot()
            self._due = frame.source_time_s + self.interval_s - _DUE_TOLERANCE_S
            return [(frame, self._last)]
        in_view = self.detector.stage >= 2  # regions differ from the background (fixed while frames are held)
        limit = MAX_HELD_IN_VIEW if in_view else MAX_HELD_FRAMES
        if frame.source_time_s < self._due and len(self._held) < limit:
            if not self._held and self._state is None:
                self._state = self.detector.snapshot()  # the state the held frames are rewound to
            self._held.append(frame)
            if in_view:  # a quick movement of a shopper standing still stays in the recent change
                followed, elsewhere = self.detector.follow(self._image(frame))
                self._held_greys.append(followed)
                self._moved_elsewhere = self._moved_elsewhere or elsewhere
            return []
        held, self._held = self._held, []
        greys, self._held_greys = self._held_greys, []
        moved_elsewhere, self._moved_elsewhere = self._moved_elsewhere, False
        previous, state, stage = self._last, self._state, self.detector.stage
        self.frames_examined += 1
        if in_view:
            result = self.detector.update(self._image(frame), len(held) + 1, followed=True)
        else:
            result = self.detector.update(self._image(frame), len(held) + 1, self._image(held[-1]) if held else None)
        if (_settled(self.detector.stage) == _settled(stage) and not moved_elsewhere) or state is None:
            decided = [(f, previous) for f in held]
            decided.append((frame, result))
        else:  # motion started or stopped in between (or moved elsewhere a while): find where, frame by frame
            self.rewinds += 1
            grey = self.detector.last_grey  # this frame's, the same after the rewind: not computed again
            self.detector.restore(state)
            decided = self._examine_held(held, greys)
            self.frames_examined += 1
            decided.append((frame, self.detector.update(self._image(frame), grey=grey)))
        self._last = decided[-1][1]
        self._state = self.detector.snapshot()
        self._due = frame.source_time_s + self.interval_s - _DUE_TOLERANCE_S
        return decided

    def _examine_held(self, held: list[F], greys: list[np.ndarray]) -> list[tuple[F, MotionResult]]:
        """Each held frame examined in turn (from the state they were held at), reusing the grey copies
        made while following them."""
        self.frames_examined += len(held)
        if greys:
            return [(f, self.detector.update(self._image(f), grey=g)) for f, g in zip(held, greys, strict=True)]
        return [(f, self.detector.update(self._image(f))) for f in held]

    def flush(self) -> list[tuple[F, MotionResult]]:
        """At the source's end: decide the held frames (each examined), in order."""
        held, self._held = self._held, []
        greys, self._held_greys = self._held_greys, []
        self._moved_elsewhere = False
        if held and self._state is not None:
            self.detector.restore(self._state)  # followed frames changed the recent change: start again
        decided = self._examine_held(held, greys)
        if decided:
            self._last = decided[-1][1]
            self._state = self.detector.snapshot()
        return decided


CROP_DOWNSCALE_WIDTH = 160  # the motion frame's width where clips are cropped around the motion


def motion_for(camera: CameraSettings) -> MotionSettings:
    """``camera``'s motion settings as its gate applies them: ``downscale_width`` 0 (the model frame) is the
    160-wide copy where clips are cut around the motion (``clip.crop: motion``), whose region is the union of
    the moving boxes: the cutter makes no model frame there to reuse, and the boxes keep their finer grain."""
    motion = camera.motion
    if camera.clip.crop == CropMode.MOTION and motion.downscale_width == 0:
        return motion.model_copy(update={"downscale_width": CROP_DOWNSCALE_WIDTH})
    return motion


def gate_for(camera: CameraSettings, frame_width: int, frame_height: int) -> MotionGate[F]:
    """The motion gate of ``camera`` (the ingest worker's, and ``model compare``'s: the same clips)."""
    return MotionGate(motion_for(camera), frame_width, frame_height, gate_fps_for(camera))


def gate_fps_for(camera: CameraSettings) -> float:
    """The rate ``camera``'s gate examines frames at: ``motion.gate_fps``, but every frame when clips are cut
    around the motion (``clip.crop: motion``), whose region is the union of every moving frame's box."""
    return 0.0 if camera.clip.crop == CropMode.MOTION else camera.motion.gate_fps
