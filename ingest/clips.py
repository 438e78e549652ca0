"""Cut motion-gated, fixed-shape clips (frames x size x size x 3, uint8 BGR) out of a camera's frames.

Windows lie on a grid: window k covers source time [k*stride, k*stride + window_s) with
``stride = window_s * (1 - overlap)``.  A window is decided when the first frame at or after its end
arrives, and emitted only when it is *active*: a frame inside it moved, or motion before it is still
within ``hold_s``.  Because the ring buffer keeps the last ``window_s`` seconds of small frames, the first
window emitted after a still period starts before the motion onset.

Source time is each frame's own (``Frame.source_time_s``: a file's container timestamps, a live frame's
arrival), never its index over a nominal rate, so a window holds ``window_s`` of real motion whatever
the header claims, and its frames are picked on the window's own time grid (``common.model_input.sample_times``,
computed by :func:`pick_times`: instants ``k * stride + i * window_s / frames``, the first frame at or after
each), so the frame picked for an instant is the same in every window that holds it.  A clip's frames are
kept to ``clip.bits`` bits a value (``common.model_input.quantize``), what the model sees.
A clip always spans ``window_s`` of source time, as the model was trained.  When the source ends (end of
file, a live stream lost), ``flush`` emits an open window only if the source covered it: its last frame is
within one frame interval (the median of the recent steps between frames) of the window's end (a 90-frame 15 fps file completes the windows at 0, 1 and
2 s on a 1 s stride).  The windows the source ended inside of would be time-compressed clips; they are
dropped, and those that would have been cut are counted in ``windows_incomplete``.

Each frame a window can pick is converted once, on arrival: straight to a model frame (``crop=full``,
``common.model_input.model_frame``, exactly what training and ``classify`` use), or to a 320-wide copy kept
for cropping (``crop=motion``, every frame).  Every window's instants lie on one lattice, multiples of
``window_s / frames``, when the stride is a whole number of those steps (the defaults: 0.2 s instants, 1 s
stride), so the frames no window can pick are known on arrival and never resized: a window picks only a
frame whose interval since the frame before reaches an instant, or the last frame before a window's end (made
from the decoded frame, still at hand, when the next frame shows the gap).  At 15 fps that is one frame in
three.  A window's clip is ``common.model_input.model_clip`` of its frames (the picked model frames, stacked).  Memory per camera stays at about ``window_s * fps`` small frames plus a few
full-resolution snapshot candidates (the best-moving frame of each stride cell).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

import cv2
import numpy as np

from common.frame_time import FrameIntervals
from common.model_input import RESIZE_INTERPOLATION, TIME_TOLERANCE_S, model_clip, model_frame, quantize
from common.settings import ClipSettings, CropMode, MotionSettings
from ingest.capture import Frame
from ingest.motion import MotionResult

log = logging.getLogger("aislewatch.ingest.clips")

_UINT8 = np.dtype(np.uint8)
_resize = cv2.resize  # the model copy of a decoded frame (``ClipCutter._small``); the benchmark times it here

CROP_COPY_WIDTH = 320
MAX_FPS = 240.0  # the ring's safety bound assumes no camera delivers more (windows are pruned by time)
# A frame is picked for an instant (or a window start) in (previous + 1e-9, t + TIME_TOLERANCE_S] (the picks'
# and the windows' tolerances): the interval asked about is widened beyond both, by far more than float noise
# and far less than a frame interval, so it holds every instant that can pick the frame and few others.
_LATTICE_BEFORE_S = 0.5e-9
_LATTICE_AFTER_S = 1e-5


@dataclass(frozen=True, slots=True)
class CutClip:
    """One clip ready to publish, with its full-resolution evidence frame."""

    frames: np.ndarray = field(repr=False)
    source_start_s: float
    source_end_s: float
    start_at: datetime
    captured_at: datetime
    motion_area: float
    snapshot: np.ndarray = field(repr=False)
    window_index: int = 0
    crop: tuple[int, int, int, int] | None = None
    # The frames' ids in the capture session (ring order, so time order): a frame's id always means the same
    # model frame, so overlapping clips can send each frame once (``ingest.clip_chain``).  Empty when the
    # frames are cut for this clip alone (``crop=motion``: each window has its own crop).
    frame_ids: tuple[int, ...] = ()
    keep_from_id: int = 0  # no later clip of this session uses a frame with a lower id

    def __post_init__(self) -> None:
        f = self.frames
        if f.dtype != np.uint8 or f.ndim != 4 or f.shape[3] != 3:
            raise ValueError(f"clip frames must be (T, H, W, 3) uint8, got {f.shape} {f.dtype}")
        if self.source_end_s < self.source_start_s:
            raise ValueError(f"clip ends ({self.source_end_s}) before it starts ({self.source_start_s})")


@dataclass(slots=True)
class _Entry:
    id: int
    t: float
    at: datetime
    small: np.ndarray | None  # None: no window can pick this frame (see the module docstring)
    moving: bool
    area: float
    bbox: tuple[int, int, int, int] | None


def pick_times(times: list[float], count: int, start: float, span: float) -> list[int]:
    """``common.model_input.sample_times(times, count, start=start, span=span)``, the same picks computed the
    same way in plain Python floats: instant ``i`` is ``start + float(i) * (span / count)`` (numpy's
    ``start + arange(count) * step``), and its pick the first frame whose time is at least the instant less
    ``TIME_TOLERANCE_S`` (``searchsorted``, side left), else the last frame.  The instants increase, so one
    forward scan finds them all.  For a window's 40-120 frames numpy's fixed cost per call is most of
    ``sample_times``' in the ingest loop; ``tests/unit/ingest/test_pick_times.py`` checks the picks are
    identical.  ``times`` must not decrease (the cutter's never do)."""
    step = span / count
    n = len(times)
    last = n - 1
    picks = []
    j = 0
    for i in range(count):
        x = start + float(i) * step - TIME_TOLERANCE_S
        while j < n and times[j] < x:
            j += 1
        picks.append(j if j < n else last)
    return picks


def crop_region(
    bbox: tuple[int, int, int, int], margin: float, frame_width: int, frame_height: int
) -> tuple[int, int, int, int]:
    """A square-ish (x, y, w, h) around ``bbox`` grown by ``margin`` on each side, clamped to the frame."""
    x, y, w, h = bbox
    cx, cy = x + w / 2.0, y + h / 2.0
    side = max(w, h) * (1.0 + 2.0 * margin)
    cw = int(min(frame_width, max(side, 16)))
    ch = int(min(frame_height, max(side, 16)))
    left = round(min(max(cx - cw / 2.0, 0), frame_width - cw))
    top = round(min(max(cy - ch / 2.0, 0), frame_height - ch))
    return left, top, cw, ch


def _union(a: tuple[int, int, int, int] | None, b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    if a is None:
        return b
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return x0, y0, x1 - x0, y1 - y0


class ClipCutter:
    """Feed every frame (in order) with its motion result to ``push``; call ``flush`` at the source's end."""

    def __init__(self, clip: ClipSettings, motion: MotionSettings, fps: float) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.clip = clip
        self.motion = motion
        self.fps = fps
        self.window_s = clip.window_s
        self.stride_s = clip.window_s * (1.0 - clip.overlap)
        # pruned by time in _advance; the bound only guards memory against a clock that stops
        self._ring: deque[_Entry] = deque(maxlen=math.ceil(clip.window_s * max(fps, MAX_FPS) * 2) + 8)
        self._intervals = FrameIntervals(fps)
        self._next_k: int | None = None
        self._pruned_motion_t = -math.inf
        self._cells: dict[int, tuple[float, float, np.ndarray]] = {}
        self._last_motion_image: np.ndarray | None = None
        self._last_image: np.ndarray | None = None
        self._last_bbox: tuple[int, int, int, int] | None = None
        self._frame_size: tuple[int, int] | None = None
        self.windows_skipped = 0  # active windows with fewer than two frames
        self.windows_incomplete = 0  # active windows the source ended inside of (see the module docstring)
        self._model_copy = clip.crop != CropMode.MOTION
        self._model_size = clip.size
        self._model_dsize = (clip.size, clip.size)
        self._next_id = 0
        # the lattice of every window's instants (module docstring), when frames can be skipped by it: not when
        # every frame is kept anyway (cropping) or the motion gate reads each frame's model copy
        step = clip.window_s / clip.frames
        steps_per_stride = self.stride_s / step
        lattice = abs(steps_per_stride - round(steps_per_stride)) < 1e-9 and round(steps_per_stride) >= 1
        self._step_s = step if lattice and self._model_copy and motion.downscale_width != 0 else 0.0
        self._prepared_t: float | None = None  # the time of the last frame given to ``prepare``

    @property
    def reusable_from_id(self) -> int:
        """The lowest frame id a clip cut from now on can use: the ring is pruned to the next window's start."""
        return self._ring[0].id if self._ring else self._next_id

    def reset(self) -> None:
        """Forget everything but the counters (a new capture session starts)."""
        skipped, incomplete = self.windows_skipped, self.windows_incomplete
        self.__init__(self.clip, self.motion, self.fps)  # type: ignore[misc]
        self.windows_skipped, self.windows_incomplete = skipped, incomplete

    # -- feeding -----------------------------------------------------------------------------------
    def _small(self, image: np.ndarray) -> np.ndarray:
        if self._model_copy and image.ndim == 3 and image.shape[2] == 3 and image.dtype is _UINT8:
            # a decoded BGR frame (the usual case): what ``model_frame`` does with it, without its checks
            if image.shape[0] == image.shape[1] == self._model_size:
                return image
            return _resize(image, self._model_dsize, interpolation=RESIZE_INTERPOLATION)
        height, width = image.shape[:2]
        if self.clip.crop == CropMode.MOTION:
            if width <= CROP_COPY_WIDTH:
                return image
            return cv2.resize(image, (CROP_COPY_WIDTH, max(1, round(height * CROP_COPY_WIDTH / width))))
        return model_frame(image, self.clip.size)

    def _reaches_instant(self, previous_t: float | None, t: float) -> bool:
        """Whether a window can pick the frame at ``t`` that follows one at ``previous_t``: its interval
        (widened as ``_LATTICE_BEFORE_S`` says) holds a point of the instants' lattice."""
        step = self._step_s
        if not step or previous_t is None:
            return True
        return math.floor((t + _LATTICE_AFTER_S) / step) > math.floor((previous_t + _LATTICE_BEFORE_S) / step)

    def _ends_window(self, previous_t: float, t: float) -> bool:
        """Whether a window's end lies in the gap from ``previous_t`` to ``t`` far enough from ``previous_t``
        that the window picks that frame, its last, for an instant it has no later frame for."""
        # only an end ``e`` more than one instant's step after ``previous_t`` leaves that window an instant
        # (``e - step``, its last) with no frame at or after it
        stride, window = self.stride_s, self.window_s
        return math.floor((t + _LATTICE_AFTER_S - window) / stride) > math.floor(
            (previous_t + self._step_s - _LATTICE_AFTER_S - window) / stride)

    def prepare(self, frame: Frame) -> np.ndarray | None:
        """The copy of ``frame`` this cutter keeps (a model frame, or the crop copy), to hand to :meth:`push`
        later: made while the decoded frame is still in the CPU's cache, when the motion gate holds frames
        back before their verdict (``ingest.motion.MotionGate``).  None for a frame no window can pick."""
        t, previous = frame.source_time_s, self._prepared_t
        self._prepared_t = t if previous is None else max(t, previous)
        if not self._reaches_instant(previous, t):
            return None
        return self._small(frame.image)

    def push(self, frame: Frame, motion: MotionResult, small: np.ndarray | None = None) -> list[CutClip]:
        """Add one frame; returns the clips of windows that this frame completed (usually none).  ``small``
        is the frame's :meth:`prepare` copy, when made on arrival."""
        t = frame.source_time_s
        ring = self._ring
        image = frame.image
        self._frame_size = (image.shape[1], image.shape[0])
        last = ring[-1] if ring else None
        if last is not None:
            last_t = last.t
            if t < last_t:  # sources never go back in time; a double might
                t = last_t
            self._intervals.add(t - last_t)
            if last.small is None and self._ends_window(last_t, t):
                last.small = self._small(self._last_image)  # type: ignore[arg-type]
        if small is None and self._reaches_instant(None if last is None else last.t, t):
            small = self._small(image)
        out: list[CutClip] = []
        if self._next_k is None:
            self._next_k = math.floor(t / self.stride_s + 1e-9)
        if not ring:
            self._next_k = max(self._next_k, math.floor((t - self.window_s) / self.stride_s + 1e-9) + 1)
        while self._next_k * self.stride_s + self.window_s <= t + 1e-9:
            clip = self._decide(self._next_k)
            if clip is not None:
                out.append(clip)
            self._advance()
        ring.append(_Entry(self._next_id, t, frame.captured_at, small, motion.moving, motion.area_fraction, motion.bbox))
        self._next_id += 1
        self._last_image = image
        if motion.moving:
            self._last_motion_image = image
            cell = math.floor(t / self.stride_s + 1e-9)
            best = self._cells.get(cell)
            if best is None or motion.area_fraction > best[0]:
                self._cells[cell] = (motion.area_fraction, t, image)
        return out

    def flush(self) -> list[CutClip]:
        """At the source's end: emit the open windows the source covered to their end, drop the others."""
        out: list[CutClip] = []
        if self._next_k is not None and self._ring:
            last = self._ring[-1]
            if last.small is None:  # the last frame of the windows still open
                last.small = self._small(self._last_image)  # type: ignore[arg-type]
            last_t = last.t
            covered_until = last_t + self._intervals.interval_s + 1e-6  # where the last frame's interval ends
            while self._next_k * self.stride_s <= last_t + 1e-9:
                if self._next_k * self.stride_s + self.window_s <= covered_until:
                    clip = self._decide(self._next_k)
                    if clip is not None:
                        out.append(clip)
                elif self._active_entries(self._next_k) is not None:
                    self.windows_incomplete += 1
                self._advance()
        self.reset()
        return out

    # -- deciding ----------------------------------------------------------------------------------
    def _advance(self) -> None:
        assert self._next_k is not None
        self._next_k += 1
        start = self._next_k * self.stride_s - 1e-9
        ring = self._ring
        while ring and ring[0].t < start:
            entry = ring.popleft()
            if entry.moving:
                self._pruned_motion_t = max(self._pruned_motion_t, entry.t)
        for cell in [c for c in self._cells if c < self._next_k]:
            del self._cells[cell]

    def _active_entries(self, k: int) -> list[_Entry] | None:
        """The frames of window ``k`` when it is active (see the module docstring), else None."""
        start = k * self.stride_s - 1e-9
        end = k * self.stride_s + self.window_s - 1e-9
        entries = []
        for e in self._ring:  # in time order
            if e.t >= end:
                break
            if e.t >= start:
                entries.append(e)
        if not entries:
            return None
        if not any(e.moving for e in entries) and self._pruned_motion_t + self.motion.hold_s < start:
            return None
        return entries

    def _decide(self, k: int) -> CutClip | None:
        entries = self._active_entries(k)
        if entries is None:
            return None
        start = k * self.stride_s - 1e-9
        end = k * self.stride_s + self.window_s - 1e-9
        count = self.clip.frames
        if len(entries) < 2:
            self.windows_skipped += 1
            return None
        times = [e.t for e in entries]
        chosen = [entries[i] for i in pick_times(times, count, k * self.stride_s, self.window_s)]
        if any(e.small is None for e in chosen):
            # only when the ring's size bound dropped a window's first frames (a clock that stood still for
            # thousands of frames): its first frame left was never a candidate.  Skipped, never a wrong clip.
            self.windows_skipped += 1
            log.warning("window %d skipped: a picked frame's model copy was not kept (%d frames in the window, "
                        "the ring holds %d: has the camera's clock stopped?)", k, len(entries), self._ring.maxlen)
            return None
        crop = None
        frame_ids: tuple[int, ...] = ()
        if self.clip.crop == CropMode.MOTION:
            frames, crop = self._crop_frames(chosen, [e for e in entries if e.moving])
        else:
            frame_ids = tuple(e.id for e in chosen)
            # the frames picked above are those ``model_clip(smalls, count, size, times, start=, span=)`` picks, and
            # each is already a model frame (``prepare``): stacked as they are, without picking them again
            size = self.clip.size
            smalls = [e.small for e in chosen if e.small is not None]  # all of them (checked above)
            frames = np.stack([s if s.shape == (size, size, 3) else model_frame(s, size) for s in smalls])
        return CutClip(
            frames=quantize(frames, self.clip.bits),
            source_start_s=chosen[0].t,
            source_end_s=chosen[-1].t,
            start_at=chosen[0].at,
            captured_at=chosen[-1].at,
            motion_area=min(1.0, max((e.area for e in entries), default=0.0)),
            snapshot=self._snapshot(start, end),
            window_index=k,
            crop=crop,
            frame_ids=frame_ids,
            keep_from_id=self._first_id_from(start + self.stride_s),
        )

    def _first_id_from(self, t: float) -> int:
        """The id of the ring's first frame at or after ``t`` (the next window's start); the next id if none."""
        for e in self._ring:
            if e.t >= t:
                return e.id
        return self._next_id

    def _snapshot(self, start: float, end: float) -> np.ndarray:
        best: tuple[float, float, np.ndarray] | None = None
        for area, t, image in self._cells.values():
            if start <= t < end and (best is None or area > best[0]):
                best = (area, t, image)
        if best is not None:
            return best[2]
        fallback = self._last_motion_image if self._last_motion_image is not None else self._last_image
        assert fallback is not None
        return fallback

    def _crop_frames(
        self, chosen: list[_Entry], moving: list[_Entry]
    ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        assert self._frame_size is not None
        fw, fh = self._frame_size
        union = None
        for e in moving:
            if e.bbox is not None:
                union = _union(union, e.bbox)
        if union is None:
            union = self._last_bbox or (0, 0, fw, fh)
        self._last_bbox = union
        x, y, w, h = crop_region(union, self.clip.crop_margin, fw, fh)
        smalls = [e.small for e in chosen if e.small is not None]  # every frame is kept when cropping
        sh, sw = smalls[0].shape[:2]
        sx, sy = sw / fw, sh / fh
        x0, y0 = int(x * sx), int(y * sy)
        x1, y1 = max(x0 + 1, min(sw, round((x + w) * sx))), max(y0 + 1, min(sh, round((y + h) * sy)))
        frames = model_clip([s[y0:y1, x0:x1] for s in smalls], len(smalls), self.clip.size)
        return frames, (x, y, w, h)
