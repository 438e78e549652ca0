"""Threshold calibration: both goals on constructed scores, the unmeetable case, and the sidecar rewrite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inference.calibrate import apply_threshold, calibrate_threshold, parse_goal
from inference.model import ModelMetadata

# Scores descending with their labels.  Thresholds at each score give (TP, FP):
# 0.95 (1,0)  0.90 (2,0)  0.80 (2,1)  0.70 (3,1)  0.60 (4,1)  0.50 (4,2)  0.40 (5,2)  0.30 (5,3) 0.20 (5,4) 0.10 (5,5)
SCORES = np.array([0.95, 0.90, 0.80, 0.70, 0.60, 0.50, 0.40, 0.30, 0.20, 0.10])
LABELS = np.array([1, 1, 0, 1, 1, 0, 1, 0, 0, 0])


@pytest.mark.parametrize(
    ("goal", "threshold", "precision", "recall", "met"),
    [
        # F1 at 0.60 = 2*(4/5)*(4/5)/(8/5) = 0.8; at 0.40 = 2*(5/7)*1/(12/7) = 0.833 -> best.
        ("max_f1", 0.40, 5 / 7, 1.0, True),
        # precision >= 0.8: thresholds 0.95, 0.90 (1.0), 0.60 (0.8); highest recall among them is 0.60 (4/5).
        ("min_precision=0.8", 0.60, 0.8, 0.8, True),
        ("min_precision=0.75", 0.60, 0.8, 0.8, True),
        # precision 1.0 only at 0.95 and 0.90; 0.90 has the higher recall.
        ("min_precision=1.0", 0.90, 1.0, 0.4, True),
    ],
)
def test_goals_are_met_on_constructed_scores(goal, threshold, precision, recall, met) -> None:
    choice = calibrate_threshold(SCORES, LABELS, goal)
    assert choice.threshold == pytest.approx(threshold)
    assert choice.precision == pytest.approx(precision)
    assert choice.recall == pytest.approx(recall)
    assert choice.met is met and choice.goal == goal
    predicted = SCORES >= choice.threshold
    assert (predicted & (LABELS == 1)).sum() / predicted.sum() == pytest.approx(choice.precision)


def test_unmeetable_precision_says_so_and_picks_the_most_precise_threshold() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    labels = np.array([0, 1, 0, 1, 0, 1])  # best precision is 1/2 at 0.8 (TP 1, FP 1) ... and at 0.6, 0.4
    choice = calibrate_threshold(scores, labels, "min_precision=0.95")
    assert choice.met is False
    assert "0.95" in choice.note
    assert choice.precision == pytest.approx(0.5)
    assert choice.threshold == pytest.approx(0.4)  # among equally precise ones, the one with most recall
    assert choice.recall == pytest.approx(1.0)


def test_one_class_only_keeps_default_and_is_not_met() -> None:
    choice = calibrate_threshold(np.array([0.2, 0.3]), np.array([0, 0]), "max_f1")
    assert choice.threshold == 0.5 and choice.met is False


@pytest.mark.parametrize("goal", ["max_recall", "min_precision=", "min_precision=1.5", "min_precision=abc"])
def test_bad_goals_are_refused(goal: str) -> None:
    with pytest.raises(ValueError):
        parse_goal(goal)


def test_apply_threshold_rewrites_the_sidecar(tmp_path: Path) -> None:
    model = tmp_path / "m.keras"
    ModelMetadata.sidecar_path(model).write_text(ModelMetadata(version="v1", metrics={"test": {"f1": 1}}).to_json())
    choice = calibrate_threshold(SCORES, LABELS, "min_precision=0.8")
    updated = apply_threshold(model, choice)
    on_disk = ModelMetadata.from_json((tmp_path / "m.json").read_text())
    assert on_disk == updated
    assert on_disk.threshold == pytest.approx(0.60) and on_disk.threshold_goal == "min_precision=0.8"
    assert on_disk.metrics["test"] == {"f1": 1}
    assert json.loads((tmp_path / "m.json").read_text())["metrics"]["calibration"]["met"] is True
