"""CameraWorker end to end on files with the in-process bus; health events; publish retries."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from common.bus import BusError
from common.clock import FakeClock
from common.inprocess_bus import InProcessBus
from common.schemas import CameraHealthMessage, CameraState, Topic
from common.settings import CameraSettings, MotionSettings
from ingest.worker import CameraWorker
from tests.clip_topic import clip_id_of, clip_ids, whole_clips


def camera(source: Path | str, **kw) -> CameraSettings:
    return CameraSettings(id="cam1", source=str(source), motion=MotionSettings(method="diff"), **kw)


def run_worker(
    cam: CameraSettings, tmp_path: Path, publisher=None, clock=None
) -> tuple[CameraWorker, InProcessBus]:
    bus = InProcessBus()
    worker = CameraWorker(
        "s1", cam, publisher or bus.publisher(), tmp_path / "evidence", clock=clock or FakeClock()
    )
    worker.run()  # returns when the file ends; must not raise
    return worker, bus


def drain(bus: InProcessBus, topic: Topic) -> list:
    consumer = bus.consumer([topic], "test")
    return [r for r in consumer.poll(0, 10_000)]


def health_states(bus: InProcessBus) -> list[CameraState]:
    return [CameraHealthMessage.from_bytes(r.value).state for r in drain(bus, Topic.CAMERA_HEALTH)]


def test_motion_file_publishes_decodable_clips_with_snapshots(motion_video: Path, tmp_path: Path) -> None:
    worker, bus = run_worker(camera(motion_video), tmp_path)
    records = [r for r in drain(bus, Topic.CLIPS) if clip_id_of(r.value) is not None]  # not chain ends
    assert records, "movement must produce clips"
    clips = whole_clips(records)
    for record, clip in zip(records, clips, strict=True):
        h = clip.header
        assert record.key == "cam1" and h.camera_id == "cam1" and h.store_id == "s1"
        assert clip.frames.shape == (20, 64, 64, 3) and clip.frames.dtype == np.uint8
        assert h.snapshot_path and Path(h.snapshot_path).is_file()
        assert Path(h.snapshot_path).parent.parent.name == "cam1"
        assert h.published_at is not None and 0 <= h.motion_area <= 1
    # motion is at 3..6 s: every clip overlaps it (or its hold), none is far away from it
    assert all(c.header.source_start_s < 7.0 and c.header.source_end_s > 1.0 for c in clips)
    assert len({c.header.clip_id for c in clips}) == len(clips)
    assert health_states(bus) == [CameraState.ONLINE, CameraState.ENDED]
    counters = worker.counters()
    assert counters.frames_read == 120 and counters.clips_published == len(clips) and counters.errors == 0
    assert counters.state == "ended"


def test_rereading_the_same_file_gives_the_same_clip_ids(motion_video: Path, tmp_path: Path) -> None:
    ids = []
    for run in range(2):
        _, bus = run_worker(camera(motion_video), tmp_path / str(run))
        ids.append(clip_ids(drain(bus, Topic.CLIPS)))
    assert ids[0] == ids[1] and ids[0]


def test_still_file_publishes_no_clips(still_video: Path, tmp_path: Path) -> None:
    worker, bus = run_worker(camera(still_video), tmp_path)
    assert drain(bus, Topic.CLIPS) == []
    assert worker.counters().frames_read == 90


def health_messages(bus: InProcessBus) -> list[CameraHealthMessage]:
    return [CameraHealthMessage.from_bytes(r.value) for r in drain(bus, Topic.CAMERA_HEALTH)]


@pytest.mark.parametrize("fixture", ["corrupt_video", "truncated_video", "missing"])
def test_unreadable_files_report_error_and_stop_cleanly(fixture: str, request, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    path = tmp_path / "missing.mp4" if fixture == "missing" else request.getfixturevalue(fixture)
    worker, bus = run_worker(camera(path), tmp_path)  # returns: the error does not escape run()
    # one log line per camera event: the error is logged once, at ERROR, with the file's name
    errors = [r for r in caplog.records if r.name.startswith("aislewatch") and path.name in r.getMessage()]
    assert [r.levelno for r in errors] == [logging.ERROR], [r.getMessage() for r in errors]
    health = health_messages(bus)
    assert [h.state for h in health] == [CameraState.ERROR]  # never ONLINE, never a clean ENDED
    assert path.name in health[0].detail
    assert worker.error is None
    counters = worker.counters()
    assert counters.errors == 1 and counters.state == "error"
    assert counters.frames_read == 0 and counters.clips_published == 0
    assert drain(bus, Topic.CLIPS) == []


def test_file_truncated_mid_stream_reports_error_not_ended(cut_avi: tuple[Path, Path], tmp_path: Path) -> None:
    _, cut = cut_avi
    worker, bus = run_worker(camera(cut), tmp_path)
    health = health_messages(bus)
    assert [h.state for h in health] == [CameraState.ONLINE, CameraState.ERROR]
    assert "stopped decoding" in health[-1].detail and cut.name in health[-1].detail
    assert worker.error is None
    counters = worker.counters()
    assert 0 < counters.frames_read < 120
    assert counters.errors == 1 and counters.state == "error"
    # what was decoded before the data ran out still produced its clips (cut at the error)
    assert counters.clips_published == len(clip_ids(drain(bus, Topic.CLIPS))) > 0


def test_worker_in_a_thread_stops_on_the_stop_event(still_video: Path, tmp_path: Path) -> None:
    bus = InProcessBus()
    stop = threading.Event()
    worker = CameraWorker("s1", camera(still_video, loop=True), bus.publisher(), tmp_path, stop=stop)
    worker.start_thread()
    stop.set()
    worker.join(5)
    assert not worker.alive and worker.error is None


def test_unreachable_camera_goes_offline_without_leaking_credentials(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    bus = InProcessBus()
    cam = camera("rtsp://user:secret@127.0.0.1:1/x", offline_after_s=1.0)
    worker = CameraWorker("s1", cam, bus.publisher(), tmp_path)
    worker.setup()
    assert worker.step() is True  # retryable: the loop goes on
    worker.stop()
    worker.shutdown()
    records = drain(bus, Topic.CAMERA_HEALTH)
    health = [CameraHealthMessage.from_bytes(r.value) for r in records]
    assert [h.state for h in health] == [CameraState.OFFLINE]
    assert "secret" not in health[0].detail and "127.0.0.1:1/x" in health[0].detail
    assert "secret" not in caplog.text
    offline = [r for r in caplog.records if "offline" in r.getMessage()]  # one line per camera event
    assert [r.levelno for r in offline] == [logging.WARNING], [r.getMessage() for r in offline]


class FlakyPublisher:
    """Refuses the first ``failures`` publishes, then accepts; records what it accepted."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.accepted: list[tuple[Topic, str, bytes]] = []

    def publish(self, topic, key, value, on_delivery=None) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise BusError("broker unavailable")
        self.accepted.append((topic, key, value))
        if on_delivery is not None:
            on_delivery(None)

    def flush(self, timeout_s=None) -> None:
        pass

    def reset(self) -> None:
        self.resets = getattr(self, "resets", 0) + 1

    def close(self) -> None:
        pass


class TickingClock(FakeClock):
    """Moves 0.1 s every time it is read, so retry deadlines pass while frames are processed."""

    def monotonic(self) -> float:
        self.advance(0.1)
        return super().monotonic()


def test_publish_failures_are_retried_in_order(motion_video: Path, tmp_path: Path) -> None:
    publisher = FlakyPublisher(failures=3)
    worker, _ = run_worker(camera(motion_video), tmp_path, publisher=publisher, clock=TickingClock())
    topics = [t for t, _, _ in publisher.accepted]
    assert topics[0] == Topic.CAMERA_HEALTH and topics[-1] == Topic.CAMERA_HEALTH  # ONLINE first, ENDED last
    counters = worker.counters()
    clips = [v for t, _, v in publisher.accepted if t == Topic.CLIPS and clip_id_of(v) is not None]  # no chain ends
    assert counters.clips_published == len(clips) > 0
    assert counters.clips_dropped == 0 and counters.publish_retries > 0 and worker.pending == 0


class OutagePublisher:
    """Forwards to a real bus publisher, except while ``down``; records what it forwarded, in order."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.down = False
        self.forwarded: list[tuple[Topic, bytes]] = []

    def publish(self, topic, key, value, on_delivery=None) -> None:
        if self.down:
            raise BusError("broker unavailable")
        self.inner.publish(topic, key, value, on_delivery=on_delivery)
        self.forwarded.append((topic, value))

    def flush(self, timeout_s=None) -> None:
        pass

    def reset(self) -> None:
        self.resets = getattr(self, "resets", 0) + 1

    def close(self) -> None:
        pass


def label(topic: Topic, value: bytes) -> str:
    """A message by what identifies it across runs: the clip id, or the health state."""
    if topic == Topic.CLIPS:
        return clip_id_of(value) or "chain-end"
    return f"health:{CameraHealthMessage.from_bytes(value).state.value}"


def test_retry_queue_is_bounded_and_drops_oldest(motion_video: Path, tmp_path: Path) -> None:
    # every message the file produces, in order, when the bus is up (clip ids are deterministic)
    reference = OutagePublisher(InProcessBus().publisher())
    run_worker(camera(motion_video), tmp_path / "reference", publisher=reference)
    produced = [label(t, v) for t, v in reference.forwarded]
    assert produced[0] == "health:online" and produced[-1] == "health:ended" and len(produced) >= 6

    size = 3
    bus = InProcessBus()
    publisher = OutagePublisher(bus.publisher())
    publisher.down = True  # the bus refuses everything while the file is read
    worker = CameraWorker(
        "s1", camera(motion_video), publisher, tmp_path / "outage", clock=FakeClock(), retry_queue_size=size
    )
    worker.setup()
    while worker.step():
        pass
    assert worker.pending == size and publisher.forwarded == []
    publisher.down = False  # the bus comes back: shutdown retries what the queue kept
    worker.shutdown()

    kept = [label(t, v) for t, v in publisher.forwarded]
    assert kept == produced[-size:]  # the newest messages, in their order
    assert "health:online" not in kept and produced[1] not in kept  # the oldest ones are gone
    clips_on_bus = clip_ids(drain(bus, Topic.CLIPS))
    assert clips_on_bus == [c for c in produced[-size:] if not c.startswith(("health:", "chain-end"))]
    assert health_states(bus) == [CameraState.ENDED]
    counters = worker.counters()
    dropped_clips = [c for c in produced[:-size] if not c.startswith(("health:", "chain-end"))]
    assert counters.clips_dropped == len(dropped_clips) > 0
    assert counters.clips_published == len(clips_on_bus) and worker.pending == 0


def test_a_worker_stopped_mid_motion_sends_its_chain_end(motion_video: Path, tmp_path: Path) -> None:
    """Stopped from outside while its chain is open (a config reload, a rolling restart), the camera worker
    tells the inference workers to let go of its frames, so their commits are not held until expiry."""
    from common.schemas import ChainEnd, read_clip_topic

    bus = InProcessBus()
    stop = threading.Event()
    worker = CameraWorker("s1", camera(motion_video), bus.publisher(), tmp_path, stop=stop)
    worker.setup()
    while worker.chain is not None and not worker.chain.holding:
        assert worker.step(), "the video must move before it ends"
    stop.set()
    worker.shutdown()
    kinds = [type(read_clip_topic(r.value)) for r in drain(bus, Topic.CLIPS)]
    assert kinds and kinds[-1] is ChainEnd
