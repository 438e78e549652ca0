"""Recalibrating a trained model's alert threshold for another goal, on the validation split it was trained
with (``NAME.split.json``), exactly as ``train`` calibrates: weights untouched, the sidecar's threshold, goal
and validation/test metrics rewritten, and the threshold it replaced kept in ``metrics.recalibrated_from``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.artefacts import artefact_paths, jsonable
from inference.calibrate import ThresholdChoice, calibrate_threshold, parse_goal
from inference.clip_metrics import binary_metrics
from inference.dataset import discover_videos, load_clips, read_split
from inference.metadata import ModelMetadata


@dataclass(frozen=True)
class Recalibration:
    """What ``recalibrate`` changed."""

    previous_threshold: float
    previous_goal: str
    choice: ThresholdChoice
    test_metrics: dict[str, Any]

    def summary(self) -> str:
        m = self.test_metrics
        return (f"threshold {self.previous_threshold:.4f} ({self.previous_goal}) -> {self.choice.threshold:.4f} "
                f"({self.choice.goal}, met={self.choice.met}) val P={self.choice.precision:.3f} "
                f"R={self.choice.recall:.3f}; test P={m['precision']:.3f} R={m['recall']:.3f}")


def recalibrate(model_path: Path, dataset_dir: Path, goal: str, *, cache_dir: Path | None = None,
                progress: bool = True) -> Recalibration:
    """Set ``model_path``'s threshold for ``goal`` on its own validation split of ``dataset_dir``.

    Raises ValueError for a bad goal, FileNotFoundError when the model, its sidecar or its split file is
    missing, and ValueError when the split names videos the dataset does not have."""
    parse_goal(goal)  # before loading anything
    model_path, dataset_dir = Path(model_path), Path(dataset_dir)
    paths = artefact_paths(model_path)
    metadata = ModelMetadata.read(model_path)
    if not model_path.is_file() or metadata is None:
        raise FileNotFoundError(f"{model_path}: no model with a sidecar ({paths.sidecar.name}) there")
    if not paths.split.is_file():
        raise FileNotFoundError(f"{paths.split}: no split file beside the model (written by `aislewatch train`)")
    split = read_split(paths.split)
    clips = load_clips(discover_videos(dataset_dir), cache_dir=cache_dir or paths.cache, progress=progress)
    known = {i.rel for i in clips.items}
    missing = [r for name in ("val", "test") for r in split[name] if r not in known]
    if missing:
        raise ValueError(f"{dataset_dir}: {len(missing)} videos of the model's split are not in this dataset "
                         f"(e.g. {missing[0]}); give the dataset the model was trained on")

    from inference.model import load_classifier
    from inference.train import _scores

    model = load_classifier(model_path).model
    val, test = clips.subset(split["val"]), clips.subset(split["test"])
    bits = metadata.input_bits  # the clips as the model is served them
    val_scores = _scores(model, val.clips, input_bits=bits)
    test_scores = _scores(model, test.clips, input_bits=bits)
    choice = calibrate_threshold(val_scores, val.labels, goal)
    test_metrics = binary_metrics(test_scores, test.labels, choice.threshold)
    metrics = dict(metadata.metrics)
    metrics.update(
        calibration=choice.to_dict(),
        val=binary_metrics(val_scores, val.labels, choice.threshold),
        test=test_metrics,
        recalibrated_from={"threshold": metadata.threshold, "goal": metadata.threshold_goal},
    )
    updated = dataclasses.replace(metadata, threshold=choice.threshold, threshold_goal=goal,
                                  metrics=jsonable(metrics))
    tmp = paths.sidecar.with_suffix(".json.tmp")
    tmp.write_text(updated.to_json() + "\n", encoding="utf-8")
    tmp.replace(paths.sidecar)
    return Recalibration(metadata.threshold, metadata.threshold_goal, choice, jsonable(test_metrics))
