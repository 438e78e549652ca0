"""Alerts reach people exactly once through restarts of the alert worker.

Each test runs a worker over a real SQLite file and the in-process bus, stops it (orderly, or dying at a
named point), starts a new worker over the same database and bus, and counts the alerts stored and
what a real loopback webhook receiver got: every post, and the distinct ``webhook-id`` values it would
keep.  Results are handed over as inference does: stored in the database, then published.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from alerts.delivery import WebhookNotifier
from alerts.outbox import OutboxSender
from alerts.rules import RuleEngine
from alerts.worker import AlertWorker
from common.clock import FakeClock
from common.db import Database
from common.inprocess_bus import InProcessBus
from common.schemas import CameraState, DeliveryStatus, Topic
from common.settings import AlertRuleSettings

from .conftest import T0, WebhookServer, health, result

HI, LO = 0.9, 0.1
RULES = AlertRuleSettings(n_of_m=(2, 3), cooldown_s=60, offline_alert_after_s=30)


class Crash(BaseException):
    """The process dies here (SIGKILL): nothing after this point runs, no shutdown code either."""


@dataclass
class Deployment:
    """One database file, one bus, one webhook receiver; alert workers come and go over them."""

    db_url: str
    bus: InProcessBus
    webhook: WebhookServer
    databases: list[Database] = field(default_factory=list)

    def start(self, clock: FakeClock) -> AlertWorker:
        """A new alert worker process: its own database connection, engine and outbox."""
        db = Database.from_url(self.db_url)
        db.upgrade()
        self.databases.append(db)
        outbox = OutboxSender(db, [WebhookNotifier(self.webhook.url, timeout_s=5)], clock,
                              retry_initial_s=1, retry_max_s=60, rng=random.Random(3))
        worker = AlertWorker(RuleEngine(RULES, 0.5, clock), self.bus, db, clock, outbox=outbox,
                             poll_timeout_s=0, deliver_in_thread=False)
        worker.setup()
        return worker

    def infer(self, *results_: object) -> None:
        """What inference does with each clip's result: store it, then publish it."""
        self.databases[-1].write_results(list(results_))  # type: ignore[arg-type]
        publisher = self.bus.publisher()
        for r in results_:
            publisher.publish(Topic.RESULTS, r.camera_id, r.to_bytes())  # type: ignore[attr-defined]

    def report_health(self, *events: object) -> None:
        publisher = self.bus.publisher()
        for e in events:
            publisher.publish(Topic.CAMERA_HEALTH, e.camera_id, e.to_bytes())  # type: ignore[attr-defined]

    def alerts(self) -> list[tuple[str, str]]:
        return [(a.kind, a.alert_id) for a in self.databases[-1].alerts()]

    def close(self) -> None:
        for db in self.databases:
            db.close()


@pytest.fixture
def deployment(tmp_path: Path, webhook_server: WebhookServer) -> Iterator[Deployment]:
    bus = InProcessBus()
    d = Deployment(f"sqlite:///{tmp_path / 'aislewatch.db'}", bus, webhook_server)
    yield d
    d.close()
    bus.close()


def run(worker: AlertWorker, steps: int = 3) -> None:
    """Consume what is there, then one pass of the delivery loop."""
    for _ in range(steps):
        assert worker.step()
    assert worker.outbox is not None
    worker.outbox.send_due()


def die(worker: AlertWorker) -> None:
    """The process is gone: the bus hands its uncommitted records to the next member (as Kafka does once
    the session times out); nothing is flushed, committed, sent or closed."""
    assert worker._consumer is not None
    worker._consumer.close()


def test_restart_between_clip_1_and_clip_2_of_an_incident_raises_one_alert(deployment: Deployment) -> None:
    clock = FakeClock(T0)
    first = deployment.start(clock)
    deployment.infer(result(0, HI))
    run(first)
    first.shutdown()
    assert deployment.alerts() == []

    second = deployment.start(FakeClock(T0 + timedelta(seconds=2)))
    deployment.infer(result(1, HI), result(2, LO))
    run(second)
    ((kind, alert_id),) = deployment.alerts()
    assert kind == "suspicious_activity"
    assert deployment.databases[-1].alerts()[0].clip_ids == ["cam-1-clip-0", "cam-1-clip-1"]
    assert second.windows_rebuilt == 1
    assert deployment.webhook.requests == 1 and deployment.webhook.distinct_ids == {f"{alert_id}-webhook"}
    second.shutdown()


def test_restart_during_a_cooldown_raises_no_alert(deployment: Deployment) -> None:
    first = deployment.start(FakeClock(T0))
    deployment.infer(result(0, HI), result(1, HI))  # alert at t=2 s; cooldown until t=62 s
    run(first)
    first.shutdown()
    assert len(deployment.alerts()) == 1

    second = deployment.start(FakeClock(T0 + timedelta(seconds=10)))
    deployment.infer(result(5, HI), result(6, HI))  # t=10 and 12 s: inside the cooldown
    run(second)
    assert len(deployment.alerts()) == 1
    deployment.infer(result(40, HI), result(41, HI))  # t=80 and 82 s: after it, a new burst alerts
    run(second)
    assert len(deployment.alerts()) == 2
    assert deployment.webhook.requests == 2 and len(deployment.webhook.distinct_ids) == 2
    second.shutdown()


def test_restart_while_a_camera_is_offline_raises_its_one_offline_alert(deployment: Deployment) -> None:
    clock = FakeClock(T0)
    first = deployment.start(clock)
    deployment.report_health(health("e1", CameraState.ONLINE, at=T0), health("e2", CameraState.OFFLINE, at=T0))
    run(first)
    clock.advance(3)  # the restart comes 3 s after the offline event was stored
    run(first)
    first.shutdown()
    assert deployment.alerts() == []

    clock = FakeClock(T0 + timedelta(seconds=3))
    second = deployment.start(clock)
    assert second.outages_restored == 1
    run(second)
    assert deployment.alerts() == []  # 3 s offline: not yet
    clock.advance(27)
    run(second)
    ((kind, alert_id),) = deployment.alerts()
    assert kind == "camera_offline"
    assert deployment.webhook.distinct_ids == {f"{alert_id}-webhook"}
    second.shutdown()

    third = deployment.start(FakeClock(T0 + timedelta(seconds=100)))  # and once more, still offline
    run(third)
    assert deployment.alerts() == [(kind, alert_id)]
    assert deployment.webhook.requests == 1
    third.shutdown()


def test_death_right_after_the_insert_still_delivers_once_under_one_id(deployment: Deployment) -> None:
    """The measured failure: killed after storing an alert, the restarted worker stored and posted the
    same incident again under a second id.  Now the redelivered clips rebuild the same window, so the
    same id is raised (and recognised as stored), and the outbox row stored with it is delivered."""
    first = deployment.start(FakeClock(T0))
    deployment.infer(result(0, HI))
    run(first)  # clip 0 consumed and committed

    def killed(*_: object) -> None:
        raise Crash

    assert first._publisher is not None
    first._publisher.publish = killed  # type: ignore[method-assign]  # dies before publish, delivery, commit
    deployment.infer(result(1, HI), result(2, HI))
    with pytest.raises(Crash):
        first.step()
    die(first)
    (stored,) = deployment.alerts()
    assert deployment.webhook.requests == 0  # stored, never sent

    second = deployment.start(FakeClock(T0 + timedelta(seconds=5)))
    run(second)  # clips 1 and 2 again
    assert deployment.alerts() == [stored]
    assert second.alerts_raised["suspicious_activity"] == 1 and second.alerts_stored == 0
    assert deployment.webhook.requests == 1 and deployment.webhook.distinct_ids == {f"{stored[1]}-webhook"}
    assert deployment.bus.lag("aislewatch-alerts") == 0
    second.shutdown()


def test_death_while_the_webhook_answers_503_delivers_once_it_recovers(deployment: Deployment) -> None:
    deployment.webhook.default_status = 503
    first = deployment.start(FakeClock(T0))
    deployment.infer(result(0, HI), result(1, HI))
    run(first)  # stored, attempt 1 answered 503
    die(first)
    ((_, alert_id),) = deployment.alerts()
    (row,) = deployment.databases[-1].deliveries()
    assert (row.status, row.attempts) == ("pending", 1)

    deployment.webhook.default_status = 200
    clock = FakeClock(T0 + timedelta(seconds=30))  # the retry is due by then
    second = deployment.start(clock)
    run(second)
    run(second)
    assert len(deployment.alerts()) == 1
    assert deployment.webhook.requests == 2 and deployment.webhook.accepted_ids == [f"{alert_id}-webhook"]
    (row,) = deployment.databases[-1].deliveries()
    assert (row.status, row.attempts) == ("delivered", 2)
    second.shutdown()


def test_death_between_the_receivers_200_and_the_update_resends_the_same_id(deployment: Deployment) -> None:
    """At-least-once sending: the receiver sees the post twice, with one webhook-id to keep one of them."""
    first = deployment.start(FakeClock(T0))
    db = deployment.databases[-1]
    real_record = db.record_delivery

    def killed(delivery_id: int, status: DeliveryStatus, *args: object, **kwargs: object) -> None:
        if status == DeliveryStatus.DELIVERED:
            raise Crash
        real_record(delivery_id, status, *args, **kwargs)  # type: ignore[arg-type]

    db.record_delivery = killed  # type: ignore[method-assign]
    deployment.infer(result(0, HI), result(1, HI))
    with pytest.raises(Crash):
        run(first)
    die(first)

    second = deployment.start(FakeClock(T0 + timedelta(seconds=1)))
    run(second)
    ((_, alert_id),) = deployment.alerts()
    assert deployment.webhook.requests == 2
    assert deployment.webhook.accepted_ids == [f"{alert_id}-webhook"] * 2
    assert deployment.webhook.distinct_ids == {f"{alert_id}-webhook"}
    second.shutdown()
