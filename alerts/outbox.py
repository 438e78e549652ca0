"""The outbox's delivery loop: sends the webhook and e-mail deliveries the alert worker stored.

``Database.write_alerts`` writes one ``pending`` row per alert and channel in the alert's own
transaction, so an alert that is stored will be delivered, whatever happens to the process afterwards.
This loop, on its own thread, sends every due row, marks it ``delivered``, and after a failed attempt
sets its next attempt a capped, jittered, doubling delay later, until it is delivered, ``failed`` (the
receiver refused it for good) or ``expired`` (still undelivered ``notifications.give_up_after`` after
the alert was stored).  The rows are in the database, so a restarted worker sends what was pending.

A channel that carries the evidence video (e-mail) waits for it: the first attempt of a suspicious-activity
alert's row is put off (``next_attempt_at``) until the video maker's own deadline for the alert
(``alerts.evidence_video.video_deadline``: its margin after, a segment, ``video_wait_s``), unless the maker
settles the alert sooner, which makes the row due at once (the maker settles every alert by then; the row
waits ``VIDEO_GRACE`` longer only in case the maker is not running); so an e-mail never leaves without a video the maker
would still make.

Sending is at-least-once: a crash between a receiver's 200 and the row's update sends that delivery
again after the restart, with the same ``webhook-id`` (or e-mail ``Message-ID``) for the receiver to
drop.  Run one alert worker per database (as the rules require anyway): two would send each row twice.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import DBAPIError

from alerts.delivery import DeliveryError, Notifier
from alerts.evidence_video import video_deadline
from common.clock import Clock
from common.db import Database, DatabaseUnavailable, DueDelivery
from common.schemas import AlertKind, DeliveryStatus
from common.settings import EvidenceSettings, NotificationSettings
from common.worker import Worker

log = logging.getLogger(__name__)

# Outcomes of a delivery attempt, as counted per channel (the ``outcome`` label of the metric).
OUTCOMES = ("ok", "retry", "failed", "expired")

# How long past the video maker's deadline an unsettled alert's e-mail still waits: the maker settles every
# alert at its deadline and makes the row due at once, so this only matters when the maker is not running.
VIDEO_GRACE = timedelta(seconds=30)

# Channels whose message carries the alert's video (attached or linked), so their first attempt waits for it.
VIDEO_CHANNELS = frozenset({"email"})


def retry_delay(attempt: int, initial_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1, 2, ...): doubling from ``initial_s``,
    ±20 % jitter (so receivers coming back are not hit by every sender at once), never over ``max_s``."""
    jitter = (rng or random).uniform(0.8, 1.2)
    return min(max_s, initial_s * 2 ** min(attempt - 1, 60) * jitter)


class OutboxSender(Worker):
    """Sends due outbox rows through their channel's notifier; one thread, driven by ``step``."""

    name = "alert-delivery"

    def __init__(
        self,
        db: Database,
        notifiers: Sequence[Notifier],
        clock: Clock,
        *,
        give_up_after: timedelta = timedelta(hours=24),
        retry_initial_s: float = 2.0,
        retry_max_s: float = 300.0,
        stop: threading.Event | None = None,
        poll_s: float = 1.0,
        batch_size: int = 50,
        drain_s: float = 5.0,
        rng: random.Random | None = None,
        video_wait_s: float | None = None,
        video: EvidenceSettings | None = None,
    ) -> None:
        """``video``: the evidence settings of the video maker, whose deadline a video channel's first attempt
        waits for (None: the maker is off, nothing waits); ``video_wait_s`` is shorthand for the default
        settings with that wait."""
        super().__init__(stop)
        self.db = db
        self.notifiers = {n.name: n for n in notifiers}
        self.clock = clock
        self.give_up_after = give_up_after
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.poll_s = poll_s
        self.batch_size = batch_size
        self.drain_s = drain_s
        self._rng = rng or random.Random()
        if video is None and video_wait_s is not None:
            video = EvidenceSettings(video_wait_s=video_wait_s)
        self.video = video
        self.waited_for_video = 0  # first attempts put off to wait for the alert's video
        self._wake = threading.Event()
        self.outcomes: dict[str, Counter[str]] = {name: Counter() for name in self.notifiers}
        self.pending: dict[str, int] = {}  # pending rows by channel, as of the last pass
        self.passes = 0  # passes over the due rows so far

    @classmethod
    def from_settings(
        cls,
        settings: NotificationSettings,
        db: Database,
        notifiers: Sequence[Notifier],
        clock: Clock,
        stop: threading.Event | None = None,
        video_wait_s: float | None = None,
        video: EvidenceSettings | None = None,
    ) -> OutboxSender:
        return cls(
            db,
            notifiers,
            clock,
            give_up_after=settings.give_up_after,
            retry_initial_s=settings.retry_initial_s,
            retry_max_s=settings.retry_max_s,
            stop=stop,
            video_wait_s=video_wait_s,
            video=video,
        )

    @property
    def channels(self) -> list[str]:
        """The channels this sender delivers (the outbox rows written for each new alert)."""
        return list(self.notifiers)

    def wake(self) -> None:
        """New rows were stored: look at once instead of at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        super().stop()
        self._wake.set()

    # -- the loop --------------------------------------------------------------------------------
    def step(self) -> bool:
        try:
            due = self.send_due()
        except DatabaseUnavailable:  # only raised once stop is set: the rows stay pending for the restart
            return False
        if due < self.batch_size:  # nothing more is due now: wait for new rows or the next poll
            self._wake.wait(self.poll_s)
            self._wake.clear()
        return True

    def shutdown(self) -> None:
        """One last pass over what is due (for at most ``drain_s``), then close the channels."""
        try:
            if self.error is None:
                self.send_due(deadline=time.monotonic() + self.drain_s)
        except DatabaseUnavailable:
            log.warning("outbox: database unavailable at shutdown; pending deliveries are sent after the restart")
        finally:
            self.close()

    def close(self) -> None:
        for notifier in self.notifiers.values():
            try:
                notifier.close()
            except Exception:
                log.exception("closing notifier %s failed", notifier.name)

    # -- one pass --------------------------------------------------------------------------------
    def send_due(self, deadline: float | None = None) -> int:
        """Attempt every row due now (up to ``batch_size``), oldest first; how many rows were due.
        ``deadline`` (``time.monotonic()``) ends the pass early, leaving the rest pending."""
        now = self.clock.now()
        due = self.db.retrying(
            lambda: self.db.due_deliveries(self.channels, now, self.batch_size), self.stop_event, "outbox read"
        )
        for row in due:
            if deadline is not None and time.monotonic() >= deadline:
                break
            self._attempt(row)
        self._refresh_pending()
        self.passes += 1
        return len(due)

    def _attempt(self, row: DueDelivery) -> None:
        notifier = self.notifiers[row.channel]
        alert = row.alert
        expires_at = row.created_at + self.give_up_after
        now = self.clock.now()
        if now >= expires_at:  # e.g. pending while the worker was down for longer than that
            self._give_up(row, row.attempts, "not sent before notifications.give_up_after passed", now)
            return
        wait_until = self._video_wait_until(row)
        if wait_until is not None and now < wait_until:
            self._record(row, DeliveryStatus.PENDING, row.attempts, next_attempt_at=wait_until)
            self.waited_for_video += 1
            log.info("alert %s (camera %s): %s waits up to %s for the alert's video",
                     alert.alert_id, alert.camera_id, row.channel, wait_until.isoformat())
            return
        attempts = row.attempts + 1
        try:
            notifier.send(alert, row.video_path)
        except DeliveryError as exc:
            error, retryable = str(exc), exc.retryable
        except Exception as exc:  # a bug in one channel must not stop the others or the loop
            log.exception("notifier %s failed on alert %s", row.channel, alert.alert_id)
            error, retryable = f"{type(exc).__name__}: {exc}", True
        else:
            done = self.clock.now()
            self._record(row, DeliveryStatus.DELIVERED, attempts, delivered_at=done)
            self.outcomes[row.channel]["ok"] += 1
            log.info("alert %s (camera %s) delivered by %s (attempt %d)",
                     alert.alert_id, alert.camera_id, row.channel, attempts)
            return
        if not retryable:
            self._record(row, DeliveryStatus.FAILED, attempts, last_error=error)
            self.outcomes[row.channel]["failed"] += 1
            log.error("alert %s (camera %s): %s refused it (%s); not retried",
                      alert.alert_id, alert.camera_id, row.channel, error)
            return
        delay = retry_delay(attempts, self.retry_initial_s, self.retry_max_s, self._rng)
        next_at = self.clock.now() + timedelta(seconds=delay)
        if next_at >= expires_at:
            self._give_up(row, attempts, error, now)
            return
        self._record(row, DeliveryStatus.PENDING, attempts, next_attempt_at=next_at, last_error=error)
        self.outcomes[row.channel]["retry"] += 1
        log.warning("alert %s (camera %s): %s attempt %d failed (%s); retrying in %.1f s",
                    alert.alert_id, alert.camera_id, row.channel, attempts, error, delay)

    def _video_wait_until(self, row: DueDelivery) -> datetime | None:
        """Until when this row's first attempt waits for the alert's video; None when it does not wait."""
        if (self.video is None or row.channel not in VIDEO_CHANNELS or row.attempts > 0
                or row.alert.alert_kind != AlertKind.SUSPICIOUS_ACTIVITY or row.video_path or row.video_settled):
            return None
        return video_deadline(row.alert.raised_at, self.video) + VIDEO_GRACE

    def _give_up(self, row: DueDelivery, attempts: int, error: str, now: datetime) -> None:
        self._record(row, DeliveryStatus.EXPIRED, attempts, last_error=error)
        self.outcomes[row.channel]["expired"] += 1
        log.error("alert %s (camera %s): %s gave up after %d attempts in %s (%s)",
                  row.alert.alert_id, row.alert.camera_id, row.channel, attempts,
                  str(now - row.created_at).split(".")[0], error)

    def _record(self, row: DueDelivery, status: DeliveryStatus, attempts: int, **outcome: Any) -> None:
        """Store an attempt's outcome (``Database.record_delivery``'s keywords), retried while the database
        is away."""
        self.db.retrying(
            lambda: self.db.record_delivery(row.id, status, attempts, **outcome), self.stop_event, "outbox update"
        )

    def _refresh_pending(self) -> None:
        try:
            self.pending = self.db.pending_deliveries()
        except DBAPIError:  # telemetry only; the next pass tries again
            pass
