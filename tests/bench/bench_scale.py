"""Scale: simulated cameras against the real Kafka, inference workers, PostgreSQL and alert worker.

What runs (every server and worker real except the model and the cameras):

- **Kafka** (KRaft, single node) and **PostgreSQL** (Debian's, ``fsync=off``), started by
  ``tests/integration/servers.py`` as the integration tests start them;
- **simulated cameras** in ``PUBLISHERS`` processes (``scale_roles.publisher_main``), each publishing many
  cameras' clips through the real ``KafkaBus`` publisher.  A camera has motion about half the time, in
  bursts of ``BURST_S`` (10-30 s) with still gaps as long, and during motion publishes one clip per stride
  (``clip.window_s * (1 - clip.overlap)``, 1 s at the defaults).  Its messages are a *template sequence*
  cut by the real ingest path from a synthetic demo stream, replayed with its identity rewritten
  (``scale_messages``): real bytes in whatever format ingest writes;
- **inference workers**: ``INFER_WORKERS`` processes, one consumer group, each the real
  ``InferenceWorker`` with a **stand-in model** (``scale_roles.StandInClassifier``) that sleeps what the real
  fused path takes on the batch on this machine: a full batch at ``build/bench.json`` →
  ``inference.batched_clips_per_s`` (else ``DEFAULT_MODEL_CLIPS_PER_S``), smaller batches on the shape of the
  fused path's time per bucket (``scale_model_cost``, measured once per model file), so what is measured is the
  bus, decoding, the database and the worker's own overhead.  The sleep uses no CPU: each worker stands for an
  inference box of this machine's speed.  Each reports as its own model version, so the rows tell which worker
  stored them (``rows_by_worker``, ``idle_workers``);
- the **alert worker**: ``aislewatch alerts`` (the CLI role process), default rule (2 of a camera's last 4
  clips at ``model.threshold`` 0.5, 60 s cooldown), log notifications.  Every ``INCIDENT_EVERY``-th camera
  replays a stream with a concealment early on, which the stand-in scores high, so alerts happen.

Steps: ``STEPS`` cameras (quick: ``QUICK_STEPS``), each for ``STEP_S`` seconds, fresh camera ids per step
(20 per store), then a drain until every clip of the step has its row.  Stepping stops after the first step in
which a stage saturated.  Per step: offered, published (acknowledged by Kafka) and inferred (result row
stored) clips/s during the step; bus MB/s; consumer lag of the inference group on the clips topic and of
the alert group on the results topic (peak, at the step's end); p50/p95 clip → result (``stored_at`` and
``inferred_at`` minus the clip's ``published_at``), clip → alert (the ``raised`` event's time minus the
``published_at`` of the alert's latest clip), result rows/s, CPU (% of one core) and resident memory of
every process (``/proc``) and CPU milliseconds per unit of work (``cpu_ms``), how busy the whole machine's
cores were (``/proc/stat``: other users' work included), the load average, and which stage saturated.  A
warm-up step (4 cameras, not measured) joins the consumer groups and connects the producers first.

Saturation rule (``SATURATION``): publishing is saturated when Kafka acknowledged under 95 % of the clips
offered during the step, or the p95 clip went out more than 5 s after it was due; inference when the result
rows stored during the step are under 95 % of the clips published, or the p95 clip → result is over 5 s (the
clips group's committed lag is reported, not judged: chained clips hold a partition's commit at the oldest
message a restart would need, so it counts clips already scored); alerts when their group's lag at the step's
end holds more than 5 s of the offered clip rate.  The machine's
cores being busy is reported beside it (``machine_cpu_saturated``), not as a stage: on a shared machine other
users' work keeps them busy.  ``first_saturated`` is the first step where a stage saturated, and the stage
earliest in the pipeline among them.

``run(quick=False) -> dict``; ``python -m tests.bench scale [--quick]`` merges it into build/bench.json.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.bench.scale_messages import Template, make_template, seed_with_early_incident, standin_scores  # noqa: E402
from tests.bench.scale_roles import SimCamera, infer_main, motion_bursts, publisher_main  # noqa: E402
from tests.integration.scaled_helpers import DatabaseProbe, RoleProcesses, split_password  # noqa: E402
from tests.integration.servers import KafkaServer, PostgresServer  # noqa: E402

STEPS = (10, 50, 100, 200, 500, 1000)
QUICK_STEPS = (10, 50)
STEP_S = 30.0
QUICK_STEP_S = 12.0
BURST_S = (10.0, 30.0)
DUTY = 0.5
CAMERAS_PER_STORE = 20
INCIDENT_EVERY = 10
PUBLISHERS = 3
INFER_WORKERS = 2
PARTITIONS = 8
DRAIN_TIMEOUT_S = 60.0
WARM_UP_CAMERAS = 4
WARM_UP_S = 8.0
LAG_BACKLOG_S = 5.0  # a consumer lag of more than this many seconds of input at a step's end: saturated
PUBLISH_LATE_S = 5.0  # clips published this much later than due (p95): the publishing path is saturated
SAMPLE_S = 0.5
DEFAULT_MODEL_CLIPS_PER_S = 378.0  # README "Sizing": inference.batched_clips_per_s, 2026-12-01, quiet machine
ALERTS_GROUP = "aislewatch-alerts"  # alerts.worker.GROUP_ID
INFER_GROUP = "bench-scale-infer"
OUT_DIR = ROOT / "build" / "bench-scale"
SATURATION = ("publish (simulated ingest -> Kafka acknowledgement): Kafka acknowledged under 95 % of the clips "
              "offered during the step, or the p95 clip went out more than 5 s after it was due; inference: result rows "
              "stored during the step under 95 % of the clips published, or the p95 clip -> result over 5 s (not the "
              "clips group's committed lag, which chained clips' commit holds inflate); alerts (the alert group on the "
              "results topic): the group's consumer lag at the step's end holds more than 5 s of the offered clip rate "
              "(and over 20).  Reported beside "
              "it, not a stage: machine_cpu_saturated, the machine's cores (every process, the other users' too; "
              "/proc/stat) 95 % busy during the step")
STAGES = ("publish", "inference", "alerts")  # in pipeline order


def say(text: str) -> None:
    print(f"[scale] {text}", flush=True)


def model_clips_per_s() -> tuple[float, str]:
    """The real fused path's clips/s on this machine: ``build/bench.json`` → ``inference``, else the README's."""
    try:
        section = json.loads((ROOT / "build" / "bench.json").read_text())["inference"]
        return float(section["batched_clips_per_s"]), (
            f"build/bench.json inference.batched_clips_per_s ({section.get('fast_kind', '?')}, batches of "
            f"{section.get('batch_size', '?')})")
    except (OSError, KeyError, TypeError, ValueError):
        return DEFAULT_MODEL_CLIPS_PER_S, "README 'Sizing' inference.batched_clips_per_s (tf-fused, batches of 32, quiet)"


def measured_buckets(out_dir: Path) -> dict[str, Any] | None:
    """The fused path's time per bucket, measured here in a child process (cached per model file)."""
    import subprocess

    from tests.bench.scale_model_cost import BUNDLED, model_key

    if not BUNDLED.is_file():
        return None
    cache = out_dir / "model_cost.json"
    try:
        cached = json.loads(cache.read_text())
        if cached.get("model") == model_key():
            return dict(cached)
    except (OSError, ValueError):
        pass
    say("timing the real fused path per batch bucket (once per model file)")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "tests.bench.scale_model_cost", str(cache)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        say(f"  could not time the model ({done.stderr.strip()[-300:]}); the stand-in's cost is linear in the bucket")
        return None
    return dict(json.loads(cache.read_text()))


def bucket_costs(clips_per_s: float, max_batch: int, measured: dict[str, Any] | None) -> dict[int, float]:
    """Seconds the stand-in sleeps per bucket: a full batch takes ``max_batch / clips_per_s``; smaller buckets
    follow the measured shape (a least-squares line a + b·n through the measured bucket times, which a busy
    machine makes noisy), or, unmeasured, are proportional to the bucket."""
    buckets = [1 << k for k in range(max_batch.bit_length()) if 1 << k <= max_batch]
    full = max_batch / clips_per_s
    if not measured:
        return {n: full * n / max_batch for n in buckets}
    points = {int(k): float(v) for k, v in measured["bucket_s"].items()}
    xs = np.array(sorted(points), dtype=float)
    b, a = np.polyfit(xs, [points[int(x)] for x in xs], 1)
    a, b = max(0.0, float(a)), max(1e-9, float(b))
    return {n: full * (a + b * n) / (a + b * max_batch) for n in buckets}


# -- /proc -------------------------------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, every core (``/proc/stat``'s first line)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return (total - idle) / CLK_TCK, total / CLK_TCK


def kafka_crc32c() -> str:
    """Which CRC-32C kafka-python uses to checksum every record batch it sends and checks on every fetch:
    the ``crc32c`` package's C code when importable, else its own pure-Python loop (about 18 ms per 100 kB here)."""
    import importlib.util

    return "crc32c (C)" if importlib.util.find_spec("crc32c") is not None else "pure Python (kafka.record._crc32c)"


def children_of(parent: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent:
            out.append(int(entry.name))
    return out


@dataclass
class ProcessTable:
    """Named groups of pids whose CPU time and memory are read from /proc (PostgreSQL: all its backends)."""

    groups: dict[str, Callable[[], list[int]]] = field(default_factory=dict)

    def snapshot(self) -> dict[str, tuple[float, float]]:
        """name -> (CPU seconds, resident MB), summed over the group's processes."""
        out = {}
        for name, pids in self.groups.items():
            cpu = mem = 0.0
            for pid in pids():
                cpu += cpu_seconds(pid) or 0.0
                mem += rss_mb(pid) or 0.0
            out[name] = (cpu, mem)
        return out


def usage(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]], seconds: float) -> dict:
    """name -> {cpu_percent (of one core), rss_mb} over a step."""
    return {name: {"cpu_percent": round(100.0 * (after[name][0] - before[name][0]) / seconds, 1),
                   "rss_mb": round(after[name][1], 1)} for name in after if name in before}


# -- lag ---------------------------------------------------------------------------------------------------


class LagSampler:
    """Samples the consumer lag of the inference and alert groups every ``SAMPLE_S`` on a thread."""

    def __init__(self, bus_settings: Any) -> None:
        from common.kafka_bus import KafkaBus

        self.bus = KafkaBus.from_settings(bus_settings)
        self.samples: list[tuple[float, int | None, int | None]] = []  # (time, clips lag, results lag)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-sampler", daemon=True)

    def start(self) -> LagSampler:
        self._thread.start()
        return self

    def _lag(self, group: str, topic: Any) -> int | None:
        from common.bus import BusError

        try:
            return self.bus.lag(group, [topic])
        except BusError:
            return None

    def _run(self) -> None:
        from common.schemas import Topic

        while not self._stop.is_set():
            began = time.time()
            clips = self._lag(INFER_GROUP, Topic.CLIPS)
            results = self._lag(ALERTS_GROUP, Topic.RESULTS)
            self.samples.append((began, clips, results))
            self._stop.wait(max(0.0, SAMPLE_S - (time.time() - began)))

    def between(self, start: float, end: float) -> list[tuple[float, int | None, int | None]]:
        return [s for s in list(self.samples) if start <= s[0] <= end]

    def latest(self) -> tuple[float, int | None, int | None] | None:
        return self.samples[-1] if self.samples else None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.bus.close()


# -- the simulation ----------------------------------------------------------------------------------------


@dataclass
class ScaleSpec:
    steps: Sequence[int] = STEPS
    step_s: float = STEP_S
    publishers: int = PUBLISHERS
    infer_workers: int = INFER_WORKERS
    partitions: int = PARTITIONS
    drain_timeout_s: float = DRAIN_TIMEOUT_S
    stop_when_saturated: bool = True
    seed: int = 0
    out_dir: Path = OUT_DIR


def _pct(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if len(values) else None


class Simulation:
    """Servers, templates, worker processes and the steps; ``run()`` returns the report."""

    def __init__(self, spec: ScaleSpec, kafka: KafkaServer | None = None, postgres: PostgresServer | None = None) -> None:
        self.spec = spec
        self.kafka = kafka
        self.postgres = postgres
        self._own_servers = kafka is None or postgres is None
        self.dir = spec.out_dir
        self.prefix = f"scale{uuid.uuid4().hex[:8]}."
        self.ctx = multiprocessing.get_context("spawn")
        self.publishers: list[tuple[Any, Any]] = []  # (process, connection)
        self.infers: list[Any] = []
        self.stop = self.ctx.Event()
        self.roles: RoleProcesses | None = None
        self.sampler: LagSampler | None = None
        self.probe: DatabaseProbe | None = None
        self.url = ""
        self.camera_plan: list[list[SimCamera]] = []

    # -- set-up ----------------------------------------------------------------------------------------
    def templates(self) -> dict[str, Template]:
        """The incident and the normal template, cut by the real ingest path (see scale_messages)."""
        need = int(self.spec.step_s) + 2
        duration = max(45.0, need * 1.6)
        directory = self.dir / "templates"
        seed = seed_with_early_incident(duration, normal_shoppers=2, before_s=10.0)
        made = {
            "incident": make_template(directory, "incident", duration_s=duration, seed=seed, incidents=1,
                                      normal_shoppers=2),
            "normal": make_template(directory, "normal", duration_s=duration, seed=seed + 1000, incidents=0,
                                    normal_shoppers=3),
        }
        for name, template in made.items():
            if len(template.messages) < need:
                raise ValueError(f"template {name} holds {len(template.messages)} clips, a {self.spec.step_s:.0f} s "
                                 f"step may need {need}: render a longer stream")
        return made

    def plan(self) -> list[list[SimCamera]]:
        """The warm-up's cameras (all moving; not measured), then each step's.  Every ``INCIDENT_EVERY``-th
        camera (and a step's first when it has fewer) replays the incident template, and its motion starts
        with the step (a shopper walks in and conceals something), so its concealment falls within the step."""
        rng = np.random.default_rng(self.spec.seed)
        warm = [SimCamera(f"w-cam-{i:04d}", "w-store-000", "incident" if i == 0 else "normal",
                          ((0.0, WARM_UP_S),), float(rng.uniform(0.0, 1.0))) for i in range(WARM_UP_CAMERAS)]
        plan = [warm]
        for step, count in enumerate(self.spec.steps, start=1):
            cameras = []
            for i in range(count):
                incident = i % INCIDENT_EVERY == INCIDENT_EVERY - 1 or (count < INCIDENT_EVERY and i == 0)
                bursts = motion_bursts(rng, self.spec.step_s, BURST_S, DUTY)
                if incident:
                    length = float(rng.uniform(*BURST_S))
                    bursts = [(0.0, min(self.spec.step_s, length))] + [b for b in bursts if b[0] > length + 1.0]
                cameras.append(SimCamera(
                    camera_id=f"s{step}-cam-{i:04d}",
                    store_id=f"s{step}-store-{i // CAMERAS_PER_STORE:03d}",
                    template="incident" if incident else "normal",
                    bursts=tuple(bursts),
                    phase_s=float(rng.uniform(0.0, 1.0)),
                ))
            plan.append(cameras)
        return plan

    def config(self, bus: dict[str, Any], database_url: str) -> Path:
        stores: dict[str, dict[str, Any]] = {}
        for cameras in self.camera_plan:
            for camera in cameras:
                stores.setdefault(camera.store_id, {"id": camera.store_id, "cameras": []})["cameras"].append(
                    {"id": camera.camera_id, "source": f"bench://{camera.camera_id}"})
        config = {
            "stores": list(stores.values()),
            "model": {"threshold": 0.5},  # the alerts role then loads no model for its threshold
            "inference": {"group_id": INFER_GROUP},
            "database": {"url": database_url, "pool_size": 2},
            "bus": bus,
            "evidence": {"video": False},
            "service": {"metrics_port": 0, "evidence_dir": str(self.dir / "evidence"), "log_level": "WARNING"},
        }
        path = self.dir / "aislewatch.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        path.chmod(0o600)
        return path

    def setup(self) -> dict[str, Any]:
        from common.app.runtime import open_database
        from common.settings import BusSettings, load_settings

        began = time.monotonic()
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        say("cutting template clips with the real ingest path")
        templates = self.templates()
        paths = {name: str(t.save(self.dir / "templates" / f"{name}.pickle")) for name, t in templates.items()}
        scores_path = self.dir / "templates" / "scores.pickle"
        scores_path.write_bytes(pickle.dumps(standin_scores(templates.values())))
        self.camera_plan = self.plan()
        if self.kafka is None:
            self.kafka = KafkaServer()
        if self.postgres is None:
            self.postgres = PostgresServer()
        say("starting Kafka and PostgreSQL")
        self.kafka.start()
        self.postgres.start()
        self.url = self.postgres.new_database(prefix="bench_scale")
        database_url, password = split_password(self.url)
        bus = {"kind": "kafka", "bootstrap_servers": [self.kafka.bootstrap], "topic_prefix": self.prefix,
               "partitions": self.spec.partitions}
        config = self.config(bus, database_url)
        env = {"AISLEWATCH__DATABASE__PASSWORD": password or ""}
        if os.environ.get("PYTHONPATH"):  # e.g. a folder with the crc32c package: the alerts role gets it too
            env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ["PYTHONPATH"]])
        os.environ.update({"AISLEWATCH__DATABASE__PASSWORD": password or ""})
        try:
            settings = load_settings(config)
        finally:
            os.environ.pop("AISLEWATCH__DATABASE__PASSWORD", None)
        from common.kafka_bus import KafkaBus

        admin = KafkaBus.from_settings(settings.bus)
        admin.ensure_topics()
        admin.close()
        open_database(settings).close()  # schema and stores, before any worker writes
        self.probe = DatabaseProbe(self.url)
        clips_per_s, source = model_clips_per_s()
        measured = measured_buckets(self.dir)
        costs = bucket_costs(clips_per_s, settings.inference.max_batch_size, measured)
        self.model = {"clips_per_s": clips_per_s, "source": source, "max_batch_size": settings.inference.max_batch_size,
                      "batch_cost_ms": round(1000 * settings.inference.max_batch_size / clips_per_s, 1),
                      "bucket_cost_ms": {n: round(1000 * c, 2) for n, c in costs.items()},
                      "measured_bucket_ms": None if not measured else
                      {k: round(1000 * v, 2) for k, v in measured["bucket_s"].items()},
                      "measured_load_average": None if not measured else measured.get("load_average_before")}
        say(f"starting {self.spec.infer_workers} inference workers (stand-in model: {clips_per_s:.0f} clips/s, "
            f"{self.model['batch_cost_ms']} ms a batch of {settings.inference.max_batch_size}), the alert worker, "
            f"{self.spec.publishers} publishers")
        self.roles = RoleProcesses(self.dir / "logs", config)
        self.roles.start("alerts", "alerts", env)
        for n in range(self.spec.infer_workers):
            process = self.ctx.Process(target=infer_main, name=f"infer-{n + 1}", args=(
                str(config), {**env, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}, str(scores_path),
                costs, f"infer-{n + 1}", self.stop))
            process.start()
            self.infers.append(process)
        bus_settings = BusSettings(**bus).model_dump(mode="json")
        self.stride_s = _stride(settings)
        for _ in range(self.spec.publishers):
            parent, child = self.ctx.Pipe()
            process = self.ctx.Process(target=publisher_main, args=(child, bus_settings, paths, self.stride_s))
            process.start()
            self.publishers.append((process, parent))
        for process, conn in self.publishers:
            if not conn.poll(60):
                raise RuntimeError(f"publisher {process.pid} did not start within 60 s")
            conn.recv()
        self.sampler = LagSampler(settings.bus).start()
        self.table = self.process_table()
        return {"setup_s": round(time.monotonic() - began, 1),
                "templates": {name: {"clips": len(t.messages), "incident_clips": sum(t.incident),
                                     "mean_bytes": round(t.mean_bytes), "stream": t.stream}
                              for name, t in templates.items()}}

    def process_table(self) -> ProcessTable:
        assert self.kafka is not None and self.postgres is not None and self.roles is not None
        table = ProcessTable()
        for n, (process, _) in enumerate(self.publishers):
            table.groups[f"publisher-{n + 1}"] = lambda pid=process.pid: [pid]
        for process in self.infers:
            table.groups[process.name] = lambda pid=process.pid: [pid]
        alerts = self.roles["alerts"].proc
        assert alerts is not None
        table.groups["alerts"] = lambda pid=alerts.pid: [pid]
        kafka_proc = getattr(self.kafka, "_proc", None)
        table.groups["kafka"] = lambda: [kafka_proc.pid] if kafka_proc is not None else []
        pid_file = self.postgres.data_dir / "postmaster.pid"

        def postgres_pids() -> list[int]:
            try:
                master = int(pid_file.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                return []
            return [master, *children_of(master)]

        table.groups["postgres"] = postgres_pids
        table.groups["bench"] = lambda: [os.getpid()]
        return table

    # -- one step --------------------------------------------------------------------------------------
    def publish(self, cameras: Sequence[SimCamera], start_at: float) -> None:
        for n, (_, conn) in enumerate(self.publishers):
            conn.send({"cameras": list(cameras[n :: len(self.publishers)]), "start_at": start_at})

    def collect(self, timeout_s: float) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for process, conn in self.publishers:
            if not conn.poll(timeout_s):
                raise RuntimeError(f"publisher {process.pid} did not finish its step within {timeout_s:.0f} s")
            _, batch = conn.recv()
            records.extend(batch)
        return records

    @staticmethod
    def _like(step: int) -> str:
        return "'w-%'" if step == 0 else f"'s{step}-%'"

    def rows(self, step: int) -> list[tuple[str, datetime, datetime]]:
        assert self.probe is not None
        rows = self.probe._query(
            f"SELECT clip_id, inferred_at, stored_at FROM clip_results WHERE camera_id LIKE {self._like(step)}")
        return [(r[0], r[1], r[2]) for r in rows or []]

    def rows_by_worker(self, step: int) -> dict[str, int]:
        """Result rows of the step per inference worker (the stand-in's model version names it)."""
        assert self.probe is not None
        rows = self.probe._query(f"SELECT model_version, count(*) FROM clip_results WHERE camera_id LIKE "
                                 f"{self._like(step)} GROUP BY model_version")
        counts = {str(r[0]).removeprefix("stand-in:"): int(r[1]) for r in rows or []}
        return {p.name: counts.get(p.name, 0) for p in self.infers}

    def duplicates(self, step: int) -> int:
        assert self.probe is not None
        rows = self.probe._query(
            f"SELECT count(*) - count(DISTINCT clip_id) FROM clip_results WHERE camera_id LIKE {self._like(step)}")
        return int(rows[0][0]) if rows else -1

    def alerts(self, step: int) -> list[tuple[str, list[str], datetime]]:
        assert self.probe is not None
        rows = self.probe._query(
            "SELECT a.alert_id, a.clip_ids, e.at FROM alerts a JOIN alert_events e ON e.alert_id = a.alert_id "
            f"AND e.event = 'raised' WHERE a.camera_id LIKE {self._like(step)} AND a.kind = 'suspicious_activity'")
        out = []
        for alert_id, clip_ids, at in rows or []:
            ids = clip_ids if isinstance(clip_ids, list) else json.loads(clip_ids or "[]")
            out.append((alert_id, list(ids), at))
        return out

    def drain(self, step: int, expected: int, timeout_s: float) -> tuple[bool, float]:
        began = time.monotonic()
        while time.monotonic() - began < timeout_s:
            latest = self.sampler.latest() if self.sampler else None
            # the clips group's lag is not waited for: chained clips hold its commits (see SATURATION)
            if len(self.rows(step)) >= expected and latest is not None and latest[0] > time.time() - 2 * SAMPLE_S - 1 \
                    and latest[2] == 0:
                return True, time.monotonic() - began
            time.sleep(0.5)
        return len(self.rows(step)) >= expected, time.monotonic() - began

    def run_step(self, step: int, cameras: Sequence[SimCamera], step_s: float | None = None) -> dict[str, Any]:
        assert self.sampler is not None
        step_s = step_s or self.spec.step_s
        scheduled = sum(len(c.due_times(self.stride_s)) for c in cameras)
        say(f"step {step}: {len(cameras)} cameras, {scheduled} clips due in {step_s:.0f} s "
            f"({scheduled / step_s:.1f} clips/s offered)")
        start_at = time.time() + 1.0
        end_at = start_at + step_s
        self.publish(cameras, start_at)
        time.sleep(max(0.0, start_at - time.time()))
        cpu_before = self.table.snapshot()
        machine_before = machine_cpu()
        load_before = [round(x, 2) for x in os.getloadavg()]
        while (left := end_at - time.time()) > 0:
            time.sleep(min(left, 5.0))
            if left > 5.0:
                latest = self.sampler.latest()
                say(f"  t+{time.time() - start_at:4.0f} s  clips lag {latest[1] if latest else '?'}, "
                    f"results lag {latest[2] if latest else '?'}")
        cpu_after = self.table.snapshot()
        machine_after = machine_cpu()
        load_after = [round(x, 2) for x in os.getloadavg()]
        records = self.collect(timeout_s=step_s + 120)
        errors = [r for r in records if "errors" in r]
        records = [r for r in records if "clip_id" in r]
        # chain ends (no clip id) are bytes on the bus but no clip: no result row is due for them
        acked = sum(1 for r in records if r["acked"] is not None and r["clip_id"])
        drained, drain_s = self.drain(step, acked, self.spec.drain_timeout_s)
        machine = (machine_after[0] - machine_before[0]) / max(1e-9, machine_after[1] - machine_before[1])
        return self.figures(step, cameras, records, errors, start_at, end_at, cpu_before, cpu_after,
                            load_before, load_after, drained, drain_s, machine)

    def figures(self, step: int, cameras: Sequence[SimCamera], records: list[dict[str, Any]], errors: list[dict],
                start_at: float, end_at: float, cpu_before: dict, cpu_after: dict, load_before: list[float],
                load_after: list[float], drained: bool, drain_s: float, machine_busy: float) -> dict[str, Any]:
        assert self.sampler is not None
        step_s = end_at - start_at
        rows = self.rows(step)
        stored = {clip_id: (inferred.timestamp(), stored_at.timestamp()) for clip_id, inferred, stored_at in rows}
        published = {r["clip_id"]: r for r in records if r["clip_id"]}
        in_window = lambda t: t is not None and start_at <= t <= end_at  # noqa: E731
        acked = [r for r in records if r["acked"] is not None and r["clip_id"]]
        offered_cps = sum(1 for r in records if r["clip_id"]) / step_s
        published_cps = sum(1 for r in acked if in_window(r["acked"])) / step_s
        inferred_cps = sum(1 for _, s in stored.values() if in_window(s)) / step_s
        bus_mb_s = sum(r["bytes"] for r in records if r["acked"] is not None and in_window(r["acked"])) / step_s / 1e6
        result_s = [s - published[c]["published"] for c, (_, s) in stored.items() if c in published]
        inferred_s = [i - published[c]["published"] for c, (i, _) in stored.items() if c in published]
        late_s = [r["published"] - r["due"] for r in records]
        alert_s = []
        alerts = self.alerts(step)
        for _, clip_ids, at in alerts:
            times = [published[c]["published"] for c in clip_ids if c in published]
            if times:
                alert_s.append(at.timestamp() - max(times))
        samples = self.sampler.between(start_at, end_at)
        clips_lag = [s[1] for s in samples if s[1] is not None]
        results_lag = [s[2] for s in samples if s[2] is not None]
        end_clips = clips_lag[-1] if clips_lag else None
        end_results = results_lag[-1] if results_lag else None
        resources = usage(cpu_before, cpu_after, step_s)
        cpu_total = round(sum(v["cpu_percent"] for v in resources.values()), 1)
        saturated = []
        p95_late = _pct(late_s, 95)
        if published_cps < 0.95 * offered_cps or (p95_late or 0.0) > PUBLISH_LATE_S:
            saturated.append("publish")
        # Not the clips group's committed lag: chained clips hold a partition's commit at the oldest message
        # a restart would need (about a keyframe interval of a camera, longer for a chain a burst left open),
        # so it counts records already scored.  The results topic has no holds.
        p95_result = _pct(result_s, 95)
        if inferred_cps < 0.95 * published_cps or (p95_result or 0.0) > LAG_BACKLOG_S:
            saturated.append("inference")
        if (end_results or 0) > max(LAG_BACKLOG_S * offered_cps, 20):
            saturated.append("alerts")
        figures = {
            "cameras": len(cameras),
            "stores": len({c.store_id for c in cameras}),
            "incident_cameras": sum(1 for c in cameras if c.template == "incident"),
            "clips_offered": sum(1 for r in records if r["clip_id"]),
            "offered_clips_per_s": round(offered_cps, 1),
            "published_clips_per_s": round(published_cps, 1),
            "inferred_clips_per_s": round(inferred_cps, 1),
            "db_rows_per_s": round(inferred_cps, 1),
            "bus_mb_per_s": round(bus_mb_s, 2),
            "mean_clip_bytes": round(float(np.mean([r["bytes"] for r in acked])), 0) if acked else None,
            "clips_lag_peak": max(clips_lag) if clips_lag else None,
            "clips_lag_end": end_clips,
            "results_lag_peak": max(results_lag) if results_lag else None,
            "results_lag_end": end_results,
            "p50_result_s": _pct(result_s, 50),
            "p95_result_s": _pct(result_s, 95),
            "p95_inferred_s": _pct(inferred_s, 95),
            "p95_publish_late_s": p95_late,
            "alerts": len(alerts),
            "p50_alert_s": _pct(alert_s, 50),
            "p95_alert_s": _pct(alert_s, 95),
            "clips_acknowledged": len(acked),
            "result_rows": len(rows),
            "clips_not_acknowledged": sum(1 for r in records if r["clip_id"]) - len(acked),
            "rows_missing": len({r["clip_id"] for r in acked} - set(stored)),
            "rows_duplicated": self.duplicates(step),
            "rows_by_worker": (by_worker := self.rows_by_worker(step)),
            "idle_workers": sorted(name for name, n in by_worker.items() if n == 0),
            "publish_errors": sum(e.get("error_count", 0) for e in errors),
            "drained": drained,
            "drain_s": round(drain_s, 1),
            "cpu_total_percent": cpu_total,
            "machine_cpu_busy": round(machine_busy, 3),
            "machine_cpu_saturated": machine_busy >= 0.95,
            "processes": resources,
            "load_average_before": load_before,
            "load_average_after": load_after,
            "saturated": saturated,
            "step_s": round(step_s, 1),
        }
        figures["cpu_ms"] = cpu_per_work(figures)
        say(f"  offered {figures['offered_clips_per_s']} / published {figures['published_clips_per_s']} / inferred "
            f"{figures['inferred_clips_per_s']} clips/s, {figures['bus_mb_per_s']} MB/s, lag peak/end "
            f"{figures['clips_lag_peak']}/{end_clips}, p95 result {figures['p95_result_s']} s, alert "
            f"{figures['p95_alert_s']} s ({len(alerts)} alerts), CPU {cpu_total} % (machine {machine_busy:.0%} busy), "
            f"load {load_after}"
            + (f"; saturated: {', '.join(saturated)}" if saturated else ""))
        if figures["idle_workers"]:
            say(f"  inference workers that stored nothing this step: {', '.join(figures['idle_workers'])} "
                "(out of the consumer group, or given no partition)")
        if machine_busy >= 0.95:
            say("  the machine's cores were busy all step (other users' work too): every figure here is contended")
        return figures

    # -- the whole run ---------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "steps_planned": list(self.spec.steps), "step_s": self.spec.step_s, "duty": DUTY, "burst_s": list(BURST_S),
            "publishers": self.spec.publishers, "inference_workers": self.spec.infer_workers,
            "partitions": self.spec.partitions, "cameras_per_store": CAMERAS_PER_STORE,
            "incident_every": INCIDENT_EVERY, "saturation_rule": SATURATION, "cpu_count": os.cpu_count(),
            "kafka_crc32c": kafka_crc32c(),
            "load_average_start": [round(x, 2) for x in os.getloadavg()],
        }
        try:
            report.update(self.setup())
            report["stride_s"] = self.stride_s
            report["model"] = {**self.model, "kind": "stand-in", "note": (
                "the ConvLSTM is a stand-in: each batch sleeps (using no CPU) what the real fused path takes on this machine "
                "for its bucket (bucket_cost_ms: a full batch at clips_per_s, smaller buckets on the measured shape); each "
                "worker stands for an inference box of this speed")}
            report["steps"] = []
            say("warm-up (not measured): consumer groups joined, producers connected")
            report["warm_up"] = {k: v for k, v in self.run_step(0, self.camera_plan[0], WARM_UP_S + 1).items() if k != "processes"}
            for step, cameras in enumerate(self.camera_plan[1:], start=1):
                figures = self.run_step(step, cameras)
                report["steps"].append(figures)
                if figures["saturated"] and self.spec.stop_when_saturated:
                    break
                if not figures["drained"]:
                    break
            report["first_saturated"] = first_saturated(report["steps"])
        finally:
            report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
            self.close()
        report["table"] = table_lines(report)
        for line in report["table"]:
            print(line, flush=True)
        return report

    def close(self) -> None:
        for _, conn in self.publishers:
            try:
                conn.send(None)
            except OSError:
                pass
        self.stop.set()
        for process in [p for p, _ in self.publishers] + self.infers:
            process.join(30)
            if process.is_alive():
                process.kill()
                process.join(5)
        if self.roles is not None:
            self.roles.close()
        if self.sampler is not None:
            self.sampler.close()
        if self.probe is not None:
            self.probe.engine.dispose()
        if self._own_servers:
            for server in (self.kafka, self.postgres):
                if server is not None:
                    server.close()
            return
        # servers of the caller's (a test's): leave them as found, without this run's topics and database
        if self.kafka is not None and self.kafka.running:
            from common.kafka_bus import KafkaBus

            bus = KafkaBus([self.kafka.bootstrap], topic_prefix=self.prefix, partitions=self.spec.partitions)
            try:
                bus.delete_topics()
            finally:
                bus.close()
        if self.postgres is not None and self.url:
            self.postgres.drop_database(self.url)


def _stride(settings: Any) -> float:
    clip = settings.cameras()[0][1].clip
    return float(clip.window_s * (1.0 - clip.overlap))


def cpu_per_work(figures: dict[str, Any]) -> dict[str, float | None]:
    """CPU milliseconds per unit of work over a step (steadier than throughput on a shared machine: a
    process starved of CPU does less, but each clip costs it the same): per clip published (publishers, all
    together), per clip inferred (inference workers), per result (the alert worker), per MB through Kafka and
    per result row (PostgreSQL, every backend)."""
    p, seconds = figures["processes"], figures["step_s"]

    def ms(names: list[str], units_per_s: float) -> float | None:
        cpu = sum(p[n]["cpu_percent"] for n in names if n in p) / 100.0 * seconds
        return round(1000.0 * cpu / (units_per_s * seconds), 2) if units_per_s > 0 else None

    return {
        "publisher_ms_per_clip": ms([n for n in p if n.startswith("publisher")], figures["published_clips_per_s"]),
        "inference_ms_per_clip": ms([n for n in p if n.startswith("infer")], figures["inferred_clips_per_s"]),
        "alerts_ms_per_result": ms(["alerts"], figures["inferred_clips_per_s"]),
        "kafka_ms_per_mb": ms(["kafka"], figures["bus_mb_per_s"]),
        "postgres_ms_per_row": ms(["postgres"], figures["db_rows_per_s"]),
    }


def first_saturated(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    for figures in steps:
        if figures["saturated"]:
            stages = [s for s in STAGES if s in figures["saturated"]]
            return {"cameras": figures["cameras"], "stage": stages[0] if stages else figures["saturated"][0],
                    "all": figures["saturated"]}
    return None


def table_lines(report: dict[str, Any]) -> list[str]:
    """The per-step table as text (what README.scale.md quotes)."""
    head = ("cameras", "offered/s", "published/s", "inferred/s", "MB/s", "lag peak/end", "p95 result s",
            "p95 alert s", "alerts", "CPU % (pub/infer/alerts/kafka/pg)", "machine busy", "load 1m", "saturated")
    lines = [" | ".join(head)]
    for f in report.get("steps", []):
        p = f["processes"]
        pub = sum(v["cpu_percent"] for k, v in p.items() if k.startswith("publisher"))
        inf = sum(v["cpu_percent"] for k, v in p.items() if k.startswith("infer"))
        cpu = f"{pub:.0f}/{inf:.0f}/{p['alerts']['cpu_percent']:.0f}/{p['kafka']['cpu_percent']:.0f}/" \
              f"{p['postgres']['cpu_percent']:.0f}"
        lines.append(" | ".join(str(x) for x in (
            f["cameras"], f["offered_clips_per_s"], f["published_clips_per_s"], f["inferred_clips_per_s"],
            f["bus_mb_per_s"], f"{f['clips_lag_peak']}/{f['clips_lag_end']}", f["p95_result_s"], f["p95_alert_s"],
            f["alerts"], cpu, f"{f['machine_cpu_busy']:.0%}", f["load_average_after"][0],
            ",".join(f["saturated"]) or "-")))
    return lines


def run(quick: bool = False) -> dict:
    spec = ScaleSpec(steps=QUICK_STEPS if quick else STEPS, step_s=QUICK_STEP_S if quick else STEP_S)
    return Simulation(spec).run()


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=2, default=str))
