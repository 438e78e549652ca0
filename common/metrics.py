"""Prometheus metrics and a health endpoint shared by every process.

``/metrics`` is the Prometheus text format; ``/healthz`` answers 200 while every registered check passes
and 503 otherwise, with a JSON body naming each check, so an orchestrator can restart a stuck process.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

FRAMES_READ = Counter("aislewatch_frames_read_total", "Frames read from cameras", ["camera"])
FRAMES_DROPPED = Counter("aislewatch_frames_dropped_total", "Frames dropped by ingest", ["camera"])
CLIPS_PUBLISHED = Counter("aislewatch_clips_published_total", "Clips published to the bus", ["camera"])
CAMERA_RECONNECTS = Counter("aislewatch_camera_reconnects_total", "Camera reconnect attempts", ["camera"])
CLIPS_INFERRED = Counter("aislewatch_clips_inferred_total", "Clips classified by the model")
RESULTS_WRITTEN = Counter("aislewatch_results_written_total", "New result rows written")
BATCH_SIZE = Histogram(
    "aislewatch_batch_size", "Clips per inference batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
)
BATCH_SECONDS = Histogram("aislewatch_batch_seconds", "Model time per inference batch")
CONSUMER_LAG = Gauge("aislewatch_consumer_lag", "Records not yet processed", ["group"])
ERRORS = Counter("aislewatch_errors_total", "Errors by stage and kind", ["stage", "kind"])
DEAD_LETTERS = Counter("aislewatch_dead_letters_total", "Messages sent to the dead-letter topic", ["topic"])
ALERTS_RAISED = Counter("aislewatch_alerts_raised_total", "Alerts raised", ["kind"])

HealthCheck = Callable[[], bool]


class HealthServer:
    """Serves /metrics and /healthz on a background thread."""

    def __init__(self, host: str, port: int) -> None:
        self._checks: dict[str, HealthCheck] = {}
        checks = self._checks

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    body = generate_latest()
                    self._send(200, CONTENT_TYPE_LATEST, body)
                elif self.path.startswith("/healthz"):
                    status = {name: bool(check()) for name, check in list(checks.items())}
                    ok = all(status.values())
                    self._send(200 if ok else 503, "application/json", json.dumps(status).encode())
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-server", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def add_check(self, name: str, check: HealthCheck) -> None:
        self._checks[name] = check

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
