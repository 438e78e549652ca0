"""Reliability: what faults cost the scaled pipeline (clips lost or doubled, alerts missed or sent twice),
and whether ingest's memory stays flat through a broker outage.

``faults``
    The scaled deployment against the real servers (``tests/integration/servers.py``), every role a child
    process started as the integration tests start them (``tests/integration/scaled_helpers.py``):
    4 looping RTSP cameras (synthetic store scenes, one shopper each) → ``aislewatch ingest`` → Kafka
    (4 partitions, one camera each) → 2 ``aislewatch infer`` processes (one consumer group, random-weights
    ConvLSTM) → PostgreSQL → ``aislewatch alerts`` → a webhook receiver on loopback that answers 200 and
    records every post.  A consumer group of the bench's own reads the whole clips topic.

    The alert rule fires on every clip outside a cooldown: ``alerts.threshold 0.0``, ``n_of_m [1, 1]``,
    ``cooldown_s 5``.  With threshold 0 the (random) model's probabilities cannot matter, and the cooldown
    is measured on capture time, so which clips raise an alert depends only on the clips: the alerts
    expected are replayed from the stored results through the same ``alerts.rules.RuleEngine``.

    Faults, one after another, each while clips flow end to end (``--quick`` durations in brackets):

    - ``infer_sigkill``   SIGKILL one inference worker, start it again at once;
    - ``postgres_stop``   stop PostgreSQL for 30 s [8 s];
    - ``kafka_stop``      stop the broker for 16 s, past ingest's 12 s delivery timeout
      (``AISLEWATCH__BUS__DELIVERY_TIMEOUT_S=12``; every ingest run keeps 2 messages in memory and 2 in
      flight, as the integration outage test does, so the outage goes through the spool on disk);
    - ``rtsp_stop``       stop the RTSP server for 30 s [12 s], past ``alerts.offline_alert_after_s`` (6 s):
      one ``camera_offline`` alert per camera is expected on top of the suspicious-activity ones;
    - ``alerts_sigkill``  SIGKILL the alert worker right after it stored an alert, start it again.

    Accounting, per fault: **one ingest process per fault**, started when the fault's phase starts and
    stopped (SIGTERM) once the pipeline has recovered from it (or given up waiting), after which the clips
    topic is read to its end and every clip read waits for its row.  Ingest runs never overlap and each
    has a spool directory of its own, so the clip ids read during a phase are exactly the clips its ingest
    run published, and its shutdown summary (``camera X: N clips cut, M published, D dropped, S messages
    left in the spool``) counts exactly the clips it cut.  What a run leaves in its spool is counted as
    ``spool_left`` and, having no row, as lost (a later ingest process on that spool would send it).
    Per fault:

    - ``clips_cut`` / ``clips_published`` / ``clips_dropped``: the ingest summary, summed over cameras;
    - ``clips_on_broker``: distinct clip ids read from the topic; ``republished``: records beyond one per
      clip id (a clip sent again after a failed delivery: at-least-once, not a duplicate);
    - ``rows_written``: result rows of those clips; ``lost``: clips cut without a row;
      ``duplicated``: rows beyond one per clip id;
    - ``alerts_raised``: alert rows stored during the phase (``alerts_by_kind``); ``alerts_expected`` the
      replay's suspicious-activity alerts of the phase's clips (plus one offline alert per camera in
      ``rtsp_stop``), ``alerts_missing`` / ``alerts_unexpected`` the difference;
    - ``alerts_delivered``: distinct ``webhook-id`` headers the receiver accepted for those alerts;
      ``posts_accepted`` the raw count of accepted posts; ``deliveries_duplicated`` the accepted posts
      beyond one per ``webhook-id`` (sent again after a crash between the receiver's answer and the
      outbox update: at-least-once sending, as README's "Alert delivery" says, dropped by a receiver that
      de-duplicates on ``webhook-id``); ``deliveries_duplicated_after_dedup`` what such a receiver would
      still get twice: delivered alerts the replay does not raise (a second alert, with an id of its
      own, for one incident).  ``outbox_not_delivered``: the phase's outbox rows not ``delivered``.

    Delivery numbers and rows are counted once more at the very end, so a late duplicate still shows.
    Role logs are kept under ``build/bench-reliability/`` (the path is in the report).

``ingest_memory``
    A child process runs one camera's publishing path as ``CameraWorker`` does: ``ingest.publishing``'s
    ``PublishQueue`` (the ingest settings' default memory queue, in-flight limit and spool budget, the
    worker's retry backoff) over a real ``KafkaBus`` publisher with a 12 s delivery timeout, fed real
    ``ClipMessage`` bytes (20x64x64x3 frames of a rendered synthetic store stream, windows cycled, each
    clip compressed as ingest does) at 125 clips/s, 20 000 clips [2 000].  When 30 % are submitted the
    broker is stopped for 20 s [16 s].  The child reads its own VmRSS (``/proc/self/status``; psutil is
    not a dependency) once the first clip is acknowledged (``rss_start_mb``), every 100 clips, and once
    every clip is acknowledged (``rss_end_mb``; at most 60 s after the last clip: ``all_acknowledged``
    says whether they all were, ``at_end`` what the queue still held).  The clips topic is then read back
    and every clip id compared.  Target: ``growth_mb`` under 50 with every clip on the broker (``complete``).

``run(quick=False) -> dict``; ``python -m tests.bench reliability [--quick]`` merges it into build/bench.json.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common.schemas import Topic  # noqa: E402
from common.settings import BusKind, BusSettings  # noqa: E402
from tests.integration.scaled_helpers import (  # noqa: E402
    ClipCollector,
    DatabaseProbe,
    RandomModels,
    RoleProcess,
    RoleProcesses,
    WebhookReceiver,
    camera_ids_on_distinct_partitions,
    child_env,
    end_offsets,
    render_scenes,
    split_password,
    write_config,
)
from tests.integration.servers import KafkaServer, PostgresServer, RtspServer  # noqa: E402

CAMERAS = 4
PARTITIONS = 4
COOLDOWN_S = 5.0
OFFLINE_AFTER_S = 2.0  # a live camera silent this long is offline (the RTSP read timeout)
OFFLINE_ALERT_AFTER_S = 6.0
DELIVERY_TIMEOUT_S = 12.0
ALERT_RULE = {"threshold": 0.0, "n_of_m": [1, 1], "cooldown_s": COOLDOWN_S, "offline_alert_after_s": OFFLINE_ALERT_AFTER_S}
ALERTS_GROUP = "aislewatch-alerts"  # common.app.runtime.ALERTS_GROUP (not imported: it pulls in every role)
VERSION_A, VERSION_B = "bench-random-a", "bench-random-b"
WEBHOOK_SECRET = "bench-reliability-webhook-secret"
LOG_ROOT = ROOT / "build" / "bench-reliability"
INGEST_SUMMARY = re.compile(
    r"camera (\S+): (\d+) clips cut, (\d+) published, (\d+) dropped, (\d+) messages left in the spool"
)
TARGET_GROWTH_MB = 50.0
RATE_PER_S = 125.0  # clips submitted per second by the memory child
SETTLE_S = 60.0  # how long it waits after the last clip for every clip to be acknowledged


@dataclass(frozen=True)
class Timings:
    lead_s: float  # clips flowing end to end for this long before the fault
    tail_s: float  # and again after the recovery, before ingest stops
    postgres_s: float
    kafka_s: float
    rtsp_s: float


TIMINGS = {
    False: Timings(lead_s=8.0, tail_s=8.0, postgres_s=30.0, kafka_s=16.0, rtsp_s=30.0),
    True: Timings(lead_s=4.0, tail_s=4.0, postgres_s=8.0, kafka_s=16.0, rtsp_s=12.0),
}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _now() -> datetime:
    return datetime.now(UTC)


def _poll(condition: Callable[[], Any], timeout_s: float, interval_s: float = 0.5) -> Any:
    """``condition()`` once it is truthy, or its last (falsy) value after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval_s)


# -- reading PostgreSQL ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertRow:
    alert_id: str
    kind: str
    camera_id: str
    raised_at: datetime
    clip_ids: tuple[str, ...]


class Probe(DatabaseProbe):
    """The integration tests' probe, plus the alert and outbox rows and the rows per clip id."""

    def alert_rows(self) -> list[AlertRow] | None:
        rows = self._query("SELECT alert_id, kind, camera_id, raised_at, clip_ids FROM alerts ORDER BY id")
        if rows is None:
            return None
        return [AlertRow(r[0], r[1], r[2], r[3], tuple(_json_list(r[4]))) for r in rows]

    def outbox(self) -> dict[str, str] | None:
        """alert id -> status of its webhook delivery row."""
        rows = self._query("SELECT alert_id, status FROM alert_deliveries WHERE channel = 'webhook'")
        return None if rows is None else {r[0]: r[1] for r in rows}

    def rows_per_clip(self) -> dict[str, int] | None:
        rows = self._query("SELECT clip_id, count(*) FROM clip_results GROUP BY clip_id")
        return None if rows is None else {r[0]: int(r[1]) for r in rows}


def _warnings(log_path: Path, lines: int = 12) -> list[str]:
    """The last WARNING and ERROR lines of a role's log (shortened), for a fault that lost or doubled something."""
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    found = [line[:300] for line in text.splitlines() if " WARNING " in line or " ERROR " in line]
    return found[-lines:]


def _json_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return list(json.loads(value))
    return list(value)


# -- the faults --------------------------------------------------------------------------------------------


@dataclass
class Phase:
    """One fault: its ingest run, what was seen when, and what the run left to count."""

    name: str
    what: str
    began: float = field(default_factory=time.monotonic)
    began_at: datetime = field(default_factory=_now)
    ids_before: int = 0  # collector records read before the phase
    alerts_before: set[str] = field(default_factory=set)
    events: list[tuple[float, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    ids_read: list[str] = field(default_factory=list)
    summaries: list[tuple[str, int, int, int, int]] = field(default_factory=list)
    ingest_exit: int | None = None
    alert_ids: list[str] = field(default_factory=list)
    recovered: bool = False
    ingest_log: Path | None = None
    outage_s: float | None = None
    seconds: float = 0.0

    def note(self, what: str) -> None:
        self.events.append((round(time.monotonic() - self.began, 1), what))


class FaultBench:
    """The deployment under test and the five faults."""

    def __init__(self, directory: Path, logs: Path, quick: bool, kafka: KafkaServer, postgres: PostgresServer) -> None:
        self.directory = directory
        self.logs = logs
        self.quick = quick
        self.timings = TIMINGS[quick]
        self.kafka = kafka
        self.postgres = postgres
        self.rtsp: RtspServer | None = None
        self.receiver = WebhookReceiver(status=200)
        self.collector: ClipCollector | None = None
        self.probe: Probe | None = None
        self.procs: RoleProcesses | None = None
        self.roles: dict[str, RoleProcess] = {}  # role name -> its current process
        self.starts: Counter[str] = Counter()
        self.phases: list[Phase] = []
        self.camera_ids: list[str] = []
        self.models: dict[str, Path] = {}
        self.videos: list[Path] = []
        self.url = ""  # the database's URL with its password
        self.database_url = ""  # without: what the YAML holds
        self.db_password = ""
        self.prefix = f"benchrel{uuid.uuid4().hex[:8]}."
        self.bus_settings = BusSettings(
            kind=BusKind.KAFKA, bootstrap_servers=[kafka.bootstrap], topic_prefix=self.prefix, partitions=PARTITIONS
        )
        self.setup_s = 0.0

    # -- set-up ------------------------------------------------------------------------------------------
    def setup(self) -> None:
        began = time.monotonic()
        models = RandomModels(self.directory / "models", [VERSION_A, VERSION_B])  # TensorFlow, in a child
        videos = self.videos = render_scenes(self.directory / "scenes", CAMERAS, duration_s=20.0)
        self.camera_ids = camera_ids_on_distinct_partitions(CAMERAS, PARTITIONS)
        self.rtsp = RtspServer(dict(zip(self.camera_ids, videos, strict=True)), cache_dir=self.directory / "rtsp-cache")
        self.rtsp.start()
        url = self.url = self.postgres.new_database(prefix="bench_reliability")
        self.database_url, password = split_password(url)
        assert password
        self.db_password = password
        self.probe = Probe(url)
        self.receiver.start()
        config = write_config(
            self.directory / "aislewatch.yaml",
            cameras={cid: self.rtsp.url(cid, credentials=False) for cid in self.camera_ids},
            database_url=self.database_url,
            bus_bootstrap=self.kafka.bootstrap,
            topic_prefix=self.prefix,
            group_id=f"bench-infer-{self.prefix.rstrip('.')}",
            evidence_dir=self.directory / "evidence",
            offline_after_s=OFFLINE_AFTER_S,
            offline_alert_after_s=OFFLINE_ALERT_AFTER_S,
            sections={
                "alerts": dict(ALERT_RULE),
                "notifications": {"log": True, "webhook": {"url": self.receiver.url, "timeout_s": 5},
                                  "retry_initial_s": 0.5, "retry_max_s": 2},
                # little room in memory, so the broker outage goes through the spool on disk
                "ingest": {"memory_queue": 2, "max_in_flight": 2},
            },
        )
        self.procs = RoleProcesses(self.logs, config)
        self.models = models.wait()
        self.collector = ClipCollector(self.bus_settings).start()
        self.start_role("alerts")
        self.start_role("infer-a")
        self.start_role("infer-b")
        self.setup_s = time.monotonic() - began

    def role_env(self, role: str) -> dict[str, str]:
        if role == "alerts":
            return {"AISLEWATCH__DATABASE__PASSWORD": self.db_password,
                    "AISLEWATCH__NOTIFICATIONS__WEBHOOK__SECRET": WEBHOOK_SECRET}
        if role.startswith("infer"):
            version = VERSION_A if role == "infer-a" else VERSION_B
            return {"AISLEWATCH__MODEL__PATH": str(self.models[version]),
                    "AISLEWATCH__DATABASE__PASSWORD": self.db_password}
        # ingest: a spool of its own per run, so what one run leaves there is never sent by the next
        return {"AISLEWATCH__BUS__DELIVERY_TIMEOUT_S": str(int(DELIVERY_TIMEOUT_S)),
                "AISLEWATCH__INGEST__SPOOL_DIR": str(self.spool_dir(role))}

    def spool_dir(self, ingest_role: str) -> Path:
        return self.directory / "spool" / ingest_role

    def start_role(self, role: str) -> RoleProcess:
        """Start (or start again) a role; each start logs to its own file, ``ROLE.N.log``."""
        assert self.procs is not None
        self.starts[role] += 1
        command = "infer" if role.startswith("infer") else role.split("-")[0]
        process = self.procs.start(f"{role}.{self.starts[role]}", command, self.role_env(role))
        self.roles[role] = process
        return process

    # -- what the pipeline shows -------------------------------------------------------------------------
    def results(self) -> list[Any]:
        assert self.probe is not None
        return self.probe.results() or []

    def stored_from_every_camera(self, since: datetime) -> bool:
        """Rows of clips captured after ``since`` from every camera: clips flow end to end."""
        return {r.camera_id for r in self.results() if r.captured_at > since} >= set(self.camera_ids)

    def stored_by(self, version: str, since: datetime) -> bool:
        """A row stored by the worker running ``version`` for a clip captured after ``since``."""
        return any(r.model_version == version and r.captured_at > since for r in self.results())

    def alert_rows(self) -> list[AlertRow]:
        assert self.probe is not None
        return self.probe.alert_rows() or []

    def alerts_lag(self) -> int | None:
        from common.kafka_bus import KafkaBus

        bus = KafkaBus.from_settings(self.bus_settings)
        try:
            return bus.lag(ALERTS_GROUP, [Topic.RESULTS, Topic.CAMERA_HEALTH])
        except Exception:  # the broker is busy or restarting: ask again
            return None
        finally:
            bus.close()

    def check_roles(self, phase: Phase) -> None:
        """A role that exited on its own is a finding: report it and start it again."""
        for role, process in list(self.roles.items()):
            if role.startswith("ingest") or process.alive:
                continue
            phase.problems.append(f"{role} exited on its own with code {process.returncode}; started again. "
                                  f"Its log ({process.log_path}) ends:\n{process.tail(30)}")
            self.start_role(role)

    # -- one fault ---------------------------------------------------------------------------------------
    def run_phase(self, name: str, what: str, inject: Callable[[Phase], None]) -> Phase:
        assert self.collector is not None
        phase = Phase(name, what, ids_before=len(self.collector.ids_read()),
                      alerts_before={a.alert_id for a in self.alert_rows()})
        self.phases.append(phase)
        print(f"   fault {name}: {what}", flush=True)
        self.check_roles(phase)
        ingest = self.start_role(f"ingest-{name}")
        phase.ingest_log = ingest.log_path
        began_at = phase.began_at
        if not _poll(lambda: self.stored_from_every_camera(began_at), 150):
            phase.problems.append("no result rows from every camera within 150 s of the ingest start")
        if not _poll(lambda: any(a.raised_at > began_at for a in self.alert_rows()), 60):
            phase.problems.append("no alert within 60 s of the first rows")
        phase.note("clips stored and alerts raised from every camera")
        time.sleep(self.timings.lead_s)
        phase.note("fault")
        inject(phase)
        recovered_at = _now()
        phase.recovered = bool(_poll(lambda: self.stored_from_every_camera(recovered_at), 180))
        if not phase.recovered:
            phase.problems.append("no rows from every camera within 180 s after the fault ended")
        phase.note("rows from every camera after the fault" if phase.recovered else "not recovered")
        time.sleep(self.timings.tail_s)
        self.check_roles(phase)

        phase.ingest_exit = ingest.terminate(timeout_s=60)
        phase.note(f"ingest stopped (exit {phase.ingest_exit})")
        phase.summaries = [(c, int(n), int(p), int(d), int(s)) for c, n, p, d, s in INGEST_SUMMARY.findall(ingest.log_text())]
        self.drain(phase)
        return phase

    def drain(self, phase: Phase) -> None:
        """Read the clips topic to its end, wait for every clip's row, then for the alerts to settle."""
        assert self.collector is not None and self.probe is not None
        collector = self.collector
        topic = self.prefix + Topic.CLIPS.value
        if not _poll(lambda: collector.snapshot()[1] >= end_offsets(self.kafka.bootstrap, topic), 90):
            phase.problems.append("the collector did not read the clips topic to its end within 90 s")
        phase.ids_read = collector.ids_read()[phase.ids_before:]
        ids = set(phase.ids_read)
        probe = self.probe
        if _poll(lambda: ids <= set(probe.result_ids()), 180):
            phase.note(f"{len(ids)} clips on the broker, a row for each")
        else:
            phase.problems.append("some clips read from the topic still had no row after 180 s")
        if _poll(lambda: self.alerts_lag() == 0, 120) is not True:
            phase.problems.append("the alert worker had not consumed every result within 120 s")

        def delivered() -> bool:
            mine = [a.alert_id for a in self.alert_rows() if a.alert_id not in phase.alerts_before]
            accepted = {h.get("webhook-id") for h, _, _ in self.receiver.accepted()}
            return all(f"{a}-webhook" in accepted for a in mine)

        if not _poll(delivered, 90):
            phase.problems.append("not every alert stored during the phase reached the webhook within 90 s")
        time.sleep(3.0)  # a duplicate post or row would show up now
        phase.alert_ids = [a.alert_id for a in self.alert_rows() if a.alert_id not in phase.alerts_before]
        phase.seconds = round(time.monotonic() - phase.began, 1)
        phase.note("drained")

    # -- the faults themselves ---------------------------------------------------------------------------
    def infer_sigkill(self, phase: Phase) -> None:
        began_at = phase.began_at
        if not _poll(lambda: self.stored_by(VERSION_B, began_at), 60):
            phase.problems.append("infer-b stored nothing in this phase before the kill")
        victim = self.roles["infer-b"]
        victim.kill()
        killed = time.monotonic()
        phase.note(f"infer-b SIGKILLed (exit {victim.returncode}), started again")
        restarted_at = _now()
        self.start_role("infer-b")
        if _poll(lambda: self.stored_by(VERSION_B, restarted_at), 180):
            phase.note("the restarted infer-b stores rows again")
        else:
            phase.problems.append("the restarted infer-b stored no row within 180 s")
        phase.outage_s = round(time.monotonic() - killed, 1)

    def postgres_stop(self, phase: Phase) -> None:
        began = time.monotonic()
        self.postgres.stop()
        phase.note("postgres stopped")
        time.sleep(max(0.0, self.timings.postgres_s - (time.monotonic() - began)))
        self.postgres.start()
        phase.outage_s = round(time.monotonic() - began, 1)
        phase.note("postgres started")

    def kafka_stop(self, phase: Phase) -> None:
        began = time.monotonic()
        self.kafka.stop()
        phase.note("kafka stopped")
        spool = self.spool_dir(f"ingest-{phase.name}")
        peak = 0
        while time.monotonic() - began < self.timings.kafka_s:
            peak = max(peak, len(list(spool.rglob("*.msg*"))))
            time.sleep(0.5)
        phase.extra["spooled_peak"] = peak
        self.kafka.start()
        phase.outage_s = round(time.monotonic() - began, 1)
        phase.note(f"kafka started ({peak} messages spooled at most)")

    def rtsp_stop(self, phase: Phase) -> None:
        assert self.rtsp is not None
        began = time.monotonic()
        self.rtsp.stop()
        phase.note("rtsp stopped")
        time.sleep(max(0.0, self.timings.rtsp_s - (time.monotonic() - began)))
        offline = {a.camera_id for a in self.alert_rows() if a.kind == "camera_offline"
                   and a.alert_id not in phase.alerts_before}
        phase.extra["offline_alerts_before_restart"] = len(offline)
        self.rtsp.start()
        phase.outage_s = round(time.monotonic() - began, 1)
        phase.note(f"rtsp started ({len(offline)} cameras had their offline alert)")

    def alerts_sigkill(self, phase: Phase) -> None:
        assert self.probe is not None
        probe = self.probe
        known = {a.alert_id for a in self.alert_rows()}

        def new_alert() -> AlertRow | None:
            return next((a for a in probe.alert_rows() or [] if a.alert_id not in known), None)

        alert = _poll(new_alert, 60, interval_s=0.02)
        victim = self.roles["alerts"]
        victim.kill()
        killed = time.monotonic()
        if alert is None:
            phase.problems.append("no new alert within 60 s: killed the alert worker anyway")
        else:
            accepted = {h.get("webhook-id") for h, _, _ in self.receiver.accepted()}
            status = (probe.outbox() or {}).get(alert.alert_id)
            phase.extra["killed_after_alert"] = {
                "alert_id": alert.alert_id,
                "kind": alert.kind,
                "webhook_accepted_before_kill": f"{alert.alert_id}-webhook" in accepted,
                "outbox_status_at_kill": status,
            }
        phase.note("alerts SIGKILLed right after an alert was stored, started again")
        restarted_at = _now()
        self.start_role("alerts")
        if _poll(lambda: any(a.raised_at > restarted_at for a in self.alert_rows()), 120):
            phase.note("the restarted alert worker raises alerts again")
        else:
            phase.problems.append("the restarted alert worker raised no alert within 120 s")
        phase.outage_s = round(time.monotonic() - killed, 1)

    # -- counting ----------------------------------------------------------------------------------------
    def expected_suspicious(self) -> dict[str, tuple[str, ...]]:
        """alert id -> clip ids of every suspicious-activity alert the rule gives on the stored results."""
        from alerts.rules import RuleEngine
        from common.clock import SystemClock
        from common.db import Database
        from common.settings import AlertRuleSettings

        engine = RuleEngine(AlertRuleSettings.model_validate(ALERT_RULE), 0.0, SystemClock())
        db = Database.from_url(self.url)
        expected: dict[str, tuple[str, ...]] = {}
        try:
            far = _now() + timedelta(days=1)
            for camera_id in self.camera_ids:
                for result in db.results_before(camera_id, far, limit=1_000_000):
                    for alert in engine.on_result(result):
                        expected[alert.alert_id] = tuple(alert.clip_ids)
        finally:
            db.close()
        return expected

    def report(self) -> dict[str, Any]:
        assert self.probe is not None
        rows = self.probe.rows_per_clip() or {}
        alerts = {a.alert_id: a for a in self.alert_rows()}
        outbox = self.probe.outbox() or {}
        posts = self.receiver.snapshot()
        accepted = Counter(h.get("webhook-id") for h, _, status in posts if status == 200)
        expected = self.expected_suspicious()
        out: dict[str, Any] = {}
        all_ids: set[str] = set()
        for phase in self.phases:
            ids = set(phase.ids_read)
            all_ids |= ids
            with_row = {i for i in ids if rows.get(i)}
            rows_written = sum(rows.get(i, 0) for i in ids)
            cut = sum(s[1] for s in phase.summaries)
            mine = [alerts[a] for a in phase.alert_ids if a in alerts]
            expected_ids = {a for a, clips in expected.items() if clips and clips[0] in ids}
            if phase.name == "rtsp_stop":
                expected_ids |= {a.alert_id for a in mine if a.kind == "camera_offline"}
                offline_cams = Counter(a.camera_id for a in mine if a.kind == "camera_offline")
                if set(offline_cams) != set(self.camera_ids) or any(n != 1 for n in offline_cams.values()):
                    phase.problems.append(f"offline alerts per camera: {dict(offline_cams)} (one per camera expected)")
            stored_ids = {a.alert_id for a in mine}
            webhook_ids = {f"{a}-webhook" for a in stored_ids}
            delivered = {w for w in webhook_ids if accepted.get(w)}
            record: dict[str, Any] = {
                "what": phase.what,
                "outage_s": phase.outage_s,
                "clips_cut": cut,
                "clips_published": sum(s[2] for s in phase.summaries),
                "clips_dropped": sum(s[3] for s in phase.summaries),
                "spool_left": sum(s[4] for s in phase.summaries),
                "clips_on_broker": len(ids),
                "republished": len(phase.ids_read) - len(ids),
                "rows_written": rows_written,
                "lost": max(0, cut - len(with_row)),
                "on_broker_without_row": len(ids - with_row),
                "duplicated": rows_written - len(with_row),
                "alerts_raised": len(mine),
                "alerts_by_kind": dict(Counter(a.kind for a in mine)),
                "alerts_expected": len(expected_ids),
                "alerts_missing": sorted(expected_ids - stored_ids),
                "alerts_unexpected": sorted(stored_ids - expected_ids),
                "alerts_delivered": len(delivered),
                "posts_accepted": sum(accepted.get(w, 0) for w in webhook_ids),
                "deliveries_duplicated": sum(max(0, accepted.get(w, 0) - 1) for w in webhook_ids),
                "deliveries_duplicated_after_dedup": sum(1 for a in stored_ids - expected_ids
                                                         if accepted.get(f"{a}-webhook")),
                "outbox_not_delivered": sum(1 for a in stored_ids if outbox.get(a) != "delivered"),
                **phase.extra,
                "recovered": phase.recovered,
                "ingest_exit": phase.ingest_exit,
                "seconds": phase.seconds,
                "timeline": [f"{t:.1f}s {w}" for t, w in phase.events],
            }
            if phase.ingest_exit != 0:
                phase.problems.append(f"ingest exited with {phase.ingest_exit} on SIGTERM")
            if {s[0] for s in phase.summaries} != set(self.camera_ids):
                phase.problems.append(f"ingest summary lines for {sorted(s[0] for s in phase.summaries)} only")
            if cut != len(ids):
                phase.problems.append(f"{cut} clips cut but {len(ids)} distinct clip ids on the broker")
            for key in ("lost", "duplicated", "clips_dropped", "spool_left", "deliveries_duplicated_after_dedup",
                        "outbox_not_delivered"):
                if record[key]:
                    phase.problems.append(f"{key} = {record[key]}")
            if record["alerts_delivered"] != record["alerts_raised"]:
                phase.problems.append(f"{record['alerts_raised']} alerts stored, {record['alerts_delivered']} delivered")
            if record["alerts_missing"] or record["alerts_unexpected"]:
                phase.problems.append(f"alerts missing {record['alerts_missing']}, unexpected {record['alerts_unexpected']}")
            record["problems"] = phase.problems
            if phase.problems and phase.ingest_log is not None:
                record["ingest_log_warnings"] = _warnings(phase.ingest_log)
            out[phase.name] = record

        keys = ["clips_cut", "clips_published", "clips_dropped", "clips_on_broker", "republished", "rows_written",
                "lost", "duplicated", "alerts_raised", "alerts_expected", "alerts_delivered", "posts_accepted",
                "deliveries_duplicated", "deliveries_duplicated_after_dedup", "outbox_not_delivered"]
        totals = {k: sum(out[p.name][k] for p in self.phases) for k in keys}
        known_webhooks = {f"{a}-webhook" for a in alerts}
        totals["rows_of_no_phase"] = len(set(rows) - all_ids)
        totals["posts_for_unknown_alerts"] = sum(n for w, n in accepted.items() if w not in known_webhooks)
        totals["posts_refused"] = sum(1 for _, _, status in posts if status != 200)
        totals["alerts_of_no_phase"] = len(set(alerts) - {a for p in self.phases for a in p.alert_ids})
        totals["problems"] = sum(len(out[p.name]["problems"]) for p in self.phases)
        return {"per_fault": out, "totals": totals}

    def close(self) -> None:
        if self.procs is not None:
            self.procs.close()
        if self.collector is not None:
            self.collector.close()
        self.receiver.close()
        if self.probe is not None:
            self.probe.close()
        if self.rtsp is not None:
            self.rtsp.close()


def run_faults(directory: Path, logs: Path, quick: bool, kafka: KafkaServer, postgres: PostgresServer) -> dict[str, Any]:
    load_before = _load()
    bench = FaultBench(directory, logs, quick, kafka, postgres)
    t = bench.timings
    try:
        bench.setup()
        bench.run_phase("infer_sigkill", "SIGKILL inference worker b, started again at once", bench.infer_sigkill)
        bench.run_phase("postgres_stop", f"PostgreSQL stopped for {t.postgres_s:g} s", bench.postgres_stop)
        bench.run_phase("kafka_stop", f"Kafka stopped for {t.kafka_s:g} s (ingest delivery timeout "
                        f"{DELIVERY_TIMEOUT_S:g} s)", bench.kafka_stop)
        bench.run_phase("rtsp_stop", f"RTSP server stopped for {t.rtsp_s:g} s (offline alert after "
                        f"{OFFLINE_ALERT_AFTER_S:g} s)", bench.rtsp_stop)
        bench.run_phase("alerts_sigkill", "SIGKILL the alert worker right after it stored an alert, started again",
                        bench.alerts_sigkill)
        counted = bench.report()
        procs = bench.procs
        logs_kept = {name: str(p.log_path) for name, p in procs.processes.items()} if procs else {}
    finally:
        bench.close()
    load_after = _load()
    return {
        "note": (
            f"{CAMERAS} looping RTSP cameras -> ingest (one process per fault) -> Kafka ({PARTITIONS} partitions) -> "
            "2 infer processes (random-weights ConvLSTM) -> PostgreSQL (fsync off) -> alerts -> loopback webhook; "
            f"alert rule threshold 0.0, n_of_m [1, 1], cooldown {COOLDOWN_S:g} s, offline alert after "
            f"{OFFLINE_ALERT_AFTER_S:g} s; faults one after another while clips flow; on a {os.cpu_count()}-core "
            f"machine, load average {load_before} before and {load_after} after (1, 5, 15 min)"
        ),
        "setup_s": round(bench.setup_s, 1),
        **counted,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "logs": logs_kept,
    }


# -- ingest memory -----------------------------------------------------------------------------------------


def _rss_mb() -> float:
    return _status_mb("VmRSS")


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0  # kB
    return float("nan")


def _memory_child(params: dict[str, Any]) -> int:
    """One camera's publishing path at a steady rate (see the module docstring); prints progress lines
    ``PROGRESS submitted acknowledged rss_mb`` and finally ``RESULT {json}``."""
    import logging

    import cv2
    import numpy as np

    # The log (stderr, kept under build/bench-reliability/) is the evidence when clips do not get through:
    # the bus's own DEBUG lines say what happened to a stale producer; kafka-python's reconnect noise is left out.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    logging.getLogger("common.kafka_bus").setLevel(logging.DEBUG)

    from common.clock import SystemClock
    from common.kafka_bus import KafkaBus
    from common.model_input import CLIP_FRAMES, model_frame
    from common.schemas import ClipHeader, ClipMessage
    from common.settings import IngestSettings
    from ingest.publishing import PublishQueue, ack_timeout_for
    from ingest.spool import Spool
    from ingest.worker import RETRY_BACKOFF

    capture = cv2.VideoCapture(params["video"])
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(model_frame(image))
    capture.release()
    stack = np.stack(frames)
    windows = [np.ascontiguousarray(stack[i : i + CLIP_FRAMES]) for i in range(0, len(frames) - CLIP_FRAMES, 3)]
    del frames, stack

    camera = params["camera"]
    settings = BusSettings(kind=BusKind.KAFKA, bootstrap_servers=[params["bootstrap"]], topic_prefix=params["prefix"],
                           partitions=1, delivery_timeout_s=params["delivery_timeout_s"])
    bus = KafkaBus.from_settings(settings)
    bus.ensure_topics([Topic.CLIPS])
    ingest = IngestSettings()
    spool = Spool(Path(params["spool_dir"]) / camera, camera, ingest.spool_max_mb * 1_000_000)
    queue = PublishQueue(bus.publisher(), camera, SystemClock(), spool=spool, max_in_flight=ingest.max_in_flight,
                         max_waiting=ingest.memory_queue, backoff=RETRY_BACKOFF, ack_timeout_s=ack_timeout_for(settings))
    total, rate = int(params["clips"]), float(params["rate"])

    def submit(k: int) -> None:
        now = _now()
        header = ClipHeader(
            clip_id=f"{params['id_prefix']}-{k:06d}", store_id="bench-store", camera_id=camera, captured_at=now,
            start_at=now - timedelta(seconds=2), source_start_s=float(k), source_end_s=k + 2.0,
            shape=(CLIP_FRAMES, 64, 64, 3), published_at=now,
        )
        queue.submit(Topic.CLIPS, ClipMessage(header, windows[k % len(windows)]).to_bytes(), is_clip=True)

    def settle(timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while queue.unacknowledged and time.monotonic() < deadline:
            queue.pump()
            time.sleep(0.005)
        return queue.unacknowledged == 0

    submit(0)
    settle(60)
    rss_start = _rss_mb()
    samples = [(1, round(rss_start, 1))]
    print(f"PROGRESS 1 {queue.counters().clips_published} {rss_start:.1f}", flush=True)
    began = time.monotonic()
    for k in range(1, total):
        due = began + k / rate
        while (wait := due - time.monotonic()) > 0:
            queue.pump()
            time.sleep(min(0.002, wait))
        submit(k)
        if (k + 1) % 100 == 0:
            rss = _rss_mb()
            samples.append((k + 1, round(rss, 1)))
            print(f"PROGRESS {k + 1} {queue.counters().clips_published} {rss:.1f}", flush=True)
    submitting_s = time.monotonic() - began
    settled = settle(float(params["settle_s"]))
    rss_end = _rss_mb()
    counters = queue.counters()
    in_flight = list(queue._in_flight)
    stuck = {  # what holds the queue back when not everything was acknowledged
        "in_flight": len(in_flight),
        "in_flight_unresolved": sum(1 for item in in_flight if not item.done),
        "waiting_in_memory": counters.waiting,
        "spooled": counters.spooled,
        "producer_threads": sum(1 for t in threading.enumerate() if "producer-network-thread" in t.name),
    }
    queue.close(timeout_s=10)
    bus.close()
    result = {
        "at_end": stuck,
        "clips_submitted": total,
        "clips_published": counters.clips_published,
        "clips_dropped": counters.clips_dropped,
        "publish_retries": counters.publish_retries,
        "all_acknowledged": settled,
        "rss_start_mb": round(rss_start, 1),
        "rss_end_mb": round(rss_end, 1),
        "rss_peak_mb": round(_status_mb("VmHWM"), 1),
        "rss_samples_mb": [*samples[:: max(1, len(samples) // 12)], (total, round(rss_end, 1))],
        "submitting_s": round(submitting_s, 1),
        "clip_bytes": len(ClipMessage(ClipHeader(
            clip_id="size", store_id="s", camera_id=camera, captured_at=_now(), start_at=_now(),
            source_start_s=0.0, source_end_s=2.0, shape=(CLIP_FRAMES, 64, 64, 3)), windows[0]).to_bytes()),
    }
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def _read_back(bootstrap: str, topic: str) -> tuple[set[str], int]:
    """Distinct clip ids on ``topic`` and its record count (headers only; CRCs not checked, for speed)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False, check_crcs=False,
                             fetch_max_bytes=52_428_800, max_partition_fetch_bytes=4_194_304,
                             request_timeout_ms=30_000)
    ids: set[str] = set()
    records = 0
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        deadline = time.monotonic() + 600
        while any(consumer.position(tp) < end[tp] for tp in partitions) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000, max_records=2000).values():
                for record in batch:
                    value = record.value
                    (head_len,) = struct.unpack(">I", value[4:8])
                    ids.add(json.loads(value[8 : 8 + head_len])["clip_id"])
                    records += 1
    finally:
        consumer.close()
    return ids, records


def run_ingest_memory(directory: Path, logs: Path, quick: bool, kafka: KafkaServer, video: Path) -> dict[str, Any]:
    load_before = _load()
    clips = 2_000 if quick else 20_000
    rate = RATE_PER_S
    outage_s = 16.0 if quick else 20.0
    outage_at = int(clips * 0.3)
    prefix = f"benchmem{uuid.uuid4().hex[:8]}."
    id_prefix = f"mem{uuid.uuid4().hex[:6]}"
    params = {
        "video": str(video), "camera": "bench-mem-cam", "bootstrap": kafka.bootstrap, "prefix": prefix,
        "id_prefix": id_prefix, "clips": clips, "rate": rate, "delivery_timeout_s": DELIVERY_TIMEOUT_S,
        "spool_dir": str(directory / "spool"), "settle_s": SETTLE_S,
    }
    directory.mkdir(parents=True, exist_ok=True)
    log_path = logs / "memory-child.log"
    began = time.monotonic()
    with open(log_path, "wb") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.bench_reliability", "--memory-child", json.dumps(params)],
            cwd=ROOT, env=child_env({}), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True,
        )
    lines: list[str] = []
    reached = threading.Event()

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            lines.append(line.strip())
            if line.startswith("PROGRESS") and int(line.split()[1]) >= outage_at:
                reached.set()

    reader = threading.Thread(target=read, name="memory-child-reader", daemon=True)
    reader.start()
    outage: dict[str, Any] = {}
    try:
        if reached.wait(timeout=clips / rate + 120):
            stopped = time.monotonic()
            kafka.stop()
            time.sleep(max(0.0, outage_s - (time.monotonic() - stopped)))
            kafka.start()
            outage = {"broker_down_s": round(time.monotonic() - stopped, 1), "at_clip": outage_at}
        child.wait(timeout=clips / rate + 600)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        reader.join(10)
    result_line = next((line for line in reversed(lines) if line.startswith("RESULT ")), None)
    if result_line is None:
        raise RuntimeError(f"the memory child exited with {child.returncode} without a result; "
                           f"its log {log_path} ends:\n{log_path.read_text(errors='replace')[-3000:]}")
    result = json.loads(result_line.removeprefix("RESULT "))
    on_broker, records = _read_back(kafka.bootstrap, prefix + Topic.CLIPS.value)
    submitted = {f"{id_prefix}-{k:06d}" for k in range(clips)}
    load_after = _load()
    growth = round(result["rss_end_mb"] - result["rss_start_mb"], 1)
    lost = len(submitted - on_broker)
    complete = bool(result["all_acknowledged"]) and lost == 0
    outcome = "every clip acknowledged and on the broker" if complete else (
        f"INCOMPLETE: {len(on_broker & submitted)} of {clips} clips reached the broker, {SETTLE_S:g} s after the "
        f"last one the queue still held {result['at_end']}"
    )
    return {
        "note": (
            f"one camera's PublishQueue over KafkaBus in a child process, {clips} real ClipMessages "
            f"({result['clip_bytes'] // 1000} kB each) at {rate:g}/s, broker stopped {outage_s:g} s from clip "
            f"{outage_at} (delivery timeout {DELIVERY_TIMEOUT_S:g} s); RSS from /proc/self/status VmRSS: start "
            f"once the first clip was acknowledged, end once all were (or {SETTLE_S:g} s after the last); "
            f"{outcome}; on a {os.cpu_count()}-core machine, load average {load_before} before and {load_after} after"
        ),
        "rss_start_mb": result["rss_start_mb"],
        "rss_end_mb": result["rss_end_mb"],
        "growth_mb": growth,
        "rss_peak_mb": result["rss_peak_mb"],
        "target_growth_mb": TARGET_GROWTH_MB,
        "complete": complete,  # every clip acknowledged and on the broker: the growth is that of a full run
        "target_met": complete and growth < TARGET_GROWTH_MB,
        "clips_published": result["clips_published"],
        "clips_on_broker": len(on_broker & submitted),
        "records_on_broker": records,
        "lost": lost,
        "clips_dropped": result["clips_dropped"],
        "publish_retries": result["publish_retries"],
        "all_acknowledged": result["all_acknowledged"],
        "at_end": result["at_end"],
        "outage": outage,
        "rss_samples_mb": result["rss_samples_mb"],
        "submitting_s": result["submitting_s"],
        "seconds": round(time.monotonic() - began, 1),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "log": str(log_path),
    }


# -- both --------------------------------------------------------------------------------------------------


def run(quick: bool = False) -> dict[str, Any]:
    """The fault run and the ingest memory run, against one Kafka and one PostgreSQL."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    logs = LOG_ROOT / stamp
    logs.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"cpu_count": os.cpu_count(), "load_average_before": _load(), "logs_dir": str(logs)}
    with tempfile.TemporaryDirectory(prefix="aislewatch-bench-reliability-") as tmp_name:
        tmp = Path(tmp_name)
        kafka, postgres = KafkaServer(), PostgresServer()
        try:
            kafka.start()
            postgres.start()
            report["faults"] = run_faults(tmp / "faults", logs, quick, kafka, postgres)
            video = tmp / "faults" / "scenes" / "aisle-0.mp4"
            report["ingest_memory"] = run_ingest_memory(tmp / "memory", logs, quick, kafka, video)
        finally:
            kafka.close()
            postgres.close()
    report["load_average_after"] = _load()
    return report


if __name__ == "__main__":
    if sys.argv[1:2] == ["--memory-child"]:
        sys.exit(_memory_child(json.loads(sys.argv[2])))
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=2, default=str))
