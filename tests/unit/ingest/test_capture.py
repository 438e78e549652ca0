"""VideoSource: file timing, error hierarchy, reconnect backoff, credential redaction."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from common.clock import FakeClock
from ingest.capture import (
    Backoff,
    SourceConnectionError,
    SourceCorruptError,
    SourceEnded,
    SourceFatalError,
    SourceState,
    VideoSource,
    is_live,
)

URL = "rtsp://user:secret@127.0.0.1:1/x"


def read_all(source: VideoSource) -> list:
    frames = []
    with pytest.raises(SourceEnded):
        while True:
            frames.append(source.read())
    return frames


def test_file_frames_carry_index_time_and_wall_clock(motion_video: Path) -> None:
    clock = FakeClock()
    source = VideoSource(str(motion_video), fps=5.0, clock=clock)
    frames = read_all(source)
    assert len(frames) == 120
    assert source.fps == 15.0  # from the file, not the setting
    for i in (0, 1, 57):
        f = frames[i]
        assert f.index == i and f.source_time_s == pytest.approx(i / 15.0)
        assert f.image.shape == (90, 160, 3) and f.image.dtype == np.uint8
        assert (f.captured_at - clock.now()).total_seconds() == pytest.approx(i / 15.0, abs=1e-5)
    assert source.state == SourceState.ENDED
    assert source.session.startswith(str(motion_video.resolve()))


def test_loop_file_starts_again_with_increasing_time(still_video: Path) -> None:
    source = VideoSource(str(still_video), loop=True)
    frames = [source.read() for _ in range(200)]
    assert [f.index for f in frames] == list(range(200))
    assert frames[-1].source_time_s == pytest.approx(199 / 15.0)


@pytest.mark.parametrize(
    ("make", "error", "text"),
    [
        (lambda d, c: d / "missing.mp4", SourceFatalError, "not found"),
        (lambda d, c: (d / "clips.mp4").mkdir() or d / "clips.mp4", SourceFatalError, "is a directory"),
        (lambda d, c: c, SourceCorruptError, "cannot open video file"),
        (
            lambda d, c: ((d / "empty.mp4").write_bytes(b"") and d / "empty.mp4") or d / "empty.mp4",
            SourceCorruptError,
            "empty.mp4",
        ),
    ],
)
def test_unreadable_files_raise_fatal_errors_naming_the_path(
    tmp_path, corrupt_video, make, error, text
) -> None:
    path = make(tmp_path, corrupt_video)
    source = VideoSource(str(path))
    with pytest.raises(error, match=text) as info:
        source.read()
    assert str(path.name) in str(info.value)
    assert source.state == SourceState.FAILED
    with pytest.raises(SourceFatalError):
        source.read()


def test_truncated_mp4_fails_as_corrupt_naming_the_path(truncated_video: Path) -> None:
    # mp4v writes its index (moov atom) at the end, so the first half of the file cannot be opened at all
    source = VideoSource(str(truncated_video))
    with pytest.raises(SourceCorruptError, match="cannot open video file") as info:
        source.read()
    assert truncated_video.name in str(info.value)
    assert source.state == SourceState.FAILED and source.frames_read == 0
    with pytest.raises(SourceFatalError, match="failed"):
        source.read()


def test_file_truncated_mid_stream_fails_as_corrupt_instead_of_ending(cut_avi: tuple[Path, Path]) -> None:
    whole, cut = cut_avi
    assert len(read_all(VideoSource(str(whole)))) == 120  # control: the intact file ends cleanly
    source = VideoSource(str(cut))
    frames = []
    with pytest.raises(SourceCorruptError) as info:  # SourceEnded (a clean end) would escape and fail
        while True:
            frames.append(source.read())
    assert 0 < len(frames) < 120  # the first half decoded, then the data ran out
    assert [f.index for f in frames] == list(range(len(frames)))
    assert f"stopped decoding at frame {len(frames)} of 120" in str(info.value)
    assert cut.name in str(info.value)
    assert source.state == SourceState.FAILED
    with pytest.raises(SourceFatalError, match="failed"):
        source.read()


@pytest.mark.parametrize(
    ("source", "live"),
    [
        (URL, True),
        ("rtsps://h/x", True),
        ("http://cam/video", True),
        ("/videos/a.mp4", False),
        ("file:///a.mp4", False),
    ],
)
def test_is_live(source: str, live: bool) -> None:
    assert is_live(source) is live


@pytest.mark.parametrize("attempt", range(12))
def test_backoff_is_capped_and_jittered(attempt: int) -> None:
    backoff = Backoff(initial_s=0.5, max_s=30.0, factor=2.0, jitter=0.5)
    base = min(30.0, 0.5 * 2**attempt)
    delays = [backoff.delay(attempt, random.Random(seed)) for seed in range(20)]
    assert all(base * 0.5 <= d <= base for d in delays)
    assert len(set(delays)) > 1  # jittered
    assert max(delays) <= 30.0


class RecordingStop:
    """A stop event whose wait() records the delay instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(float(timeout or 0))
        return False

    def is_set(self) -> bool:
        return False


class FakeCapture:
    def __init__(self, frames: int) -> None:
        self.frames = frames

    def isOpened(self) -> bool:
        return True

    def get(self, prop: int) -> float:
        return 0.0

    def read(self):
        if self.frames <= 0:
            return False, None
        self.frames -= 1
        return True, np.zeros((4, 4, 3), np.uint8)

    def release(self) -> None:
        pass


class ClosedCapture(FakeCapture):
    def isOpened(self) -> bool:
        return False


def test_live_source_reconnects_with_growing_capped_backoff() -> None:
    outcomes = [FakeCapture(2)] + [ClosedCapture(0)] * 8 + [FakeCapture(1)]
    opener_calls: list[str] = []

    def opener(source: str, params: list[int]):
        opener_calls.append(source)
        return outcomes.pop(0)

    stop = RecordingStop()
    clock = FakeClock()
    source = VideoSource(
        URL, stop=stop, clock=clock, opener=opener, backoff=Backoff(0.5, 4.0, 2.0, 0.5), rng=random.Random(1)
    )  # type: ignore[arg-type]
    assert source.read().index == 0
    assert source.read().index == 1
    errors = 0
    while True:
        try:
            frame = source.read()
            break
        except SourceConnectionError as exc:
            errors += 1
            assert "secret" not in str(exc)
    assert frame.index == 2 and frame.captured_at.tzinfo is not None
    assert errors == 9  # the drop, then 8 failed attempts
    assert source.reconnects == 1 and source.state == SourceState.STREAMING
    assert len(stop.waits) == 9
    bases = [min(4.0, 0.5 * 2**n) for n in range(9)]
    assert all(b * 0.5 <= w <= b for w, b in zip(stop.waits, bases, strict=True))
    assert max(stop.waits) <= 4.0


def test_reconnect_wait_is_interrupted_by_stop() -> None:
    import threading

    stop = threading.Event()
    stop.set()
    source = VideoSource(URL, stop=stop, opener=lambda s, p: ClosedCapture(0))
    with pytest.raises(SourceConnectionError):
        source.read()
    with pytest.raises(SourceConnectionError, match="stopped"):
        source.read()


def test_unreachable_rtsp_url_never_leaks_credentials(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    source = VideoSource(URL, open_timeout_s=1.0, read_timeout_s=1.0)
    with pytest.raises(SourceConnectionError) as info:
        source.read()
    message = str(info.value)
    assert "secret" not in message and "user:" not in message
    assert "127.0.0.1:1/x" in message
    assert "secret" not in source.name and "secret" not in repr(info.value.args)
    assert "secret" not in caplog.text
    assert source.state == SourceState.RECONNECTING


def test_frame_rejects_naive_time_and_wrong_shape() -> None:
    from ingest.capture import Frame

    with pytest.raises(ValueError, match="timezone-aware"):
        Frame(0, np.zeros((2, 2, 3), np.uint8), 0.0, datetime(2026, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        Frame(0, np.zeros((2, 2), np.uint8), 0.0, datetime(2026, 1, 1, tzinfo=UTC))
