"""Ingest places frames by their own timestamps, not by the header's frame rate or frame count.

``vtest.avi`` (real footage, ``../shared/real-footage``) declares 682 frames at 50 fps and holds 341 at
25 fps over 13.6 s: placed by index over the declared rate, each 4 s window held 8 s of motion.  Generated
files check the same with a known truth: a header that overstates the rate gives the same windows as a
correct one, and a variable-rate file's clips are spread evenly in time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.settings import ClipSettings, MotionSettings
from ingest.capture import SourceEnded, VideoSource
from ingest.clips import ClipCutter, CutClip
from ingest.motion import MotionResult
from tests.videos import level_of, real_footage, write_timed_video

MOVING = MotionResult(True, 0.05, (10, 10, 20, 20))
TEN_FPS = [i / 10 for i in range(60)]  # 6 s at 10 fps


def cut(path: Path, window_s: float = 4.0, overlap: float = 0.75) -> tuple[list[CutClip], VideoSource]:
    """Every window of the file, as a camera with motion in every frame cuts them (all 8 bits kept, so a
    frame's grey level still tells its time)."""
    source = VideoSource(str(path))
    cutter: ClipCutter | None = None
    clips: list[CutClip] = []
    try:
        while True:
            frame = source.read()
            if cutter is None:
                cutter = ClipCutter(ClipSettings(window_s=window_s, overlap=overlap, bits=8), MotionSettings(), source.fps)
            clips += cutter.push(frame, MOVING)
    except SourceEnded:
        assert cutter is not None
        clips += cutter.flush()
    return clips, source


def test_vtest_windows_span_window_s_of_real_time() -> None:
    clips, source = cut(real_footage("vtest.avi"))
    assert source.fps == 50.0 and source.frame_count == 682  # the header lies ...
    assert source.frames_read == 341 and source.timer.fps == pytest.approx(25.0)  # ... the timestamps do not
    assert source.timer.end_s == pytest.approx(13.64)
    assert [c.source_start_s for c in clips] == pytest.approx([float(k) for k in range(10)])
    for clip in clips:
        # 100 frames at 25 fps in each 4 s window, picked at its instants 0.2 s apart (every fifth frame): the
        # first and last picked lie 3.8 s apart (7.6 s by the header)
        assert clip.source_end_s - clip.source_start_s == pytest.approx(3.8, abs=1e-6)
        assert (clip.captured_at - clip.start_at).total_seconds() == pytest.approx(3.8, abs=1e-5)
        assert clip.frames.shape == (20, 64, 64, 3)
    assert source.session_started_at is not None
    assert (clips[-1].captured_at - source.session_started_at).total_seconds() == pytest.approx(12.8, abs=1e-5)


def test_a_header_that_overstates_the_rate_gives_the_windows_of_a_correct_one(tmp_path: Path) -> None:
    right = write_timed_video(tmp_path / "right.avi", TEN_FPS, 10)
    wrong = write_timed_video(tmp_path / "wrong.avi", TEN_FPS, 30)  # declares 30 fps (and ~3x the frames)
    good, good_source = cut(right)
    bad, bad_source = cut(wrong)
    assert good_source.fps == 10.0 and bad_source.fps == 30.0 and bad_source.frame_count > 150
    assert [c.source_start_s for c in good] == [0.0, 1.0, 2.0]
    assert [x for c in bad for x in (c.source_start_s, c.source_end_s)] == pytest.approx(
        [x for c in good for x in (c.source_start_s, c.source_end_s)])
    for a, b in zip(good, bad, strict=True):
        assert np.array_equal(a.frames, b.frames)
        assert a.source_end_s - a.source_start_s == pytest.approx(3.8)  # instants 0 to 3.8 s


def test_variable_frame_rate_clips_are_spread_evenly_in_time(tmp_path: Path) -> None:
    times = [i / 10 for i in range(40)] + [4.0 + i / 30 for i in range(120)]  # 10 fps, then 30 fps
    clips, source = cut(write_timed_video(tmp_path / "vfr.mkv", times, 10))
    assert source.frames_read == 160
    assert [c.source_start_s for c in clips] == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0])
    for k, clip in enumerate(clips):
        assert clip.source_end_s - clip.source_start_s == pytest.approx(3.8)
        # each picked frame shows (by its grey level) its instant on the window's grid, k + 0.2 j seconds,
        # whatever the rate around it (every such instant has a frame here)
        expected = [level_of(k + 0.2 * j) for j in range(20)]
        shown = [round(float(f.mean())) for f in clip.frames]
        assert np.abs(np.subtract(shown, expected)).max() <= 3, (clip.source_start_s, shown, expected)
