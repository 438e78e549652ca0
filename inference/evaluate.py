"""Evaluation on the held-out test split: metrics (``inference.clip_metrics``), plots, metrics.json."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from inference.artefacts import artefact_paths, jsonable
from inference.clip_metrics import average_precision, binary_metrics, pr_curve, roc_auc, roc_curve
from inference.dataset import (
    SPLIT_NAMES,
    camera_split,
    discover_videos,
    load_clips,
    read_split,
)
from inference.dedupe import DEFAULT_MAX_HAMMING, clip_hashes, find_cross_split_duplicates
from inference.model import CLASS_NAMES, load_classifier

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc(scores: np.ndarray, labels: np.ndarray, path: Path) -> None:
    """ROC curve with its AUC."""
    plt = _pyplot()
    fpr, tpr, _ = roc_curve(scores, labels)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, drawstyle="default", label=f"ROC (AUC {roc_auc(scores, labels):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", xlim=(0, 1), ylim=(0, 1.02), title="ROC")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_pr(scores: np.ndarray, labels: np.ndarray, path: Path, threshold: float | None = None) -> None:
    """Precision-recall curve with its average precision and the operating point."""
    plt = _pyplot()
    precision, recall, thresholds = pr_curve(scores, labels)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(np.r_[0.0, recall], np.r_[precision[0] if len(precision) else 1.0, precision], drawstyle="steps-post",
            label=f"PR (AP {average_precision(scores, labels):.3f})")
    if threshold is not None and len(thresholds):
        at = int(np.argmin(np.where(thresholds >= threshold, thresholds, np.inf)))
        ax.scatter([recall[at]], [precision[at]], color="red", zorder=3, label=f"threshold {threshold:.3f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title="Precision-recall")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(cm: np.ndarray | list, path: Path, threshold: float) -> None:
    """Confusion matrix as an annotated heat map."""
    plt = _pyplot()
    cm = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    ax.set_xticks([0, 1], [f"pred {c}" for c in CLASS_NAMES])
    ax.set_yticks([0, 1], [f"true {c}" for c in CLASS_NAMES])
    ax.set_title(f"confusion @ {threshold:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_history(history: dict[str, list[float]], path: Path) -> None:
    """Training curves: loss and every other logged metric, train vs validation."""
    plt = _pyplot()
    names = [k for k in history if not k.startswith("val_") and k not in ("learning_rate", "lr", "epoch_seconds")]
    names = [k for k in names if isinstance(history[k], list) and history[k]]
    if not names:
        return
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        epochs = np.arange(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], marker="o", label="train")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], marker="o", label="validation")
        ax.set(xlabel="epoch", title=name)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- evaluate


def evaluate(
    model_path: Path,
    dataset_dir: Path,
    out_dir: Path,
    *,
    split_path: Path | None = None,
    cache_dir: Path | None = None,
    threshold: float | None = None,
    progress: bool = True,
    fast: bool = False,
    all_videos: bool = False,
    split_by: str | None = None,
) -> dict[str, Any]:
    """Score the model on the held-out TEST split (or, with ``all_videos``, on a whole dataset the model
    never saw, e.g. footage of other cameras); write ``metrics.json`` and PNG plots to ``out_dir``.

    The split comes from ``split_path`` or the ``<model stem>.split.json`` that ``train`` wrote beside
    the model; without either, every video is evaluated and the result says so (``"split": "all"``).
    With ``split_by="camera"`` the test split is the dataset's own split by camera instead
    (``inference.dataset.camera_split``, e.g. the ``split`` column of an exported ``labels.csv``).
    Metrics are at ``threshold`` or the model's calibrated one.  Cross-split near-duplicates are listed.
    """
    model_path, dataset_dir, out_dir = Path(model_path), Path(dataset_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = artefact_paths(model_path)
    split_file = Path(split_path) if split_path is not None else paths.split
    cache = Path(cache_dir) if cache_dir is not None else paths.cache
    items = discover_videos(dataset_dir)
    by_rel = {i.rel: i for i in items}

    if split_by == "camera" and not all_videos:
        splits = {name: [i.rel for i in v] for name, v in camera_split(items, dataset_dir).items()}
        split_used, missing, wanted = "test", [], list(items)
    elif split_file.is_file() and not all_videos:
        splits = read_split(split_file)
        split_used = "test"
        missing = sorted(r for name in SPLIT_NAMES for r in splits[name] if r not in by_rel)
        if missing:
            log.warning("%d videos of the split are not in %s: %s", len(missing), dataset_dir, missing[:10])
        wanted = [by_rel[r] for name in SPLIT_NAMES for r in splits[name] if r in by_rel]
    else:
        if not all_videos:
            log.warning("no split file %s: evaluating on ALL videos (may include training data)", split_file)
        splits = {"train": [], "val": [], "test": [i.rel for i in items]}
        split_used, missing, wanted = "all", [], list(items)

    clips = load_clips(wanted, cache_dir=cache, progress=progress)
    test = clips.subset(splits["test"])
    if len(test.items) == 0:
        raise ValueError(f"no readable test videos in {dataset_dir} for split {split_file}")
    classifier = load_classifier(model_path, fast=fast)
    used_threshold = float(classifier.threshold if threshold is None else threshold)
    scores = classifier.predict(test.clips)

    hashes = {name: clip_hashes(clips.subset(splits[name])) for name in SPLIT_NAMES}
    duplicates = find_cross_split_duplicates(hashes, DEFAULT_MAX_HAMMING)

    metrics = binary_metrics(scores, test.labels, used_threshold)
    plots = {"roc": "roc.png", "pr": "pr.png", "confusion": "confusion.png"}
    plot_roc(scores, test.labels, out_dir / plots["roc"])
    plot_pr(scores, test.labels, out_dir / plots["pr"], used_threshold)
    plot_confusion(np.asarray(metrics["confusion_matrix"]), out_dir / plots["confusion"], used_threshold)
    if paths.history.is_file():
        history = json.loads(paths.history.read_text(encoding="utf-8"))
        plot_history(history, out_dir / "training_curves.png")
        plots["training_curves"] = "training_curves.png"

    result: dict[str, Any] = {
        "model": str(model_path),
        "model_version": classifier.version,
        "dataset_dir": str(dataset_dir),
        "split": split_used,
        "split_file": str(split_file) if split_used == "test" and split_by != "camera" else None,
        "split_by": split_by or "split file",
        "threshold": used_threshold,
        "threshold_source": "argument" if threshold is not None else "model metadata",
        "threshold_goal": classifier.metadata.threshold_goal,
        "class_names": list(CLASS_NAMES),
        **metrics,
        "videos": {c: int((test.labels == k).sum()) for k, c in enumerate(CLASS_NAMES)},
        "skipped": [s.to_dict() for s in clips.skipped],
        "missing_from_dataset": missing,
        "cross_split_duplicates": {
            "max_hamming": DEFAULT_MAX_HAMMING,
            "count": len(duplicates),
            "pairs": [d.to_dict() for d in duplicates[:200]],
        },
        "per_video": [
            {"path": item.rel, "label": item.class_name, "score": float(s)}
            for item, s in zip(test.items, scores, strict=True)
        ],
        "plots": plots,
    }
    if duplicates:
        log.warning("%d near-duplicate videos cross the train/test split; metrics may be optimistic", len(duplicates))
    (out_dir / "metrics.json").write_text(json.dumps(jsonable(result), indent=2) + "\n", encoding="utf-8")
    return jsonable(result)
