"""The alert worker: consumes results and camera health, applies the rules, stores, publishes and delivers alerts.

Per poll: decode (bad messages go to the dead-letter topic) → store health events → run the rules →
store each alert together with its outbox rows (one transaction, idempotent on ``alert_id``) → write
the log line of a new alert → publish it on the alerts topic → commit the consumer.  Webhook and e-mail
go out from the outbox on their own thread (``alerts.outbox``), retried until delivered or expired, so
a notifier that is down or a crash after the insert no longer loses the delivery.  Suspicious-activity
alerts get their evidence video from the video maker (``alerts.evidence_video``), on a thread of its own too.

Restarts lose no rule state: at start the worker restores outages that are still open from the stored
health events, and before the first result of each camera it rebuilds that camera's window and
cooldown from the stored results and its last alert (``RuleEngine.rebuild_window``).  Committing last
makes the work at-least-once; the rebuilt state reproduces the same alert ids, and the insert-ignore
write recognises a re-raised alert, so people are notified once.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from functools import partial
from typing import Any

from alerts.delivery import DeliveryError, Notifier, notifiers_from_settings
from alerts.evidence_video import AlertVideoMaker
from alerts.outbox import OutboxSender
from alerts.rules import RuleEngine
from common.bus import Bus, BusError, BusRecord, Consumer, Publisher
from common.clock import Clock, SystemClock
from common.db import Database, DatabaseUnavailable
from common.schemas import (
    AlertKind,
    AlertMessage,
    CameraHealthMessage,
    DeadLetter,
    MessageError,
    ResultMessage,
    Topic,
)
from common.settings import Settings
from common.worker import Worker

GROUP_ID = "aislewatch-alerts"  # the alert worker's consumer group (one worker: see README)

STATE_WORDS = {"offline": "offline", "error": "in error", "ended": "ended (its source finished)"}
"""A camera's outage state in a sentence ("has been in error since", never "is error since")."""


class AlertWorker(Worker):
    """Turns results and camera health into stored, published and delivered alerts."""

    name = "alerts"
    topics: tuple[Topic, ...] = (Topic.RESULTS, Topic.CAMERA_HEALTH)

    def __init__(
        self,
        engine: RuleEngine,
        bus: Bus,
        db: Database,
        clock: Clock,
        *,
        immediate: Sequence[Notifier] = (),
        outbox: OutboxSender | None = None,
        videos: AlertVideoMaker | None = None,
        stop: threading.Event | None = None,
        group_id: str = GROUP_ID,
        poll_timeout_s: float = 0.2,
        deliver_in_thread: bool = True,
    ) -> None:
        """``immediate`` channels are written when an alert is stored; ``outbox`` delivers the others, on
        its own thread unless ``deliver_in_thread`` is False (then the caller drives ``outbox.send_due``);
        ``videos`` makes the alerts' evidence videos, on its own thread under the same condition."""
        super().__init__(stop)
        self.engine = engine
        self.bus = bus
        self.db = db
        self.clock = clock
        self.immediate = list(immediate)
        self.outbox = outbox
        self.videos = videos
        self.group_id = group_id
        self.poll_timeout_s = poll_timeout_s
        self.deliver_in_thread = deliver_in_thread
        self._consumer: Consumer | None = None
        self._publisher: Publisher | None = None
        self._outgoing: list[tuple[Topic, str | None, bytes]] = []  # published once the batch is processed
        self._outbox_thread: threading.Thread | None = None
        self._videos_thread: threading.Thread | None = None
        self.alerts_raised: Counter[str] = Counter()  # by alert kind, every alert the rules raised
        self.alerts_stored = 0  # newly inserted (the others were already stored before a restart)
        self.immediate_outcomes: dict[str, Counter[str]] = {n.name: Counter() for n in self.immediate}
        self.windows_rebuilt = 0  # cameras whose window was rebuilt from stored results or alerts
        self.outages_restored = 0
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
        """Build the worker, its rule engine, its channels and its outbox from the settings; ``threshold``
        is the resolved one (``Settings.alert_threshold``)."""
        stop = stop or threading.Event()
        clock = SystemClock()
        engine = RuleEngine(settings.alerts, threshold, clock, out_of_distribution=settings.model.out_of_distribution)
        evidence = settings.evidence
        notifiers = notifiers_from_settings(settings.notifications, public_url=settings.desk.public_url,
                                            videos=evidence.video, email_attach_max_mb=evidence.email_attach_max_mb)
        durable = [n for n in notifiers if not n.immediate]
        outbox = OutboxSender.from_settings(
            settings.notifications, db, durable, clock, video=evidence if evidence.video else None
        ) if durable else None
        immediate = [n for n in notifiers if n.immediate]
        videos = AlertVideoMaker.from_settings(
            settings, db, clock, on_settled=outbox.wake if outbox is not None else None
        ) if evidence.video else None
        return cls(engine, bus, db, clock, immediate=immediate, outbox=outbox, videos=videos, stop=stop)

    # -- counters --------------------------------------------------------------------------------
    def deliveries(self) -> dict[str, dict[str, int]]:
        """Delivery attempts by channel and outcome (ok, retry, failed, expired)."""
        out = {name: dict(c) for name, c in self.immediate_outcomes.items()}
        if self.outbox is not None:
            out.update({name: dict(c) for name, c in self.outbox.outcomes.items()})
        return out

    def counters(self) -> dict[str, Any]:
        """A snapshot of the worker's counters (for metrics and tests)."""
        return {
            "alerts_raised": dict(self.alerts_raised),
            "alerts_stored": self.alerts_stored,
            "deliveries": self.deliveries(),
            "deliveries_pending": dict(self.outbox.pending) if self.outbox is not None else {},
            "windows_rebuilt": self.windows_rebuilt,
            "outages_restored": self.outages_restored,
            "dead_letters": self.dead_letters,
            "videos": self.videos.counters() if self.videos is not None else {},
        }

    # -- lifecycle -------------------------------------------------------------------------------
    def setup(self) -> None:
        self._restore_outages()
        self._consumer = self.bus.consumer(list(self.topics), self.group_id)
        self._publisher = self.bus.publisher()
        if self.outbox is not None and self.deliver_in_thread:
            self._outbox_thread = self.outbox.start_thread()  # sends what was pending before the start, too
        if self.videos is not None and self.deliver_in_thread:
            self._videos_thread = self.videos.start_thread()  # makes what was pending before the start, too

    def step(self) -> bool:
        assert self._consumer is not None and self._publisher is not None, "setup() was not called"
        if self._outbox_thread is not None and self.outbox is not None and self.outbox.error is not None:
            raise RuntimeError(f"the delivery loop stopped: {self.outbox.error!r}")
        if self._videos_thread is not None and self.videos is not None and self.videos.error is not None:
            raise RuntimeError(f"the alert video loop stopped: {self.videos.error!r}")
        records = self._consumer.poll(self.poll_timeout_s)
        if records or getattr(self._consumer, "failing_since", None) is not None:
            self.input_waiting()
        try:
            self._process(records)
        except DatabaseUnavailable as exc:
            # Only raised once stop is set: leave the batch uncommitted so it is consumed again.
            self.log.warning("stopping with %d records unprocessed: %s", len(records), exc)
            return False
        # alerts and dead letters are durable on the bus before their input is committed
        if not self._publish_outgoing():
            return False  # stopped during a bus outage: nothing committed, the records come again
        if records:
            self._commit()
        if getattr(self._consumer, "failing_since", None) is None:
            self.progressed()
        return True

    def _publish_outgoing(self) -> bool:
        """Publish what this batch made and wait for the bus to acknowledge it, again and again through a
        bus outage (the messages are kept here); False only when stopped before it succeeded."""
        assert self._publisher is not None
        delay = 0.2
        while self._outgoing:
            try:
                for topic, key, value in self._outgoing:
                    self._publisher.publish(topic, key, value)
                self._publisher.flush(timeout_s=30)
            except BusError as exc:
                self.log.warning("publishing %d alert/dead-letter messages failed (%s); retrying in %.1f s",
                                 len(self._outgoing), exc, delay)
                if self.stop_event.wait(delay):
                    return False
                delay = min(delay * 2, 30.0)
                continue
            self._outgoing.clear()
        return True

    def _commit(self) -> None:
        """Commit what was polled; a failed commit never stops the worker.  After a rebalance the records
        go to the new owner; after a timeout the offsets go with the next commit.  Either way a record seen
        twice changes nothing (alert ids and the rules' seen-clip ids)."""
        assert self._consumer is not None
        try:
            self._consumer.commit()
        except BusError as exc:
            self.log.warning("commit failed (%s); polling on", exc)

    def shutdown(self) -> None:
        try:
            if self._publisher is not None:
                try:
                    self._publisher.flush(timeout_s=5.0)
                finally:
                    self._publisher.close()
            if self._consumer is not None:
                self._consumer.close()
        finally:
            if self._videos_thread is not None and self.videos is not None:
                self.videos.stop()  # before the outbox's last pass: e-mails it let go are sent in that pass
                self.videos.join(30.0)
            if self.outbox is not None:
                if self._outbox_thread is not None:
                    self.outbox.stop()  # its last pass sends what is due, then it closes its channels
                    self.outbox.join(30.0)
                else:
                    self.outbox.close()
            for notifier in self.immediate:
                notifier.close()

    def finish_videos(self) -> int:
        """Every camera has ended and closed its video (an embedded run over files): make or settle every pending
        alert video now, then let the e-mails that waited for them go; how many alerts were settled."""
        if self.videos is None:
            return 0
        settled = self.videos.make_due(streams_ended=True)
        if self.outbox is not None:
            self.outbox.wake()
        return settled

    # -- rule state after a restart --------------------------------------------------------------
    def _restore_outages(self) -> None:
        outages = self.db.retrying(self.db.open_outages, self.stop_event, "outage rebuild")
        for camera_id, events in outages.items():
            if self.engine.restore_outage(events, self.db.alert_exists):
                self.outages_restored += 1
                self.log.info("camera %s has been %s since %s (restored from the stored health events)",
                              camera_id, STATE_WORDS.get(events[0].state.value, f"in state {events[0].state.value}"),
                              events[-1].at.isoformat())

    def _rebuild_window(self, first: ResultMessage) -> list[AlertMessage]:
        """Rebuild the window of ``first``'s camera from what is stored before ``first`` (the first result
        of that camera this worker consumes, so where its predecessor stopped)."""
        camera_id, before = first.camera_id, first.captured_at
        last_alert_at = self.db.retrying(
            lambda: self.db.last_alert_at(camera_id, AlertKind.SUSPICIOUS_ACTIVITY, before=before),
            self.stop_event, "rule state rebuild",
        )
        history = self.db.retrying(
            lambda: self.db.results_before(camera_id, before, after=last_alert_at, limit=self.engine.replay_limit),
            self.stop_event, "rule state rebuild",
        )
        alerts = self.engine.rebuild_window(camera_id, last_alert_at, history)
        if history or last_alert_at is not None:
            self.windows_rebuilt += 1
            self.log.info("camera %s: window rebuilt from %d stored results, last alert %s",
                          camera_id, len(history), last_alert_at.isoformat() if last_alert_at else "none")
        return alerts

    # -- one batch -------------------------------------------------------------------------------
    def _process(self, records: list[BusRecord]) -> None:
        """Handle one polled batch (plus the clock-driven rules); what it publishes waits in ``_outgoing``."""
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
                if not self.engine.has_window(message.camera_id):
                    alerts.extend(self._rebuild_window(message))
                alerts.extend(self.engine.on_result(message))
            else:
                alerts.extend(self.engine.on_health(message))
        alerts.extend(self.engine.tick())

        channels = self.outbox.channels if self.outbox is not None else []
        stored = False
        for alert in alerts:
            self.alerts_raised[alert.alert_kind.value] += 1
            # One by one (alerts are rare) so the insert count says whether this alert is new; its outbox
            # rows are written in the same transaction.
            write = partial(self.db.write_alerts, [alert], channels, self.clock.now())
            inserted = self.db.retrying(write, self.stop_event, "alert write")
            if inserted:
                self.alerts_stored += 1
                stored = True
                self._deliver_immediately(alert)
            else:
                self.log.info("alert %s (camera %s) was stored before; not delivered again",
                              alert.alert_id, alert.camera_id)
            # Published even when already stored: a crash between the write and the publish must not
            # lose it from the topic; its consumers key on alert_id.
            self._outgoing.append((Topic.ALERTS, alert.camera_id, alert.to_bytes()))
        if stored and self.outbox is not None:
            self.outbox.wake()
        if stored and self.videos is not None:
            self.videos.wake()

    def _deliver_immediately(self, alert: AlertMessage) -> None:
        for notifier in self.immediate:
            try:
                notifier.send(alert)
            except Exception as exc:  # one channel failing must not stop the others or the worker
                if not isinstance(exc, DeliveryError):
                    self.log.exception("notifier %s failed on alert %s", notifier.name, alert.alert_id)
                self.immediate_outcomes[notifier.name]["failed"] += 1
            else:
                self.immediate_outcomes[notifier.name]["ok"] += 1

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
        self.dead_letters += 1
        self.log.warning("dead-lettered record topic=%s partition=%d offset=%d key=%s: %s",
                         record.topic.value, record.partition, record.offset, record.key, reason[:300])
        letter = DeadLetter.for_payload(record.topic.value, record.key, record.value, reason)
        self._outgoing.append((Topic.DEAD_LETTER, record.key, letter.to_bytes()))
