"""The inference worker: batches from the bus, one row per clip, dead letters, commit after the write."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from common.bus import InProcessBus
from common.db import Database
from common.schemas import ClipHeader, ClipMessage, DeadLetter, ResultMessage, Topic
from inference.worker import InferenceWorker

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class BrightnessClassifier:
    """A transparent stand-in for the ConvLSTM (the real one is covered in the model tests):
    probability = mean brightness, and it records the batch sizes it was given."""

    threshold = 0.5
    version = "brightness-test"

    def __init__(self) -> None:
        self.batches: list[int] = []

    def predict(self, clips: np.ndarray) -> np.ndarray:
        assert clips.dtype == np.uint8 and clips.shape[1:] == (20, 64, 64, 3)
        self.batches.append(len(clips))
        return clips.reshape(len(clips), -1).mean(axis=1).astype(np.float32) / 255.0


def clip_bytes(clip_id: str, brightness: int, camera: str = "cam") -> bytes:
    frames = np.full((20, 64, 64, 3), brightness, dtype=np.uint8)
    header = ClipHeader(clip_id=clip_id, store_id="s", camera_id=camera, captured_at=T0 + timedelta(seconds=4),
                        start_at=T0, source_start_s=0, source_end_s=4, shape=frames.shape)
    return ClipMessage(header, frames).to_bytes()


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database.from_url(f"sqlite:///{tmp_path / 'aw.db'}")
    database.upgrade()
    yield database
    database.close()


def run_until(worker: InferenceWorker, condition, steps: int = 200) -> None:
    worker.setup()
    for _ in range(steps):
        worker.step()
        if condition():
            break


def test_clips_become_one_result_row_each_and_results_are_published(db: Database) -> None:
    bus = InProcessBus()
    pub = bus.publisher()
    for i in range(10):
        pub.publish(Topic.CLIPS, "cam", clip_bytes(f"c{i}", 255 if i % 2 else 0))
    model = BrightnessClassifier()
    worker = InferenceWorker(model, bus, db, max_batch_size=4, max_wait_s=0.0, poll_timeout_s=0.01)
    run_until(worker, lambda: len(db.results()) == 10)
    worker.shutdown()
    rows = {r.clip_id: r for r in db.results()}
    assert len(rows) == 10
    assert rows["c1"].suspicious and not rows["c0"].suspicious
    assert max(model.batches) <= 4
    results = bus.consumer([Topic.RESULTS], "check").poll(0.1)
    assert sorted(ResultMessage.from_bytes(r.value).clip_id for r in results) == sorted(rows)
    assert bus.lag("aislewatch-inference") == 0


def test_redelivered_clips_do_not_double_rows(db: Database) -> None:
    bus = InProcessBus()
    pub = bus.publisher()
    for i in range(3):
        pub.publish(Topic.CLIPS, "cam", clip_bytes(f"c{i}", 200))
    for i in range(3):  # the same clips again, as after a crash before commit
        pub.publish(Topic.CLIPS, "cam", clip_bytes(f"c{i}", 200))
    worker = InferenceWorker(BrightnessClassifier(), bus, db, max_batch_size=32, max_wait_s=0.0, poll_timeout_s=0.01)
    run_until(worker, lambda: bus.lag("aislewatch-inference") == 0)
    worker.shutdown()
    assert len(db.results()) == 3


def test_malformed_clip_goes_to_dead_letter_and_the_rest_is_processed(db: Database) -> None:
    bus = InProcessBus()
    pub = bus.publisher()
    pub.publish(Topic.CLIPS, "cam", b"not a clip")
    pub.publish(Topic.CLIPS, "cam", clip_bytes("good", 10))
    worker = InferenceWorker(BrightnessClassifier(), bus, db, max_batch_size=8, max_wait_s=0.0, poll_timeout_s=0.01)
    run_until(worker, lambda: bus.lag("aislewatch-inference") == 0)
    worker.shutdown()
    assert [r.clip_id for r in db.results()] == ["good"]
    dead = bus.consumer([Topic.DEAD_LETTER], "check").poll(0.1)
    assert len(dead) == 1
    letter = DeadLetter.from_bytes(dead[0].value)
    assert letter.source_topic == "clips" and "magic" in letter.reason
    assert bytes.fromhex(letter.payload_hex) == b"not a clip"


def test_partial_batch_waits_then_flushes(db: Database) -> None:
    from common.clock import FakeClock

    clock = FakeClock()
    bus = InProcessBus()
    bus.publisher().publish(Topic.CLIPS, "cam", clip_bytes("only", 10))
    model = BrightnessClassifier()
    worker = InferenceWorker(model, bus, db, max_batch_size=32, max_wait_s=0.5, clock=clock, poll_timeout_s=0.01)
    worker.setup()
    worker.step()
    assert model.batches == [] and db.results() == []
    clock.advance(0.5)
    worker.step()
    assert model.batches == [1]
    assert [r.clip_id for r in db.results()] == ["only"]
    worker.shutdown()


def test_nothing_is_committed_while_the_database_is_down(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import OperationalError

    bus = InProcessBus()
    bus.publisher().publish(Topic.CLIPS, "cam", clip_bytes("held", 10))
    real_write = db.write_results
    failures = {"left": 3}

    def flaky(results):
        if failures["left"]:
            failures["left"] -= 1
            raise OperationalError("INSERT", {}, Exception("server closed the connection"))
        return real_write(results)

    monkeypatch.setattr(db, "write_results", flaky)
    worker = InferenceWorker(BrightnessClassifier(), bus, db, max_batch_size=1, max_wait_s=0.0, poll_timeout_s=0.01)
    run_until(worker, lambda: bus.lag("aislewatch-inference") == 0, steps=5)
    worker.shutdown()
    assert failures["left"] == 0
    assert [r.clip_id for r in db.results()] == ["held"]


def test_worker_runs_on_its_thread_and_stops_cleanly(db: Database) -> None:
    bus = InProcessBus()
    stop = threading.Event()
    worker = InferenceWorker(BrightnessClassifier(), bus, db, max_batch_size=4, max_wait_s=0.05, stop=stop,
                             poll_timeout_s=0.05)
    worker.start_thread()
    bus.publisher().publish(Topic.CLIPS, "cam", clip_bytes("t", 10))
    for _ in range(100):
        if db.results():
            break
        stop.wait(0.05)
    stop.set()
    worker.join(5)
    assert not worker.alive and worker.error is None
    assert [r.clip_id for r in db.results()] == ["t"]
