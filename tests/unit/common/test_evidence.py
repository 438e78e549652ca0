"""Evidence video on disk: segments encoded once, found by time, put together without re-encoding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import numpy as np

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
