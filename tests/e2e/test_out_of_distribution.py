"""A model that knows what it does not know, through the real bundled model and the embedded pipeline:
real footage (``../shared/real-footage/vtest.avi``) is flagged out of distribution, the synthetic demo
views the model was trained on are not, and a model without an input description works as before."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from common.app.demo import DEMO_CAMERAS, DEMO_STORE_SEED
from common.app.embedded import run_embedded, stream_settings
from common.schemas import CameraState
from common.settings import DEFAULT_MODEL_PATH, Settings
from tests.videos import decoded_frames, real_footage

pytestmark = pytest.mark.slow
FIT = {CameraState.OUT_OF_DISTRIBUTION.value, CameraState.IN_DISTRIBUTION.value}


@pytest.fixture(scope="module")
def classifier() -> Any:
    from inference.model import load_classifier

    if not DEFAULT_MODEL_PATH.exists():
        pytest.fail(f"the bundled model {DEFAULT_MODEL_PATH} is missing")
    return load_classifier(DEFAULT_MODEL_PATH)  # loaded once: TensorFlow's start-up is the slow part


@pytest.fixture(scope="module")
def vtest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``vtest.avi``'s own frames played forwards and back twice (55 s, at its true 25 fps): long enough for
    a rolling window of clips, and independent of how the AVI's lying header is read.  Written losslessly
    (FFV1): a lossy copy would test a smoothed re-encoding of the footage, not the footage (an mp4v copy's
    clips sat at 1.00-1.05 of the out-of-distribution limit where the file's own are at about 1.4)."""
    import cv2

    path = real_footage("vtest.avi")  # fails loudly when ../shared/real-footage is missing
    frames = decoded_frames(path)
    assert len(frames) > 300, f"{path}: decoded {len(frames)} frames"
    out = tmp_path_factory.mktemp("real") / "vtest-pingpong.mkv"
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"FFV1"), 25.0, (width, height))
    for frame in (frames + frames[::-1]) * 2:
        writer.write(frame)
    writer.release()
    return out


def settings_for(out: Path, cameras: list[dict], model_path: Path = DEFAULT_MODEL_PATH) -> Settings:
    settings = stream_settings(out, cameras, model_path=model_path)
    # a short recording: decide each camera on a window of 8 clips (4 at least) rather than 20
    return settings.model_copy(update={"model": settings.model.model_copy(update={"ood_window_clips": 8})})


def fit_events(run: Any) -> list[tuple[str, str]]:
    return [(e.camera_id, e.state) for e in run.health if e.state in FIT]


def test_real_footage_is_flagged_out_of_distribution(tmp_path: Path, classifier: Any, vtest: Path) -> None:
    run = run_embedded(settings_for(tmp_path, [{"id": "hall", "source": vtest}]), classifier)
    try:
        assert run.clips >= 4, run.clips
        assert fit_events(run) == [("hall", CameraState.OUT_OF_DISTRIBUTION.value)]
        event = next(e for e in run.health if e.state == CameraState.OUT_OF_DISTRIBUTION.value)
        assert "retrain with `aislewatch train`" in event.detail
        for alert in run.alerts:  # alerts from it, if the model raises any, say the model is not validated
            if alert.kind == "suspicious_activity":
                assert alert.message.startswith("Unvalidated model:"), alert.message
    finally:
        run.db.close()


def test_the_demo_views_are_not_flagged(tmp_path: Path, classifier: Any) -> None:
    from inference.synth import camera_scene_seed, write_stream

    cameras = []
    for cam in DEMO_CAMERAS:  # new shoppers filmed by two of the views the model was trained on, as the demo does
        path = tmp_path / f"{cam['id']}.mp4"
        write_stream(path, duration_s=45, seed=int(cam["seed"]), incidents=1, normal_shoppers=1,
                     scene_seed=camera_scene_seed(DEMO_STORE_SEED, int(cam["view"])))
        cameras.append({"id": cam["id"], "source": path})
    run = run_embedded(settings_for(tmp_path, cameras), classifier)
    try:
        assert run.clips >= 16, run.clips
        assert sorted(fit_events(run)) == [(str(c["id"]), CameraState.IN_DISTRIBUTION.value) for c in DEMO_CAMERAS]
        assert not any(a.message.startswith("Unvalidated") for a in run.alerts)
    finally:
        run.db.close()


def test_a_model_without_description_works_as_before_with_one_notice(
    tmp_path: Path, classifier: Any, vtest: Path, caplog: pytest.LogCaptureFixture
) -> None:
    legacy = tmp_path / "legacy" / "convlstm.keras"
    legacy.parent.mkdir()
    shutil.copy(DEFAULT_MODEL_PATH, legacy)
    sidecar = json.loads(DEFAULT_MODEL_PATH.with_suffix(".json").read_text())
    del sidecar["input_description"]  # a sidecar written before descriptions existed
    legacy.with_suffix(".json").write_text(json.dumps(sidecar))
    with caplog.at_level(logging.WARNING):
        run = run_embedded(settings_for(tmp_path, [{"id": "hall", "source": vtest}], model_path=legacy), classifier)
    try:
        assert run.clips >= 4
        assert fit_events(run) == []
        notices = [r for r in caplog.records if "carries no description of its training inputs" in r.getMessage()]
        assert len(notices) == 1
    finally:
        run.db.close()


def test_classify_says_when_a_video_is_unlike_the_training_inputs(tmp_path: Path) -> None:
    """``aislewatch classify`` on the real recording itself: the verdict carries the out-of-distribution mark
    and the retrain note; on a demo view's synthetic stream it does not (a plain NORMAL from a model that
    never saw such scenes would read as validated)."""
    from inference.classify import classify_videos
    from inference.synth import camera_scene_seed, write_stream

    real = real_footage("vtest.avi")
    cam = DEMO_CAMERAS[0]
    synthetic = tmp_path / "demo-view.mp4"
    write_stream(synthetic, duration_s=30, seed=int(cam["seed"]), incidents=0, normal_shoppers=1,
                 scene_seed=camera_scene_seed(DEMO_STORE_SEED, int(cam["view"])))
    by_path = {v.path: v for v in classify_videos([real, synthetic], DEFAULT_MODEL_PATH, tmp_path / "out")}
    flagged, familiar = by_path[str(real)], by_path[str(synthetic)]
    assert flagged.out_of_distribution is True
    assert any("not trained on scenes like this video's" in n and "aislewatch train" in n for n in flagged.notes)
    assert all(w.familiarity is not None and w.familiarity > 0 for w in flagged.windows)
    assert familiar.out_of_distribution is False
    assert not any("not trained on scenes" in n for n in familiar.notes)
