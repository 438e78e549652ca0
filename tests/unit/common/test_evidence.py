"""Evidence video on disk: segments encoded once, found by time, put together without re-encoding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import numpy as np
import pytest

from common.evidence import (
    SegmentEncoder,
    alert_video_path,
    files_under,
    remux,
    segments_overlapping,
    video_duration_s,
)

T0 = datetime(2026, 12, 1, 23, 59, 56, tzinfo=UTC)  # the third segment starts on the next UTC day
FPS = 15


def write_segments(root: Path, count: int = 3, seconds: float = 4.0) -> None:
    for index in range(count):
        start = T0 + timedelta(seconds=seconds * index)
        encoder = SegmentEncoder(root, "cam", start, width=321, height=241)  # odd sizes are trimmed to even
        for frame in range(int(seconds * FPS)):
            image = np.full((241, 321, 3), 40, np.uint8)
            image[:, (frame * 5) % 300:(frame * 5) % 300 + 20] = 255
            encoder.add(image, start + timedelta(seconds=frame / FPS))
        assert encoder.close() is not None


def test_segments_are_found_by_time_across_midnight_and_remuxed_into_one_playable_video(tmp_path: Path) -> None:
    write_segments(tmp_path)
    every = segments_overlapping(tmp_path, "cam", T0, T0 + timedelta(seconds=12))
    assert len(every) == 3 and every[2].path.parent.parent.name == "20261202"
    assert [s.start for s in every] == [T0, T0 + timedelta(seconds=4), T0 + timedelta(seconds=8)]
    middle = segments_overlapping(tmp_path, "cam", T0 + timedelta(seconds=5), T0 + timedelta(seconds=6))
    assert [s.start for s in middle] == [T0 + timedelta(seconds=4)]

    out = remux(every, alert_video_path(tmp_path, "cam", "alert-1", T0)).path
    assert out.name == "alert-1.mp4" and not list(out.parent.glob("*.part"))
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and (stream.width, stream.height) == (320, 240)
        frames = list(container.decode(video=0))
    assert len(frames) == 3 * 4 * FPS  # every frame once: nothing dropped, nothing doubled
    assert 11.8 < video_duration_s(out) < 12.1
    # remuxing copies packets: the video is about the size of its segments, not re-encoded larger or smaller
    assert abs(out.stat().st_size - sum(s.bytes for s in every)) < 0.1 * sum(s.bytes for s in every)


def test_a_segment_without_frames_leaves_no_file_and_open_segments_are_not_listed(tmp_path: Path) -> None:
    assert SegmentEncoder(tmp_path, "cam", T0, width=64, height=48).close() is None
    open_one = SegmentEncoder(tmp_path, "cam", T0, width=64, height=48)
    open_one.add(np.zeros((48, 64, 3), np.uint8), T0)
    assert segments_overlapping(tmp_path, "cam", T0 - timedelta(seconds=1), T0 + timedelta(seconds=1)) == []
    assert list(files_under(tmp_path)) == []  # the .part file being written is not evidence yet
    open_one.abandon()
    assert not any(tmp_path.rglob("*.part"))


def write_gop_segment(root: Path, start: datetime, frames: int, value: int, gop: int = 10, **keys: str) -> None:
    """A closed segment written with PyAV directly: flat frames of ``value``, a keyframe every ``gop`` frames."""
    from common.evidence import TIME_BASE, segment_path

    end = start + timedelta(seconds=(frames - 1) / FPS)
    path = segment_path(root, "cam", start, end)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = stream.codec_context.time_base = TIME_BASE
        stream.options = {"crf": "28", "preset": "veryfast", "tune": "zerolatency", "profile": "high",
                          "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", **keys}
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), value, np.uint8), format="bgr24")
            frame.pts = round(index * 1000 / FPS)
            frame.time_base = TIME_BASE
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def decoded(path: Path) -> list[tuple[float, float]]:
    """(time s, mean luma) of every decoded frame."""
    with av.open(str(path)) as container:
        return [(float(f.time or 0.0), float(f.to_ndarray(format="gray").mean())) for f in container.decode(video=0)]


def test_an_overlapping_segment_joins_at_its_first_keyframe_after_what_was_written(tmp_path: Path) -> None:
    # A: T0 .. T0+2.93 s, dark; B: T0+2.5 .. T0+5.43 s, bright, keyframes at T0+2.5, +3.5 and +4.5 s.  B's frames
    # up to T0+2.93 s overlap A's; its next keyframe after them is at T0+3.5 s, where B joins: its frames from
    # T0+3 to 3.43 s reference a picture the video does not hold.
    write_gop_segment(tmp_path, T0, 45, 40)
    write_gop_segment(tmp_path, T0 + timedelta(seconds=2.5), 45, 200, gop=FPS)
    segments = segments_overlapping(tmp_path, "cam", T0, T0 + timedelta(seconds=6))
    cut = remux(segments, tmp_path / "out.mp4")
    frames = decoded(cut.path)
    assert len(frames) == 45 + 30  # A's 45, then B's from T0+3.5 s: none doubled, none missing its reference
    assert all(abs(luma - 40) < 8 for at, luma in frames[:45])
    assert all(abs(luma - 200) < 8 for at, luma in frames[45:])  # B's pictures, not A's last one carried on
    assert 3.45 < frames[45][0] < 3.55 and not cut.partial and cut.segments == 2


def test_an_overlapping_segment_without_a_later_keyframe_is_left_out(tmp_path: Path) -> None:
    write_gop_segment(tmp_path, T0, 45, 40)
    write_gop_segment(tmp_path, T0 + timedelta(seconds=2), 45, 200, gop=250)  # one keyframe, at T0+2 s
    cut = remux(segments_overlapping(tmp_path, "cam", T0, T0 + timedelta(seconds=6)), tmp_path / "out.mp4")
    frames = decoded(cut.path)
    assert len(frames) == 45 and all(abs(luma - 40) < 8 for _, luma in frames)
    assert cut.segments == 1


def test_a_segment_of_another_encoder_header_ends_the_video_and_it_says_partial(tmp_path: Path) -> None:
    write_gop_segment(tmp_path, T0, 20, 40)
    write_gop_segment(tmp_path, T0 + timedelta(seconds=2), 20, 40)
    write_gop_segment(tmp_path, T0 + timedelta(seconds=4), 20, 40, preset="ultrafast")  # CAVLC, not CABAC
    write_gop_segment(tmp_path, T0 + timedelta(seconds=6), 20, 40)
    cut = remux(segments_overlapping(tmp_path, "cam", T0, T0 + timedelta(seconds=8)), tmp_path / "out.mp4")
    assert cut.partial and cut.reason is not None and "encoder header" in cut.reason
    assert cut.segments == 2 and len(decoded(cut.path)) == 40
    assert abs((cut.end - T0).total_seconds() - (2 + 19 / FPS)) < 0.002


def test_remux_leaves_no_part_file_when_it_fails_and_cut_video_says_none_without_segments(tmp_path: Path) -> None:
    from common.evidence import cut_video, segment_path

    broken = segment_path(tmp_path, "cam", T0, T0 + timedelta(seconds=2))
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not an mp4 at all")
    out = tmp_path / "videos" / "a.mp4"
    with pytest.raises(av.error.InvalidDataError):
        cut_video(tmp_path, "cam", T0, T0 + timedelta(seconds=2), out)
    assert not out.exists() and not list(out.parent.glob("*.part"))
    assert cut_video(tmp_path, "cam", T0 + timedelta(hours=3), T0 + timedelta(hours=4), out) is None


def test_a_segment_index_lists_each_day_folder_once_and_finds_open_segments(tmp_path: Path) -> None:
    from common.evidence import SegmentIndex

    write_segments(tmp_path)
    open_one = SegmentEncoder(tmp_path, "cam", T0 + timedelta(seconds=12), width=64, height=48)
    open_one.add(np.zeros((48, 64, 3), np.uint8), T0 + timedelta(seconds=12))
    try:
        index = SegmentIndex(tmp_path)
        for second in range(12):
            at = T0 + timedelta(seconds=second)
            assert index.overlapping("cam", at, at) == segments_overlapping(tmp_path, "cam", at, at)
        assert index.listings == 2  # the two days' segment folders, once each (the day before has none)
        assert index.open_before("cam", T0 + timedelta(seconds=13))
        assert not index.open_before("cam", T0 + timedelta(seconds=11))
    finally:
        open_one.abandon()
