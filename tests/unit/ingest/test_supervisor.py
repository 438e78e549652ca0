"""IngestSupervisor: start, reload diff, watchdog restarts, wait, config watching (with fake workers)."""

from __future__ import annotations

import threading
import time

import yaml

from common.inprocess_bus import InProcessBus
from common.settings import Settings, load_settings
from ingest.supervisor import IngestSupervisor


class FakeWorker:
    def __init__(self, camera, stop: threading.Event, crash: bool = False, finish: bool = False) -> None:
        self.camera = camera
        self.stop_event = stop
        self.crash = crash
        self.finish = finish
        self.error: BaseException | None = None
        self.stopped = False
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        if self.crash:
            self.error = RuntimeError("boom")
            return
        if self.finish:
            return
        self.stop_event.wait()

    def start_thread(self) -> threading.Thread:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self._thread

    def stop(self) -> None:
        self.stopped = True
        self.stop_event.set()

    def join(self, timeout=None) -> None:
        if self._thread:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


class Factory:
    def __init__(self, crash_once: set[str] | None = None, finish: set[str] | None = None) -> None:
        self.made: list[tuple[str, FakeWorker]] = []
        self.crash_once = set(crash_once or ())
        self.finish = set(finish or ())

    def __call__(self, settings, store, camera, bus, stop) -> FakeWorker:
        crash = camera.id in self.crash_once
        self.crash_once.discard(camera.id)
        worker = FakeWorker(camera, stop, crash=crash, finish=camera.id in self.finish)
        self.made.append((camera.id, worker))
        return worker


def settings(*cameras: dict) -> Settings:
    return load_settings(None, overrides={"stores": [{"id": "s1", "cameras": list(cameras)}]})


def cam(cid: str, **kw) -> dict:
    return {"id": cid, "source": f"/videos/{cid}.mp4", **kw}


def make(s: Settings, factory: Factory) -> IngestSupervisor:
    sup = IngestSupervisor(
        s, InProcessBus(), threading.Event(), worker_factory=factory, watchdog_interval_s=3600
    )
    sup.start()
    return sup


def test_start_runs_one_worker_per_enabled_camera() -> None:
    factory = Factory()
    sup = make(settings(cam("a"), cam("b"), cam("off", enabled=False)), factory)
    assert sorted(cid for cid, _ in factory.made) == ["a", "b"]
    assert all(w.alive for w in sup.workers.values())
    sup.stop()
    assert all(not w.alive and w.stopped for _, w in factory.made)


def test_reload_adds_removes_and_restarts_only_what_changed() -> None:
    factory = Factory()
    sup = make(settings(cam("a"), cam("b"), cam("c")), factory)
    before = dict(sup.workers)
    result = sup.reload(settings(cam("a"), cam("b", fps=10), cam("d")))
    assert (result.added, result.removed, result.restarted) == (("d",), ("c",), ("b",))
    after = sup.workers
    assert after["a"] is before["a"] and not before["a"].stopped  # untouched
    assert after["b"] is not before["b"] and before["b"].stopped and not before["b"].alive
    assert "c" not in after and before["c"].stopped and not before["c"].alive
    assert after["d"].alive
    assert sup.reload(settings(cam("a"), cam("b", fps=10), cam("d"))) == type(result)()  # no change
    sup.stop()


def test_disabling_a_camera_removes_it() -> None:
    factory = Factory()
    sup = make(settings(cam("a"), cam("b")), factory)
    result = sup.reload(settings(cam("a"), cam("b", enabled=False)))
    assert result.removed == ("b",) and list(sup.workers) == ["a"]
    sup.stop()


def test_watchdog_restarts_a_crashed_worker_but_not_a_finished_one() -> None:
    factory = Factory(crash_once={"a"}, finish={"b"})
    sup = make(settings(cam("a"), cam("b")), factory)
    for _, w in factory.made:
        w.join(2)
    assert sup.check_workers() == ["a"]
    assert sup.restarts("a") == 1 and sup.restarts_total == 1 and sup.restarts("b") == 0
    assert sup.workers["a"].alive
    assert sup.check_workers() == []
    sup.stop()


def test_wait_returns_when_file_cameras_finish() -> None:
    factory = Factory(finish={"a", "b"})
    sup = make(settings(cam("a"), cam("b"), {"id": "live", "source": "rtsp://h/x"}), factory)
    assert sup.wait(timeout=5) is True
    sup.stop()


def test_watch_config_reloads_on_change(tmp_path) -> None:
    path = tmp_path / "aislewatch.yaml"
    path.write_text(yaml.safe_dump({"stores": [{"id": "s1", "cameras": [cam("a")]}]}))
    factory = Factory()
    sup = make(load_settings(path), factory)
    sup.watch_config(path, interval_s=0.02)
    time.sleep(0.05)
    path.write_text(yaml.safe_dump({"stores": [{"id": "s1", "cameras": [cam("a"), cam("b")]}]}))
    import os

    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    deadline = time.monotonic() + 5
    while "b" not in sup.workers and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(sup.workers) == ["a", "b"]
    sup.stop()
