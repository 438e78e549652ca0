"""Evidence video written by ingest: pre-roll, post-roll, rotation, frame-rate limit, each frame once,
errors that never stop clips, and segments that line up with the clips a CameraWorker publishes.

Everything is really encoded (PyAV, libx264) and read back from the files."""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from common.clock import FakeClock
from common.evidence import Segment, segments_overlapping
from common.inprocess_bus import InProcessBus
from common.schemas import ClipMessage, Topic
from common.settings import CameraSettings, EvidenceSettings, MotionSettings
from ingest.capture import Frame, SourceConnectionError, SourceEnded
from ingest.evidence_video import EvidenceRecorder, video_size
from ingest.worker import CameraWorker
from tests.clip_topic import whole_clips

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
W, H = 192, 108


def frames(seconds: float, fps: float = 15.0, width: int = W, height: int = H) -> list[Frame]:
    """A textured background with a bright square sweeping across it, ``fps`` frames a second from T0."""
    rng = np.random.default_rng(3)
    background = cv2.GaussianBlur(rng.integers(30, 220, (height, width, 3), dtype=np.uint8), (7, 7), 0)
    out = []
    for i in range(round(seconds * fps)):
        image = background.copy()
        x = (i * 3) % (width - 20)
        cv2.rectangle(image, (x, height // 3), (x + 20, height // 3 + 30), (40, 200, 240), -1)
        out.append(Frame(i, image, i / fps, T0 + timedelta(seconds=i / fps)))
    return out


def record(
    feed: list[Frame], moving: Callable[[float], bool], tmp_path: Path, *, lookback_s: float = 4.0,
    hold_s: float = 1.0, **settings: object,
) -> EvidenceRecorder:
    recorder = EvidenceRecorder(
        EvidenceSettings(**settings), tmp_path / "evidence", "cam1", lookback_s=lookback_s, hold_s=hold_s  # type: ignore[arg-type]
    )
    for frame in feed:
        recorder.push(frame, moving(frame.source_time_s))
    recorder.close("test")
    return recorder


def all_segments(tmp_path: Path) -> list[Segment]:
    return segments_overlapping(tmp_path / "evidence", "cam1", T0 - timedelta(days=1), T0 + timedelta(days=1))


def frame_times(segment: Segment) -> list[float]:
    """Seconds since T0 of every frame in the segment, decoded from the file."""
    with av.open(str(segment.path)) as container:
        offset = (segment.start - T0).total_seconds()
        return [offset + float(f.pts * f.time_base) for f in container.decode(video=0)]


def first_packet_is_keyframe(segment: Segment) -> bool:
    with av.open(str(segment.path)) as container:
        for packet in container.demux(video=0):
            if packet.size:
                return bool(packet.is_keyframe)
    return False


def since_t0(at: datetime) -> float:
    return (at - T0).total_seconds()


def test_motion_is_recorded_with_preroll_and_postroll(tmp_path: Path) -> None:
    # motion 10 s .. 12 s; a clip window reaches 4 s back, the margins are 3 s, the hold 1 s
    recorder = record(frames(30), lambda t: 10.0 <= t < 12.0, tmp_path)
    segments = all_segments(tmp_path)
    times = [t for s in segments for t in frame_times(s)]
    assert segments and not list((tmp_path / "evidence").rglob("*.part"))
    assert times[0] == pytest.approx(10.0 - 4.0 - 3.0, abs=1 / 15 + 1e-3)  # the pre-roll: lookback + margin
    last_motion = 12.0 - 1 / 15
    assert times[-1] == pytest.approx(last_motion + 1.0 + 4.0 + 3.0, abs=1 / 15 + 1e-3)  # hold + window + margin
    assert since_t0(segments[0].start) == pytest.approx(times[0], abs=2e-3)
    assert since_t0(segments[-1].end) == pytest.approx(times[-1], abs=2e-3)
    assert len(times) == recorder.counters().frames_encoded == round((times[-1] - times[0]) * 15) + 1
    counters = recorder.counters()
    assert counters.segments_written == len(segments) and counters.errors == 0
    assert counters.bytes_written == sum(s.bytes for s in segments) > 0
    assert counters.encode_seconds > 0
    with av.open(str(segments[0].path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.width, stream.codec_context.height) == ("h264", W, H)


def test_segments_rotate_every_segment_s_each_on_a_keyframe_and_contiguous(tmp_path: Path) -> None:
    record(frames(30), lambda t: 5.0 <= t < 15.0, tmp_path, segment_s=2.0)
    segments = all_segments(tmp_path)
    span = since_t0(segments[-1].end) - since_t0(segments[0].start)
    assert len(segments) == math.ceil(span / 2.0)
    for before, after in itertools.pairwise(segments):
        assert (after.start - before.end).total_seconds() == pytest.approx(1 / 15, abs=2e-3)  # the next frame
    for segment in segments:
        assert segment.duration_s < 2.0
        assert first_packet_is_keyframe(segment)


def test_frame_rate_is_limited_to_video_fps(tmp_path: Path) -> None:
    record(frames(12, fps=30.0), lambda t: 2.0 <= t < 4.0, tmp_path, video_fps=10.0)
    times = [t for s in all_segments(tmp_path) for t in frame_times(s)]
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert rate == pytest.approx(10.0, rel=0.05)
    assert min(np.diff(times)) >= 0.1 - 0.1 * 0.2 - 1e-3  # never closer than the limit's tolerance
    for t in times:  # at most video_fps (+1 for the window's edges) in any second
        assert sum(1 for u in times if t <= u < t + 1.0) <= 11


def test_a_source_slower_than_video_fps_keeps_every_frame(tmp_path: Path) -> None:
    feed = frames(10, fps=10.0)
    recorder = record(feed, lambda t: True, tmp_path, video_fps=15.0)
    assert recorder.counters().frames_encoded == len(feed)


def test_each_frame_is_encoded_once_across_bursts_of_motion(tmp_path: Path) -> None:
    # three bursts whose pre- and post-rolls overlap: one continuous recording, no frame twice
    bursts = [(6.0, 7.0), (9.0, 9.5), (20.0, 21.0)]
    feed = frames(40)
    recorder = record(feed, lambda t: any(a <= t < b for a, b in bursts), tmp_path)
    times = [t for s in all_segments(tmp_path) for t in frame_times(s)]
    assert len(times) == len(set(round(t, 3) for t in times)) == recorder.counters().frames_encoded
    assert times == sorted(times) and len(times) <= len(feed)
    # from 6 s - 7 s (the file's start) to 9.5 s + 8 s, then from 20 s - 7 s (overlapping) to 21 s + 8 s
    assert times[0] == pytest.approx(0.0, abs=1e-3)
    assert times[-1] == pytest.approx(21 - 1 / 15 + 8.0, abs=1e-3)
    assert max(np.diff(times)) == pytest.approx(1 / 15, abs=2e-3)


def test_still_camera_writes_nothing_and_preroll_memory_is_bounded(tmp_path: Path) -> None:
    recorder = record(frames(20), lambda t: False, tmp_path)
    assert all_segments(tmp_path) == [] and recorder.counters().frames_encoded == 0
    recorder = EvidenceRecorder(EvidenceSettings(), tmp_path / "e2", "cam1", lookback_s=4.0, hold_s=1.0)
    for frame in frames(20, fps=30.0):
        recorder.push(frame, False)
    assert recorder.preroll_frames <= math.ceil((4.0 + 3.0) * 15.0) + 1


def test_frames_are_scaled_to_video_width_never_up(tmp_path: Path) -> None:
    assert video_size(1280, 720, 640) == (640, 360)
    assert video_size(640, 480, 640) == (640, 480)
    assert video_size(321, 241, 640) == (320, 240)
    record(frames(6, width=400, height=228), lambda t: 1.0 <= t < 2.0, tmp_path, video_width=200)
    with av.open(str(all_segments(tmp_path)[0].path)) as container:
        context = container.streams.video[0].codec_context
        assert (context.width, context.height) == (200, 114)


def test_close_mid_motion_finishes_the_segment(tmp_path: Path) -> None:
    recorder = EvidenceRecorder(EvidenceSettings(), tmp_path / "evidence", "cam1", lookback_s=4.0, hold_s=1.0)
    for frame in frames(3):
        recorder.push(frame, True)
    assert recorder.recording
    recorder.close("connection lost")
    assert not recorder.recording
    segments = all_segments(tmp_path)
    assert [round(since_t0(s.end), 3) for s in segments] == [round(3 - 1 / 15, 3)]
    assert not list((tmp_path / "evidence").rglob("*.part"))


def test_an_unwritable_evidence_dir_is_counted_logged_once_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the evidence directory should be")
    recorder = EvidenceRecorder(EvidenceSettings(segment_s=2.0), blocker / "evidence", "cam1",
                                lookback_s=4.0, hold_s=1.0)
    with caplog.at_level(logging.ERROR, logger="aislewatch.ingest.evidence"):
        for frame in frames(10):
            recorder.push(frame, True)  # must not raise
        recorder.close()
    counters = recorder.counters()
    assert counters.errors >= 4  # tried again every segment_s (10 s at 2 s)
    assert counters.segments_written == 0 and counters.frames_encoded == 0 and counters.frames_lost > 0
    assert len([r for r in caplog.records if "evidence video not written" in r.message]) == 1


# -- through the camera worker ------------------------------------------------------------------------------

FPS = 15.0


def scene_video(path: Path, seconds: float, moving: Callable[[float], bool]) -> Path:
    """A noisy 160x90 shelf; a dark red box sweeps across it while ``moving(t)``."""
    rng = np.random.default_rng(1)
    background = cv2.GaussianBlur(rng.integers(40, 200, (90, 160, 3), dtype=np.uint8), (9, 9), 0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (160, 90))
    for i in range(round(seconds * FPS)):
        frame = np.clip(background + rng.normal(0, 4, background.shape), 0, 255).astype(np.uint8)
        if moving(i / FPS):
            x = (i * 4) % (160 - 24)
            cv2.rectangle(frame, (x, 30), (x + 24, 66), (30, 30, 220), -1)
        writer.write(frame)
    writer.release()
    return path


def run_camera(video: Path, evidence_dir: Path, evidence: EvidenceSettings) -> tuple[CameraWorker, list[ClipMessage]]:
    bus = InProcessBus()
    camera = CameraSettings(id="cam1", source=str(video), motion=MotionSettings(method="diff"))
    worker = CameraWorker("s1", camera, bus.publisher(), evidence_dir, clock=FakeClock(T0), evidence=evidence)
    worker.run()
    consumer = bus.consumer([Topic.CLIPS], "test")
    return worker, whole_clips(consumer.poll(0, 10_000))


@pytest.fixture(scope="module")
def bursts_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # still 10 s, motion 3 s, still 18 s, motion 1 s, still 4 s (the file ends inside the post-roll)
    path = tmp_path_factory.mktemp("evidence-video") / "bursts.mp4"
    return scene_video(path, 36.0, lambda t: 10.0 <= t < 13.0 or 31.0 <= t < 32.0)


def test_segments_cover_every_published_clip_with_margins(bursts_video: Path, tmp_path: Path) -> None:
    evidence = EvidenceSettings()
    worker, clips = run_camera(bursts_video, tmp_path / "evidence", evidence)
    counters = worker.counters()
    assert clips and counters.clips_published == len(clips)
    file_start, file_end = T0, T0 + timedelta(seconds=(counters.frames_read - 1) / FPS)
    step = timedelta(seconds=1 / evidence.video_fps + 2e-3)
    before, after = timedelta(seconds=evidence.margin_before_s), timedelta(seconds=evidence.margin_after_s)
    for clip in clips:
        start, end = clip.header.start_at - before, clip.header.captured_at + after
        segments = segments_overlapping(tmp_path / "evidence", "cam1", start, end)
        assert segments, f"no video for clip {clip.header.clip_id}"
        assert segments[0].start <= max(start, file_start) + step
        assert segments[-1].end >= min(end, file_end) - step
        for a, b in itertools.pairwise(segments):
            assert b.start - a.end <= step, f"a gap in the video of clip {clip.header.clip_id}"
    every = segments_overlapping(tmp_path / "evidence", "cam1", file_start, file_end)
    encoded = sum(len(frame_times(s)) for s in every)
    assert encoded <= counters.frames_read
    assert counters.evidence_segments == len(every) and counters.evidence_bytes == sum(s.bytes for s in every)
    assert counters.evidence_errors == 0 and counters.evidence_encode_seconds > 0
    # the still stretch between the bursts (13 s + 8 s .. 31 s - 7 s) is not recorded
    assert not segments_overlapping(tmp_path / "evidence", "cam1", T0 + timedelta(seconds=21.8),
                                    T0 + timedelta(seconds=23.8))


def test_video_false_writes_no_video(bursts_video: Path, tmp_path: Path) -> None:
    worker, clips = run_camera(bursts_video, tmp_path / "evidence", EvidenceSettings(video=False))
    assert clips and worker.recorder is None
    assert not list((tmp_path / "evidence").rglob("*.mp4*"))
    assert list((tmp_path / "evidence").rglob("*.jpg"))  # the snapshots are still there


def test_an_unwritable_evidence_dir_never_stops_the_clips(bursts_video: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "evidence"
    blocker.write_text("not a directory")
    worker, clips = run_camera(bursts_video, blocker, EvidenceSettings())
    counters = worker.counters()
    assert clips and counters.clips_published == len(clips) and counters.state == "ended"
    assert counters.evidence_errors >= 1 and counters.evidence_segments == 0


def test_stopping_the_worker_mid_motion_closes_the_segment(tmp_path: Path) -> None:
    # what a configuration reload or a shutdown does: the worker is stopped from outside while recording
    video = scene_video(tmp_path / "moving.mp4", 4.0, lambda t: True)
    bus = InProcessBus()
    stop = threading.Event()
    camera = CameraSettings(id="cam1", source=str(video), loop=True, motion=MotionSettings(method="diff"))
    worker = CameraWorker("s1", camera, bus.publisher(), tmp_path / "evidence", stop=stop,
                          evidence=EvidenceSettings())
    worker.start_thread()
    deadline = time.monotonic() + 30
    while not (worker.recorder is not None and worker.recorder.recording) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.recorder is not None and worker.recorder.recording
    stop.set()
    worker.join(10)
    assert not worker.alive and worker.error is None and not worker.recorder.recording
    assert not list((tmp_path / "evidence").rglob("*.part"))
    segments = list((tmp_path / "evidence").rglob("segments/*.mp4"))
    assert segments and worker.counters().evidence_segments == len(segments)


class ScriptedLiveSource:
    """A live camera that delivers the given frames and raises the given errors, in order."""

    live = True
    fps = 15.0
    reconnects = 0
    frames_dropped = 0

    def __init__(self, script: list[Frame | Exception]) -> None:
        self.script = list(script)
        self.session = "live:1"

    def read(self) -> Frame:
        item = self.script.pop(0) if self.script else SourceEnded("script done")
        if isinstance(item, Exception):
            self.session = f"live:{len(self.script)}"
            raise item
        return item

    def close(self) -> None:
        pass


def test_a_lost_connection_closes_the_segment_and_starts_a_fresh_preroll(tmp_path: Path) -> None:
    feed = frames(16, width=160, height=90)  # the square moves in every frame: motion after the warm-up
    script: list[Frame | Exception] = [*feed[:120], SourceConnectionError("stream dropped"), *feed[120:]]
    bus = InProcessBus()
    camera = CameraSettings(id="cam1", source="rtsp://camera.invalid/1", motion=MotionSettings(method="diff"))
    worker = CameraWorker(
        "s1", camera, bus.publisher(), tmp_path / "evidence", clock=FakeClock(T0), evidence=EvidenceSettings(),
        source_factory=lambda cam, stop, clock: ScriptedLiveSource(script),
    )
    worker.run()
    segments = all_segments(tmp_path)
    ends = [round(since_t0(s.end), 3) for s in segments]
    assert round(119 / 15, 3) in ends  # the segment open when the stream dropped was closed at its last frame
    after = [s for s in segments if s.start > T0 + timedelta(seconds=119 / 15)]
    assert after and since_t0(after[0].start) >= 120 / 15 - 1e-3  # nothing from before the loss is re-written
    times = [t for s in segments for t in frame_times(s)]
    assert len(times) == len(set(round(t, 3) for t in times)) <= len(feed)
    assert worker.counters().evidence_errors == 0
