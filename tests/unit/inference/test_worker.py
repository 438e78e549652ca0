"""The inference worker: batches from the bus, one row per clip, dead letters, commit after the write."""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy.exc import OperationalError

from common.app.runtime import _health_check
from common.bus import BusRecord, CommitFailedError
from common.db import Database
from common.inprocess_bus import InProcessBus, InProcessConsumer
from common.metrics import HealthServer
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


def clip_bytes(clip_id: str, brightness: int, camera: str = "cam", shape: tuple = (20, 64, 64, 3)) -> bytes:
    frames = np.full(shape, brightness, dtype=np.uint8)
    header = ClipHeader(clip_id=clip_id, store_id="s", camera_id=camera, captured_at=T0 + timedelta(seconds=4),
                        start_at=T0, source_start_s=0, source_end_s=4, shape=frames.shape)
    return ClipMessage(header, frames).to_bytes()


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


GROUP = "aislewatch-inference"


def database_down() -> OperationalError:
    return OperationalError("INSERT", {}, Exception("server closed the connection"))


def test_nothing_is_committed_while_the_database_is_down(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    bus = InProcessBus()
    for clip_id in ("held0", "held1", "held2"):
        bus.publisher().publish(Topic.CLIPS, "cam", clip_bytes(clip_id, 10))
    real_write = db.write_results
    failures = {"left": 3}
    seen: list[tuple[str, int, int]] = []  # (when, the group's uncommitted records, results published)

    def flaky(results):
        if failures["left"]:
            failures["left"] -= 1
            seen.append(("failed", bus.lag(GROUP), bus.end_offsets(Topic.RESULTS)))
            raise database_down()
        written = real_write(results)  # the real SQLite write
        seen.append(("written", bus.lag(GROUP), bus.end_offsets(Topic.RESULTS)))
        return written

    monkeypatch.setattr(db, "write_results", flaky)
    worker = InferenceWorker(BrightnessClassifier(), bus, db, max_batch_size=8, max_wait_s=0.0, poll_timeout_s=0.01)
    run_until(worker, lambda: bus.lag(GROUP) == 0, steps=5)
    # while the write failed, and even once it had returned, nothing was committed or published yet
    assert seen == [("failed", 3, 0)] * 3 + [("written", 3, 0)]
    assert bus.lag(GROUP) == 0  # committed only after the write succeeded
    worker.shutdown()
    assert sorted(r.clip_id for r in db.results()) == ["held0", "held1", "held2"]
    results = bus.consumer([Topic.RESULTS], "check").poll(0.1)
    assert sorted(ResultMessage.from_bytes(r.value).clip_id for r in results) == ["held0", "held1", "held2"]


def test_clips_are_redelivered_when_stopped_while_the_database_is_down(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = InProcessBus()
    for clip_id in ("a", "b", "c"):
        bus.publisher().publish(Topic.CLIPS, "cam", clip_bytes(clip_id, 10))
    real_write = db.write_results
    stop = threading.Event()
    attempts = {"n": 0}

    def down(results):
        attempts["n"] += 1
        stop.set()  # the service is stopped during the outage
        raise database_down()

    monkeypatch.setattr(db, "write_results", down)
    first = InferenceWorker(BrightnessClassifier(), bus, db, max_batch_size=8, max_wait_s=0.0,
                            poll_timeout_s=0.01, stop=stop)
    first.run()  # a stop during the outage is an orderly stop, not an error
    assert first.error is None
    assert attempts["n"] >= 1 and db.results() == []
    assert bus.lag(GROUP) == 3  # the first worker left the group without committing anything

    monkeypatch.setattr(db, "write_results", real_write)  # the database is back
    model = BrightnessClassifier()
    second = InferenceWorker(model, bus, db, max_batch_size=8, max_wait_s=0.0, poll_timeout_s=0.01)
    run_until(second, lambda: bus.lag(GROUP) == 0, steps=20)
    second.shutdown()
    assert sum(model.batches) == 3  # every clip was delivered again, to the new consumer
    assert sorted(r.clip_id for r in db.results()) == ["a", "b", "c"]
    assert bus.lag(GROUP) == 0


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


def wait_for(condition, timeout_s: float = 10.0) -> bool:
    done = threading.Event()
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return True
        done.wait(0.02)
    return condition()


def test_clips_that_do_not_fit_the_model_are_dead_lettered_and_the_batch_goes_on(db: Database) -> None:
    bus = InProcessBus()
    pub = bus.publisher()
    # one batch: good clips around clips of 10 frames and of 32x32 px (clip settings the model cannot take)
    pub.publish(Topic.CLIPS, "cam", clip_bytes("good0", 255))
    pub.publish(Topic.CLIPS, "cam", clip_bytes("short", 10, shape=(10, 64, 64, 3)))
    pub.publish(Topic.CLIPS, "cam", clip_bytes("good1", 0))
    pub.publish(Topic.CLIPS, "cam-small", clip_bytes("small", 10, camera="cam-small", shape=(20, 32, 32, 3)))
    pub.publish(Topic.CLIPS, "cam", clip_bytes("good2", 255))
    stop = threading.Event()
    model = BrightnessClassifier()  # asserts it is only ever given (20, 64, 64, 3)
    worker = InferenceWorker(model, bus, db, max_batch_size=8, max_wait_s=0.05, poll_timeout_s=0.01, stop=stop)
    worker.start_thread()
    try:
        assert wait_for(lambda: bus.lag(GROUP) == 0)
        assert sorted(r.clip_id for r in db.results()) == ["good0", "good1", "good2"]
        assert model.batches == [3]  # the good clips of the batch, scored together
        letters = [DeadLetter.from_bytes(r.value) for r in bus.consumer([Topic.DEAD_LETTER], "check").poll(0.1)]
        assert [(d.key, d.source_topic) for d in letters] == [("cam", "clips"), ("cam-small", "clips")]
        short, small = (d.reason for d in letters)
        assert "(10, 64, 64, 3)" in short and "(20, 64, 64, 3)" in short and "short" in short
        assert "(20, 32, 32, 3)" in small and "(20, 64, 64, 3)" in small and "camera cam-small" in small
        assert worker.stats.dead_letters == 2
        # still alive, and it goes on scoring what comes next
        assert worker.alive and worker.error is None
        pub.publish(Topic.CLIPS, "cam", clip_bytes("later", 0))
        assert wait_for(lambda: "later" in {r.clip_id for r in db.results()})
        assert worker.alive and bus.lag(GROUP) == 0
    finally:
        stop.set()
        worker.join(5)
    assert worker.error is None


def test_the_models_own_input_shape_is_the_one_checked(db: Database) -> None:
    class ShortModel(BrightnessClassifier):
        input_shape = (10, 64, 64, 3)

        def predict(self, clips: np.ndarray) -> np.ndarray:
            assert clips.shape[1:] == self.input_shape
            self.batches.append(len(clips))
            return np.zeros(len(clips), np.float32)

    bus = InProcessBus()
    bus.publisher().publish(Topic.CLIPS, "cam", clip_bytes("short", 10, shape=(10, 64, 64, 3)))
    bus.publisher().publish(Topic.CLIPS, "cam", clip_bytes("usual", 10))
    worker = InferenceWorker(ShortModel(), bus, db, max_batch_size=8, max_wait_s=0.0, poll_timeout_s=0.01)
    run_until(worker, lambda: bus.lag(GROUP) == 0)
    worker.shutdown()
    assert [r.clip_id for r in db.results()] == ["short"]
    (letter,) = bus.consumer([Topic.DEAD_LETTER], "check").poll(0.1)
    assert "(20, 64, 64, 3) does not fit the model's input (10, 64, 64, 3)" in DeadLetter.from_bytes(letter.value).reason


class RebalancedOnce:
    """The real in-process consumer, except that its first commit is refused as after a consumer-group
    rebalance: like Kafka, the group then hands the uncommitted records out again (here to the same member,
    which got its partition back)."""

    def __init__(self, bus: InProcessBus, topics: list[Topic], group_id: str) -> None:
        self.bus, self.topics, self.group_id = bus, topics, group_id
        self.inner: InProcessConsumer = bus.consumer(topics, group_id)
        self.refusals = 0

    def poll(self, timeout_s: float, max_records: int = 500) -> list[BusRecord]:
        return self.inner.poll(timeout_s, max_records)

    def commit(self, hold: Mapping[tuple[Topic, int], int] | None = None) -> None:
        if self.refusals == 0:
            self.refusals += 1
            self.inner.close()  # the rebalance: uncommitted records go back to the group
            self.inner = self.bus.consumer(self.topics, self.group_id)
            raise CommitFailedError("commit failed after a rebalance; records will be redelivered")
        self.inner.commit(hold)

    def close(self) -> None:
        self.inner.close()


class RebalancingBus:
    """The in-process bus whose consumers are RebalancedOnce."""

    def __init__(self) -> None:
        self.inner = InProcessBus()
        self.consumers: list[RebalancedOnce] = []

    def publisher(self):
        return self.inner.publisher()

    def consumer(self, topics, group_id: str) -> RebalancedOnce:
        consumer = RebalancedOnce(self.inner, list(topics), group_id)
        self.consumers.append(consumer)
        return consumer

    def close(self) -> None:
        self.inner.close()


def test_a_commit_refused_after_a_rebalance_does_not_stop_the_worker(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    bus = RebalancingBus()
    for i in range(3):
        bus.publisher().publish(Topic.CLIPS, "cam", clip_bytes(f"c{i}", 200))
    stop = threading.Event()
    model = BrightnessClassifier()
    worker = InferenceWorker(model, bus, db, max_batch_size=8, max_wait_s=0.05, poll_timeout_s=0.01, stop=stop)
    with caplog.at_level(logging.WARNING, logger="aislewatch.infer"):
        worker.start_thread()
        try:
            assert wait_for(lambda: bus.inner.lag(GROUP) == 0)
            assert bus.consumers[0].refusals == 1
            assert model.batches == [3, 3]  # the refused batch came again and was scored again
            assert sorted(r.clip_id for r in db.results()) == ["c0", "c1", "c2"]  # one row per clip
            assert worker.alive and worker.error is None and worker.stats.commits_refused == 1
            bus.publisher().publish(Topic.CLIPS, "cam", clip_bytes("after", 10))
            assert wait_for(lambda: "after" in {r.clip_id for r in db.results()} and bus.inner.lag(GROUP) == 0)
        finally:
            stop.set()
            worker.join(5)
    assert worker.error is None
    assert any("commit refused after a consumer-group rebalance" in r.getMessage() for r in caplog.records)


def test_health_is_progress_a_worker_stuck_on_the_database_is_stalled(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = InProcessBus()
    real_write = db.write_results
    down = threading.Event()
    down.set()

    def write(results):
        if down.is_set():
            raise database_down()
        return real_write(results)

    monkeypatch.setattr(db, "write_results", write)
    stop = threading.Event()
    worker = InferenceWorker(BrightnessClassifier(), bus, db, max_batch_size=8, max_wait_s=0.0,
                             poll_timeout_s=0.02, stop=stop)
    worker.start_thread()
    health = HealthServer("127.0.0.1", 0).start()
    health.add_check("infer", _health_check(worker, stall_after_s=0.3))  # what a deployment's /healthz asks

    def healthz() -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health.port}/healthz", timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        time.sleep(0.5)
        assert worker.healthy(stall_after_s=0.3), "an idle worker is healthy, however long it waits"
        assert healthz() == 200
        bus.publisher().publish(Topic.CLIPS, "cam", clip_bytes("stuck", 10))
        # the write is retried (the thread is alive) but nothing moves: the stall grows
        assert wait_for(lambda: worker.stalled_for() >= 0.5, 15.0), "the stuck worker never counted as stalled"
        assert worker.alive and not worker.healthy(stall_after_s=0.3) and healthz() == 503
        down.clear()  # the database is back
        assert wait_for(lambda: worker.healthy(stall_after_s=0.3), 30.0), "the worker never recovered"
        assert [r.clip_id for r in db.results()] == ["stuck"] and worker.stalled_for() == 0.0
        assert healthz() == 200
    finally:
        health.close()
        stop.set()
        worker.join(5)
