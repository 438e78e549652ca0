"""The security desk in scaled mode: result messages on real Kafka → the alerts process → PostgreSQL → two desk
replicas (``aislewatch desk``, separate processes) → live clients on each.

What it shows: an alert raised through the bus reaches clients of both replicas (each replica polls the
database; nothing ties a client to one replica), a store's guard never receives another store's alert, an
acknowledgement through one replica shows live on the other and a second one with the same version is refused
(409), and after a replica is SIGKILLed a client reconnecting to the survivor with ``Last-Event-ID`` gets what
it missed.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from scaled_helpers import RoleProcesses, split_password, wait_until, write_config

from common.db import Database
from common.kafka_bus import KafkaBus
from common.schemas import ResultMessage, Topic

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.postgres]

STORES = [
    {"id": "north", "name": "North", "cameras": [{"id": "north-cam", "name": "North aisle", "source": "north.mp4"}]},
    {"id": "south", "name": "South", "cameras": [{"id": "south-cam", "name": "South aisle", "source": "south.mp4"}]},
]


COOLDOWN_S = 3.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class StreamClient:
    """One live client: reads ``/api/stream`` on a thread and keeps every alert event it received."""

    base_url: str
    token: str
    last_event_id: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> StreamClient:
        threading.Thread(target=self._run, daemon=True).start()
        assert self.ready.wait(20), f"stream on {self.base_url} did not connect"
        return self

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        try:
            with httpx.Client(timeout=httpx.Timeout(5.0, read=None)) as client, client.stream(
                "GET", f"{self.base_url}/api/stream", headers=headers
            ) as response:
                response.raise_for_status()
                event: dict[str, str] = {}
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if not line:
                        self._dispatch(event)
                        event = {}
                    elif ":" in line and not line.startswith(":"):
                        name, _, value = line.partition(":")
                        event[name] = value.strip()
        except httpx.HTTPError:
            pass
        finally:
            self.closed.set()

    def _dispatch(self, event: dict[str, str]) -> None:
        if event.get("event") == "ready":
            self.ready.set()
        elif event.get("event") == "alert":
            self.events.append({"id": int(event["id"]), **json.loads(event["data"])})

    def got(self, alert_id: str, kind: str = "raised") -> bool:
        return any(e["alert"]["alert_id"] == alert_id and e["event"] == kind for e in self.events)

    def alert_ids(self) -> set[str]:
        return {e["alert"]["alert_id"] for e in self.events}

    def stop(self) -> None:
        self._stop.set()


@pytest.fixture
def deployment(tmp_path: Path, kafka_bus_settings: Any, kafka_topic_prefix: str, pg_url: str) -> Iterator[dict[str, Any]]:
    database_url, db_password = split_password(pg_url)
    assert db_password
    config = write_config(
        tmp_path / "aislewatch.yaml", cameras={}, database_url=database_url,
        bus_bootstrap=kafka_bus_settings.bootstrap_servers[0], topic_prefix=kafka_topic_prefix,
        group_id=f"it-desk-{uuid.uuid4().hex[:8]}", evidence_dir=tmp_path / "evidence",
        sections={"stores": STORES, "desk": {"feed_poll_s": 0.25},
                  "alerts": {"n_of_m": [2, 3], "cooldown_s": COOLDOWN_S, "offline_alert_after_s": 60}},
    )
    from common.settings import load_settings

    settings = load_settings(config, overrides={"database": {"url": pg_url}})
    db = Database.from_url(pg_url)
    db.upgrade()
    db.sync_stores(settings)
    from alerts.desk.accounts import Accounts

    accounts = Accounts.from_settings(db, settings)
    tokens = {}
    for name, role, stores in (("chief", "admin", []), ("guard-s", "guard", ["south"]), ("boss-n", "manager", ["north"])):
        accounts.add_user(name, f"{name}-password-123", role, stores)
        tokens[name] = accounts.create_token(name, "integration test")
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = RoleProcesses(logs, config)
    env = {"AISLEWATCH__DATABASE__PASSWORD": db_password}
    ports = [free_port(), free_port()]
    procs.start("alerts", "alerts", env)
    for index, port in enumerate(ports):
        procs.start(f"desk-{index}", "desk", {**env, "AISLEWATCH__DESK__PORT": str(port)})
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    bus = KafkaBus.from_settings(kafka_bus_settings)
    try:
        for url in urls:
            wait_until(lambda url=url: _healthy(url), timeout_s=60, what=f"desk {url} healthy",
                       diagnostics=procs.diagnostics)
        yield {"urls": urls, "tokens": tokens, "procs": procs, "bus": bus, "db": db, "password": db_password}
    finally:
        bus.close()  # else its admin client's IO thread outlives the broker, logging refusals to a closed stdout
        procs.close()
        db.close()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def publish_suspicious(bus: KafkaBus, camera_id: str, store_id: str, count: int = 3) -> None:
    """``count`` suspicious clips of one camera, 2 s apart and ending now: enough for the 2-of-3 rule."""
    publisher = bus.publisher()
    now = datetime.now(UTC)
    run = uuid.uuid4().hex[:6]
    for index in range(count):
        at = now - timedelta(seconds=2 * (count - 1 - index))
        message = ResultMessage(
            clip_id=f"{camera_id}-{run}-{index}", store_id=store_id, camera_id=camera_id, captured_at=at,
            start_at=at - timedelta(seconds=2), source_start_s=2.0 * index, source_end_s=2.0 * index + 2,
            probability=0.95, threshold=0.5, model_version="it", inferred_at=at,
        )
        publisher.publish(Topic.RESULTS, camera_id, message.to_bytes())
    publisher.flush(30)


def alert_of(db: Database, camera_id: str, exclude: set[str] = frozenset()) -> str | None:  # type: ignore[assignment]
    ids = [a.alert_id for a in db.alerts() if a.camera_id == camera_id and a.alert_id not in exclude]
    return ids[-1] if ids else None


def test_two_desk_replicas_serve_one_live_feed_over_kafka_and_postgres(deployment: dict[str, Any]) -> None:
    urls, tokens, procs, bus, db = (deployment[k] for k in ("urls", "tokens", "procs", "bus", "db"))
    chief_a = StreamClient(urls[0], tokens["chief"]).start()
    chief_b = StreamClient(urls[1], tokens["chief"]).start()
    guard_s = StreamClient(urls[1], tokens["guard-s"]).start()

    # A north alert raised through the bus reaches the admin on both replicas, and not the south guard.
    publish_suspicious(bus, "north-cam", "north")
    north = wait_until(lambda: alert_of(db, "north-cam"), timeout_s=60, what="north alert stored",
                       diagnostics=procs.diagnostics, interval_s=0.05)
    stored_at = time.monotonic()
    wait_until(lambda: chief_a.got(north) and chief_b.got(north), timeout_s=10,
               what="north alert on both replicas", diagnostics=procs.diagnostics, interval_s=0.05)
    assert time.monotonic() - stored_at < 2.0, "an alert must reach open pages within 2 s of being stored"

    publish_suspicious(bus, "south-cam", "south")
    south = wait_until(lambda: alert_of(db, "south-cam"), timeout_s=60, what="south alert stored",
                       diagnostics=procs.diagnostics)
    wait_until(lambda: guard_s.got(south), timeout_s=10, what="south alert to the south guard")
    assert north not in guard_s.alert_ids(), "a south guard received a north alert"
    listed = httpx.get(f"{urls[0]}/api/alerts", headers={"Authorization": f"Bearer {tokens['guard-s']}"}).json()
    assert [a["alert_id"] for a in listed["alerts"]] == [south]
    assert httpx.get(f"{urls[0]}/api/alerts/{north}",
                     headers={"Authorization": f"Bearer {tokens['guard-s']}"}).status_code == 404

    # The north manager acknowledges through replica A; replica B's client sees it live; a second
    # acknowledgement with the same version (through B) is refused and names the first.
    manager = {"Authorization": f"Bearer {tokens['boss-n']}"}
    first = httpx.post(f"{urls[0]}/api/alerts/{north}/acknowledge", headers=manager,
                       json={"verdict": "theft_prevented", "version": 1, "note": "stopped at the door"})
    assert first.status_code == 200, first.text
    wait_until(lambda: chief_b.got(north, "acknowledged"), timeout_s=10, what="acknowledgement on replica B")
    second = httpx.post(f"{urls[1]}/api/alerts/{north}/acknowledge", headers=manager,
                        json={"verdict": "false_alarm", "version": 1})
    assert second.status_code == 409
    assert second.json()["alert"]["verdict"] == "theft_prevented"
    assert [a.verdict for a in db.alerts() if a.alert_id == north] == ["theft_prevented"]

    # Replica A dies; its client reconnects to B with the last id it saw and catches up on the missed alert.
    seen = str(max(e["id"] for e in chief_a.events))
    procs["desk-0"].kill()
    wait_until(chief_a.closed.is_set, timeout_s=10, what="replica A's stream ended")
    time.sleep(COOLDOWN_S + 0.5)  # the camera's alert cooldown, counted on the clips' own timestamps
    publish_suspicious(bus, "north-cam", "north", count=3)
    again = wait_until(lambda: alert_of(db, "north-cam", exclude={north}), timeout_s=60,
                       what="second north alert (after the cooldown)", diagnostics=procs.diagnostics)
    resumed = StreamClient(urls[1], tokens["chief"], last_event_id=seen).start()
    wait_until(lambda: resumed.got(again), timeout_s=10, what="missed alert replayed")
    assert all(e["id"] > int(seen) for e in resumed.events), "the replay repeated events the client had seen"
    assert chief_a.got(south) and chief_a.got(north, "acknowledged")  # what it saw before replica A died
    for client in (chief_a, chief_b, guard_s, resumed):
        client.stop()
