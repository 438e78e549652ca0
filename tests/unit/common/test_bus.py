"""The in-process bus behaves like Kafka where the workers rely on it."""

from __future__ import annotations

import threading

from common.inprocess_bus import InProcessBus
from common.schemas import Topic


def test_publish_consume_in_order_with_keys() -> None:
    bus = InProcessBus()
    pub = bus.publisher()
    for i in range(5):
        pub.publish(Topic.CLIPS, f"cam{i % 2}", str(i).encode())
    consumer = bus.consumer([Topic.CLIPS], "g")
    records = consumer.poll(0.1)
    assert [r.value for r in records] == [b"0", b"1", b"2", b"3", b"4"]
    assert [r.key for r in records][:2] == ["cam0", "cam1"]
    assert [r.offset for r in records] == list(range(5))


def test_uncommitted_records_are_redelivered_after_close() -> None:
    bus = InProcessBus()
    pub = bus.publisher()
    for i in range(4):
        pub.publish(Topic.CLIPS, "k", bytes([i]))
    first = bus.consumer([Topic.CLIPS], "g")
    assert len(first.poll(0.1, max_records=2)) == 2
    first.commit()
    assert len(first.poll(0.1, max_records=2)) == 2  # polled, never committed
    first.close()
    second = bus.consumer([Topic.CLIPS], "g")
    assert [r.value for r in second.poll(0.1)] == [bytes([2]), bytes([3])]


def test_groups_are_independent_and_lag_counts_uncommitted() -> None:
    bus = InProcessBus()
    a = bus.consumer([Topic.RESULTS], "a")
    b = bus.consumer([Topic.RESULTS], "b")
    bus.publisher().publish(Topic.RESULTS, "k", b"x")
    assert len(a.poll(0.1)) == 1
    a.commit()
    assert bus.lag("a") == 0
    assert bus.lag("b") == 1
    assert len(b.poll(0.1)) == 1


def test_committed_records_are_trimmed() -> None:
    bus = InProcessBus()
    consumer = bus.consumer([Topic.CLIPS], "g")
    pub = bus.publisher()
    for _ in range(100):
        pub.publish(Topic.CLIPS, "k", b"x" * 1000)
    consumer.poll(0.1, max_records=1000)
    consumer.commit()
    assert len(bus._topics[Topic.CLIPS].records) == 0
    assert bus.end_offsets(Topic.CLIPS) == 100


def test_poll_wakes_up_when_a_record_arrives() -> None:
    bus = InProcessBus()
    consumer = bus.consumer([Topic.ALERTS], "g")
    threading.Timer(0.05, lambda: bus.publisher().publish(Topic.ALERTS, "k", b"late")).start()
    records = consumer.poll(5.0)
    assert [r.value for r in records] == [b"late"]


def test_lag_is_per_topic_of_the_group() -> None:
    from common.schemas import Topic

    bus = InProcessBus()
    consumer = bus.consumer([Topic.RESULTS, Topic.CAMERA_HEALTH], "alerts")
    publisher = bus.publisher()
    for _ in range(3):
        publisher.publish(Topic.RESULTS, "cam", b"r")
    publisher.publish(Topic.CAMERA_HEALTH, "cam", b"h")
    publisher.publish(Topic.CLIPS, "cam", b"c")  # not read by the group: never its lag
    assert (bus.lag("alerts", [Topic.RESULTS]), bus.lag("alerts", [Topic.CAMERA_HEALTH])) == (3, 1)
    assert bus.lag("alerts") == 4 and bus.lag("alerts", [Topic.CLIPS]) == 0
    consumer.poll(0, 10)
    consumer.commit()
    assert bus.lag("alerts") == 0
