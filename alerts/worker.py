"""The alert worker: consumes results and camera health, applies the rules, stores, publishes and delivers alerts.

Per poll: decode (bad messages go to the dead-letter topic) → store health events → run the rules →
store each alert (idempotent on ``alert_id``) → publish it on the alerts topic → deliver the newly
stored ones → commit the consumer.  Committing last makes the work at-least-once; the deterministic
alert id plus the insert-ignore write make a re-raised alert recognisable, so people are notified once.
"""

from __future__ import annotations

import threading
from collections import Counter
from functools import partial
from typing import Any

from alerts.delivery import Dispatcher
from alerts.rules import RuleEngine
from common.bus import Bus, BusRecord, Consumer, Publisher
from common.clock import Clock, SystemClock
from common.db import Database, DatabaseUnavailable
from common.schemas import (
    AlertMessage,
    CameraHealthMessage,
    DeadLetter,
    MessageError,
    ResultMessage,
    Topic,
)
from common.settings import Settings
from common.worker import Worker


class AlertWorker(Worker):
    """Turns results and camera health into stored, published and delivered alerts."""

    name = "alerts"
    topics: tuple[Topic, ...] = (Topic.RESULTS, Topic.CAMERA_HEALTH)

    def __init__(
        self,
        engine: RuleEngine,
        bus: Bus,
        db: Database,
        dispatcher: Dispatcher,
        clock: Clock,
        stop: threading.Event | None = None,
        group_id: str = "aislewatch-alerts",
        poll_timeout_s: float = 0.2,
    ) -> None:
        super().__init__(stop)
        self.engine = engine
        self.bus = bus
        self.db = db
        self.dispatcher = dispatcher
        self.clock = clock
        self.group_id = group_id
        self.poll_timeout_s = poll_timeout_s
        self._consumer: Consumer | None = None
        self._publisher: Publisher | None = None
        self.alerts_raised: Counter[str] = Counter()  # by alert kind, every alert the rules raised
        self.alerts_stored = 0  # newly inserted (the others were already stored before a restart)
        self.dead_letters = 0

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        bus: Bus,
        db: Database,
        threshold: float,
        stop: threading.Event | None = None,
    ) -> AlertWorker:
        """Build the worker, its rule engine and its notification channels from the settings; ``threshold``
        is the resolved one (``Settings.alert_threshold``)."""
        stop = stop or threading.Event()
        clock = SystemClock()
        engine = RuleEngine(settings.alerts, threshold, clock)
        dispatcher = Dispatcher.from_settings(settings.notifications, stop=stop)
        return cls(engine, bus, db, dispatcher, clock, stop=stop)

    # -- counters --------------------------------------------------------------------------------
    @property
    def deliveries_ok(self) -> int:
        return sum(self.dispatcher.sent.values())

    @property
    def deliveries_failed(self) -> int:
        return sum(self.dispatcher.failed.values())

    def counters(self) -> dict[str, Any]:
        """A snapshot of the worker's counters (for metrics and tests)."""
        return {
            "alerts_raised": dict(self.alerts_raised),
            "alerts_stored": self.alerts_stored,
            "deliveries_ok": dict(self.dispatcher.sent),
            "deliveries_failed": dict(self.dispatcher.failed),
            "dead_letters": self.dead_letters,
        }

    # -- lifecycle -------------------------------------------------------------------------------
    def setup(self) -> None:
        self._consumer = self.bus.consumer(list(self.topics), self.group_id)
        self._publisher = self.bus.publisher()

    def step(self) -> bool:
        assert self._consumer is not None and self._publisher is not None, "setup() was not called"
        records = self._consumer.poll(self.poll_timeout_s)
        try:
            published = self._process(records)
        except DatabaseUnavailable as exc:
            # Only raised once stop is set: leave the batch uncommitted so it is consumed again.
            self.log.warning("stopping with %d records unprocessed: %s", len(records), exc)
            return False
        if records or published:
            self._publisher.flush()  # alerts and dead letters are durable before their input is committed
        if records:
            self._consumer.commit()
        return True

    def shutdown(self) -> None:
        if self._publisher is not None:
            try:
                self._publisher.flush(timeout_s=5.0)
            finally:
                self._publisher.close()
        if self._consumer is not None:
            self._consumer.close()
        self.dispatcher.close()

    # -- one batch -------------------------------------------------------------------------------
    def _process(self, records: list[BusRecord]) -> bool:
        """Handle one polled batch (plus the clock-driven rules); True when anything was published."""
        assert self._publisher is not None
        health: list[CameraHealthMessage] = []
        inputs: list[ResultMessage | CameraHealthMessage] = []
        for record in records:
            message = self._decode(record)
            if message is None:
                continue
            inputs.append(message)
            if isinstance(message, CameraHealthMessage):
                health.append(message)
        if health:
            self.db.retrying(lambda: self.db.write_health_events(health), self.stop_event, "health event write")

        alerts: list[AlertMessage] = []
        for message in inputs:  # in arrival order, so a camera's results and health interleave as sent
            if isinstance(message, ResultMessage):
                alerts.extend(self.engine.on_result(message))
            else:
                alerts.extend(self.engine.on_health(message))
        alerts.extend(self.engine.tick())

        for alert in alerts:
            self.alerts_raised[alert.alert_kind.value] += 1
            # One by one (alerts are rare) so the insert count says whether this alert is new.
            inserted = self.db.retrying(partial(self.db.write_alerts, [alert]), self.stop_event, "alert write")
            # Published even when already stored: a crash between the write and the publish must not
            # lose it from the topic; its consumers key on alert_id.
            self._publisher.publish(Topic.ALERTS, alert.camera_id, alert.to_bytes())
            if inserted:
                self.alerts_stored += 1
                self.dispatcher.send(alert)
            else:
                self.log.info("alert %s (camera %s) was stored before; not delivered again",
                              alert.alert_id, alert.camera_id)
        return bool(alerts) or len(inputs) < len(records)  # alerts or dead letters went out

    def _decode(self, record: BusRecord) -> ResultMessage | CameraHealthMessage | None:
        try:
            if record.topic == Topic.RESULTS:
                return ResultMessage.from_bytes(record.value)
            if record.topic == Topic.CAMERA_HEALTH:
                return CameraHealthMessage.from_bytes(record.value)
            raise MessageError(f"unexpected topic {record.topic}")
        except MessageError as exc:
            self._dead_letter(record, str(exc))
            return None

    def _dead_letter(self, record: BusRecord, reason: str) -> None:
        assert self._publisher is not None
        self.dead_letters += 1
        self.log.warning("dead-lettered record topic=%s partition=%d offset=%d key=%s: %s",
                         record.topic.value, record.partition, record.offset, record.key, reason[:300])
        letter = DeadLetter.for_payload(record.topic.value, record.key, record.value, reason)
        self._publisher.publish(Topic.DEAD_LETTER, record.key, letter.to_bytes())
