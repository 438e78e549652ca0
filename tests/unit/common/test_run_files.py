"""`aislewatch run` over file cameras ends by itself once every camera has ended and everything is
processed (exit 0); a live or looping camera keeps it running."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from common.app.runtime import Pipeline
from common.db import Database
from common.settings import Settings, load_settings
from tests.videos import write_moving_box_video

ROOT = Path(__file__).resolve().parents[3]
FPS = 15
ALL_ROLES = {"ingest", "infer", "alerts"}


def write_video(path: Path, frames: int) -> Path:
    return write_moving_box_video(path, frames, FPS)


class Brightness:
    """A stand-in for the ConvLSTM: probability = mean brightness."""

    threshold = 0.5
    version = "brightness-test"

    def predict(self, clips: np.ndarray) -> np.ndarray:
        return clips.reshape(len(clips), -1).mean(axis=1).astype(np.float32) / 255.0


def settings_for(tmp_path: Path, cameras: list[dict]) -> Settings:
    return load_settings(None, overrides={
        "stores": [{"id": "s", "cameras": [{"fps": FPS, "offline_after_s": 1, **c} for c in cameras]}],
        "database": {"url": f"sqlite:///{tmp_path / 'aw.db'}"},
        "service": {"evidence_dir": str(tmp_path / "evidence"), "metrics_port": 0},
        "inference": {"max_wait_ms": 20},
    })


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("run") / "six-seconds.mp4", 6 * FPS)  # 3 clips: at 0, 1, 2 s


def test_a_pipeline_of_file_cameras_finishes_once_everything_is_processed(tmp_path: Path, video: Path) -> None:
    settings = settings_for(tmp_path, [{"id": "file-a", "source": str(video)}, {"id": "file-b", "source": str(video)}])
    pipeline = Pipeline.build(settings, ALL_ROLES, classifier=Brightness())
    watchdog = threading.Timer(60.0, pipeline.stop.set)  # a hang fails the test instead of the run
    watchdog.start()
    try:
        pipeline.start()
        assert pipeline.wait(poll_s=0.1) is True  # returned because the work was done, not stopped
        assert not pipeline.stop.is_set()
        bus = pipeline.bus
        assert bus.lag(settings.inference.group_id) == 0 and bus.lag("aislewatch-alerts") == 0
        counters = [w.counters() for w in pipeline.ingest.workers.values()]
        assert [c.state for c in counters] == ["ended", "ended"]
        assert pipeline.db is not None
        results = pipeline.db.results()
        assert sum(c.clips_published for c in counters) == len(results) == 6
        ended = [e.camera_id for e in pipeline.db.health_events() if e.state == "ended"]
        assert sorted(ended) == ["file-a", "file-b"]  # the alert worker consumed the last health events too
    finally:
        watchdog.cancel()
        pipeline.close()


@pytest.mark.parametrize(
    "other",
    [
        {"id": "live", "source": "rtsp://127.0.0.1:1/none"},  # nothing listens there: offline, reconnecting
        {"id": "looping", "loop": True},
    ],
    ids=["live", "looping-file"],
)
def test_a_live_or_looping_camera_keeps_it_running(tmp_path: Path, video: Path, other: dict) -> None:
    other = {"source": str(video), **other}
    settings = settings_for(tmp_path, [{"id": "file", "source": str(video)}, other])
    pipeline = Pipeline.build(settings, ALL_ROLES, classifier=Brightness())
    returned: list[bool] = []
    waiter = threading.Thread(target=lambda: returned.append(pipeline.wait(poll_s=0.1)), daemon=True)
    try:
        pipeline.start()
        waiter.start()
        file_worker = pipeline.ingest.workers["file"]
        deadline = time.monotonic() + 60
        while file_worker.alive and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not file_worker.alive and file_worker.counters().state == "ended"
        time.sleep(2.0)  # time enough to drain the file camera's clips
        assert pipeline.ingest.workers[other["id"]].alive
        assert not pipeline.finished() and waiter.is_alive() and returned == []
        # even with its worker gone (as after a fatal source error), a live or looping camera is not one
        # that ends: the pipeline keeps running (a config reload may start it again)
        gone = pipeline.ingest.workers[other["id"]]
        gone.stop()
        gone.join(10)
        assert not gone.alive and gone.error is None
        time.sleep(0.5)
        assert not pipeline.finished() and waiter.is_alive() and returned == []
    finally:
        pipeline.stop.set()
        waiter.join(10)
        pipeline.close()
    assert returned == [False]  # it ended because it was stopped


def tiny_model(path: Path) -> Path:
    """A real Keras model file, small enough to load in a moment: P = sigmoid(mean brightness)."""
    import keras

    from inference.model import INPUT_SHAPE, ModelMetadata, save_model

    inputs = keras.Input(shape=INPUT_SHAPE)
    x = keras.layers.GlobalAveragePooling3D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    save_model(model, path, ModelMetadata(version="tiny", threshold=0.5, input_bits=5))  # what cameras send by default
    return path


@pytest.mark.slow
def test_aislewatch_run_over_files_exits_by_itself_with_0(tmp_path: Path, video: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(f"""
stores:
  - id: s
    cameras:
      - {{id: file-cam, source: {video}, fps: {FPS}}}
model: {{path: {tiny_model(tmp_path / 'tiny.keras')}, device: cpu}}
inference: {{max_batch_size: 2, max_wait_ms: 20}}
database: {{url: 'sqlite:///{tmp_path / 'aw.db'}'}}
service: {{evidence_dir: {tmp_path / 'evidence'}, log_level: WARNING}}
""")
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from common.app.cli import main; sys.exit(main(sys.argv[1:]))",
         "run", "-c", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    db = Database.from_url(f"sqlite:///{tmp_path / 'aw.db'}")
    try:
        assert sorted(round(r.source_start_s, 3) for r in db.results()) == [0.0, 1.0, 2.0]
        assert [e.state for e in db.health_events()][-1] == "ended"
    finally:
        db.close()
    assert len(list((tmp_path / "evidence").rglob("*.jpg"))) == 3


def test_aislewatch_run_serves_the_desk_and_a_camera_going_offline_reaches_it_live(tmp_path: Path) -> None:
    """Embedded mode (in-process bus + SQLite): the desk runs beside the workers, and the offline alert of a
    camera that cannot be reached arrives on an open live stream without anyone asking again."""
    import json

    import httpx

    from alerts.desk.accounts import Accounts

    settings = settings_for(tmp_path, [{"id": "dead", "source": "rtsp://127.0.0.1:1/none"}])
    settings = settings.model_copy(update={
        "desk": settings.desk.model_copy(update={"port": 0, "feed_poll_s": 0.1}),
        "alerts": settings.alerts.model_copy(update={"offline_alert_after_s": 1.0}),
    })
    pipeline = Pipeline.build(settings, ALL_ROLES | {"desk"}, classifier=Brightness())
    assert pipeline.db is not None
    accounts = Accounts.from_settings(pipeline.db, settings)
    accounts.add_user("chief", "chief-password-1", "admin")
    token = accounts.create_token("chief", "test")
    events: list[dict] = []
    try:
        pipeline.start()
        url = pipeline.desk.url
        assert httpx.get(f"{url}/api/alerts").status_code == 401  # the desk is there, behind sign-in
        with httpx.Client(timeout=httpx.Timeout(5.0, read=30.0)) as client, client.stream(
            "GET", f"{url}/api/stream", headers={"Authorization": f"Bearer {token}"}
        ) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("data:") and '"alert"' in line:
                    events.append(json.loads(line[5:]))
                    break
        assert events[0]["event"] == "raised"
        assert events[0]["alert"]["kind"] == "camera_offline" and events[0]["alert"]["camera_id"] == "dead"
        assert events[0]["store_open_alerts"] == 1
    finally:
        pipeline.close()
    assert not pipeline.desk.alive
