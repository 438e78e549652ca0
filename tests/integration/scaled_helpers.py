"""Helpers for the scaled-mode tests: role processes, their configuration, and what to read back.

The scaled pipeline runs one role per process (``python -m common.app.cli ingest|infer|alerts -c FILE``), so
these helpers write the YAML file (secrets go through the environment, never the file), start and stop
the processes with their logs under the test's directory, collect every clip id published on the clips
topic with a consumer group of their own, read result rows, health events and alerts from PostgreSQL,
and receive webhooks on loopback.  The reliability benchmark (``tests/bench/bench_reliability.py``) drives
the same machinery.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
STORE_ID = "store-it"


# -- waiting ---------------------------------------------------------------------------------------------


def wait_until(
    condition: Callable[[], Any],
    timeout_s: float,
    what: str,
    diagnostics: Callable[[], str] | None = None,
    interval_s: float = 0.5,
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` and the diagnostics."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{diagnostics()}" if diagnostics else ""
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}{extra}")
        time.sleep(interval_s)


# -- media, models, camera ids ---------------------------------------------------------------------------


def render_scenes(directory: Path, count: int, duration_s: float = 20.0) -> list[Path]:
    """``count`` synthetic store streams (640x360, 15 fps, one shopper each, different seeds)."""
    from inference.synth import write_stream

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(count):
        path = directory / f"aisle-{seed}.mp4"
        write_stream(path, duration_s=duration_s, seed=100 + seed, incidents=0, normal_shoppers=1)
        paths.append(path)
    return paths


_MODEL_SCRIPT = """
import shutil, sys
from pathlib import Path
from inference.model import ModelMetadata, build_convlstm, save_model
out = Path(sys.argv[1])
versions = sys.argv[2:]
first = out / f"{versions[0]}.keras"
save_model(build_convlstm(), first, ModelMetadata(version=versions[0], input_bits=5))  # cameras send 5 bits
for version in versions[1:]:
    path = out / f"{version}.keras"
    shutil.copyfile(first, path)
    ModelMetadata.sidecar_path(path).write_text(ModelMetadata(version=version, input_bits=5).to_json() + "\\n")
"""


class RandomModels:
    """Random-weights ConvLSTM files, one per version (same weights; the version tells workers apart).

    Built in a child process, so the test process never imports TensorFlow and can render videos
    meanwhile; ``wait`` returns ``{version: path}``.
    """

    def __init__(self, directory: Path, versions: Sequence[str]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.paths = {version: directory / f"{version}.keras" for version in versions}
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _MODEL_SCRIPT, str(directory), *versions],
            cwd=REPO_ROOT,
            env=child_env({}),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def wait(self, timeout_s: float = 300.0) -> dict[str, Path]:
        try:
            output, _ = self._proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            output, _ = self._proc.communicate()
        if self._proc.returncode != 0:
            raise RuntimeError(f"building the random model failed:\n{output.decode(errors='replace')[-4000:]}")
        return self.paths


def camera_ids_on_distinct_partitions(count: int, partitions: int) -> list[str]:
    """Camera ids whose Kafka keys land on ``count`` different partitions (kafka-python's murmur2).

    With one camera per partition, two workers sharing four partitions each serve two cameras.
    """
    from kafka.partitioner.default import murmur2

    chosen: dict[int, str] = {}
    index = 0
    while len(chosen) < min(count, partitions):
        camera_id = f"aisle-{index}"
        partition = (murmur2(camera_id.encode()) & 0x7FFFFFFF) % partitions
        chosen.setdefault(partition, camera_id)
        index += 1
    return [chosen[p] for p in sorted(chosen)]


# -- configuration ---------------------------------------------------------------------------------------


def split_password(url: str) -> tuple[str, str | None]:
    """A SQLAlchemy URL without its password, and the password (which goes through the environment)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    # ``URL.set(password=None)`` keeps the password (None means "unchanged"); ``_replace`` drops it.
    return parsed._replace(password=None).render_as_string(hide_password=False), parsed.password


def stores_section(cameras: Mapping[str, str], offline_after_s: float) -> list[dict[str, Any]]:
    """One store with the given ``{camera id: source URL}`` cameras, tuned for short test streams."""
    return [
        {
            "id": STORE_ID,
            "name": "Integration store",
            "cameras": [
                {
                    "id": camera_id,
                    "source": source,
                    "fps": 15,
                    "offline_after_s": offline_after_s,
                    "motion": {"warmup_frames": 5, "hold_s": 1.0},
                    "clip": {"window_s": 2.0, "overlap": 0.5},
                }
                for camera_id, source in cameras.items()
            ],
        }
    ]


def write_config(
    path: Path,
    *,
    cameras: Mapping[str, str],
    database_url: str,
    bus_bootstrap: str,
    topic_prefix: str,
    group_id: str,
    evidence_dir: Path,
    offline_after_s: float = 2.0,
    offline_alert_after_s: float = 3.0,
    sections: Mapping[str, Any] | None = None,
) -> Path:
    """The YAML every role process reads; camera URLs here carry no credentials, the URL no password.
    ``sections`` adds (or replaces) whole top-level sections, e.g. ``{"notifications": {...}}``."""
    config = {
        "stores": stores_section(cameras, offline_after_s),
        "model": {"threshold": 0.5},  # so the alerts role does not load the model for its threshold
        # Batches of at most 4: three batch buckets to warm up at start instead of five.
        "inference": {"max_batch_size": 4, "max_wait_ms": 100, "group_id": group_id},
        "alerts": {"n_of_m": [2, 3], "cooldown_s": 30, "offline_alert_after_s": offline_alert_after_s},
        "database": {"url": database_url, "retry_max_s": 2.0, "pool_size": 2},
        "bus": {
            "kind": "kafka",
            "bootstrap_servers": [bus_bootstrap],
            "topic_prefix": topic_prefix,
            "partitions": 4,
        },
        "service": {"metrics_port": 0, "evidence_dir": str(evidence_dir), "log_level": "INFO"},
    }
    config.update(sections or {})
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    path.chmod(0o600)
    return path


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a role process: ours without AISLEWATCH overrides, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AISLEWATCH")}
    env.update(
        {
            "PYTHONPATH": str(REPO_ROOT),
            "PYTHONUNBUFFERED": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "OMP_NUM_THREADS": "1",
            "TF_NUM_INTEROP_THREADS": "1",
        }
    )
    env.update(extra)
    return env


# -- processes -------------------------------------------------------------------------------------------


@dataclass
class RoleProcess:
    """One ``python -m common.app.cli ROLE -c FILE`` child, logging to ``log_path``."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RoleProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "common.app.cli", *self.args],
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL (a crash: no shutdown code runs)."""
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(timeout=10)

    def terminate(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (orderly shutdown), then SIGKILL if it has not exited in time; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


@dataclass
class RoleProcesses:
    """Every role process of one test; ``close`` stops those still running."""

    directory: Path
    config: Path
    processes: dict[str, RoleProcess] = field(default_factory=dict)

    def start(self, name: str, role: str, env: Mapping[str, str], *extra_args: str) -> RoleProcess:
        process = RoleProcess(
            name, [role, "-c", str(self.config), *extra_args], child_env(env), self.directory / f"{name}.log"
        )
        self.processes[name] = process
        return process.start()

    def __getitem__(self, name: str) -> RoleProcess:
        return self.processes[name]

    def diagnostics(self, lines: int = 25) -> str:
        parts = []
        for name, process in self.processes.items():
            parts.append(f"--- {name} (exit code {process.returncode}) {process.log_path}:\n{process.tail(lines)}")
        return "\n".join(parts)

    def logs(self) -> dict[str, str]:
        return {name: process.log_text() for name, process in self.processes.items()}

    def close(self) -> None:
        for process in self.processes.values():
            try:
                process.terminate(timeout_s=20)
            except Exception:  # keep stopping the others
                if process.proc is not None and process.proc.poll() is None:
                    process.proc.kill()


# -- the clips topic -------------------------------------------------------------------------------------


class ClipCollector:
    """Reads the clips topic from the beginning in a group of its own, collecting every clip id."""

    def __init__(self, bus_settings: Any) -> None:
        from common.kafka_bus import KafkaBus

        self.bus = KafkaBus.from_settings(bus_settings)
        self.group_id = f"it-collector-{uuid.uuid4().hex[:8]}"
        self.clip_ids: list[str] = []
        self.cameras: dict[str, str] = {}  # clip id -> camera id
        self.captured_at: dict[str, datetime] = {}
        self.malformed = 0
        self.records = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clip-collector", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> ClipCollector:
        self._thread.start()
        return self

    def _run(self) -> None:
        from common.schemas import ChainEnd, MessageError, Topic, read_clip_topic

        consumer = self.bus.consumer([Topic.CLIPS], self.group_id)
        try:
            while not self._stop.is_set():
                for record in consumer.poll(0.3):
                    with self._lock:
                        self.records += 1
                        try:
                            message = read_clip_topic(record.value)
                        except MessageError:
                            self.malformed += 1
                            continue
                        if isinstance(message, ChainEnd):
                            continue
                        header = message.header
                        self.clip_ids.append(header.clip_id)
                        self.cameras[header.clip_id] = header.camera_id
                        self.captured_at[header.clip_id] = header.captured_at
        except BaseException as exc:  # surfaced by the test through ``error``
            self.error = exc
        finally:
            consumer.close()

    def snapshot(self) -> tuple[set[str], int, int]:
        """(distinct clip ids, records read, malformed records) so far."""
        with self._lock:
            return set(self.clip_ids), self.records, self.malformed

    def ids_read(self) -> list[str]:
        """Every clip id read so far, in reading order, repeats included (a clip sent twice is read twice)."""
        with self._lock:
            return list(self.clip_ids)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.bus.close()


def end_offsets(bootstrap: str, topic: str) -> int:
    """How many records the topic holds in total (sum of its partitions' end offsets)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], request_timeout_ms=10000)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        offsets = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return int(sum(offsets.values()))
    finally:
        consumer.close()


def read_topic(bus_settings: Any, topic: Any, timeout_s: float, until: Callable[[list[bytes]], bool]) -> list[bytes]:
    """Values of ``topic`` from the beginning (a fresh group) until ``until(values)`` or the timeout."""
    from common.kafka_bus import KafkaBus

    bus = KafkaBus.from_settings(bus_settings)
    consumer = bus.consumer([topic], f"it-reader-{uuid.uuid4().hex[:8]}")
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not until(values):
            values.extend(r.value for r in consumer.poll(0.5))
    finally:
        consumer.close()
        bus.close()
    return values


# -- webhooks --------------------------------------------------------------------------------------------

Post = tuple[dict[str, str], bytes, int]  # lower-cased headers, body, the status answered


@dataclass
class WebhookReceiver:
    """A webhook receiver on loopback: answers ``status`` to every POST and records each one.

    ``start()`` serves on a free port (``url``), ``close()`` stops.  It keeps every post, retries
    included, so a caller can count accepted posts per ``webhook-id`` (a receiver de-duplicates on it).
    """

    status: int = 200
    url: str = ""
    posts: list[Post] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def start(self) -> WebhookReceiver:
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with state.lock:
                    status = state.status
                    state.posts.append(({k.lower(): v for k, v in self.headers.items()}, body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="webhook-receiver", daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/aislewatch"
        return self

    def snapshot(self) -> list[Post]:
        with self.lock:
            return list(self.posts)

    def accepted(self) -> list[Post]:
        return [p for p in self.snapshot() if p[2] == 200]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


# -- the database ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResultRow:
    clip_id: str
    camera_id: str
    model_version: str
    captured_at: datetime


class DatabaseProbe:
    """Read-only queries on the test's PostgreSQL database; None while the server is unreachable."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self._sa = sa
        self.engine = sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 3})

    def _query(self, sql: str) -> list[Any] | None:
        try:
            with self.engine.connect() as conn:
                return list(conn.execute(self._sa.text(sql)))
        except self._sa.exc.DBAPIError:
            self.engine.dispose()
            return None

    def results(self) -> list[ResultRow] | None:
        rows = self._query("SELECT clip_id, camera_id, model_version, captured_at FROM clip_results")
        return None if rows is None else [ResultRow(*row) for row in rows]

    def result_ids(self) -> list[str]:
        rows = self.results()
        return [] if rows is None else [r.clip_id for r in rows]

    def duplicated_clip_ids(self) -> list[tuple[str, int]]:
        rows = self._query("SELECT clip_id, count(*) FROM clip_results GROUP BY clip_id HAVING count(*) > 1")
        return [] if rows is None else [(r[0], int(r[1])) for r in rows]

    def health_events(self) -> list[tuple[str, str, datetime, str]]:
        rows = self._query("SELECT camera_id, state, at, detail FROM camera_health_events ORDER BY at, id")
        return [] if rows is None else [(r[0], r[1], r[2], r[3]) for r in rows]

    def alerts(self) -> list[tuple[str, str, str, datetime]]:
        """(kind, camera id, message, raised at) of every alert, oldest first."""
        rows = self._query("SELECT kind, camera_id, message, raised_at FROM alerts ORDER BY raised_at, id")
        return [] if rows is None else [(r[0], r[1], r[2], r[3]) for r in rows]

    def alert_ids(self) -> set[str]:
        rows = self._query("SELECT alert_id FROM alerts")
        return set() if rows is None else {r[0] for r in rows}

    def close(self) -> None:
        self.engine.dispose()


def stores_env(cameras: Mapping[str, str], offline_after_s: float) -> str:
    """``AISLEWATCH__STORES`` for the ingest process: the stores section with credentialed camera URLs."""
    return json.dumps(stores_section(cameras, offline_after_s))
