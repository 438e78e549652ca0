"""The alert worker end to end on the in-process bus and SQLite, delivering to a real local webhook."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy.exc import OperationalError

from alerts.delivery import LogNotifier, WebhookNotifier
from alerts.outbox import OutboxSender
from alerts.rules import RuleEngine
from alerts.worker import AlertWorker
from common.clock import FakeClock
from common.db import Database
from common.inprocess_bus import InProcessBus, InProcessConsumer
from common.schemas import AlertKind, AlertMessage, CameraState, DeadLetter, Topic
from common.settings import AlertRuleSettings, load_settings

HI, LO = 0.9, 0.1
GROUP = "aislewatch-alerts"


@pytest.fixture
def bus() -> Iterator[InProcessBus]:
    b = InProcessBus()
    yield b
    b.close()


def make_worker(bus: InProcessBus, db: Database, url: str, clock: FakeClock | None = None) -> AlertWorker:
    """A worker whose outbox is driven by ``drain`` (not by its thread), so each test sees every attempt."""
    clock = clock or FakeClock()
    rules = AlertRuleSettings(n_of_m=(2, 3), cooldown_s=60, offline_alert_after_s=30)
    outbox = OutboxSender(db, [WebhookNotifier(url, timeout_s=5)], clock, retry_initial_s=1, retry_max_s=60)
    worker = AlertWorker(RuleEngine(rules, 0.5, clock), bus, db, clock, immediate=[LogNotifier()], outbox=outbox,
                         poll_timeout_s=0, deliver_in_thread=False)
    worker.setup()
    return worker


def drain(worker: AlertWorker, steps: int = 3) -> None:
    for _ in range(steps):
        assert worker.step()
    assert worker.outbox is not None
    worker.outbox.send_due()


def watch(bus: InProcessBus, topic: Topic) -> InProcessConsumer:
    return bus.consumer([topic], f"test-{topic.value}")


def publish_results(bus: InProcessBus, make_result, probabilities: list[float], db: Database | None = None) -> None:
    """Results as inference hands them over: stored (when ``db`` is given), then published."""
    results = [make_result(i, p) for i, p in enumerate(probabilities)]
    if db is not None:
        db.write_results(results)
    publisher = bus.publisher()
    for r in results:
        publisher.publish(Topic.RESULTS, r.camera_id, r.to_bytes())


def test_results_to_stored_published_and_delivered_alert(bus, db, webhook_server, make_result) -> None:
    alerts_topic = watch(bus, Topic.ALERTS)
    worker = make_worker(bus, db, webhook_server.url)
    publish_results(bus, make_result, [HI, LO, HI])
    drain(worker)

    (row,) = db.alerts()
    assert row.kind == "suspicious_activity" and row.camera_id == "cam-1"
    assert row.clip_ids == ["cam-1-clip-0", "cam-1-clip-2"] and row.probability == HI
    (record,) = alerts_topic.poll(0)
    assert record.key == "cam-1"
    published = AlertMessage.from_bytes(record.value)
    assert published.alert_id == row.alert_id
    assert [b["alert_id"] for b in webhook_server.bodies] == [row.alert_id]
    assert webhook_server.accepted_ids == [f"{row.alert_id}-webhook"]
    assert [(d.channel, d.status, d.attempts) for d in db.deliveries()] == [("webhook", "delivered", 1)]
    assert bus.lag(GROUP) == 0  # committed after the work was done
    counters = worker.counters()
    assert counters["alerts_raised"] == {"suspicious_activity": 1}
    assert counters["deliveries"] == {"log": {"ok": 1}, "webhook": {"ok": 1}}
    assert counters["deliveries_pending"] == {}
    worker.shutdown()


def test_same_results_twice_give_one_alert_and_one_delivery(bus, db, webhook_server, make_result) -> None:
    worker = make_worker(bus, db, webhook_server.url)
    publish_results(bus, make_result, [HI, LO, HI])
    publish_results(bus, make_result, [HI, LO, HI])  # redelivered
    drain(worker)
    assert len(db.alerts()) == 1
    assert webhook_server.requests == 1
    worker.shutdown()


def test_reprocessing_after_restart_does_not_notify_again(bus, db, webhook_server, make_result) -> None:
    """A fresh engine (a restarted worker) re-raises the same alert id; it is stored already, so not delivered."""
    first = make_worker(bus, db, webhook_server.url)
    publish_results(bus, make_result, [HI, LO, HI])
    drain(first)
    first.shutdown()

    second = make_worker(bus, db, webhook_server.url)
    publish_results(bus, make_result, [HI, LO, HI])
    drain(second)
    assert second.alerts_raised["suspicious_activity"] == 1 and second.alerts_stored == 0
    assert len(db.alerts()) == 1
    assert webhook_server.requests == 1
    second.shutdown()


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        (Topic.RESULTS, b"not json at all"),
        (Topic.RESULTS, b'{"clip_id": "x"}'),
        (Topic.CAMERA_HEALTH, b'{"event_id": "e", "state": "melted"}'),
    ],
)
def test_malformed_message_is_dead_lettered_and_work_goes_on(
    bus, db, webhook_server, make_result, topic: Topic, payload: bytes
) -> None:
    dead = watch(bus, Topic.DEAD_LETTER)
    worker = make_worker(bus, db, webhook_server.url)
    bus.publisher().publish(topic, "cam-1", payload)
    publish_results(bus, make_result, [HI, HI])
    drain(worker)

    (record,) = dead.poll(0)
    letter = DeadLetter.from_bytes(record.value)
    assert letter.source_topic == topic.value and letter.key == "cam-1"
    assert letter.payload_len == len(payload) and bytes.fromhex(letter.payload_hex) == payload
    assert "invalid" in letter.reason
    assert worker.dead_letters == 1
    assert len(db.alerts()) == 1 and webhook_server.requests == 1  # the good messages still raised their alert
    assert bus.lag(GROUP) == 0
    worker.shutdown()


def test_health_events_stored_and_offline_alert_raised_once(bus, db, webhook_server, make_health) -> None:
    clock = FakeClock()
    worker = make_worker(bus, db, webhook_server.url, clock)
    publisher = bus.publisher()
    for event in [make_health("e1", CameraState.ONLINE, at=clock.now()),
                  make_health("e2", CameraState.OFFLINE, at=clock.now())]:
        publisher.publish(Topic.CAMERA_HEALTH, event.camera_id, event.to_bytes())
    drain(worker)
    assert [e.state for e in db.health_events()] == ["online", "offline"]
    assert db.alerts() == []

    clock.advance(31)
    drain(worker)  # tick() runs on every step, with or without records
    (row,) = db.alerts()
    assert row.kind == AlertKind.CAMERA_OFFLINE.value
    assert webhook_server.requests == 1
    worker.shutdown()


def test_database_outage_backs_off_without_losing_the_alert(
    bus, db, webhook_server, make_result, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = make_worker(bus, db, webhook_server.url)
    real_write = db.write_alerts
    failures = [OperationalError("INSERT", {}, Exception("database is locked"))]

    def flaky(alerts: list[AlertMessage], *args: object) -> int:
        if failures:
            raise failures.pop()
        return real_write(alerts, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(db, "write_alerts", flaky)
    publish_results(bus, make_result, [HI, HI])
    drain(worker)
    assert len(db.alerts()) == 1 and webhook_server.requests == 1
    worker.shutdown()


def test_stop_during_outage_leaves_the_batch_uncommitted(
    bus, db, webhook_server, make_result, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = make_worker(bus, db, webhook_server.url)

    def down(alerts: list[AlertMessage]) -> int:
        worker.stop_event.set()  # shutdown arrives while the database is unreachable
        raise OperationalError("INSERT", {}, Exception("connection refused"))

    monkeypatch.setattr(db, "write_alerts", lambda *args: down(args[0]))
    publish_results(bus, make_result, [HI, HI])
    assert worker.step() is False
    assert bus.lag(GROUP) == 2 and webhook_server.requests == 0
    worker.shutdown()


def test_from_settings_and_thread_run(bus, db, webhook_server, make_result) -> None:
    settings = load_settings(overrides={"notifications": {"log": False, "webhook": {"url": webhook_server.url}},
                                        "alerts": {"n_of_m": [1, 1]}})
    stop = threading.Event()
    worker = AlertWorker.from_settings(settings, bus, db, threshold=0.5, stop=stop)
    assert worker.engine.threshold == 0.5 and worker.immediate == []
    assert worker.outbox is not None and worker.outbox.channels == ["webhook"]
    worker.start_thread()
    publish_results(bus, make_result, [HI])
    for _ in range(200):
        if webhook_server.requests:
            break
        threading.Event().wait(0.02)
    stop.set()
    worker.join(5)
    assert not worker.alive and worker.error is None
    assert not worker.outbox.alive and worker.outbox.error is None  # the delivery thread stopped with it
    assert webhook_server.requests == 1 and len(db.alerts()) == 1
    assert [d.status for d in db.deliveries()] == ["delivered"]


class BusOutage:
    """Wraps a real in-process publisher; while ``down`` nothing it is given is acknowledged (flush fails)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.down = True
        self.queued: list[tuple[Topic, str | None, bytes]] = []

    def publish(self, topic, key, value, on_delivery=None) -> None:
        self.queued.append((topic, key, value))

    def flush(self, timeout_s=None) -> None:
        queued, self.queued = self.queued, []
        if self.down:
            from common.bus import BusError

            raise BusError("broker unavailable")  # what was queued is lost, as when deliveries expire
        for topic, key, value in queued:
            self.inner.publish(topic, key, value)

    def close(self) -> None:
        pass


def test_a_bus_outage_holds_the_batch_until_its_alert_is_on_the_bus(bus, db, webhook_server, make_result) -> None:
    alerts_topic = watch(bus, Topic.ALERTS)
    worker = make_worker(bus, db, webhook_server.url)
    outage = BusOutage(bus.publisher())
    worker._publisher = outage
    publish_results(bus, make_result, [HI, LO, HI])
    stepped = threading.Thread(target=worker.step)
    stepped.start()
    stepped.join(1.0)
    assert stepped.is_alive(), "the worker keeps retrying its publish while the bus is down"
    assert bus.lag(GROUP, [Topic.RESULTS]) == 3 and alerts_topic.poll(0) == []  # nothing committed, nothing out
    outage.down = False
    stepped.join(10.0)
    assert not stepped.is_alive() and worker.error is None
    (alert,) = [AlertMessage.from_bytes(r.value) for r in alerts_topic.poll(0)]
    assert alert.alert_kind == AlertKind.SUSPICIOUS_ACTIVITY and len(db.alerts()) == 1
    assert bus.lag(GROUP, [Topic.RESULTS]) == 0  # committed once the alert was acknowledged
