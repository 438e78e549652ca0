"""Evaluation: numpy metrics against hand-computed values, near-duplicate detection, the evaluate() run.

The evaluate() run uses a deterministic stand-in model (a real .keras file: GlobalAveragePooling3D ->
Dense with fixed weights, P rising with brightness) so that the expected metrics are known exactly;
what is under test is the split handling, metrics, plots and duplicate report, not a trained model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

from inference.artefacts import artefact_paths
from inference.clip_metrics import average_precision, binary_metrics, confusion_matrix, roc_auc
from inference.dataset import discover_videos, stratified_split, write_split
from inference.dedupe import find_cross_split_duplicates, hamming_matrix, hash_clip
from inference.evaluate import evaluate
from inference.model import INPUT_SHAPE, ModelMetadata, save_model

SCORES = np.array([0.95, 0.90, 0.80, 0.70, 0.60, 0.50, 0.40, 0.30, 0.20, 0.10])
LABELS = np.array([1, 1, 0, 1, 1, 0, 1, 0, 0, 0])


def test_metrics_match_hand_computed_values() -> None:
    m = binary_metrics(SCORES, LABELS, threshold=0.5)
    # >= 0.5 predicted positive: TP 4 (.95 .90 .70 .60), FP 2 (.80 .50), FN 1 (.40), TN 3.
    assert m["confusion_matrix"] == [[3, 2], [1, 4]]
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["precision"] == pytest.approx(4 / 6)
    assert m["recall"] == pytest.approx(0.8)
    assert m["f1"] == pytest.approx(2 * (4 / 6) * 0.8 / (4 / 6 + 0.8))
    assert m["specificity"] == pytest.approx(0.6)
    # ROC-AUC = share of (positive, negative) pairs ranked right: (5 + 5 + 4 + 4 + 3) / 25.
    assert m["roc_auc"] == pytest.approx(21 / 25)
    # AP: positives at ranks 1, 2, 4, 5, 7 -> precisions 1, 1, 3/4, 4/5, 5/7, each adding recall 1/5.
    assert m["pr_auc"] == pytest.approx((1 + 1 + 0.75 + 0.8 + 5 / 7) / 5)


@pytest.mark.parametrize(
    ("scores", "labels"),
    [
        ([0.5, 0.5], [1, 0]),  # a tie counts half
        ([0.9, 0.1], [1, 0]),
        ([0.1, 0.9], [1, 0]),
        ([0.8, 0.8, 0.2, 0.8, 0.3], [1, 0, 0, 1, 1]),
    ],
)
def test_roc_auc_with_ties(scores, labels) -> None:
    s, y = np.array(scores), np.array(labels)
    pairs = [(a, b) for a, ya in zip(s, y, strict=True) if ya for b, yb in zip(s, y, strict=True) if not yb]
    by_hand = np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs])
    assert roc_auc(s, y) == pytest.approx(by_hand)


def test_single_class_aucs_are_nan_and_confusion_is_2x2() -> None:
    assert np.isnan(roc_auc(np.array([0.2, 0.4]), np.array([1, 1])))
    assert np.isnan(average_precision(np.array([0.2, 0.4]), np.array([0, 0])))
    assert confusion_matrix(np.array([0, 0]), np.array([0, 1])).tolist() == [[1, 1], [0, 0]]


def textured_clip(seed: int, base: int = 120) -> np.ndarray:
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 60, size=(64, 64, 3))
    return np.clip(base + texture + np.arange(20)[:, None, None, None], 0, 255).astype(np.uint8)


def test_dedupe_flags_near_copies_across_the_split_only() -> None:
    original = textured_clip(1)
    near_copy = np.clip(original.astype(int) + 6, 0, 255).astype(np.uint8)  # brightness shift
    near_copy = cv2.GaussianBlur(near_copy.reshape(-1, 64, 3), (3, 3), 0).reshape(original.shape)
    hashes = {
        "train": {"a": hash_clip(original), "b": hash_clip(textured_clip(2))},
        "val": {"c": hash_clip(textured_clip(3))},
        "test": {"a-copy": hash_clip(near_copy), "d": hash_clip(textured_clip(4))},
    }
    assert hamming_matrix(hashes["train"]["b"][None], hashes["val"]["c"][None])[0, 0] > 15  # unrelated: far
    pairs = find_cross_split_duplicates(hashes, max_hamming=4)
    assert [(p.train, p.other, p.other_split) for p in pairs] == [("a", "a-copy", "test")]
    assert find_cross_split_duplicates({"train": hashes["train"]}) == []


def brightness_model(path: Path) -> Path:
    inputs = keras.Input(shape=INPUT_SHAPE)
    out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling3D()(inputs))
    model = keras.Model(inputs, out)
    model.layers[-1].set_weights([np.full((3, 1), 40.0 / 3.0, dtype=np.float32), np.array([-20.0], dtype=np.float32)])
    save_model(model, path, ModelMetadata(version="stand-in", threshold=0.5, threshold_goal="max_f1"))
    return path


def write_clip_video(path: Path, clip: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    for frame in clip:
        writer.write(frame)
    writer.release()


def test_evaluate_on_the_test_split(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for i in range(4):
        write_clip_video(data / "shop lifters" / f"s{i}.mp4", textured_clip(10 + i, base=170))
        write_clip_video(data / "non shop lifters" / f"n{i}.mp4", textured_clip(20 + i, base=20))
    model = brightness_model(tmp_path / "models" / "m.keras")
    paths = artefact_paths(model)
    splits = stratified_split(discover_videos(data), seed=3)
    # Put an exact copy of a training video into the test split: evaluate must report it.
    leaked = next(i for i in splits["train"] if i.label == 0)
    shutil.copy(leaked.path, data / "non shop lifters" / "leak.mp4")
    leak_item = next(i for i in discover_videos(data) if i.rel.endswith("leak.mp4"))
    splits["test"].append(leak_item)
    write_split(paths.split, splits, seed=3, dataset_dir=data)
    paths.history.write_text(json.dumps({"loss": [0.7, 0.5], "val_loss": [0.72, 0.6], "epoch_seconds": [1, 1]}))

    result = evaluate(model, data, tmp_path / "eval", progress=False)

    assert result["split"] == "test" and result["model_version"] == "stand-in"
    assert sorted(v["path"] for v in result["per_video"]) == sorted(i.rel for i in splits["test"])
    assert result["videos"] == {"normal": 2, "shoplifting": 1}
    assert result["accuracy"] == 1.0 and result["roc_auc"] == 1.0 and result["pr_auc"] == 1.0
    assert result["confusion_matrix"] == [[2, 0], [0, 1]]
    dup = result["cross_split_duplicates"]
    assert dup["count"] == 1 and dup["pairs"][0]["train"] == leaked.rel and dup["pairs"][0]["other"] == leak_item.rel
    on_disk = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert on_disk["f1"] == 1.0 and on_disk["threshold"] == 0.5
    for name in ("roc.png", "pr.png", "confusion.png", "training_curves.png"):
        assert (tmp_path / "eval" / name).stat().st_size > 1000
