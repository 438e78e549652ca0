"""Training end to end on a tiny dataset: a real ConvLSTM, one epoch, every artefact written and consistent."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.artefacts import artefact_paths
from inference.dataset import DatasetLayoutError, read_split
from inference.model import ClipClassifier, ModelMetadata
from inference.train import train


def write_video(path: Path, base: int, seed: int, frames: int = 21) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    texture = rng.integers(0, 50, size=(64, 64, 3))
    for i in range(frames):
        writer.write(np.clip(base + texture + 2 * i, 0, 255).astype(np.uint8))
    writer.release()


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    for i in range(4):
        write_video(data / "shoplifting" / f"s{i}.mp4", 170, seed=i)
        write_video(data / "normal" / f"n{i}.mp4", 30, seed=100 + i)
    (data / "normal" / "corrupt.mp4").write_bytes(np.random.default_rng(5).bytes(3000))
    (data / "shoplifting" / "empty.mp4").write_bytes(b"")
    (data / "manifest.json").write_text(json.dumps({"generator": "aislewatch.inference.synth"}))
    return data


@pytest.mark.slow
def test_train_one_epoch_writes_a_consistent_model(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "models" / "convlstm.keras"
    report = train(tiny_dataset, out, epochs=1, batch_size=4, seed=1, progress=False)
    paths = artefact_paths(out)

    assert out.is_file() and paths.sidecar.is_file() and paths.checkpoint.is_file()
    meta = ModelMetadata.from_json(paths.sidecar.read_text())
    assert re.fullmatch(r"aw-convlstm-\d{8}-[0-9a-f]{8}", meta.version) and meta.version == report.version
    assert meta.threshold == pytest.approx(report.threshold.threshold) and meta.threshold_goal == "max_f1"
    assert meta.trained_on["synthetic"] is True
    assert meta.trained_on["videos_per_class"] == {"normal": 4, "shoplifting": 4}
    assert len(meta.trained_on["sha256"]) == 64
    assert set(meta.metrics["test"]) >= {"accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "confusion_matrix"}

    # Unreadable videos are listed, not silently dropped.
    skipped = json.loads(paths.skipped.read_text())
    assert {s["path"] for s in skipped["skipped"]} == {"normal/corrupt.mp4", "shoplifting/empty.mp4"}
    assert {s["path"] for s in report.skipped} == {"normal/corrupt.mp4", "shoplifting/empty.mp4"}

    split = read_split(paths.split)
    assert {k: len(v) for k, v in split.items()} == {"train": 4, "val": 2, "test": 2}
    assert report.videos["test"] == {"normal": 1, "shoplifting": 1}
    history = json.loads(paths.history.read_text())
    assert len(history["loss"]) == 1 and len(history["val_loss"]) == 1 and len(history["epoch_seconds"]) == 1
    assert report.decoded == 10 and report.cache_hits == 0

    classifier = ClipClassifier.load(out, fast=False)
    assert classifier.version == report.version
    probs = classifier.predict(np.zeros((2, 20, 64, 64, 3), dtype=np.uint8))
    assert probs.shape == (2,) and np.all((probs >= 0) & (probs <= 1))
    assert meta.trained_on["fine_tuned_from"] is None
    assert meta.input_bits == 5 and classifier.input_bits == 5  # a new model's input: 5 bits, in its sidecar

    # Fine-tuning from it starts from its weights and records where they came from.
    tuned = tmp_path / "tuned" / "convlstm.keras"
    train(tiny_dataset, tuned, epochs=1, batch_size=4, seed=2, progress=False, init_from=out, learning_rate=1e-4)
    tuned_meta = ModelMetadata.from_json(artefact_paths(tuned).sidecar.read_text())
    assert tuned_meta.trained_on["fine_tuned_from"]["version"] == meta.version
    assert tuned_meta.trained_on["fine_tuned_from"]["trained_on"]["sha256"] == meta.trained_on["sha256"]
    assert tuned_meta.trained_on["learning_rate"] == pytest.approx(1e-4)


@pytest.mark.parametrize("bits", [6, 3])
def test_training_clips_are_quantized_after_augmentation_too(bits: int) -> None:
    """Training sees what serving sees: clips kept to input_bits, and a brightness-jittered clip quantized
    again (each value at its bin's centre), not values between the bins the model never gets."""
    from common.model_input import quantize
    from inference.dataset import ClipSet, VideoItem
    from inference.train import _tf_dataset

    rng = np.random.default_rng(4)
    raw = rng.integers(0, 256, (4, 20, 64, 64, 3), dtype=np.uint8)
    items = tuple(VideoItem(Path(f"v{i}.mp4"), f"v{i}.mp4", i % 2) for i in range(4))
    clips = ClipSet(quantize(raw, bits), np.array([0, 1, 0, 1]), items, (), 0, 0)
    width = 1 << (8 - bits)
    for augment in (False, True):
        for x, _ in _tf_dataset(clips, 4, training=True, augment=augment, seed=1, input_bits=bits):
            values = np.rint(x.numpy() * 255).astype(int)
            assert np.all(values % width == width // 2), augment
    plain = next(iter(_tf_dataset(clips, 4, training=False, augment=False, seed=1, input_bits=bits)))[0].numpy()
    np.testing.assert_allclose(np.sort(plain.ravel()), np.sort(quantize(raw, bits).ravel() / 255.0), atol=1e-6)


def test_train_refuses_unknown_layouts_and_goals(tmp_path: Path) -> None:
    write_video(tmp_path / "data" / "thieves" / "a.mp4", 100, 0)
    write_video(tmp_path / "data" / "normal" / "b.mp4", 100, 1)
    with pytest.raises(DatasetLayoutError, match="thieves"):
        train(tmp_path / "data", tmp_path / "m.keras", progress=False)
    with pytest.raises(ValueError, match="goal"):
        train(tmp_path / "data", tmp_path / "m.keras", val_goal="max_accuracy", progress=False)
