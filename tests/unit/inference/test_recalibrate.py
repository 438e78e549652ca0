"""``aislewatch model calibrate``: a trained model's threshold chosen again for another goal on its own split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from common.app.cli import main
from common.settings import DEFAULT_MODEL_PATH
from inference.artefacts import artefact_paths
from inference.calibrate import calibrate_threshold
from inference.dataset import discover_videos, load_clips, stratified_split, write_split
from inference.metadata import ModelMetadata
from inference.model import load_classifier
from inference.synth import camera_scene_seed, render_window
from inference.synth.video import write_video


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A copy of the bundled model with a split over a small dataset of its own views."""
    root = tmp_path_factory.mktemp("recal")
    data = root / "data"
    for i in range(10):
        for label in ("shoplifting", "normal"):
            frames, _ = render_window(label, 900 + i, scene_seed=camera_scene_seed(7, i % 6))  # type: ignore[arg-type]
            write_video(data / label / f"{label[:2]}{i}.mp4", frames, 15.0, 320, 180)
    model = root / "m" / "convlstm.keras"
    model.parent.mkdir()
    shutil.copy(DEFAULT_MODEL_PATH, model)
    shutil.copy(artefact_paths(DEFAULT_MODEL_PATH).sidecar, artefact_paths(model).sidecar)
    items = discover_videos(data)
    write_split(artefact_paths(model).split, stratified_split(items, seed=1), seed=1, dataset_dir=data)
    return model, data


def test_calibrate_sets_the_threshold_for_the_goal_on_the_validation_split(
    trained: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    model, data = trained
    before = ModelMetadata.read(model)
    assert before is not None
    assert main(["model", "calibrate", str(model), str(data), "--goal", "max_f1"]) == 0
    after = ModelMetadata.read(model)
    assert after is not None and after.threshold_goal == "max_f1"
    assert after.metrics["recalibrated_from"] == {"threshold": before.threshold, "goal": before.threshold_goal}
    assert "max_f1" in capsys.readouterr().out

    # the same choice calibrate_threshold makes on the validation clips' scores
    split = json.loads(artefact_paths(model).split.read_text())
    val = load_clips(discover_videos(data), cache_dir=artefact_paths(model).cache, progress=False,
                     bits=before.input_bits).subset(  # the clips as the model is served them
        e["path"] for e in split["val"])
    scores = load_classifier(model).model.predict(val.clips.astype(np.float32) / 255.0, verbose=0).reshape(-1)
    assert after.threshold == pytest.approx(calibrate_threshold(scores, val.labels, "max_f1").threshold, abs=1e-4)
    assert after.metrics["val"]["n"] == len(val.labels)
    assert load_classifier(model).version == before.version  # weights untouched


def test_calibrate_refuses_a_bad_goal_a_missing_split_and_a_foreign_dataset(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, data = trained
    assert main(["model", "calibrate", str(model), str(data), "--goal", "min_precision=2"]) == 2
    assert "min_precision" in capsys.readouterr().err
    lone = tmp_path / "lone.keras"
    shutil.copy(model, lone)
    shutil.copy(artefact_paths(model).sidecar, artefact_paths(lone).sidecar)
    assert main(["model", "calibrate", str(lone), str(data), "--goal", "max_f1"]) == 2
    assert "no split file" in capsys.readouterr().err
    other = tmp_path / "other"
    for label in ("shoplifting", "normal"):
        for i in range(3):
            frames, _ = render_window(label, 50 + i)  # type: ignore[arg-type]
            write_video(other / label / f"x{i}.mp4", frames, 15.0, 320, 180)
    assert main(["model", "calibrate", str(model), str(other), "--goal", "max_f1"]) == 2
    assert "not in this dataset" in capsys.readouterr().err
