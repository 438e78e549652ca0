"""A live RTSP camera's frames are placed by their arrival: its windows span ``window_s`` of wall time."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.settings import ClipSettings, MotionSettings
from ingest.capture import VideoSource
from ingest.clips import ClipCutter
from ingest.motion import MotionResult

MOVING = MotionResult(True, 0.05, (10, 10, 20, 20))


@pytest.mark.rtsp
def test_live_windows_span_window_s_of_arrival_time(rtsp_server_factory, synthetic_video: Path) -> None:  # type: ignore[no-untyped-def]
    server = rtsp_server_factory({"door": synthetic_video})
    source = VideoSource(server.url("door"), open_timeout_s=10.0, read_timeout_s=10.0)
    cutter = ClipCutter(ClipSettings(window_s=2.0, overlap=0.5), MotionSettings(), source.fps)
    clips = []
    try:
        for _ in range(15 * 8):  # ~8 s at the file's 15 fps (the server loops it)
            frame = source.read()
            clips += cutter.push(frame, MOVING)
            if len(clips) >= 3:
                break
    finally:
        source.close()
    assert source.live and len(clips) >= 3
    for clip in clips[1:]:  # the first window can hold the burst FFmpeg buffered while connecting
        assert clip.source_end_s - clip.source_start_s == pytest.approx(2.0, abs=0.35)
        assert (clip.captured_at - clip.start_at).total_seconds() == pytest.approx(
            clip.source_end_s - clip.source_start_s, abs=0.05)
