"""The inference worker on chained clips: whole clips scored from a camera's ordered messages, commits held
so that a worker stopped at any point and a new one reading from the committed offset give every clip
exactly one result row, with the frames ingest cut; whole clips of the previous format still read."""

from __future__ import annotations

import numpy as np
import pytest

from common.db import Database
from common.inprocess_bus import InProcessBus
from common.schemas import ClipHeader, ClipMessage, DeadLetter, ResultMessage, Topic
from inference.worker import InferenceWorker
from tests.clip_topic import T0, chained_stream

GROUP = "aislewatch-inference"


class MeanClassifier:
    """Probability = mean value of the clip /255: a result that shows which frames the model got."""

    threshold = 0.5
    version = "mean-test"

    def predict(self, clips: np.ndarray) -> np.ndarray:
        return clips.reshape(len(clips), -1).mean(axis=1) / 255.0


def publish_cameras(bus: InProcessBus) -> dict[str, np.ndarray]:
    """Two cameras' chained clips interleaved, and a third camera's whole clips (the previous format)."""
    a = chained_stream(camera="cam-a")
    b = chained_stream(camera="cam-b", moving=lambda t: (t % 20) < 8)
    publisher = bus.publisher()
    for i in range(max(len(a.messages), len(b.messages))):
        for camera, stream in (("cam-a", a), ("cam-b", b)):
            if i < len(stream.messages):
                publisher.publish(Topic.CLIPS, camera, stream.messages[i])
        if i % 10 == 0:
            frames = np.full((20, 64, 64, 3), 40 + i, np.uint8)
            header = ClipHeader(clip_id=f"old-{i}", store_id="s1", camera_id="cam-old", captured_at=T0,
                                start_at=T0, source_start_s=0, source_end_s=4, shape=frames.shape)
            publisher.publish(Topic.CLIPS, "cam-old", ClipMessage(header, frames).to_bytes())
    expected = {**a.expected, **b.expected}
    expected.update({f"old-{i}": np.full((20, 64, 64, 3), 40 + i, np.uint8)
                     for i in range(0, max(len(a.messages), len(b.messages)), 10)})
    return expected


def worker(bus: InProcessBus, db: Database) -> InferenceWorker:
    w = InferenceWorker(MeanClassifier(), bus, db, max_batch_size=7, max_wait_s=0.0, poll_timeout_s=0.01)
    w.setup()
    return w


def check_results(bus: InProcessBus, db: Database, expected: dict[str, np.ndarray]) -> None:
    rows = {r.clip_id: r for r in db.results()}
    assert rows.keys() == expected.keys()
    for clip_id, frames in expected.items():
        assert rows[clip_id].probability == pytest.approx(frames.mean() / 255.0, abs=1e-6), clip_id
    dead = [DeadLetter.from_bytes(r.value).reason for r in bus.consumer([Topic.DEAD_LETTER], "dl").poll(0, 10_000)]
    assert dead == []


def test_every_chained_clip_scored_once_with_the_frames_ingest_cut(db: Database) -> None:
    bus = InProcessBus()
    expected = publish_cameras(bus)
    w = worker(bus, db)
    held = []
    for _ in range(500):
        w.step()
        held.append(w.chains.holds().get((Topic.CLIPS, 0)))
        if bus.lag(GROUP) == 0:
            break
    w.shutdown()
    check_results(bus, db, expected)
    # while a camera's clips went on, the commit stayed at the oldest message its next clips need
    assert any(h is not None for h in held)
    published = [ResultMessage.from_bytes(r.value).clip_id for r in bus.consumer([Topic.RESULTS], "r").poll(0, 10_000)]
    assert sorted(published) == sorted(expected)
    assert bus.lag(GROUP) == 0 and len(w.chains) <= 3


@pytest.mark.parametrize("steps", [1, 3, 6, 11, 17, 25])
def test_a_worker_stopped_anywhere_and_a_new_one_score_every_clip_exactly_once(db: Database, steps: int) -> None:
    bus = InProcessBus()
    expected = publish_cameras(bus)
    first = worker(bus, db)
    for _ in range(steps):
        first.step()
    assert first._consumer is not None
    first._consumer.close()  # the crash: what was not committed goes back to the group

    second = worker(bus, db)
    for _ in range(500):
        second.step()
        if bus.lag(GROUP) == 0:
            break
    second.shutdown()
    check_results(bus, db, expected)


def test_a_camera_ending_with_a_chain_end_leaves_no_lag(db: Database) -> None:
    """The chain end, arriving after the camera's last clip was scored, completes no clip, yet it is committed
    (and the hold released): a drain waiting for lag 0 finishes."""
    bus = InProcessBus()
    stream = chained_stream(camera="cam-a", limit=60)
    *clips, end = stream.messages
    assert end[:4] == b"AWE2"
    publisher = bus.publisher()
    for message in clips:
        publisher.publish(Topic.CLIPS, "cam-a", message)
    w = worker(bus, db)
    for _ in range(200):
        w.step()
        if {r.clip_id for r in db.results()} == stream.expected.keys():
            break
    assert w.chains.holds(), "the camera's frames are kept for clips that may follow"
    publisher.publish(Topic.CLIPS, "cam-a", end)
    for _ in range(20):
        w.step()
    assert w.chains.holds() == {}
    assert bus.lag(GROUP) == 0, "the chain end was never committed"
    w.shutdown()


def test_threads_sharing_the_in_process_partition_share_their_chains(db: Database) -> None:
    """Two inference threads on the in-process bus split its one partition between them: with the chains
    shared (and applied in offset order) every clip is scored once, none dead-lettered."""
    import threading

    from inference.clip_chains import ClipChains

    bus = InProcessBus()
    expected = publish_cameras(bus)
    shared = ClipChains.for_database(db)
    stop = threading.Event()
    workers = [InferenceWorker(MeanClassifier(), bus, db, max_batch_size=8, max_wait_s=0.0, poll_timeout_s=0.01,
                               chains=shared, stop=stop, name=f"infer-{i}") for i in range(2)]
    assert all(w.chains is shared for w in workers)
    for w in workers:
        w.start_thread()
    for _ in range(600):
        if bus.lag(GROUP) == 0 and len(db.results()) >= len(expected):
            break
        stop.wait(0.05)
    stop.set()
    for w in workers:
        w.join(10)
    check_results(bus, db, expected)
    assert sum(w.stats.clips for w in workers) >= len(expected) and all(w.stats.clips for w in workers)
