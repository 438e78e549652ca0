"""Prometheus metrics and a health endpoint shared by every process.

``/metrics`` is the Prometheus text format; ``/healthz`` answers 200 while every registered check passes
and 503 otherwise, with a JSON body naming each check, so an orchestrator can restart a stuck process.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from common.schemas import CameraState

CLIPS_INFERRED = Counter("aislewatch_clips_inferred_total", "Clips classified by the model")
RESULTS_WRITTEN = Counter("aislewatch_results_written_total", "New result rows written")
BATCH_SIZE = Histogram(
    "aislewatch_batch_size", "Clips per inference batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
)
BATCH_SECONDS = Histogram("aislewatch_batch_seconds", "Model time per inference batch")
CONSUMER_LAG = Gauge("aislewatch_consumer_lag", "Records not yet committed, per consumer group and topic", ["group", "topic"])
ERRORS = Counter("aislewatch_errors_total", "Errors by stage and kind", ["stage", "kind"])
CAMERA_OUT_OF_DISTRIBUTION = Gauge(
    "aislewatch_camera_out_of_distribution",
    "1 while a camera's clips are unlike the model's training inputs (inference.ood), 0 once checked and alike",
    ["camera"],
)
CAMERA_OOD_BEYOND = Gauge(
    "aislewatch_camera_ood_beyond_fraction", "Of a camera's last clips, the fraction beyond the model's input description",
    ["camera"],
)
ALERTS_HELD = Counter(
    "aislewatch_alerts_held_total", "Alerts held back because their camera is out of distribution "
    "(model.out_of_distribution = hold)", ["camera"],
)
DEAD_LETTERS = Counter("aislewatch_dead_letters_total", "Messages sent to the dead-letter topic", ["topic"])
# Chained clips (inference.clip_chains): what the inference workers put together, and what they could not.
CHAINED_CLIPS = Counter(
    "aislewatch_chained_clips_total",
    "Chained clips by outcome: assembled, already_stored (skipped on joining a chain), lost (dead-lettered)",
    ["outcome"],
)

# The evidence janitor (alerts.janitor): what it deleted and why, and what is left on the evidence disk.
EVIDENCE_DELETED = Counter(
    "aislewatch_evidence_deleted_total",
    "Evidence files deleted, by reason: orphan, unflagged, false_alarm, theft, unreviewed, missed_theft, disk_budget",
    ["reason"],
)
EVIDENCE_DELETED_BYTES = Counter("aislewatch_evidence_deleted_bytes_total", "Bytes of evidence deleted, by reason", ["reason"])
EVIDENCE_ALERTS_DELETED = Counter(
    "aislewatch_evidence_alerts_deleted_total", "Alerts whose evidence was deleted (evidence_deleted_at set), by reason",
    ["reason"],
)
EVIDENCE_DRY_RUN_DELETED = Counter(
    "aislewatch_evidence_dry_run_deleted_total",
    "Evidence files the janitor would have deleted (evidence.janitor = dry_run), by reason", ["reason"],
)
EVIDENCE_DRY_RUN_DELETED_BYTES = Counter(
    "aislewatch_evidence_dry_run_deleted_bytes_total", "Bytes the janitor would have deleted in dry_run, by reason",
    ["reason"],
)
EVIDENCE_BYTES = Gauge("aislewatch_evidence_bytes", "Bytes under the evidence directory after the janitor's last pass")
EVIDENCE_FILES = Gauge("aislewatch_evidence_files", "Finished evidence files after the janitor's last pass")
EVIDENCE_HELD = Gauge("aislewatch_evidence_held_alerts", "Alerts whose evidence a manager put on hold")
EVIDENCE_LAST_PASS = Gauge(
    "aislewatch_evidence_janitor_last_pass_timestamp_seconds", "When the evidence janitor last finished a pass"
)

# Ingest and alert workers keep plain counters (cheap on the frame path); these collectors read them
# at scrape time.  A restarted camera worker starts from zero, which Prometheus treats as a counter reset.
_INGEST_FIELDS = {
    "frames_read": "Frames read from the camera",
    "frames_dropped": "Frames dropped (source behind real time or queue full)",
    "clips_cut": "Motion-gated clips cut",
    "windows_incomplete": "Windows left uncut because the file ended inside them (a clip spans window_s, always)",
    "clips_published": "Motion-gated clips the bus acknowledged",
    "clips_dropped": "Clips dropped: the spool was over its budget (or disabled), or the bus refused them for good",
    "publish_retries": "Messages sent again after the bus refused or failed to deliver them",
    "health_events": "Camera health events published",
    "reconnects": "Camera reconnect attempts",
    "errors": "Camera errors (corrupt stream, failed open)",
    "evidence_segments": "Evidence video segments written (H.264 MP4, while the camera had motion)",
    "evidence_bytes": "Bytes of evidence video segments written",
    "evidence_encode_seconds": "Seconds spent encoding and writing evidence video (wall clock, in the camera's thread)",
    "evidence_errors": "Evidence video segments lost to an encoding or disk error (clips are published regardless)",
}

_INGEST_GAUGES = {
    "messages_unacknowledged": "Messages in memory the bus has not acknowledged yet",
    "messages_spooled": "Messages waiting on disk for the bus",
    "spool_bytes": "Bytes of the camera's spool",
}


class IngestCollector(Collector):
    """Exports every camera worker's counters, labelled by camera."""

    def __init__(self, counters: Callable[[], Iterable[Any]]) -> None:
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        snapshots = list(self._counters())
        for field, help_text in _INGEST_FIELDS.items():
            family = CounterMetricFamily(f"aislewatch_ingest_{field}", help_text, labels=["camera"])
            for snap in snapshots:
                family.add_metric([snap.camera_id], float(getattr(snap, field)))
            yield family
        for field, help_text in _INGEST_GAUGES.items():
            gauge = GaugeMetricFamily(f"aislewatch_ingest_{field}", help_text, labels=["camera"])
            for snap in snapshots:
                gauge.add_metric([snap.camera_id], float(getattr(snap, field)))
            yield gauge
        online = GaugeMetricFamily("aislewatch_camera_streaming", "1 while the camera is streaming", labels=["camera"])
        for snap in snapshots:
            online.add_metric([snap.camera_id], 1.0 if snap.state == CameraState.ONLINE else 0.0)
        yield online


class AlertCollector(Collector):
    """Exports the alert worker's counters."""

    def __init__(self, counters: Callable[[], dict[str, Any]]) -> None:
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        c = self._counters()
        raised = CounterMetricFamily("aislewatch_alerts_raised", "Alerts raised", labels=["kind"])
        for kind, n in c.get("alerts_raised", {}).items():
            raised.add_metric([str(kind)], float(n))
        yield raised
        delivered = CounterMetricFamily(
            "aislewatch_alert_deliveries",
            "Alert delivery attempts by channel and outcome: ok, retry (failed, tried again later), "
            "failed (refused for good), expired (undelivered after notifications.give_up_after)",
            labels=["channel", "outcome"],
        )
        for channel, outcomes in c.get("deliveries", {}).items():
            for outcome, n in outcomes.items():
                delivered.add_metric([str(channel), str(outcome)], float(n))
        yield delivered
        pending = GaugeMetricFamily(
            "aislewatch_alert_deliveries_pending", "Outbox rows not delivered yet, by channel", labels=["channel"]
        )
        for channel, n in c.get("deliveries_pending", {}).items():
            pending.add_metric([str(channel)], float(n))
        yield pending
        rebuilt = CounterMetricFamily(
            "aislewatch_alert_windows_rebuilt", "Cameras whose rule window was rebuilt from the database at start"
        )
        rebuilt.add_metric([], float(c.get("windows_rebuilt", 0)))
        yield rebuilt
        videos = c.get("videos") or {}
        if videos:
            made = CounterMetricFamily(
                "aislewatch_alert_videos",
                "Suspicious-activity alerts settled by the video maker: made (video stored), partial (of those made, "
                "ones stopping short of their window: its last segment still being written at the deadline, or a "
                "format change), without_video (the camera recorded none within evidence.video_wait_s), and "
                "failed remux attempts",
                labels=["outcome"],
            )
            for outcome in ("made", "partial", "without_video", "failed"):
                made.add_metric([outcome], float(videos.get(outcome, 0)))
            yield made
            waiting = GaugeMetricFamily("aislewatch_alert_videos_pending", "Alerts still waiting for their video")
            waiting.add_metric([], float(videos.get("pending", 0)))
            yield waiting


def register_collector(collector: Collector) -> Collector:
    REGISTRY.register(collector)
    return collector

HealthCheck = Callable[[], bool]


class HealthServer:
    """Serves /metrics and /healthz on a background thread."""

    def __init__(self, host: str, port: int) -> None:
        self._checks: dict[str, HealthCheck] = {}
        checks = self._checks

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path  # exact routes; a query string is allowed
                if path == "/metrics":
                    body = generate_latest()
                    self._send(200, CONTENT_TYPE_LATEST, body)
                elif path == "/healthz":
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
