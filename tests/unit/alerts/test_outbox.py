"""The outbox's delivery loop over real SQLite, a real loopback webhook receiver and a real SMTP server."""

from __future__ import annotations

import random
import socket
import threading
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from alerts.delivery import EmailNotifier, WebhookNotifier
from alerts.outbox import OutboxSender, retry_delay
from common.clock import FakeClock
from common.db import Database
from common.schemas import AlertKind, AlertMessage
from common.settings import EmailSettings

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def alert(alert_id: str = "a1") -> AlertMessage:
    return AlertMessage(alert_id=alert_id, alert_kind=AlertKind.SUSPICIOUS_ACTIVITY, store_id="store-1",
                        camera_id="cam-1", raised_at=T0, probability=0.9, clip_ids=("c1", "c2"), message="m")


def sender(db: Database, url: str, clock: FakeClock, **kwargs: Any) -> OutboxSender:
    options: dict[str, Any] = {"retry_initial_s": 1.0, "retry_max_s": 60.0, "rng": random.Random(1)}
    options.update(kwargs)
    return OutboxSender(db, [WebhookNotifier(url, timeout_s=5)], clock, **options)


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [(1, 1.6, 2.4), (2, 3.2, 4.8), (3, 6.4, 9.6), (8, 204.8, 300.0), (9, 300.0, 300.0), (200, 300.0, 300.0)],
)
def test_retry_delay_doubles_with_jitter_up_to_the_cap(attempt: int, low: float, high: float) -> None:
    rng = random.Random(7)
    delays = [retry_delay(attempt, 2.0, 300.0, rng) for _ in range(200)]
    assert low <= min(delays) and max(delays) <= high
    if low < high:
        assert len(set(delays)) > 1  # jittered, not one fixed value


def test_failed_sends_are_retried_with_backoff_until_delivered(db: Database, webhook_server) -> None:
    clock = FakeClock(T0)
    db.write_alerts([alert()], ["webhook"], now=clock.now())
    webhook_server.statuses.extend([503, 503])
    outbox = sender(db, webhook_server.url, clock)

    assert outbox.send_due() == 1  # attempt 1: 503
    (row,) = db.deliveries()
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, f"HTTP 503 from {webhook_server.url}")
    assert timedelta(seconds=0.8) <= row.next_attempt_at - T0 <= timedelta(seconds=1.2)
    assert outbox.send_due() == 0 and webhook_server.requests == 1  # not due yet: no post

    clock.advance(1.3)
    outbox.send_due()  # attempt 2: 503, the wait doubles
    (row,) = db.deliveries()
    assert row.attempts == 2
    assert timedelta(seconds=1.6) <= row.next_attempt_at - clock.now() <= timedelta(seconds=2.4)

    clock.advance(2.5)
    outbox.send_due()  # attempt 3: 200
    (row,) = db.deliveries()
    assert (row.status, row.attempts, row.delivered_at) == ("delivered", 3, clock.now())
    assert webhook_server.requests == 3 and webhook_server.distinct_ids == {"a1-webhook"}
    clock.advance(3600)
    assert outbox.send_due() == 0 and webhook_server.requests == 3  # delivered means done
    assert dict(outbox.outcomes["webhook"]) == {"retry": 2, "ok": 1}
    assert outbox.pending == {}


def test_a_refused_delivery_is_marked_failed_and_not_retried(db: Database, webhook_server) -> None:
    clock = FakeClock(T0)
    db.write_alerts([alert()], ["webhook"], now=clock.now())
    webhook_server.statuses.append(400)
    outbox = sender(db, webhook_server.url, clock)
    outbox.send_due()
    clock.advance(3600)
    outbox.send_due()
    (row,) = db.deliveries()
    assert (row.status, row.attempts) == ("failed", 1) and "400" in (row.last_error or "")
    assert webhook_server.requests == 1
    assert dict(outbox.outcomes["webhook"]) == {"failed": 1}


def test_retries_stop_at_give_up_after(db: Database, webhook_server) -> None:
    clock = FakeClock(T0)
    db.write_alerts([alert()], ["webhook"], now=clock.now())
    webhook_server.default_status = 503  # down for good
    outbox = sender(db, webhook_server.url, clock, give_up_after=timedelta(minutes=5), retry_max_s=60)
    for _ in range(40):  # 20 minutes of polling every 30 s
        outbox.send_due()
        clock.advance(30)
    (row,) = db.deliveries()
    assert row.status == "expired" and "503" in (row.last_error or "")
    # Attempts at 0, ~1, ~3, ~7, ~15, ~31, ~63, then every ~60 s until 5 minutes: far fewer than 40 polls.
    assert 6 <= webhook_server.requests == row.attempts <= 12
    assert outbox.outcomes["webhook"]["expired"] == 1
    assert outbox.pending == {}


def test_a_row_older_than_give_up_after_is_expired_without_sending(db: Database, webhook_server) -> None:
    """A worker that was down for longer than give_up_after does not page the desk about old alerts."""
    db.write_alerts([alert()], ["webhook"], now=T0)
    outbox = sender(db, webhook_server.url, FakeClock(T0 + timedelta(hours=25)))
    outbox.send_due()
    (row,) = db.deliveries()
    assert (row.status, row.attempts) == ("expired", 0)
    assert webhook_server.requests == 0


def test_the_thread_sends_what_was_pending_and_what_comes_in(db: Database, webhook_server) -> None:
    clock = FakeClock(T0)
    db.write_alerts([alert("before-start")], ["webhook"], now=clock.now())  # left pending by a previous run
    outbox = sender(db, webhook_server.url, clock, poll_s=30.0)  # only a wake makes it look again soon
    outbox.start_thread()
    try:
        _wait(lambda: webhook_server.requests == 1)
        db.write_alerts([alert("while-running")], ["webhook"], now=clock.now())
        outbox.wake()
        _wait(lambda: webhook_server.requests == 2)
    finally:
        outbox.stop()
        outbox.join(10)
    assert not outbox.alive and outbox.error is None
    assert webhook_server.distinct_ids == {"before-start-webhook", "while-running-webhook"}
    assert [d.status for d in db.deliveries()] == ["delivered", "delivered"]


def test_stopping_sends_what_is_due_once_more(db: Database, webhook_server) -> None:
    clock = FakeClock(T0)
    outbox = sender(db, webhook_server.url, clock, poll_s=30.0)
    outbox.start_thread()
    _wait(lambda: outbox.passes >= 1)  # the first pass found nothing; now it sleeps for 30 s
    db.write_alerts([alert("last-moment")], ["webhook"], now=clock.now())  # stored, no wake
    outbox.stop()
    outbox.join(10)
    assert webhook_server.distinct_ids == {"last-moment-webhook"}


# -- e-mail through the outbox, against a real SMTP server that starts late -----------------------


class Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.original_content)
        return "250 Message accepted for delivery"


def test_email_waits_for_the_smtp_server_and_is_sent_once(db: Database) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clock = FakeClock(T0)
    db.write_alerts([alert()], ["email"], now=clock.now())
    settings = EmailSettings(enabled=True, host="127.0.0.1", port=port, recipients=["desk@shop.test"])
    outbox = OutboxSender(db, [EmailNotifier(settings, timeout_s=5)], clock, retry_initial_s=1,
                          rng=random.Random(1))
    outbox.send_due()  # nobody listens yet
    (row,) = db.deliveries()
    assert (row.status, row.attempts) == ("pending", 1) and "ConnectionRefusedError" in (row.last_error or "")

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        clock.advance(2)
        outbox.send_due()
        clock.advance(3600)
        outbox.send_due()
    finally:
        controller.stop()
    (row,) = db.deliveries()
    assert (row.status, row.attempts) == ("delivered", 2)
    (raw,) = inbox.messages
    assert message_from_bytes(raw, policy=policy.default)["Message-ID"] == "<a1-email@aislewatch>"


def _wait(condition: Any, timeout_s: float = 10.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        done.wait(0.02)
    raise AssertionError("condition not reached in time")
