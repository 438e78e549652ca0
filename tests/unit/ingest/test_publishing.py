"""PublishQueue: acknowledged, ordered, bounded publishing with a disk spool; nothing lost within the budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.bus import BusError
from common.clock import FakeClock
from common.inprocess_bus import InProcessBus
from common.schemas import Topic
from ingest.capture import Backoff
from ingest.publishing import PublishQueue
from ingest.spool import Spool

NO_WAIT = Backoff(initial_s=0.0, max_s=0.0)


class DeferredPublisher:
    """A bus that takes messages at once and acknowledges (or fails) them later, as Kafka does; while
    ``down`` it refuses them outright, as a producer does whose broker is gone."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []  # every send, in order
        self.unsettled: list[tuple[bytes, object]] = []  # (value, its delivery callback)
        self.acknowledged: list[bytes] = []
        self.down = False

    def publish(self, topic, key, value, on_delivery=None) -> None:
        if self.down:
            raise BusError("broker unavailable")
        self.sent.append(value)
        self.unsettled.append((value, on_delivery))

    def ack(self, count: int | None = None, *, error: BaseException | None = None) -> None:
        """Settle the oldest ``count`` unsettled sends (all by default): acknowledged, or failed with ``error``."""
        settle, self.unsettled = self.unsettled[:count], self.unsettled[len(self.unsettled[:count]):]
        for value, callback in settle:
            callback(error)
            if error is None:
                self.acknowledged.append(value)

    def flush(self, timeout_s=None) -> None:
        pass

    def reset(self) -> None:
        self.resets = getattr(self, "resets", 0) + 1

    def close(self) -> None:
        pass


def message(i: int, size: int = 100) -> bytes:
    return f"{i:06d}".encode().ljust(size, b".")


def index(value: bytes) -> int:
    return int(value[:6])


def queue(publisher, tmp_path: Path | None = None, *, spool_bytes: int = 10_000_000, **kwargs) -> PublishQueue:
    spool = Spool(tmp_path / "spool", "cam1", spool_bytes) if tmp_path is not None else None
    return PublishQueue(publisher, "cam1", FakeClock(), spool=spool, backoff=NO_WAIT, **kwargs)


def test_a_clip_counts_as_published_only_once_acknowledged() -> None:
    bus = DeferredPublisher()
    q = queue(bus)
    for i in range(5):
        q.submit(Topic.CLIPS, message(i), is_clip=True)
    assert len(bus.sent) == 5 and q.counters().clips_published == 0 and q.counters().in_flight == 5
    bus.ack(2)
    q.pump()
    assert q.counters().clips_published == 2 and q.counters().in_flight == 3
    bus.ack()
    q.pump()
    assert q.counters().clips_published == 5 and q.unacknowledged == 0


def test_failed_deliveries_are_sent_again_before_anything_newer() -> None:
    bus = DeferredPublisher()
    q = queue(bus)
    for i in range(4):
        q.submit(Topic.CLIPS, message(i), is_clip=True)
    bus.ack(error=BusError("delivery timeout"))  # the broker was down past the delivery timeout
    q.pump()  # sends 0..3 again
    q.submit(Topic.CLIPS, message(4), is_clip=True)
    assert [index(v) for v in bus.sent] == [0, 1, 2, 3, 0, 1, 2, 3, 4]
    bus.ack()
    q.pump()
    assert [index(v) for v in bus.acknowledged] == [0, 1, 2, 3, 4]
    c = q.counters()
    assert c.clips_published == 5 and c.publish_retries == 4 and c.clips_dropped == 0


def test_only_max_in_flight_messages_await_acknowledgement() -> None:
    bus = DeferredPublisher()
    q = queue(bus, max_in_flight=3, max_waiting=100)
    for i in range(10):
        q.submit(Topic.CLIPS, message(i), is_clip=True)
    assert len(bus.sent) == 3 and q.counters().waiting == 7
    bus.ack()
    q.pump()
    assert [index(v) for v in bus.sent[3:]] == [3, 4, 5]


def test_a_long_outage_spools_to_disk_and_loses_nothing(tmp_path: Path) -> None:
    bus = DeferredPublisher()
    bus.down = True
    q = queue(bus, tmp_path, max_waiting=8)
    q.submit(Topic.CAMERA_HEALTH, b"000000online", is_clip=False)
    for i in range(1, 501):
        q.submit(Topic.CLIPS, message(i), is_clip=True)
        assert q.counters().waiting <= 8  # memory stays bounded however long the outage
    c = q.counters()
    assert c.spooled == 501 - 8 and len(list((tmp_path / "spool").glob("*.msg"))) == c.spooled
    assert c.clips_dropped == 0 and c.clips_published == 0

    bus.down = False
    while q.unacknowledged:
        q.pump()
        bus.ack()
    assert [index(v) for v in bus.acknowledged] == list(range(501))  # every message, in order
    assert q.counters().clips_published == 500 and not list((tmp_path / "spool").iterdir())


def test_past_the_spool_budget_the_oldest_clips_are_dropped_and_counted(tmp_path: Path) -> None:
    bus = DeferredPublisher()
    bus.down = True
    q = queue(bus, tmp_path, spool_bytes=1_000, max_waiting=2)  # room for 10 clips of 100 bytes
    for i in range(30):
        q.submit(Topic.CLIPS, message(i), is_clip=True)
    c = q.counters()
    assert c.spooled == 10 and c.spool_bytes == 1_000 and c.clips_dropped == 30 - 10 - 2
    bus.down = False
    while q.unacknowledged:
        q.pump()
        bus.ack()
    assert [index(v) for v in bus.acknowledged] == list(range(18, 30))  # the newest survive, in order


def test_spooled_and_unacknowledged_messages_are_sent_by_the_next_process(tmp_path: Path) -> None:
    bus = DeferredPublisher()
    first = queue(bus, tmp_path, max_waiting=2)
    for i in range(3):
        first.submit(Topic.CLIPS, message(i), is_clip=True)  # in flight, never acknowledged
    bus.down = True
    for i in range(3, 8):
        first.submit(Topic.CLIPS, message(i), is_clip=True)
    first.close(timeout_s=0.2)  # the process stops with the broker still down
    # every message is on disk: spooled, or taken from the spool and never acknowledged (".sending")
    assert len(list((tmp_path / "spool").glob("*.msg*"))) == 8

    later = DeferredPublisher()
    second = queue(later, tmp_path)
    second.submit(Topic.CLIPS, message(8), is_clip=True)
    while second.unacknowledged:
        second.pump()
        later.ack()
    assert [index(v) for v in later.acknowledged] == list(range(9))


def test_a_message_taken_from_the_spool_stays_on_disk_until_acknowledged(tmp_path: Path) -> None:
    bus = DeferredPublisher()
    bus.down = True
    q = queue(bus, tmp_path, max_waiting=1)
    for i in range(3):
        q.submit(Topic.CLIPS, message(i), is_clip=True)
    bus.down = False
    q.pump()  # sent from the spool, not yet acknowledged: a crash now must not lose them
    assert len(list((tmp_path / "spool").glob("*.msg.sending"))) == 2
    assert len(Spool(tmp_path / "spool", "cam1", 10_000)) == 2  # what the next process would find
    bus.ack()
    q.pump()
    assert not list((tmp_path / "spool").glob("*.msg.sending"))


def test_a_message_the_bus_refuses_for_good_is_dropped_not_retried_forever() -> None:
    class TooLarge(BusError):
        retryable = False

    class Refusing(DeferredPublisher):
        def publish(self, topic, key, value, on_delivery=None) -> None:
            if len(value) > 500:
                raise TooLarge("message too large")
            super().publish(topic, key, value, on_delivery)

    bus = Refusing()
    q = queue(bus)
    q.submit(Topic.CLIPS, message(0, size=1_000), is_clip=True)
    q.submit(Topic.CLIPS, message(1), is_clip=True)
    bus.ack()
    q.pump()
    assert [index(v) for v in bus.acknowledged] == [1]
    assert q.counters().clips_dropped == 1 and q.unacknowledged == 0


def test_the_in_process_bus_acknowledges_at_once() -> None:
    bus = InProcessBus()
    q = PublishQueue(bus.publisher(), "cam1", FakeClock())
    q.submit(Topic.CLIPS, message(0), is_clip=True)
    assert q.counters().clips_published == 1 and q.unacknowledged == 0
    assert bus.end_offsets(Topic.CLIPS) == 1


@pytest.mark.parametrize("budget", [-1])
def test_a_negative_budget_is_refused(tmp_path: Path, budget: int) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        Spool(tmp_path, "cam1", budget)


def test_a_partial_failure_sends_the_failed_message_again_and_loses_nothing() -> None:
    bus = DeferredPublisher()
    q = queue(bus)
    for i in range(4):
        q.submit(Topic.CLIPS, message(i), is_clip=True)
    bus.ack(1, error=BusError("delivery timeout"))  # the oldest failed ...
    q.pump()
    q.submit(Topic.CLIPS, message(4), is_clip=True)
    assert [index(v) for v in bus.sent] == [0, 1, 2, 3], "nothing new while the others are unsettled"
    bus.ack()  # ... the others are acknowledged
    q.pump()
    q.pump()
    assert [index(v) for v in bus.sent] == [0, 1, 2, 3, 0, 4]  # the failed one goes before the new one
    bus.ack()
    q.pump()
    assert sorted(index(v) for v in bus.acknowledged) == [0, 1, 2, 3, 4] and q.unacknowledged == 0


def test_a_message_back_from_the_spool_is_put_back_not_copied(tmp_path: Path) -> None:
    bus = DeferredPublisher()
    bus.down = True
    q = queue(bus, tmp_path, max_waiting=1, max_in_flight=1)
    for i in range(4):
        q.submit(Topic.CLIPS, message(i), is_clip=True)
    bus.down = False
    q.pump()  # message 0 was in memory; the spool holds 1..3
    bus.ack(error=BusError("delivery timeout"))
    bus.down = True
    for i in range(4, 7):  # the failed one and newer ones overflow memory again
        q.submit(Topic.CLIPS, message(i), is_clip=True)
    q.close(timeout_s=0.1)
    names = sorted(p.name for p in (tmp_path / "spool").iterdir())
    assert len(names) == len({n.split(".")[0] for n in names}) == 7, names  # each message once on disk

    later = DeferredPublisher()
    again = queue(later, tmp_path)
    while again.unacknowledged:
        again.pump()
        later.ack()
    assert [index(v) for v in later.acknowledged] == list(range(7))


def test_a_full_disk_drops_and_counts_instead_of_stopping_the_camera(tmp_path: Path, monkeypatch) -> None:
    bus = DeferredPublisher()
    bus.down = True
    q = queue(bus, tmp_path, max_waiting=1)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Spool, "add", disk_full)
    for i in range(5):
        q.submit(Topic.CLIPS, message(i), is_clip=True)  # must not raise
    assert q.counters().clips_dropped == 4 and q.counters().waiting == 1


def test_sends_left_unanswered_past_the_ack_timeout_go_again_on_a_fresh_connection() -> None:
    bus = DeferredPublisher()
    clock = FakeClock()
    q = PublishQueue(bus, "cam1", clock, backoff=NO_WAIT, ack_timeout_s=42.0)
    for i in range(3):
        q.submit(Topic.CLIPS, message(i), is_clip=True)
    stuck = list(bus.unsettled)  # a producer stuck after an outage: these never answer
    bus.unsettled.clear()
    clock.advance(41.0)
    q.pump()
    assert len(bus.sent) == 3 and getattr(bus, "resets", 0) == 0  # still within the timeout
    clock.advance(2.0)
    q.pump()
    q.pump()
    assert getattr(bus, "resets", 0) == 1 and [index(v) for v in bus.sent] == [0, 1, 2, 0, 1, 2]
    for _, callback in stuck:
        callback(None)  # a late answer from the abandoned producer counts for nothing
    q.pump()
    assert q.counters().clips_published == 0 and q.counters().in_flight == 3
    bus.ack()
    q.pump()
    assert [index(v) for v in bus.acknowledged] == [0, 1, 2] and q.counters().clips_published == 3
