"""A clip already stored is a redelivery (same capture time: silent, counted) or a re-run of the same recording
(a new capture time: said plainly, once per camera and in a summary at stop), and either way exactly one row."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from prometheus_client import REGISTRY

from common.db import Database
from common.inprocess_bus import InProcessBus
from common.schemas import ClipHeader, ClipMessage, Topic
from inference.worker import InferenceWorker

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Constant:
    threshold = 0.5
    version = "constant-test"

    def predict(self, clips: np.ndarray) -> np.ndarray:
        return np.full(len(clips), 0.9, np.float32)


def clip(clip_id: str, captured_at: datetime, camera: str = "cam") -> bytes:
    frames = np.zeros((20, 64, 64, 3), np.uint8)
    header = ClipHeader(clip_id=clip_id, store_id="s", camera_id=camera, captured_at=captured_at,
                        start_at=captured_at - timedelta(seconds=4), source_start_s=0, source_end_s=4,
                        shape=frames.shape)
    return ClipMessage(header, frames).to_bytes()


def already_stored(reason: str) -> float:
    return REGISTRY.get_sample_value("aislewatch_clips_already_stored_total", {"reason": reason}) or 0.0


def run(db: Database, messages: list[bytes]) -> InferenceWorker:
    bus = InProcessBus()
    publisher = bus.publisher()
    for message in messages:
        publisher.publish(Topic.CLIPS, "cam", message)
    worker = InferenceWorker(Constant(), bus, db, max_batch_size=8, max_wait_s=0.0, poll_timeout_s=0.01)
    worker.setup()
    for _ in range(50):
        worker.step()
        if bus.lag("aislewatch-inference") == 0:
            break
    worker.shutdown()
    return worker


def test_a_redelivery_is_stored_once_and_not_warned_about(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    before = already_stored("redelivery")
    messages = [clip(f"c{i}", T0 + timedelta(seconds=i)) for i in range(3)]
    with caplog.at_level(logging.WARNING, "aislewatch.infer"):
        worker = run(db, messages + messages)  # the same messages again, as after a crash before the commit
    assert len(db.results()) == 3
    assert worker.reruns.redeliveries == 3 and worker.reruns.summary() == []
    assert already_stored("redelivery") - before == 3
    assert "already in the database" not in caplog.text


def test_a_rerun_of_a_recording_says_how_many_clips_were_not_counted_again(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    run(db, [clip(f"c{i}", T0 + timedelta(seconds=i)) for i in range(3)])
    before = already_stored("rerun")
    later = T0 + timedelta(hours=2)  # a new run: the same windows, captured again from its own start
    with caplog.at_level(logging.WARNING, "aislewatch.infer"):
        worker = run(db, [clip(f"c{i}", later + timedelta(seconds=i)) for i in range(3)] + [clip("new", later)])
    assert len(db.results()) == 4  # the one new clip is stored; the re-run ones are not stored twice
    assert already_stored("rerun") - before == 3 and worker.reruns.redeliveries == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.module == "reruns"]
    assert warnings[0] == (
        "clips of camera cam are already in the database (an earlier run of this recording, or this ingest "
        "restarted on it; first captured 2026-03-01 12:00:00 UTC): not counted again (no new results, no alerts); "
        "to count a recording again use another database.url or a copy of the file"
    )
    assert warnings[1:] == [
        "3 clips of camera cam were already in the database (an earlier run of this recording, or this ingest "
        "restarted on it; first captured 2026-03-01 12:00:00 UTC): not counted again; to count a recording again "
        "use another database.url or a copy of the file"
    ]
