"""True time for decoded frames: where each frame of a file lies, from its own container timestamps.

A container's nominal frame rate and frame count can lie (``vtest.avi`` declares 682 frames at 50 fps and
holds 341 at 25 fps over the same 13.6 s), and a variable-frame-rate file has no one rate at all.  Each
decoded frame's own timestamp (OpenCV's ``CAP_PROP_POS_MSEC`` after the read) is right, with two
blemishes seen in real files: some containers answer 0 (or nothing) for a frame, often the last one, and
some report every frame one interval late (vtest.avi's first frame says 40 ms).  :class:`FrameTimer`
turns those readings into a source time per frame that

- starts at 0 with the first frame of the file (times are relative to the first reading),
- never goes backwards: a missing or non-increasing reading is placed one frame interval after the
  previous frame; a jump back of more than :data:`RESET_JUMP_S` (a timestamp reset) re-anchors the clock,
- continues across a looped file's restarts (:meth:`FrameTimer.restart`).

The frame interval is the median of the recent measured steps (the nominal rate's until there are any),
and :attr:`FrameTimer.end_s` is where the last frame's interval ends: the file's real duration.

Ingest (``ingest.capture``), ``classify`` and the training-set builder all place frames with this class,
so a window of ``window_s`` seconds holds the same frames everywhere.
"""

from __future__ import annotations

import math
from collections import deque
from statistics import median

RESET_JUMP_S = 1.0  # a reading this far behind the previous frame is a timestamp reset, not jitter
_STEPS_KEPT = 15


class FrameIntervals:
    """A running estimate of the frame interval: the median of the last few positive steps between frames."""

    def __init__(self, nominal_fps: float) -> None:
        self.nominal_s = 1.0 / nominal_fps if nominal_fps and math.isfinite(nominal_fps) and nominal_fps > 0 else 1 / 15
        self._steps: deque[float] = deque(maxlen=_STEPS_KEPT)

    def add(self, step_s: float) -> None:
        if step_s > 0 and math.isfinite(step_s):
            self._steps.append(step_s)

    @property
    def interval_s(self) -> float:
        return median(self._steps) if self._steps else self.nominal_s

    @property
    def measured(self) -> bool:
        return bool(self._steps)


class FrameTimer:
    """Source time of each frame of a file, fed in decode order with the container's reading for it."""

    def __init__(self, nominal_fps: float) -> None:
        self.intervals = FrameIntervals(nominal_fps)
        self.frames = 0
        self.last_s: float | None = None
        self._origin_ms: float | None = None  # the first reading of the current pass
        self._offset_s = 0.0  # source time of the current pass's first frame (loops, resets)
        self._last_measured = False

    @property
    def interval_s(self) -> float:
        return self.intervals.interval_s

    @property
    def end_s(self) -> float:
        """Where the last frame's interval ends (0 before any frame): the real duration read so far."""
        return 0.0 if self.last_s is None else self.last_s + self.interval_s

    @property
    def fps(self) -> float:
        """The measured frame rate (the nominal one until two frames were timed)."""
        return 1.0 / self.interval_s

    def restart(self) -> None:
        """The file starts again (a looping camera): the next frame follows the last one by one interval."""
        if self.last_s is not None:
            self._offset_s = self.end_s
        self._origin_ms = None
        self._last_measured = False

    def place(self, reading_ms: float | None) -> float:
        """The source time (s) of the next frame, whose container timestamp is ``reading_ms``."""
        valid = reading_ms is not None and math.isfinite(reading_ms) and reading_ms >= 0
        first_of_pass = self._origin_ms is None
        if first_of_pass:
            self._origin_ms = float(reading_ms) if valid and reading_ms is not None else 0.0
            t, measured = self._offset_s, valid
        elif not valid or reading_ms == 0:  # 0 after the first frame: the container has no timestamp for it
            t, measured = self._next_guess(), False
        else:
            assert reading_ms is not None and self._origin_ms is not None
            t = self._offset_s + (reading_ms - self._origin_ms) / 1000.0
            measured = True
            last = self.last_s if self.last_s is not None else -math.inf
            if t <= last + 1e-9:
                guess = self._next_guess()
                if last - t > RESET_JUMP_S:  # a reset: continue from here on the new readings
                    self._offset_s += guess - t
                else:
                    measured = False
                t = guess
        if measured and self._last_measured and self.last_s is not None:
            self.intervals.add(t - self.last_s)
        self._last_measured = measured
        self.last_s = t
        self.frames += 1
        return t

    def _next_guess(self) -> float:
        return self.end_s
