"""The clip cutter's plain-Python frame picker picks exactly what ``common.model_input.sample_times`` does, and
overlapping windows pick the same frame for each instant they share (issue 15: a frame travels once)."""

from __future__ import annotations

import numpy as np
import pytest

from common.model_input import sample_times
from ingest.clips import pick_times


def _windows(seed: int) -> list[list[float]]:
    """Frame times of windows as cameras and files give them: constant rates at any offset, jitter, dropped
    frames, repeated timestamps, a few frames only."""
    rng = np.random.default_rng(seed)
    out: list[list[float]] = []
    for fps in (5.0, 7.5, 12.5, 15.0, 24.0, 25.0, 29.97, 30.0, 50.0, 60.0):
        for start in (0.0, 2.0, 3.0 + 1 / 3, 1234.5678):
            n = int(4.0 * fps)
            out.append([start + i / fps for i in range(n)])  # as FrameTimer places them
            out.append(list(start + np.arange(n) * (1 / fps)))
            out.append(list(start + np.cumsum(rng.normal(1 / fps, 0.1 / fps, n).clip(0))))
            keep = rng.random(n) > 0.2
            keep[0] = True
            out.append([t for t, k in zip(out[-3], keep, strict=True) if k])  # dropped frames
            dup = list(out[-4])
            for i in rng.integers(1, n - 1, 4):
                dup[i] = dup[i - 1]  # a container repeating a timestamp
            out.append(sorted(dup))
            out.append([round(t * 1000) / 1000 for t in out[-5]])  # millisecond timestamps
    for n in (2, 3, 5, 19, 20, 21):
        out.append(sorted(rng.uniform(0, 4, n)))
    return [[float(t) for t in times] for times in out]


def _starts(times: list[float], rng: np.random.Generator) -> list[float]:
    """Window starts as the cutter gives them (on a 1 s grid at or before the first frame), one between two
    frames, and one exactly on a frame."""
    first = times[0]
    return [float(np.floor(first)), first, first - 0.5, first + float(rng.uniform(0, 0.3)), times[len(times) // 2]]


@pytest.mark.parametrize("count", [20, 1, 2, 7, 40])
@pytest.mark.parametrize("span", [4.0, 2.0, 3.3, 10.0])
def test_picks_are_sample_times_picks(count: int, span: float) -> None:
    rng = np.random.default_rng(count)
    windows = [times for seed in range(4) for times in _windows(seed)]
    assert len(windows) > 900
    for times in windows:
        for start in _starts(times, rng):
            want = sample_times(times, count, start=start, span=span).tolist()
            assert pick_times(times, count, start, span) == want, (times, start)


def test_a_still_clock_and_one_frame() -> None:
    assert pick_times([1.0, 1.0, 1.0], 4, 1.0, 4.0) == sample_times([1.0, 1.0, 1.0], 4, start=1.0).tolist() == [0, 2, 2, 2]
    assert pick_times([2.0], 3, 0.0, 4.0) == [0, 0, 0]


def test_each_pick_is_the_first_frame_at_or_after_its_instant() -> None:
    times = [0.0, 0.1, 0.25, 0.4, 0.6, 0.6000004, 1.3]
    # instants 0, 0.2, 0.4, 0.6, 0.8 of a 1 s window on 5 frames: a frame a hair early still counts as at
    # 0.4 and 0.6 (the frame at 0.6000004 is later than 0.6 and so not the first at or after it)
    assert pick_times(times, 5, 0.0, 1.0) == [0, 2, 3, 4, 6]
    assert pick_times([t - 1e-7 for t in times], 5, 0.0, 1.0)[2:4] == [3, 4]  # 1e-7 early: still at
    assert pick_times([0.0, 0.1], 5, 0.0, 1.0) == [0, 1, 1, 1, 1]  # none at or after: the window's last frame


def _jittery(seconds: float, fps: float, seed: int) -> list[float]:
    """A 25 fps camera's arrival times: jitter of a fifth of a frame, now and then a frame dropped."""
    rng = np.random.default_rng(seed)
    times = np.arange(int(seconds * fps)) / fps + rng.normal(0, 0.2 / fps, int(seconds * fps))
    times = np.sort(times[rng.random(len(times)) > 0.05])
    return [float(t) for t in times - times[0] + 0.013]


@pytest.mark.parametrize("seed", range(5))
def test_overlapping_windows_pick_the_same_frames_for_shared_instants(seed: int) -> None:
    """Windows 1 s apart on a 4 s window share 15 of their 20 instants, and pick the same frame for each:
    the clip of window k + 1 is the last 15 frames of window k's plus 5 new ones."""
    times = _jittery(30.0, 25.0, seed)
    window_s, stride_s, count = 4.0, 1.0, 20
    step = window_s / count
    shared = count - round(stride_s / step)
    assert shared == 15
    checked = 0
    for k in range(25):
        frames = {}
        for w in (k, k + 1):
            start = w * stride_s
            inside = [i for i, t in enumerate(times) if start - 1e-9 <= t < start + window_s - 1e-9]
            picks = pick_times([times[i] for i in inside], count, start, window_s)
            frames[w] = [inside[j] for j in picks]  # indices into the whole stream
        assert frames[k][count - shared:] == frames[k + 1][:shared], k
        checked += 1
    assert checked == 25


def test_the_old_first_to_last_rule_would_not_share() -> None:
    """Why the rule changed: spreading 20 instants from each window's first frame to its last makes
    windows 1 s apart of a 25 fps camera pick different frames (this is what the sampler did before)."""
    times = _jittery(10.0, 25.0, 0)
    old = []
    for start in (1.0, 2.0):
        inside = [i for i, t in enumerate(times) if start - 1e-9 <= t < start + 4.0 - 1e-9]
        sub = np.array([times[i] for i in inside])
        positions = np.interp(np.linspace(sub[0], sub[-1], 20), sub, np.arange(len(sub)))
        old.append({inside[int(j)] for j in np.rint(positions)})
    assert len(old[0] & old[1]) < 15
