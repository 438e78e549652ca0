"""Ingest → real Kafka through a broker outage longer than the producer's delivery timeout: every clip cut
reaches the broker, exactly as many as were cut, and the publisher keeps nothing it no longer needs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from common.clock import SystemClock
from common.kafka_bus import KafkaBus, KafkaTuning
from common.schemas import Topic
from common.settings import BusSettings, CameraSettings, ClipSettings, MotionSettings
from ingest.spool import Spool
from ingest.worker import CameraWorker
from tests.clip_topic import clip_ids as ids_on_topic

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

FPS = 15
SECONDS = 36


def moving_box_video(path: Path) -> Path:
    """A box that never stops moving: every 1 s stride cuts a clip."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (160, 120))
    background = np.full((120, 160, 3), 90, dtype=np.uint8)
    for i in range(SECONDS * FPS):
        frame = background.copy()
        x = 10 + (i * 3) % 120
        cv2.rectangle(frame, (x, 30), (x + 25, 90), (40, 200, 230), -1)
        writer.write(frame)
    writer.release()
    return path


def test_a_broker_outage_past_the_delivery_timeout_loses_no_clip(
    kafka_server, kafka_bus_settings: BusSettings, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    tuning = KafkaTuning(delivery_timeout_s=4.0, request_timeout_s=2.0, max_block_s=1.0)
    bus = KafkaBus.from_settings(kafka_bus_settings, tuning=tuning)
    bus.ensure_topics([Topic.CLIPS, Topic.CAMERA_HEALTH])
    camera = CameraSettings(
        id="cam-outage", source=str(moving_box_video(tmp_path / "aisle.mp4")), realtime=True,
        motion=MotionSettings(method="diff"), clip=ClipSettings(overlap=0.75),
    )
    stop = threading.Event()
    worker = CameraWorker(
        "store-1", camera, bus.publisher(), tmp_path / "evidence", clock=SystemClock(), stop=stop,
        retry_queue_size=1, max_in_flight=1, spool=Spool(tmp_path / "spool" / camera.id, camera.id, 200_000_000),
    )
    runner = threading.Thread(target=worker.run, name="capture:cam-outage")
    runner.start()
    time.sleep(8)
    kafka_server.stop()  # 10 s down: longer than the 4 s delivery timeout, while clips keep coming
    time.sleep(10)
    during = worker.counters()
    kafka_server.start()
    runner.join(timeout=SECONDS + 60)
    assert not runner.is_alive()
    counters = worker.counters()
    assert during.clips_cut > during.clips_published, "the outage must have held clips back"
    assert during.messages_spooled > 0, "with 1 in memory and 1 in flight, clips cut during the outage went to disk"

    consumer = bus.consumer([Topic.CLIPS], "outage-check")
    clip_ids: list[str] = []
    deadline = time.monotonic() + 60
    while len(set(clip_ids)) < counters.clips_cut and time.monotonic() < deadline:
        clip_ids += ids_on_topic(consumer.poll(0.5))
    consumer.close()
    bus.close()

    assert counters.clips_cut >= SECONDS - 8  # about one clip a second of motion
    assert len(set(clip_ids)) == counters.clips_cut, "every clip cut reached the broker"
    assert counters.clips_published == counters.clips_cut and counters.clips_dropped == 0
    assert counters.messages_spooled == 0 and not list((tmp_path / "spool" / camera.id).iterdir())


def test_the_publisher_keeps_no_record_of_acknowledged_messages(kafka_bus: KafkaBus) -> None:
    publisher = kafka_bus.publisher()
    acknowledged: list[BaseException | None] = []
    for i in range(3_000):
        publisher.publish(Topic.RESULTS, "cam", b"x" * 200, on_delivery=acknowledged.append)
        publisher.publish(Topic.RESULTS, "cam", str(i).encode())  # without a callback: flush reports it
    publisher.flush(30)
    assert acknowledged.count(None) == 3_000
    assert len(publisher._unflushed) == 0  # flushed: nothing kept
    for _ in range(5_000):
        publisher.publish(Topic.RESULTS, "cam", b"y")
    deadline = time.monotonic() + 30  # let the broker acknowledge them (on a loaded machine: a while)
    while any(not f.is_done for f in publisher._unflushed) and time.monotonic() < deadline:
        time.sleep(0.1)
    for _ in range(1_024):  # the next prune comes with these
        publisher.publish(Topic.RESULTS, "cam", b"z")
    assert len(publisher._unflushed) <= 1_024 + 1  # resolved successes are forgotten, not hoarded
    publisher.flush(30)
    publisher.close()
