"""ClipCutter: gating, shape, colour order, temporal sampling, overlap, onset, crop mode, flush."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from common.model_input import sample_indices
from common.settings import ClipSettings, MotionSettings
from ingest.capture import Frame
from ingest.clips import ClipCutter, crop_region
from ingest.motion import NO_MOTION, MotionResult

FPS = 15.0
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
MOVING = MotionResult(True, 0.05, (10, 10, 20, 20))


def frame(i: int, image: np.ndarray | None = None) -> Frame:
    if image is None:
        image = np.full((90, 160, 3), i % 256, np.uint8)
    t = i / FPS
    return Frame(i, image, t, T0 + timedelta(seconds=t))


def feed(cutter: ClipCutter, n: int, moving=lambda i: True, image=None) -> list:
    clips = []
    for i in range(n):
        clips += cutter.push(frame(i, image(i) if image else None), MOVING if moving(i) else NO_MOTION)
    return clips


def cutter(**clip) -> ClipCutter:
    """A cutter on a 2 s stride (overlap 0.5) unless a test says otherwise: the grid these tests draw.  The
    frames keep all 8 bits (``bits: 8``), so a frame's grey level still names it (its index)."""
    return ClipCutter(ClipSettings(**{"overlap": 0.5, "bits": 8, **clip}), MotionSettings(hold_s=1.0), FPS)


def test_still_scene_produces_no_clips() -> None:
    c = cutter()
    assert feed(c, 300, moving=lambda i: False) == []
    assert c.flush() == []


def test_clip_shape_dtype_and_timing() -> None:
    clips = feed(cutter(), 121)
    assert len(clips) == 3  # windows [0,4), [2,6), [4,8) complete by t=8
    for clip in clips:
        assert clip.frames.shape == (20, 64, 64, 3) and clip.frames.dtype == np.uint8
        assert clip.start_at.tzinfo is not None and clip.captured_at > clip.start_at
    assert [c.source_start_s for c in clips] == pytest.approx([0.0, 2.0, 4.0])
    assert clips[0].source_end_s == pytest.approx(57 / FPS)  # the last instant, 3.8 s: frame 57


@pytest.mark.parametrize(
    ("overlap", "starts"), [(0.5, [0, 2, 4, 6]), (0.0, [0, 4]), (0.75, [0, 1, 2, 3, 4, 5, 6])]
)
def test_overlap_sets_the_stride(overlap: float, starts: list[float]) -> None:
    clips = feed(cutter(overlap=overlap), 151)
    assert [round(c.source_start_s, 3) for c in clips] == starts


def test_frames_are_picked_on_the_windows_grid_in_order() -> None:
    clips = feed(cutter(), 121)
    for clip, first in zip(clips, (0, 30, 60), strict=True):
        indices = clip.frames[:, 0, 0, 0].astype(int)
        assert indices.tolist() == list(range(first, first + 60, 3))  # instants every 0.2 s: every third frame
        assert indices.tolist() == (first + sample_indices(60, 20)).tolist()
    # windows 2 s apart share 10 of their 20 instants, and pick the same frames for them
    assert clips[0].frames[10:].tobytes() == clips[1].frames[:10].tobytes()


@pytest.mark.parametrize("bits", [6, 4, 8])
def test_clip_frames_keep_clip_bits(bits: int) -> None:
    from common.model_input import quantize

    clips = feed(cutter(bits=bits), 61, image=lambda i: np.full((90, 160, 3), (i * 37) % 256, np.uint8))
    plain = feed(cutter(bits=8), 61, image=lambda i: np.full((90, 160, 3), (i * 37) % 256, np.uint8))
    assert np.array_equal(clips[0].frames, quantize(plain[0].frames, bits))
    levels = np.unique(clips[0].frames)
    assert bits == 8 or np.all(levels % (1 << (8 - bits)) == 1 << (7 - bits))  # each at its bin's centre


def test_bgr_channel_order_is_preserved() -> None:
    blue = np.zeros((90, 160, 3), np.uint8)
    blue[..., 0] = 230
    clip = feed(cutter(), 61, image=lambda i: blue)[0]
    assert clip.frames[..., 0].min() == 230 and clip.frames[..., 1:].max() == 0
    assert clip.snapshot.shape == (90, 160, 3) and clip.snapshot[..., 0].min() == 230


def test_first_window_after_stillness_starts_before_the_onset() -> None:
    onset = 100  # t = 6.67 s
    clips = feed(cutter(), 200, moving=lambda i: i >= onset)
    assert clips, "motion must produce clips"
    first = clips[0]
    assert first.source_start_s < onset / FPS <= first.source_end_s
    # the onset is inside the clip: earlier frames are still, later ones not
    assert first.frames[0, 0, 0, 0] < onset <= first.frames[-1, 0, 0, 0]


def test_hold_keeps_cutting_after_motion_stops_then_stops() -> None:
    c = ClipCutter(ClipSettings(overlap=0.5), MotionSettings(hold_s=3.0), FPS)
    clips = []
    for i in range(300):
        clips += c.push(frame(i), MOVING if i < 31 else NO_MOTION)  # motion until t=2.0
    starts = [round(x.source_start_s) for x in clips]
    # [0,4) and [2,6) contain motion; [4,8) is within hold (2.0+3 >= 4); [6,10) is not
    assert starts == [0, 2, 4]


def test_motion_area_is_the_window_maximum_and_snapshot_is_the_most_moving_frame() -> None:
    c = cutter()
    clips = []
    for i in range(61):
        image = np.full((90, 160, 3), i, np.uint8)
        area = 0.3 if i == 17 else 0.05
        clips += c.push(frame(i, image), MotionResult(True, area, (0, 0, 10, 10)))
    assert clips[0].motion_area == pytest.approx(0.3)
    assert int(clips[0].snapshot[0, 0, 0]) == 17


def test_crop_mode_crops_around_the_moving_object() -> None:
    def image(i: int) -> np.ndarray:
        img = np.zeros((360, 640, 3), np.uint8)
        img[100:160, 400:460] = (0, 0, 255)  # red square where the motion is
        return img

    c = ClipCutter(ClipSettings(crop="motion", crop_margin=0.25), MotionSettings(), FPS)
    clips = []
    for i in range(61):
        clips += c.push(frame(i, image(i)), MotionResult(True, 0.02, (400, 100, 60, 60)))
    clip = clips[0]
    x, y, w, h = clip.crop
    assert x <= 400 and y <= 100 and x + w >= 460 and y + h >= 160 and w < 200 and h < 200
    assert clip.frames.shape == (20, 64, 64, 3)
    # the object fills a large part of the crop; in the whole frame it would be ~1.5 %
    red = (clip.frames[0, :, :, 2] > 128).mean()
    assert red > 0.3


@pytest.mark.parametrize(
    ("bbox", "expected"),
    [
        ((400, 100, 60, 60), (385, 85, 90, 90)),
        ((0, 0, 20, 20), (0, 0, 30, 30)),  # clamped at the top-left corner
        ((600, 300, 40, 60), (550, 270, 90, 90)),  # clamped inside the bottom-right corner
        ((0, 0, 640, 360), (0, 0, 640, 360)),  # larger than the frame
    ],
)
def test_crop_region_is_square_ish_and_clamped(bbox, expected) -> None:
    assert crop_region(bbox, 0.25, 640, 360) == expected


@pytest.mark.parametrize(
    ("n", "overlap", "starts", "incomplete"),
    [
        (60, 0.5, [0], 1),  # ends exactly at the end of [0, 4): complete; [2, 6) is not
        (70, 0.5, [0], 2),  # [0, 4) cut while reading; the file ends inside [2, 6) and [4, 8)
        (45, 0.5, [], 2),  # 3 s of video: inside [0, 4) and [2, 6), so no clip at all
        (15, 0.5, [], 1),
        (90, 0.75, [0, 1, 2], 3),  # 6 s on a 1 s stride: [2, 6) ends with the file; [3, 7) ... [5, 9) do not
    ],
)
def test_flush_emits_only_windows_the_source_covered(n: int, overlap: float, starts: list[int], incomplete: int) -> None:
    c = cutter(overlap=overlap)
    clips = feed(c, n)
    clips += c.flush()
    assert [round(clip.source_start_s, 3) for clip in clips] == starts
    for clip in clips:  # every clip spans the whole 4 s window: 20 instants 0.2 s apart, every third frame
        indices = clip.frames[:, 0, 0, 0].astype(int)
        assert indices[-1] - indices[0] == 57 and len(set(indices.tolist())) == 20
        assert clip.source_end_s - clip.source_start_s == pytest.approx(57 / FPS)
    assert c.windows_incomplete == incomplete  # counted, and kept across the reset that flush does


def test_windows_the_source_ended_in_are_counted_only_when_they_would_have_been_cut() -> None:
    c = cutter()
    feed(c, 70, moving=lambda i: i < 15)  # motion for the first second, then still until 4.6 s
    assert c.flush() == []
    assert c.windows_incomplete == 0  # [2, 6) and [4, 8) are still: no clip was lost


def test_memory_is_bounded_by_the_window() -> None:
    c = cutter()
    feed(c, 2000)
    assert len(c._ring) <= 4 * FPS + 2
    assert len(c._cells) <= 3


def test_windows_after_a_stalled_capture_can_share_their_first_frame_but_not_their_id() -> None:
    from common.schemas import clip_id_for

    c = cutter(overlap=0.75)  # a window every second
    times = [i / FPS for i in range(15)] + [4.5 + i / FPS for i in range(30)]  # capture stalled 1.0-4.5 s
    clips = []
    for i, t in enumerate(times):
        clips += c.push(Frame(i, np.full((90, 160, 3), i % 256, np.uint8), t, T0 + timedelta(seconds=t)), MOVING)
    starts = [(clip.window_index, round(clip.source_start_s, 3)) for clip in clips]
    assert (1, 4.5) in starts and (2, 4.5) in starts  # windows [1, 5) and [2, 6) both begin at 4.5 s
    ids = [clip_id_for("cam", clip.window_index, "session") for clip in clips]
    assert len(set(ids)) == len(clips)
