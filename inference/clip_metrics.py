"""Clip-level metrics (numpy only, no scikit-learn), shared by ``train`` and ``evaluate``.

Metrics follow the usual definitions (scikit-learn's, checked by hand in the tests): a clip is positive
when ``score >= threshold``; ROC-AUC is the trapezoidal area under the ROC curve with tied scores
collapsed into one point; PR-AUC is average precision, ``sum_n (R_n - R_{n-1}) P_n``.  The confusion
matrix is ``[[TN, FP], [FN, TP]]`` (rows: true normal, shoplifting; columns: predicted).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inference.calibrate import threshold_table


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """2x2 int matrix ``[[TN, FP], [FN, TP]]`` from 0/1 labels and 0/1 predictions."""
    y = np.asarray(labels).astype(bool).ravel()
    p = np.asarray(predictions).astype(bool).ravel()
    return np.array([[np.sum(~y & ~p), np.sum(~y & p)], [np.sum(y & ~p), np.sum(y & p)]], dtype=np.int64)


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def binary_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    """Accuracy, precision, recall, F1, specificity and the confusion matrix at ``threshold``."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    cm = confusion_matrix(labels, scores >= threshold)
    (tn, fp), (fn, tp) = cm.tolist()
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {
        "threshold": float(threshold),
        "n": int(labels.size),
        "positives": int(tp + fn),
        "accuracy": _ratio(tp + tn, labels.size),
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "specificity": _ratio(tn, tn + fp),
        "confusion_matrix": cm.tolist(),
        "roc_auc": roc_auc(scores, labels),
        "pr_auc": average_precision(scores, labels),
    }


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates, thresholds), starting at (0, 0) with threshold +inf."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[last].astype(np.float64)
    fp = np.cumsum(~y)[last].astype(np.float64)
    n_pos, n_neg = float(y.sum()), float((~y).sum())
    tpr = np.r_[0.0, tp / n_pos] if n_pos else np.full(len(tp) + 1, np.nan)
    fpr = np.r_[0.0, fp / n_neg] if n_neg else np.full(len(fp) + 1, np.nan)
    return fpr, tpr, np.r_[np.inf, s[last]]


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (NaN when only one class is present)."""
    fpr, tpr, _ = roc_curve(scores, labels)
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return float("nan")
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def pr_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) at each distinct score, thresholds descending."""
    table = threshold_table(scores, labels)
    return table["precision"], table["recall"], table["threshold"]


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """PR-AUC as average precision ``sum (R_n - R_{n-1}) P_n`` (NaN without positives)."""
    if not np.asarray(labels).astype(bool).any():
        return float("nan")
    precision, recall, _ = pr_curve(scores, labels)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
