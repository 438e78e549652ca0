"""Starting the workers: each alone (scaled mode, one process per role) or all in one process (embedded).

The embedded pipeline is not a separate code path: it is the same ingest supervisor, inference
worker and alert worker, connected by whichever bus the settings name (in-process by default).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from common.bus import Bus
from common.db import Database
from common.inprocess_bus import InProcessBus
from common.metrics import CONSUMER_LAG, HealthServer
from common.schemas import Topic
from common.settings import BusKind, ConfigError, Settings
from common.worker import Worker

log = logging.getLogger("aislewatch.runtime")



def consumer_groups(settings: Settings) -> list[tuple[str, tuple[Topic, ...]]]:
    """The consumer groups of the pipeline with the topics each reads, upstream first: inference (clips),
    then alerts (the results inference publishes before it commits its clips, and camera health)."""
    from alerts.worker import GROUP_ID as ALERTS_GROUP
    from alerts.worker import AlertWorker
    from inference.worker import InferenceWorker

    return [(settings.inference.group_id, InferenceWorker.topics), (ALERTS_GROUP, AlertWorker.topics)]


def install_stop_signals(stop: threading.Event, on_reload: Callable[[], None] | None = None) -> None:
    """SIGTERM/SIGINT set the stop event; SIGHUP asks for a config reload.  Main thread only."""

    def _stop(signum: int, _frame: Any) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if on_reload is not None:
        signal.signal(signal.SIGHUP, lambda _s, _f: on_reload())


def open_database(settings: Settings, upgrade: bool = True, source: str = "") -> Database:
    """The settings' database, its schema upgraded and its stores synced, for a command or worker starting.

    A database that is away (a server down, a SQLite file locked) is waited for, backing off, as
    ``Database.retrying`` does.  A mistake waiting cannot cure (a file that is not a database, a dialect
    whose driver is not installed, wrong credentials) raises ConfigError naming ``database.url`` (redacted)
    and the reason; ``source`` is where the settings came from (``cli.main`` fills it in when empty)."""
    from common.app.db_errors import DATABASE_MISTAKES, database_config_error

    try:
        db = Database.from_settings(settings)
    except DATABASE_MISTAKES as exc:
        raise database_config_error(settings, exc, source) from exc
    try:
        if upgrade:
            db.retrying(db.upgrade, what="schema upgrade")
        db.retrying(lambda: db.sync_stores(settings), what="store sync")
    except DATABASE_MISTAKES as exc:
        db.close()
        raise database_config_error(settings, exc, source) from exc
    return db


def _health_check(worker: Worker, stall_after_s: float) -> Callable[[], bool]:
    """Healthy while the worker runs and makes progress on the work it has (see ``common.worker``)."""
    return lambda: worker.healthy(stall_after_s)


def alert_threshold(settings: Settings, classifier: Any = None) -> float:
    """The threshold this deployment applies (see ``Settings.alert_threshold``), with the model's calibrated
    one taken from ``classifier`` when it is loaded, else from the model's metadata sidecar."""
    from inference.metadata import calibrated_threshold

    calibrated = classifier.threshold if classifier is not None else calibrated_threshold(settings.model.path)
    return settings.alert_threshold(calibrated)


def check_clips_fit_model(settings: Settings, source: str) -> None:
    """Refuse settings whose cameras cut clips the configured model cannot take (``clip.frames``, ``clip.size``
    against the model's input shape, from its metadata sidecar: TensorFlow is not loaded).  Raises ConfigError
    naming ``source``, each camera, both shapes and the setting to change."""
    from inference.metadata import clip_settings_problems

    problems = clip_settings_problems(settings)
    if problems:
        raise ConfigError(source, problems)


def bus_from_settings(settings: Settings) -> Bus:
    """The bus the settings name: in-process (embedded mode) or Kafka (scaled mode)."""
    if settings.bus.kind == BusKind.KAFKA:
        from common.kafka_bus import KafkaBus

        return KafkaBus.from_settings(settings.bus)
    return InProcessBus()


@dataclass
class Pipeline:
    """Whichever roles this process runs, sharing one bus and one database."""

    settings: Settings
    bus: Bus
    db: Database | None
    stop: threading.Event = field(default_factory=threading.Event)
    workers: list[Worker] = field(default_factory=list)
    ingest: Any = None  # IngestSupervisor when this process ingests
    desk: Any = None  # DeskServer when this process serves the security desk
    health: HealthServer | None = None
    roles: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls,
        settings: Settings,
        roles: set[str],
        *,
        bus: Bus | None = None,
        stop: threading.Event | None = None,
        classifier: Any = None,
        inference_workers: int | None = None,
        shadow: Any = None,
    ) -> Pipeline:
        """``classifier`` and ``shadow`` (the candidate of ``model.shadow_path``) are loaded from the settings
        unless given; ``inference_workers`` (threads feeding the one model) defaults to its device's
        ``InferenceSettings.batching(...).consumers``."""
        stop = stop or threading.Event()
        bus = bus or bus_from_settings(settings)
        needs_db = bool(roles & {"infer", "alerts", "desk"})
        db = open_database(settings) if needs_db else None
        pipeline = cls(settings, bus, db, stop, roles=frozenset(roles))
        if "alerts" in roles:
            from alerts.worker import AlertWorker

            assert db is not None
            threshold = alert_threshold(settings, classifier)
            pipeline.workers.append(AlertWorker.from_settings(settings, bus, db, threshold, stop))
            if settings.evidence.janitor != "off":
                from alerts.janitor import EvidenceJanitor

                # The role that shares the evidence volume with ingest and the desk keeps it within its
                # retention (evidence.janitor = off: nothing is ever deleted).
                pipeline.workers.append(EvidenceJanitor.from_settings(settings, db, stop))
        if "infer" in roles:
            from inference.worker import InferenceWorker

            assert db is not None
            if classifier is None:
                from inference.model import classifier_from_settings

                classifier = classifier_from_settings(settings.model, settings.inference)
            threshold = alert_threshold(settings, classifier)
            if shadow is None and settings.model.shadow_path is not None:
                from inference.model import shadow_classifier_from_settings

                shadow = shadow_classifier_from_settings(settings.model, settings.inference)
            if inference_workers is None:
                inference_workers = settings.inference.batching(getattr(classifier, "device", "cpu")).consumers
            # the in-process bus has one partition that the threads split: they share their chained clips' frames
            chains = None
            if settings.bus.kind == BusKind.INPROCESS and inference_workers > 1:
                from inference.clip_chains import ClipChains

                chains = ClipChains.for_database(db, stop)
            for index in range(inference_workers):
                name = "infer" if inference_workers == 1 else f"infer-{index}"
                pipeline.workers.append(InferenceWorker.from_settings(
                    settings, classifier, bus, db, threshold, stop, name=name, shadow=shadow, chains=chains))
        if "desk" in roles:
            from alerts.desk.app import create_app
            from alerts.desk.server import DeskServer

            assert db is not None
            desk = settings.desk
            pipeline.desk = DeskServer(create_app(settings, db), desk.host, desk.port)
        if "ingest" in roles:
            from ingest.supervisor import IngestSupervisor

            pipeline.ingest = IngestSupervisor(settings, bus, stop)
        return pipeline

    def start(self) -> None:
        svc = self.settings.service
        if svc.metrics_port:
            self.health = HealthServer(svc.metrics_host, svc.metrics_port).start()
            self._register_collectors()
            for worker in self.workers:
                self.health.add_check(worker.name, _health_check(worker, svc.stall_after_s))
            log.info("metrics and health on http://%s:%d/metrics", svc.metrics_host, self.health.port)
        if self.desk is not None:
            self.desk.start()
            if self.health is not None:
                self.health.add_check("desk", lambda: bool(self.desk.alive))
        for worker in self.workers:
            worker.start_thread()
        if self.ingest is not None:
            self.ingest.start()

    def _register_collectors(self) -> None:
        from common.metrics import AlertCollector, IngestCollector, register_collector

        ingest = self.ingest
        if ingest is not None:
            register_collector(IngestCollector(lambda: [w.counters() for w in ingest.workers.values()]))
            assert self.health is not None
            # Healthy while the supervisor runs; an offline camera shows in metrics and alerts instead.
            self.health.add_check("ingest", lambda: not ingest.stop_event.is_set())
        for worker in self.workers:
            counters = getattr(worker, "counters", None)
            if worker.name == "alerts" and counters is not None:
                register_collector(AlertCollector(counters))

    def reload(self, settings: Settings) -> None:
        self.settings = settings
        if self.ingest is not None:
            self.ingest.reload(settings)

    def failed_worker(self) -> Worker | None:
        return next((w for w in self.workers if w.error is not None), None)

    def wait(self, poll_s: float = 1.0) -> bool:
        """Block until the stop event is set, or until this process has :meth:`finished` its work, exporting
        consumer lag as it goes.  True when it returned because the work was done."""
        while not self.stop.wait(poll_s):
            self._export_lag()
            failed = self.failed_worker()
            if failed is not None:
                log.error("%s failed: %s; stopping", failed.name, failed.error)
                self.stop.set()
            elif self.desk is not None and not self.desk.alive:
                log.error("the security desk stopped: %s; stopping", self.desk.error)
                self.stop.set()
            elif self.finished():
                self.finish_videos()
                log.info("every camera has ended and everything it sent is processed; stopping")
                return True
        return False

    def finished(self) -> bool:
        """Whether this process has nothing left to do: it runs every role (ingest, infer, alerts), every camera
        it reads is a file that ends (none live, none looping), all of them have ended, and inference and
        alerts have consumed everything (lag 0 in both groups).  Live cameras keep a pipeline running."""
        from ingest.capture import is_live

        ingest = self.ingest
        if ingest is None or not {"infer", "alerts"} <= self.roles:
            return False
        cameras = [camera for _, camera in ingest.settings.cameras()]
        if not cameras or any(is_live(camera.source) or camera.loop for camera in cameras):
            return False
        workers = ingest.workers
        if set(workers) != {camera.id for camera in cameras}:
            return False
        # A worker that died of an error is not finished: the supervisor's watchdog restarts it.
        if any(w.alive or getattr(w, "error", None) is not None for w in workers.values()):
            return False
        return self._drained()

    def _lag(self, group: str, topics: tuple[Topic, ...]) -> int | None:
        """Records of ``topics`` not yet committed by ``group``; None when the bus cannot say."""
        bus = self.bus
        lag = getattr(bus, "lag", None)
        if lag is None:
            return None
        try:
            return int(lag(group, topics))
        except Exception as exc:  # the broker is unreachable: the lag is unknown, not zero
            log.debug("lag of %s unknown: %s", group, exc)
            return None

    def _drained(self, settle_s: float = 0.3) -> bool:
        """Lag 0 in every consumer group, upstream first, twice ``settle_s`` apart (the alert worker reads
        what the inference worker publishes)."""
        groups = consumer_groups(self.settings)
        for attempt in range(2):
            if not all(self._lag(group, topics) == 0 for group, topics in groups):
                return False
            if attempt == 0:
                time.sleep(settle_s)
        return True

    def _export_lag(self) -> None:
        """Per consumer group this process runs and per topic it reads: a lag on results must not hide
        behind a clips lag of 0."""
        mine = {getattr(worker, "group_id", None) for worker in self.workers}
        for group, topics in consumer_groups(self.settings):
            for topic in topics if group in mine else ():
                lag = self._lag(group, (topic,))
                if lag is not None:
                    CONSUMER_LAG.labels(group, topic.value).set(lag)

    def drain(self, timeout_s: float = 300.0, progress: Callable[[], None] | None = None) -> bool:
        """After every file camera has ended, wait until inference and alerts have consumed everything."""
        if self.ingest is not None:
            while not self.ingest.wait(timeout=0.5):
                if progress:
                    progress()
                if self.stop.is_set() or self.failed_worker():
                    return False
        if getattr(self.bus, "lag", None) is None:
            self.finish_videos()
            return True
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if progress:
                progress()
            if self.failed_worker():
                return False
            if self._drained():
                self.finish_videos()
                return True
            time.sleep(0.2)
        return False

    def finish_videos(self) -> int:
        """Every camera has ended (so its video segments are closed) and everything is ruled on: make the alert
        videos still pending now rather than after their wait; how many alerts were settled."""
        settled = 0
        for worker in self.workers:
            finish = getattr(worker, "finish_videos", None)
            if finish is not None:
                settled += int(finish())
        return settled

    def close(self, timeout_s: float = 30.0) -> None:
        """Orderly shutdown: stop → drain in-flight batches → commit → close → join."""
        self.stop.set()
        if self.ingest is not None:
            self.ingest.stop()
        for worker in self.workers:
            worker.join(timeout_s)
        if self.desk is not None:
            self.desk.stop()
        if self.health is not None:
            self.health.close()
        self.bus.close()
        if self.db is not None:
            self.db.close()
