"""The metrics/health endpoint serves real Prometheus text and reflects worker liveness."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client import REGISTRY

from common.metrics import HealthServer, IngestCollector
from ingest.worker import IngestCounters


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def server():
    srv = HealthServer("127.0.0.1", 0).start()
    yield srv
    srv.close()


def test_metrics_include_ingest_counters_per_camera(server: HealthServer) -> None:
    snaps = [
        IngestCounters("cam-a", frames_read=150, clips_published=3, state="streaming"),
        IngestCounters("cam-b", frames_read=7, state="reconnecting"),
    ]
    collector = IngestCollector(lambda: snaps)
    REGISTRY.register(collector)
    try:
        status, body = get(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        REGISTRY.unregister(collector)
    assert status == 200
    assert 'aislewatch_ingest_frames_read_total{camera="cam-a"} 150.0' in body
    assert 'aislewatch_ingest_clips_published_total{camera="cam-a"} 3.0' in body
    assert 'aislewatch_camera_streaming{camera="cam-b"} 0.0' in body


def test_healthz_turns_503_when_a_check_fails(server: HealthServer) -> None:
    alive = {"infer": True}
    server.add_check("infer", lambda: alive["infer"])
    assert get(f"http://127.0.0.1:{server.port}/healthz")[0] == 200
    alive["infer"] = False
    status, body = get(f"http://127.0.0.1:{server.port}/healthz")
    assert status == 503 and '"infer": false' in body
