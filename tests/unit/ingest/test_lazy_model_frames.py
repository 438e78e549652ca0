"""The cutter resizes only the frames a window can pick (issue 12 item 6), and cuts exactly the clips it cut
when it resized every frame.

The reference is the same cutter with the lattice rule turned off (``_step_s = 0``: every frame resized on
arrival, the old behaviour).  Frames carry random pictures, so byte-identical clips mean the same frames were
picked; the times cover steady rates that do and do not divide the 0.2 s instants, jittered live arrival
times, frames lost across a window's end (the window then picks its last frame for the instants it has no
later frame for), a source ending mid-window, and settings whose instants are not on one lattice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from common.settings import ClipSettings, MotionSettings
from ingest.capture import Frame
from ingest.clips import ClipCutter
from ingest.motion import NO_MOTION, MotionResult

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
MOVING = MotionResult(True, 0.05, (10, 10, 20, 20))


def steady(fps: float, seconds: float = 14.0) -> list[float]:
    return [i / fps for i in range(int(seconds * fps))]


def jittered(fps: float, seed: int, seconds: float = 14.0) -> list[float]:
    rng = np.random.default_rng(seed)
    steps = np.clip(rng.normal(1 / fps, 0.3 / fps, int(seconds * fps)), 0.0, None)
    return list(np.cumsum(steps) - steps[0])


def with_gaps(fps: float, gaps: list[tuple[float, float]], seconds: float = 14.0) -> list[float]:
    return [t for t in steady(fps, seconds) if not any(a <= t < b for a, b in gaps)]


def moving_half(t: float) -> bool:
    return 1.0 <= t < 6.5 or 9.2 <= t < 12.0


def run(times: list[float], clip: ClipSettings, lazy: bool, moving: Callable[[float], bool] = moving_half,
        flush: bool = True) -> tuple[list[tuple], int]:
    cutter = ClipCutter(clip, MotionSettings(hold_s=1.0), 15.0)
    if not lazy:
        cutter._step_s = 0.0  # every frame resized on arrival, as before
    rng = np.random.default_rng(0)
    clips, resized = [], 0
    for i, t in enumerate(times):
        image = rng.integers(0, 256, (72, 128, 3), dtype=np.uint8)
        frame = Frame(i, image, float(t), T0 + timedelta(seconds=float(t)))
        small = cutter.prepare(frame)
        resized += small is not None
        clips += cutter.push(frame, MOVING if moving(t) else NO_MOTION, small)
    if flush:
        clips += cutter.flush()
    return [(c.window_index, c.frame_ids, c.source_start_s, c.source_end_s, c.frames.tobytes()) for c in clips], resized


def assert_same(times: list[float], clip: ClipSettings | None = None, **kw: object) -> tuple[int, int]:
    clip = clip or ClipSettings()
    lazy, resized = run(times, clip, lazy=True, **kw)  # type: ignore[arg-type]
    eager, all_frames = run(times, clip, lazy=False, **kw)  # type: ignore[arg-type]
    assert lazy, "the times must give clips for the comparison to mean anything"
    assert lazy == eager
    return resized, all_frames


@pytest.mark.parametrize("fps", [7.5, 10.0, 12.5, 15.0, 24.0, 25.0, 29.97, 30.0, 60.0])
def test_steady_rates_cut_the_same_clips(fps: float) -> None:
    assert_same(steady(fps))


@pytest.mark.parametrize("seed", range(6))
def test_jittered_live_times_cut_the_same_clips(seed: int) -> None:
    assert_same(jittered(15.0, seed))
    assert_same(jittered(25.0, seed + 10))


def test_frames_lost_across_window_ends_cut_the_same_clips() -> None:
    # gaps over window ends (whole seconds at the defaults) and over several instants: windows pick their last
    # frame for the instants they have no later frame for
    assert_same(with_gaps(15.0, [(4.9, 5.3), (7.95, 8.6), (10.1, 10.5), (11.7, 12.05)]))
    assert_same(with_gaps(25.0, [(2.99, 4.01), (9.5, 11.0)]), moving=lambda t: True)


@pytest.mark.parametrize("end_s", [8.0, 8.1, 8.93, 9.5])
def test_a_source_ending_mid_window_cuts_the_same_clips(end_s: float) -> None:
    assert_same([t for t in steady(15.0) if t < end_s], moving=lambda t: t > 2.0)


@pytest.mark.parametrize(
    "clip",
    [
        ClipSettings(window_s=2.0, overlap=0.5, frames=16),  # 0.125 s instants, 1 s stride: a lattice
        ClipSettings(window_s=3.0, overlap=0.6, frames=20),  # 0.15 s instants, 1.2 s stride: 8 steps
        ClipSettings(window_s=4.0, overlap=0.7, frames=20),  # 1.2 s stride is 6 steps of 0.2 s
        ClipSettings(window_s=4.0, overlap=0.33, frames=20),  # 2.68 s stride: no lattice, every frame kept
    ],
)
def test_other_clip_settings_cut_the_same_clips(clip: ClipSettings) -> None:
    assert_same(steady(15.0), clip)
    assert_same(jittered(30.0, 3), clip)


def test_only_the_frames_a_window_can_pick_are_resized() -> None:
    # 15 fps against 0.2 s instants: one frame in three (and each window's last frames where a gap needs them)
    resized, frames = assert_same(steady(15.0))
    assert resized <= 0.36 * frames
    # no lattice: every frame, as before
    resized, frames = assert_same(steady(15.0), ClipSettings(window_s=4.0, overlap=0.33, frames=20))
    assert resized == frames


def test_motion_on_the_model_frame_and_cropping_keep_every_frame() -> None:
    # the gate reads every frame's model copy (downscale_width 0); cropping keeps a copy of each frame
    for clip, motion in ((ClipSettings(), MotionSettings(downscale_width=0)),
                         (ClipSettings(crop="motion"), MotionSettings())):
        cutter = ClipCutter(clip, motion, 15.0)
        image = np.zeros((72, 128, 3), np.uint8)
        kept = [cutter.prepare(Frame(i, image, t, T0)) is not None for i, t in enumerate(steady(15.0, 2.0))]
        assert all(kept)


def test_a_stopped_clock_that_overflows_the_ring_skips_the_window_and_keeps_running() -> None:
    # review: thousands of frames at one timestamp push a window's first frames out of the ring's size bound;
    # its first frame left was never a candidate: the window is counted as skipped, the camera goes on
    times = [0.0] + [0.1] * 3000 + [i / 15 for i in range(2, 120)]
    cutter = ClipCutter(ClipSettings(), MotionSettings(hold_s=1.0), 15.0)
    image = np.zeros((72, 128, 3), np.uint8)
    clips = []
    for i, t in enumerate(times):
        frame = Frame(i, image, t, T0 + timedelta(seconds=t))
        clips += cutter.push(frame, MOVING, cutter.prepare(frame))
    clips += cutter.flush()
    assert cutter.windows_skipped >= 1
    assert clips  # the windows after the stall are cut
