"""Alert delivery through crashes, against the real servers: Kafka, PostgreSQL and a loopback webhook.

The alert worker runs as its own process (``python -m common.app.cli alerts -c FILE``), as in a scaled
deployment.  The test plays inference: it stores two suspicious results in PostgreSQL and publishes them
on the results topic.  The worker is SIGKILLed right after it stored the alert, started again and
SIGKILLed again while the webhook still answers 503, then started once more after the receiver has
recovered.  The receiver must get the alert exactly once: one accepted post, one ``webhook-id``, with a
valid Standard Webhooks signature, and PostgreSQL must hold one alert with one delivered outbox row.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from scaled_helpers import RoleProcesses, WebhookReceiver, split_password, wait_until, write_config
from standardwebhooks import Webhook

from common.db import Database
from common.kafka_bus import KafkaBus
from common.schemas import ResultMessage, Topic

pytestmark = pytest.mark.slow

CAMERA = "aisle-fault"
KEY = os.urandom(24)
SECRET = "whsec_" + base64.b64encode(KEY).decode()


def suspicious_result(index: int, at: datetime) -> ResultMessage:
    captured = at + timedelta(seconds=index)
    return ResultMessage(
        clip_id=f"fault-clip-{uuid.uuid4().hex[:8]}-{index}", store_id="store-it", camera_id=CAMERA,
        captured_at=captured, start_at=captured - timedelta(seconds=2), source_start_s=float(index),
        source_end_s=index + 2.0, probability=0.95, threshold=0.5, model_version="it", inferred_at=captured,
    )


def test_sigkill_after_the_alert_and_during_503s_delivers_it_exactly_once(
    tmp_path: Path, pg_url: str, kafka_bus_settings: Any, receiver: WebhookReceiver
) -> None:
    database_url, db_password = split_password(pg_url)
    assert db_password
    config = write_config(
        tmp_path / "aislewatch.yaml",
        cameras={CAMERA: "rtsp://127.0.0.1:9/unused"},  # the alerts role never opens it
        database_url=database_url,
        bus_bootstrap=kafka_bus_settings.bootstrap_servers[0],
        topic_prefix=kafka_bus_settings.topic_prefix,
        group_id=f"it-infer-{uuid.uuid4().hex[:8]}",
        evidence_dir=tmp_path / "evidence",
        sections={"notifications": {"log": True, "webhook": {"url": receiver.url, "timeout_s": 5},
                                    "retry_initial_s": 0.5, "retry_max_s": 2}},
    )
    assert SECRET not in config.read_text()
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = RoleProcesses(logs, config)
    env = {"AISLEWATCH__DATABASE__PASSWORD": db_password, "AISLEWATCH__NOTIFICATIONS__WEBHOOK__SECRET": SECRET}
    db = Database.from_url(pg_url)
    db.upgrade()
    bus = KafkaBus.from_settings(kafka_bus_settings)
    bus.ensure_topics()

    def diagnostics() -> str:
        rows = [(d.channel, d.status, d.attempts, d.last_error) for d in db.deliveries()]
        return f"{procs.diagnostics(40)}\n--- outbox: {rows}\n--- posts: {[p[2] for p in receiver.snapshot()]}"

    try:
        # 1. The worker stores the alert (its webhook answered 503) and is killed right then.
        first = procs.start("alerts-1", "alerts", env)
        t0 = datetime.now(UTC)
        results = [suspicious_result(0, t0), suspicious_result(1, t0)]
        db.write_results(results)
        publisher = bus.publisher()
        for r in results:
            publisher.publish(Topic.RESULTS, r.camera_id, r.to_bytes())
        publisher.flush(timeout_s=30)
        wait_until(lambda: db.alerts(), 90, "the alert to be stored", diagnostics, interval_s=0.05)
        first.kill()
        assert len(db.alerts()) == 1 and receiver.accepted() == []

        # 2. Started again: the pending row is retried against the 503s; killed in the middle of that.
        posts_before = len(receiver.snapshot())
        second = procs.start("alerts-2", "alerts", env)
        wait_until(lambda: len(receiver.snapshot()) >= posts_before + 2, 90,
                   "two 503 answers to the restarted worker", diagnostics, interval_s=0.1)
        second.kill()
        assert receiver.accepted() == []

        # 3. The receiver recovers; the third worker delivers, once.
        receiver.status = 200
        third = procs.start("alerts-3", "alerts", env)
        wait_until(lambda: receiver.accepted(), 90, "the alert to be delivered", diagnostics, interval_s=0.1)
        wait_until(lambda: [d.status for d in db.deliveries()] == ["delivered"], 30,
                   "the outbox row marked delivered", diagnostics)
        # Any duplicate would come from the redelivered clips or a second pass: give it time to appear.
        quiet = threading.Event()
        quiet.wait(3.0)
        assert third.terminate() == 0, diagnostics()

        (alert,) = db.alerts()
        ((headers, body, _),) = receiver.accepted()
        assert headers["webhook-id"] == f"{alert.alert_id}-webhook"
        payload = Webhook(KEY).verify(body, headers)  # signed with the secret from the environment
        assert payload["alert_id"] == alert.alert_id and payload["clip_ids"] == [r.clip_id for r in results]
        assert {p[0]["webhook-id"] for p in receiver.snapshot()} == {headers["webhook-id"]}
        (delivery,) = db.deliveries()
        # Attempts killed between the answer and the row update were sent but not counted.
        assert len(receiver.snapshot()) >= 3 and 2 <= delivery.attempts <= len(receiver.snapshot())
        for name, text in procs.logs().items():
            assert SECRET not in text and db_password not in text, f"a secret appears in the {name} log"
        assert json.loads(body)["camera_id"] == CAMERA
    finally:
        procs.close()
        bus.close()
        db.close()
