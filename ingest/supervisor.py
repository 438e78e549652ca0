"""Runs one CameraWorker thread per enabled camera; reloads configuration; restarts crashed workers.

``reload`` compares cameras by id: added ones start, removed ones stop (and are joined), changed ones (any
field, or a different store) restart, unchanged ones are not touched.  A watchdog thread restarts a worker
whose thread died of an unexpected exception (a worker that finished normally, at a file's end or after an
ERROR health event, stays stopped), counting restarts per camera.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from common.bus import Bus
from common.settings import CameraSettings, ConfigError, Settings, StoreSettings, load_settings
from ingest.capture import is_live
from ingest.worker import CameraWorker

log = logging.getLogger("aislewatch.ingest.supervisor")


class ManagedWorker(Protocol):
    """What the supervisor needs from a worker (CameraWorker or a test double)."""

    error: BaseException | None

    def start_thread(self) -> threading.Thread: ...

    def stop(self) -> None: ...

    def join(self, timeout: float | None = None) -> None: ...

    @property
    def alive(self) -> bool: ...


WorkerFactory = Callable[[Settings, StoreSettings, CameraSettings, Bus, threading.Event], Any]


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """Camera ids affected by a reload."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    restarted: tuple[str, ...] = ()


@dataclass
class _Slot:
    store: StoreSettings
    camera: CameraSettings
    stop: threading.Event
    worker: Any
    restarts: int = 0
    fingerprint: str = field(default="")


def _fingerprint(store: StoreSettings, camera: CameraSettings) -> str:
    return f"{store.id}|{camera.model_dump_json()}"


class IngestSupervisor:
    """Owns the camera workers of one ingest process."""

    def __init__(
        self,
        settings: Settings,
        bus: Bus,
        stop: threading.Event,
        worker_factory: WorkerFactory = CameraWorker.from_settings,
        watchdog_interval_s: float = 2.0,
        join_timeout_s: float = 10.0,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.stop_event = stop
        self.worker_factory = worker_factory
        self.watchdog_interval_s = watchdog_interval_s
        self.join_timeout_s = join_timeout_s
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.RLock()
        self._watchdog: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        self.restarts_total = 0

    # -- starting and stopping ---------------------------------------------------------------------
    def start(self) -> None:
        """Start a worker per enabled camera and the watchdog."""
        with self._lock:
            for store, camera in self.settings.cameras():
                if camera.id not in self._slots:
                    self._start(store, camera)
        if self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, name="ingest-watchdog", daemon=True)
            self._watchdog.start()

    def _start(self, store: StoreSettings, camera: CameraSettings, restarts: int = 0) -> _Slot:
        stop = threading.Event()
        worker = self.worker_factory(self.settings, store, camera, self.bus, stop)
        slot = _Slot(store, camera, stop, worker, restarts, _fingerprint(store, camera))
        self._slots[camera.id] = slot
        worker.start_thread()
        log.info("camera %s started", camera.id)
        return slot

    def _stop_slot(self, slot: _Slot) -> None:
        slot.stop.set()
        slot.worker.stop()
        slot.worker.join(self.join_timeout_s)
        if slot.worker.alive:
            log.warning("camera %s did not stop within %.0f s", slot.camera.id, self.join_timeout_s)

    def stop(self) -> None:
        """Stop every worker (in parallel) and join them."""
        self.stop_event.set()
        with self._lock:
            slots = list(self._slots.values())
        for slot in slots:
            slot.stop.set()
            slot.worker.stop()
        for slot in slots:
            slot.worker.join(self.join_timeout_s)
        for thread in (self._watchdog, self._watcher):
            if thread is not None and thread is not threading.current_thread():
                thread.join(self.join_timeout_s)

    def wait(self, timeout: float | None = None, poll_s: float = 0.2) -> bool:
        """Block until every file camera has finished (or stop is set); True if they all finished."""
        waited = 0.0
        while True:
            with self._lock:
                running = [s for s in self._slots.values() if not is_live(s.camera.source) and s.worker.alive]
            if not running:
                return True
            if self.stop_event.wait(poll_s):
                return False
            waited += poll_s
            if timeout is not None and waited >= timeout:
                return False

    # -- reloading ---------------------------------------------------------------------------------
    def reload(self, new_settings: Settings) -> ReloadResult:
        """Apply new settings: start added cameras, stop removed ones, restart changed ones."""
        with self._lock:
            wanted = {camera.id: (store, camera) for store, camera in new_settings.cameras()}
            removed = [cid for cid in self._slots if cid not in wanted]
            added = [cid for cid in wanted if cid not in self._slots]
            changed = [
                cid
                for cid, (store, camera) in wanted.items()
                if cid in self._slots and self._slots[cid].fingerprint != _fingerprint(store, camera)
            ]
            self.settings = new_settings
            for cid in removed + changed:
                self._stop_slot(self._slots.pop(cid))
            for cid in changed + added:
                self._start(*wanted[cid])
        result = ReloadResult(tuple(added), tuple(removed), tuple(changed))
        log.info("configuration reloaded: %s", result)
        return result

    def watch_config(
        self, path: str | Path, interval_s: float = 2.0, loader: Callable[[Path], Settings] | None = None
    ) -> threading.Thread:
        """Poll ``path``'s modification time and reload when it changes; a bad file is logged and ignored."""
        file = Path(path)
        load = loader or (lambda p: load_settings(p, camera_credentials=True))  # this process opens cameras

        def mtime() -> int | None:
            try:
                return file.stat().st_mtime_ns
            except OSError:
                return None

        def loop() -> None:
            last = mtime()
            while not self.stop_event.wait(interval_s):
                current = mtime()
                if current is None or current == last:
                    continue
                last = current
                try:
                    settings = load(file)
                except ConfigError as exc:
                    log.error("configuration change ignored: %s", exc)
                    continue
                self.reload(settings)

        self._watcher = threading.Thread(target=loop, name="ingest-config-watch", daemon=True)
        self._watcher.start()
        return self._watcher

    # -- watchdog ----------------------------------------------------------------------------------
    def _watch(self) -> None:
        while not self.stop_event.wait(self.watchdog_interval_s):
            self.check_workers()

    def check_workers(self) -> list[str]:
        """Restart workers whose thread died of an exception; returns the restarted camera ids."""
        restarted: list[str] = []
        with self._lock:
            for cid, slot in list(self._slots.items()):
                worker = slot.worker
                if worker.alive or slot.stop.is_set() or self.stop_event.is_set():
                    continue
                if getattr(worker, "error", None) is None:
                    continue  # finished normally (file ended, fatal source reported)
                log.error("camera %s worker died (%s); restarting", cid, worker.error)
                self.restarts_total += 1
                self._start(slot.store, slot.camera, slot.restarts + 1)
                restarted.append(cid)
        return restarted

    # -- introspection -----------------------------------------------------------------------------
    @property
    def workers(self) -> dict[str, Any]:
        with self._lock:
            return {cid: slot.worker for cid, slot in self._slots.items()}

    def restarts(self, camera_id: str) -> int:
        with self._lock:
            slot = self._slots.get(camera_id)
            return slot.restarts if slot else 0
