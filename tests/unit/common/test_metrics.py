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
    snaps = [  # the states the camera worker really reports (CameraState values)
        IngestCounters("cam-a", frames_read=150, clips_cut=4, clips_published=3, messages_spooled=1, state="online"),
        IngestCounters("cam-b", frames_read=7, state="offline"),
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
    assert 'aislewatch_ingest_clips_cut_total{camera="cam-a"} 4.0' in body
    assert 'aislewatch_ingest_messages_spooled{camera="cam-a"} 1.0' in body
    assert 'aislewatch_camera_streaming{camera="cam-a"} 1.0' in body
    assert 'aislewatch_camera_streaming{camera="cam-b"} 0.0' in body


@pytest.mark.parametrize(
    ("path", "status"),
    [("/metrics", 200), ("/healthz", 200), ("/healthz?verbose=1", 200), ("/metricsXYZ", 404),
     ("/healthz/../x", 404), ("/metrics/extra", 404), ("/", 404)],
)
def test_only_the_exact_routes_answer(server: HealthServer, path: str, status: int) -> None:
    assert get(f"http://127.0.0.1:{server.port}{path}")[0] == status


def test_healthz_turns_503_when_a_check_fails(server: HealthServer) -> None:
    alive = {"infer": True}
    server.add_check("infer", lambda: alive["infer"])
    assert get(f"http://127.0.0.1:{server.port}/healthz")[0] == 200
    alive["infer"] = False
    status, body = get(f"http://127.0.0.1:{server.port}/healthz")
    assert status == 503 and '"infer": false' in body
