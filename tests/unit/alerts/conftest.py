"""Shared fixtures of the alert tests: message factories and a real local webhook receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from common.schemas import CameraHealthMessage, CameraState, ResultMessage

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

ResultFactory = Callable[..., ResultMessage]
HealthFactory = Callable[..., CameraHealthMessage]


def result(
    index: int,
    probability: float,
    camera_id: str = "cam-1",
    at_s: float | None = None,
    clip_id: str | None = None,
    snapshot_path: str | None = None,
    store_id: str = "store-1",
) -> ResultMessage:
    """Clip ``index`` of a camera: 2 s apart by default, covering [2i, 2i+4) s of the source."""
    at = T0 + timedelta(seconds=at_s if at_s is not None else 2.0 * index)
    return ResultMessage(
        clip_id=clip_id or f"{camera_id}-clip-{index}",
        store_id=store_id,
        camera_id=camera_id,
        captured_at=at,
        start_at=at - timedelta(seconds=4),
        source_start_s=2.0 * index,
        source_end_s=2.0 * index + 4.0,
        probability=probability,
        threshold=0.5,
        model_version="test",
        snapshot_path=snapshot_path,
        inferred_at=at + timedelta(seconds=1),
    )


def health(
    event_id: str, state: CameraState, camera_id: str = "cam-1", at: datetime = T0, store_id: str = "store-1"
) -> CameraHealthMessage:
    return CameraHealthMessage(event_id=event_id, store_id=store_id, camera_id=camera_id, state=state, at=at)


@pytest.fixture
def make_result() -> ResultFactory:
    return result


@pytest.fixture
def make_health() -> HealthFactory:
    return health


@dataclass
class WebhookServer:
    """A real HTTP server on loopback that records POSTed JSON and answers with scripted status codes."""

    url: str
    statuses: list[int] = field(default_factory=list)  # answered in order; then ``default_status``
    default_status: int = 200
    bodies: list[Any] = field(default_factory=list)  # JSON of the accepted posts
    posts: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)  # every post: headers, body, answer
    requests: int = 0

    @property
    def accepted_ids(self) -> list[str]:
        """``webhook-id`` of every post answered 2xx, in order (a receiver de-duplicates on these)."""
        return [h.get("webhook-id", "") for h, _, status in self.posts if 200 <= status < 300]

    @property
    def distinct_ids(self) -> set[str]:
        return set(self.accepted_ids)


@pytest.fixture
def webhook_server() -> Iterator[WebhookServer]:
    lock = threading.Lock()
    state = WebhookServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                state.requests += 1
                status = state.statuses.pop(0) if state.statuses else state.default_status
                state.posts.append(({k.lower(): v for k, v in self.headers.items()}, body, status))
                if status < 400:
                    state.bodies.append(json.loads(body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
