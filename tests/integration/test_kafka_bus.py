"""KafkaBus against a real Apache Kafka broker: ordering, group semantics, commits, broker outages."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable

import pytest

from common.bus import BusError, BusRecord
from common.kafka_bus import KafkaBus, KafkaBusConsumer, KafkaTuning, MessageTooLargeError
from common.schemas import Topic
from common.settings import BusSettings

pytestmark = pytest.mark.kafka


def drain(consumer: KafkaBusConsumer, expected: int, timeout_s: float = 30.0) -> list[BusRecord]:
    """Poll until ``expected`` records arrived (or the timeout passed)."""
    records: list[BusRecord] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < expected and time.monotonic() < deadline:
        records.extend(consumer.poll(0.5))
    return records


def single_partition_bus(settings: BusSettings) -> KafkaBus:
    return KafkaBus.from_settings(settings.model_copy(update={"partitions": 1}))


def test_round_trip_keeps_order_per_camera(kafka_bus: KafkaBus) -> None:
    cameras = [f"cam-{i}" for i in range(6)]
    publisher = kafka_bus.publisher()
    for seq in range(25):
        for cam in cameras:
            publisher.publish(Topic.CLIPS, cam, f"{cam}|{seq}".encode())
    publisher.publish(Topic.RESULTS, "cam-0", b"result")
    publisher.flush()
    publisher.close()

    consumer = kafka_bus.consumer([Topic.CLIPS, Topic.RESULTS], "round-trip")
    try:
        records = drain(consumer, 6 * 25 + 1)
    finally:
        consumer.close()

    assert len(records) == 6 * 25 + 1
    by_key: dict[str | None, list[BusRecord]] = defaultdict(list)
    for record in records:
        if record.topic is Topic.CLIPS:
            by_key[record.key].append(record)
    assert sorted(by_key) == cameras
    for cam, recs in by_key.items():
        assert [r.value for r in recs] == [f"{cam}|{seq}".encode() for seq in range(25)]
        assert len({r.partition for r in recs}) == 1, "one camera's clips must stay in one partition"
    assert next(r for r in records if r.topic is Topic.RESULTS).value == b"result"
    assert all(r.timestamp.tzinfo is not None for r in records)


def test_topics_are_created_with_prefix_and_partitions(kafka_bus: KafkaBus, kafka_server) -> None:  # type: ignore[no-untyped-def]
    from kafka.admin import KafkaAdminClient

    kafka_bus.ensure_topics()
    kafka_bus.ensure_topics()  # idempotent
    admin = KafkaAdminClient(bootstrap_servers=kafka_server.bootstrap)
    try:
        described = {t["name"]: t for t in admin.describe_topics([kafka_bus.topic_name(t) for t in Topic])}
    finally:
        admin.close()
    assert set(described) == {kafka_bus.topic_prefix + t.value for t in Topic}
    assert all(len(t["partitions"]) == 4 for t in described.values())


def test_concurrent_topic_creation_is_not_an_error(kafka_bus_settings: BusSettings) -> None:
    buses = [KafkaBus.from_settings(kafka_bus_settings) for _ in range(3)]
    errors: list[BaseException] = []

    def create(bus: KafkaBus) -> None:
        try:
            bus.ensure_topics()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(b,)) for b in buses]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for bus in buses:
        bus.close()
    assert errors == []


def test_uncommitted_records_are_redelivered_to_the_next_member(kafka_bus_settings: BusSettings) -> None:
    bus = single_partition_bus(kafka_bus_settings)
    publisher = bus.publisher()
    for i in range(10):
        publisher.publish(Topic.RESULTS, "cam", str(i).encode())
    publisher.flush()

    first = bus.consumer([Topic.RESULTS], "redelivery")
    head: list[BusRecord] = []
    deadline = time.monotonic() + 30
    while len(head) < 4 and time.monotonic() < deadline:
        head.extend(first.poll(0.5, max_records=4 - len(head)))
    assert [r.value for r in head] == [b"0", b"1", b"2", b"3"]
    first.commit()  # the caller's output for 0..3 is durable
    rest = drain(first, 6)
    assert [r.value for r in rest] == [str(i).encode() for i in range(4, 10)]
    first.close()  # crash-like: 4..9 were polled but never committed

    second = bus.consumer([Topic.RESULTS], "redelivery")
    try:
        again = drain(second, 6)
        assert [r.value for r in again] == [str(i).encode() for i in range(4, 10)]
        assert second.poll(0.5) == []
        assert bus.lag("redelivery", [Topic.RESULTS]) == 6
        second.commit()
        assert bus.lag("redelivery", [Topic.RESULTS]) == 0
    finally:
        second.close()
        publisher.close()
        bus.close()


def publish_keys(bus: KafkaBus, count: int = 40) -> list[str]:
    """One clips-topic record for each of ``count`` camera keys, spread over the partitions."""
    publisher = bus.publisher()
    keys = [f"cam-{i}" for i in range(count)]
    for key in keys:
        publisher.publish(Topic.CLIPS, key, key.encode())
    publisher.flush()
    publisher.close()
    return keys


Assignments = list[set]  # type: ignore[type-arg]


def poll_together(
    members: list[KafkaBusConsumer], done: Callable[[Assignments, set[str | None]], bool], timeout_s: float = 45
) -> tuple[Assignments, list[list[BusRecord]]]:
    """Poll every member continuously on its own thread (live workers, so all take part in the rebalance)
    until ``done(assignments, keys seen)`` or the timeout; their assignments then, and what each got."""
    got: list[list[BusRecord]] = [[] for _ in members]
    stop = threading.Event()

    def run(index: int) -> None:
        while not stop.is_set():
            got[index].extend(members[index].poll(0.3))

    def assignments() -> Assignments:
        return [set(m._consumer.assignment()) if m._consumer else set() for m in members]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(members))]
    owned = assignments()
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            owned = assignments()
            if done(owned, {r.key for batch in list(got) for r in list(batch)}):
                break
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join()
    return owned, got


def test_two_members_split_the_partitions(kafka_bus: KafkaBus) -> None:
    keys = publish_keys(kafka_bus)
    members = [kafka_bus.consumer([Topic.CLIPS], "split") for _ in range(2)]
    assignments, got = poll_together(
        members, lambda owned, seen: all(owned) and sum(len(a) for a in owned) == 4 and seen == set(keys))
    seen = {r.key for batch in got for r in batch}
    assert all(assignments), f"both members must own partitions, got {assignments}"
    assert not (assignments[0] & assignments[1])
    assert seen == set(keys)
    # Committed nothing: a member that joined after the first took its records may see some again,
    # but no record is lost.
    for member in members:
        member.close()


def test_after_a_rebalance_a_member_reads_its_partitions_again_from_the_committed_offset(
    kafka_bus: KafkaBus,
) -> None:
    """kafka-python keeps a retained partition's position across a rebalance; the bus rewinds it, so records
    polled but not committed before a member joined come again to whoever owns them now."""
    keys = publish_keys(kafka_bus)
    first = kafka_bus.consumer([Topic.CLIPS], "rewind")
    before = drain(first, len(keys))
    assert {r.key for r in before} == set(keys)  # all polled by the only member, none committed
    second = kafka_bus.consumer([Topic.CLIPS], "rewind")
    owned, got = poll_together([first, second], lambda owned, seen: all(owned) and seen == set(keys))
    assert all(owned), f"both members must own partitions, got {owned}"
    # every uncommitted record came again after the rebalance: the first member's retained partitions too
    assert {r.key for batch in got for r in batch} == set(keys)
    assert {r.key for r in got[0]}, "the first member read its retained partitions again"
    for member in (first, second):
        member.close()


def test_message_over_the_limit_is_rejected_up_front(kafka_bus: KafkaBus) -> None:
    publisher = kafka_bus.publisher()
    with pytest.raises(MessageTooLargeError):
        publisher.publish(Topic.CLIPS, "cam", b"x" * (kafka_bus.max_message_bytes + 1))
    publisher.publish(Topic.CLIPS, "cam", b"x" * (kafka_bus.max_message_bytes - 1000))
    publisher.flush()
    publisher.close()


def test_unreachable_broker_raises_bus_error_and_poll_returns_nothing() -> None:
    from servers import free_port

    tuning = KafkaTuning(bootstrap_timeout_s=1.0, max_block_s=1.0, request_timeout_s=2.0)
    bus = KafkaBus([f"127.0.0.1:{free_port()}"], topic_prefix="nowhere.", tuning=tuning)
    publisher = bus.publisher()
    with pytest.raises(BusError):
        publisher.publish(Topic.CLIPS, "cam", b"x")
    consumer = bus.consumer([Topic.CLIPS], "nobody")
    started = time.monotonic()
    assert consumer.poll(0.5) == []
    assert time.monotonic() - started < 10
    consumer.close()
    publisher.close()
    bus.close()


@pytest.mark.slow
def test_broker_outage_loses_nothing(kafka_server, kafka_bus_settings: BusSettings) -> None:  # type: ignore[no-untyped-def]
    """At-least-once across a broker restart: every message published arrives; dedupe by key is exact."""
    tuning = KafkaTuning(delivery_timeout_s=12.0, request_timeout_s=3.0, max_block_s=2.0)
    bus = KafkaBus.from_settings(kafka_bus_settings, tuning=tuning)
    publisher = bus.publisher()
    consumer = bus.consumer([Topic.CLIPS], "outage")
    received: dict[str, int] = defaultdict(int)

    def consume(timeout_s: float = 0.3) -> None:
        for record in consumer.poll(timeout_s):
            assert record.key is not None
            received[record.key] += 1
        consumer.commit()

    def publish_all(keys: list[str], flush_timeout_s: float) -> None:
        for key in keys:
            publisher.publish(Topic.CLIPS, key, key.encode())
        publisher.flush(timeout_s=flush_timeout_s)

    before = [f"before-{i}" for i in range(30)]
    publish_all(before, 30)
    deadline = time.monotonic() + 30
    while len(received) < len(before) and time.monotonic() < deadline:
        consume()

    kafka_server.stop()
    during = [f"during-{i}" for i in range(20)]
    unsent = list(during)
    with pytest.raises(BusError):
        publish_all(unsent, flush_timeout_s=2.0)
    consume(1.0)  # returns nothing while the broker is away, without raising

    kafka_server.start()
    after = [f"after-{i}" for i in range(20)]
    deadline = time.monotonic() + 60
    while unsent and time.monotonic() < deadline:
        try:
            publish_all(unsent, flush_timeout_s=10.0)  # the caller kept its data and sends it again
            unsent = []
        except BusError:
            time.sleep(0.5)
    assert unsent == [], "publishing never succeeded after the broker came back"
    publish_all(after, 30)

    everything = before + during + after
    deadline = time.monotonic() + 60
    while set(received) != set(everything) and time.monotonic() < deadline:
        consume()
    publisher.close()
    consumer.close()
    bus.close()
    assert set(received) == set(everything)
    assert all(received[k] == 1 for k in before), "committed records must not come back"
