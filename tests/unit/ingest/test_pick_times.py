"""The clip cutter's plain-Python frame picker picks exactly what ``common.model_input.sample_times`` does."""

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


@pytest.mark.parametrize("count", [20, 1, 2, 7, 40])
def test_picks_are_sample_times_picks(count: int) -> None:
    windows = [times for seed in range(4) for times in _windows(seed)]
    assert len(windows) > 900
    for times in windows:
        assert pick_times(times, count) == sample_times(times, count).tolist(), times


def test_a_still_clock_and_one_frame_fall_back_to_even_picks() -> None:
    assert pick_times([1.0, 1.0, 1.0], 4) == sample_times([1.0, 1.0, 1.0], 4).tolist()
    assert pick_times([2.0], 3) == [0, 0, 0]
