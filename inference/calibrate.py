"""Choosing the decision threshold on validation scores, and writing it into a model's metadata sidecar.

A clip is positive (shoplifting) when ``score >= threshold``.  Goals:

- ``"max_f1"``: the threshold with the highest F1;
- ``"min_precision=P"``: among thresholds whose precision is at least P, the one with the highest recall
  (so the fewest missed incidents at a bounded false-alarm share).  When no threshold reaches P the
  result says so (``met=False``) and falls back to the threshold with the highest precision.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.model import ModelMetadata

log = logging.getLogger(__name__)

DEFAULT_GOAL = "max_f1"


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen threshold, its precision/recall/F1 on the calibration scores, and whether the goal was met."""

    threshold: float
    precision: float
    recall: float
    f1: float
    goal: str
    met: bool
    note: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def parse_goal(goal: str) -> tuple[str, float | None]:
    """``"max_f1"`` -> ("max_f1", None); ``"min_precision=0.95"`` -> ("min_precision", 0.95)."""
    text = goal.strip().lower().replace(" ", "")
    if text == "max_f1":
        return "max_f1", None
    if text.startswith("min_precision="):
        try:
            value = float(text.split("=", 1)[1])
        except ValueError:
            value = float("nan")
        if not 0.0 < value <= 1.0:
            raise ValueError(f"min_precision must be in (0, 1], got {goal!r}")
        return "min_precision", value
    raise ValueError(f"unknown threshold goal {goal!r}; use 'max_f1' or 'min_precision=P' (e.g. 0.95)")


def threshold_table(scores: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Precision/recall/F1 at every distinct score used as threshold (descending thresholds)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    tp_cum = np.cumsum(y)
    fp_cum = np.cumsum(~y)
    last_of_run = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # predictions for 'score >= s[i]'
    tp, fp = tp_cum[last_of_run].astype(np.float64), fp_cum[last_of_run].astype(np.float64)
    positives = float(y.sum())
    precision = tp / np.maximum(tp + fp, 1.0)
    recall = tp / positives if positives else np.zeros_like(tp)
    denom = precision + recall
    f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1.0), 0.0)
    return {"threshold": s[last_of_run], "precision": precision, "recall": recall, "f1": f1}


def calibrate_threshold(scores: np.ndarray, labels: np.ndarray, goal: str = DEFAULT_GOAL) -> ThresholdChoice:
    """Pick the threshold that meets ``goal`` on (scores, labels); see the module docstring."""
    kind, target = parse_goal(goal)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape or scores.size == 0:
        raise ValueError(f"need equally long, non-empty scores and labels, got {scores.shape} and {labels.shape}")
    n_pos = int((labels == 1).sum())
    if n_pos == 0 or n_pos == labels.size:
        note = "calibration scores hold one class only; keeping 0.5"
        log.warning(note)
        return ThresholdChoice(0.5, float("nan"), float("nan"), float("nan"), goal, False, note)
    table = threshold_table(scores, labels)
    precision, recall, f1 = table["precision"], table["recall"], table["f1"]
    if kind == "max_f1":
        # Highest F1; among equals, the higher threshold (fewer alerts for the same F1).
        best = int(np.flatnonzero(f1 == f1.max())[0])
        met, note = True, ""
    else:
        assert target is not None
        ok = np.flatnonzero(precision >= target - 1e-12)
        if ok.size:
            best_recall = recall[ok].max()
            best = int(ok[recall[ok] == best_recall][0])
            met, note = True, ""
        else:
            # Nothing reaches the goal: the highest precision, and among equals the highest recall.
            top = np.flatnonzero(precision == precision.max())
            best = int(top[np.argmax(recall[top])])
            met = False
            note = (
                f"no threshold reaches precision {target:g} (best {precision[best]:.3f}); "
                f"chose the highest-precision threshold"
            )
            log.warning("threshold goal %s not met: %s", goal, note)
    return ThresholdChoice(
        threshold=float(np.clip(table["threshold"][best], 0.0, 1.0)),
        precision=float(precision[best]),
        recall=float(recall[best]),
        f1=float(f1[best]),
        goal=goal,
        met=met,
        note=note,
    )


def apply_threshold(model_path: Path, choice: ThresholdChoice) -> ModelMetadata:
    """Rewrite the model's sidecar with the chosen threshold and goal; returns the new metadata."""
    sidecar = ModelMetadata.sidecar_path(Path(model_path))
    if not sidecar.is_file():
        raise FileNotFoundError(f"no metadata sidecar for {model_path} (expected {sidecar})")
    metadata = ModelMetadata.from_json(sidecar.read_text(encoding="utf-8"))
    metrics = dict(metadata.metrics)
    metrics["calibration"] = choice.to_dict()
    updated = dataclasses.replace(metadata, threshold=choice.threshold, threshold_goal=choice.goal, metrics=metrics)
    tmp = sidecar.with_name(sidecar.name + ".tmp")
    tmp.write_text(updated.to_json() + "\n", encoding="utf-8")
    tmp.replace(sidecar)
    return updated
