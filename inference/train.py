"""Training the ConvLSTM clip classifier on a folder of labelled videos.

``train`` decodes one clip per video (cached), splits 70/15/15 by video (stratified, seeded, written to
``<stem>.split.json``), checks for near-duplicates across the split, fits with class weights, early
stopping and a best-model checkpoint, calibrates the threshold on the validation split, measures the
test split and saves the model with its metadata sidecar.  Everything it decided is written beside the
model so ``evaluate`` and a reader can reproduce it:

    convlstm.keras            the model (best epoch by validation loss)
    convlstm.json             metadata sidecar (version, threshold, trained_on, metrics)
    convlstm.split.json       files per split
    convlstm.history.json     per-epoch loss/metrics and epoch seconds
    convlstm.skipped.json     videos that could not be used, with reasons
    convlstm.duplicates.json  near-duplicate videos across the split
    checkpoints/convlstm.best.keras, clip-cache/   best-epoch checkpoint, decoded-clip cache
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np

from common.model_input import FULL_BITS, quantize
from inference.artefacts import TrainArtefacts, artefact_paths, jsonable
from inference.calibrate import ThresholdChoice, calibrate_threshold, parse_goal
from inference.clip_metrics import binary_metrics
from inference.dataset import (
    SPLIT_BY,
    SPLIT_NAMES,
    ClipSet,
    camera_split,
    class_weights,
    context_only_videos,
    dataset_fingerprint,
    discover_videos,
    is_generator_dataset,
    load_clips,
    stratified_split,
    write_split,
)
from inference.dedupe import DEFAULT_MAX_HAMMING, clip_hashes, find_cross_split_duplicates
from inference.model import CLASS_NAMES, ModelMetadata, build_convlstm, preprocess, save_model
from inference.ood import clip_features, describe

DEFAULT_INPUT_BITS = 5  # a new model's input precision: what the bus carries (issue 15); 8 keeps every bit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainReport:
    """What a training run did and produced."""

    model_path: Path
    version: str
    artefacts: TrainArtefacts
    videos: dict[str, dict[str, int]]  # split -> class -> count
    skipped: tuple[dict[str, str], ...]
    threshold: ThresholdChoice
    test_metrics: dict[str, Any]
    duplicates: tuple[dict, ...]
    epochs_run: int
    best_epoch: int
    epoch_seconds: tuple[float, ...]
    decode_seconds: float
    cache_hits: int
    decoded: int
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.summary()

    def summary(self) -> str:
        """A few human-readable lines for the CLI."""
        m = self.test_metrics
        lines = [
            f"model {self.model_path} ({self.version})",
            f"videos: {self.videos}  skipped: {len(self.skipped)}  "
            f"(decoded {self.decoded}, from cache {self.cache_hits}, {self.decode_seconds:.1f} s)",
            f"epochs: {self.epochs_run} (best {self.best_epoch}), "
            f"{np.mean(self.epoch_seconds) if self.epoch_seconds else 0:.1f} s/epoch",
            f"threshold {self.threshold.threshold:.4f} ({self.threshold.goal}, met={self.threshold.met}) "
            f"val P={self.threshold.precision:.3f} R={self.threshold.recall:.3f}",
            f"test: acc={m['accuracy']:.3f} P={m['precision']:.3f} R={m['recall']:.3f} F1={m['f1']:.3f} "
            f"ROC-AUC={m['roc_auc']} PR-AUC={m['pr_auc']}",
        ]
        if self.skipped:
            lines.append("skipped videos: " + "; ".join(f"{s['path']}: {s['reason']}" for s in self.skipped))
        if self.duplicates:
            lines.append(
                f"WARNING: {len(self.duplicates)} near-duplicate video pairs cross the split "
                f"(see {self.artefacts.duplicates.name}); test metrics may be optimistic"
            )
        return "\n".join(lines)


class _EpochTimer(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def _tf_dataset(clips: ClipSet, batch_size: int, *, training: bool, augment: bool, seed: int,
                input_bits: int = FULL_BITS):
    """uint8 clips -> batched float [0, 1] tf.data; training adds shuffling, random flips and brightness.

    The clips come quantized to ``input_bits`` (``load_clips``); a brightness change moves values off their
    bins' centres, so a jittered clip is quantized again, as the model will be served
    (``common.model_input.quantize`` on the float scale)."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((clips.clips, clips.labels.astype(np.float32)))
    if training:
        ds = ds.shuffle(len(clips.items), seed=seed, reshuffle_each_iteration=True)

    def to_float(x, y):
        return tf.cast(x, tf.float32) * (1.0 / 255.0), y

    def jitter(x, y):
        flip = tf.random.uniform(()) < 0.5
        x = tf.cond(flip, lambda: tf.reverse(x, axis=[2]), lambda: x)  # (T, H, W, C): mirror W
        x = tf.clip_by_value(x * tf.random.uniform((), 0.85, 1.15), 0.0, 1.0)
        if input_bits < FULL_BITS:
            width = float(1 << (FULL_BITS - input_bits))
            levels = tf.floor(tf.round(x * 255.0) / width)
            x = (levels * width + width / 2) * (1.0 / 255.0)
        return x, y

    ds = ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    if training and augment:
        ds = ds.map(jitter, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _scores(model: keras.Model, clips: np.ndarray, batch_size: int = 32, input_bits: int = FULL_BITS) -> np.ndarray:
    """The raw model's P(shoplifting) for uint8 clips, kept first to the model's ``input_bits``."""
    clips = quantize(clips, input_bits)
    if len(clips) == 0:
        return np.zeros((0,), dtype=np.float32)
    out = [model.predict(preprocess(clips[i : i + batch_size]), verbose=0) for i in range(0, len(clips), batch_size)]
    return np.concatenate(out).reshape(-1).astype(np.float32)


def _weights_hash(model: keras.Model) -> str:
    digest = hashlib.sha256()
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()


def _write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jsonable(doc), indent=2) + "\n", encoding="utf-8")


def _input_description(clips: ClipSet, dataset_dir: Path) -> dict:
    """What the training split's clips look like (inference.ood), so that the worker can flag cameras whose
    scenes are unlike them; empty (the model is simply not described) when the split is too small.  Videos
    the manifest marks context-only (``inference.dataset.context_only_videos``: scenes shown in one class
    only) are trained on but not described: the model is not validated on such scenes."""
    context = context_only_videos(dataset_dir)
    described = clips.subset(i.rel for i in clips.items if i.rel not in context) if context else clips
    left_out = f", {len(clips.items) - len(described.items)} context-only videos left out" if context else ""
    try:
        description = describe(clip_features(described.clips), source=f"{dataset_dir.name}: training split, "
                               f"{len(described.items)} videos{left_out}")
    except ValueError as exc:
        log.warning("no input description stored: %s", exc)
        return {}
    return description.to_dict()


def train(
    dataset_dir: Path,
    out_path: Path,
    *,
    epochs: int = 30,
    batch_size: int = 16,
    seed: int = 0,
    cache_dir: Path | None = None,
    val_goal: str = "max_f1",
    progress: bool = True,
    learning_rate: float = 1e-3,
    patience: int = 8,
    augment: bool = True,
    min_epochs: int = 0,
    lr_patience: int | None = None,
    init_from: Path | None = None,
    split_by: str = "video",
    input_bits: int = DEFAULT_INPUT_BITS,
) -> TrainReport:
    """Train, calibrate and save a classifier from ``dataset_dir`` (one subfolder per class) to ``out_path``.

    ``cache_dir`` defaults to ``clip-cache/`` beside the model.  ``val_goal`` is the threshold goal on the
    validation split (``"max_f1"`` or ``"min_precision=P"``).  ``patience`` epochs without a better
    validation loss stop training (not before ``min_epochs``: a ConvLSTM can sit at chance for a few epochs
    before its loss drops); ``lr_patience`` (default ``patience // 2``) such epochs halve the learning
    rate.  ``augment`` adds random mirroring and brightness to training clips.  ``split_by="camera"`` keeps
    every camera's videos on one side of the split (``inference.dataset.camera_split``: the ``split`` column of
    an exported ``labels.csv``), so near-identical clips of one camera cannot be both trained on and tested.
    ``input_bits`` is the model's input precision (``common.model_input.quantize``), recorded in its sidecar:
    every clip it is trained, calibrated and tested on is quantized to it, as serving quantizes.
    Raises DatasetLayoutError for an unrecognised folder layout and ValueError when a class has fewer than 3
    usable videos (or, by camera, when a split would be empty).
    """
    parse_goal(val_goal)  # fail before hours of decoding
    if split_by not in SPLIT_BY:
        raise ValueError(f"split_by must be one of {SPLIT_BY}, got {split_by!r}")
    if epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch_size must be >= 1")
    if not 1 <= input_bits <= FULL_BITS:
        raise ValueError(f"input_bits must be 1 to {FULL_BITS}, got {input_bits}")
    dataset_dir, out_path = Path(dataset_dir), Path(out_path)
    if out_path.suffix not in (".keras", ".h5"):
        raise ValueError(f"model path must end in .keras or .h5, got {out_path.name}")
    paths = artefact_paths(out_path)
    cache = Path(cache_dir) if cache_dir is not None else paths.cache

    items = discover_videos(dataset_dir)
    log.info("%s: %d videos", dataset_dir, len(items))
    started = time.perf_counter()
    clips = load_clips(items, cache_dir=cache, progress=progress, bits=input_bits)
    decode_seconds = time.perf_counter() - started
    skipped = [s.to_dict() for s in clips.skipped]
    _write_json(paths.skipped, {"dataset_dir": str(dataset_dir), "count": len(skipped), "skipped": skipped})
    if skipped:
        log.warning("skipped %d unusable videos (listed in %s)", len(skipped), paths.skipped)

    if split_by == "camera":
        split_items = camera_split(clips.items, dataset_dir, seed=seed)
    else:
        split_items = stratified_split(clips.items, seed=seed)
    write_split(paths.split, split_items, seed=seed, dataset_dir=dataset_dir, split_by=split_by)
    sets = {name: clips.subset(i.rel for i in split_items[name]) for name in SPLIT_NAMES}
    duplicates = find_cross_split_duplicates(
        {name: clip_hashes(sets[name]) for name in SPLIT_NAMES}, DEFAULT_MAX_HAMMING
    )
    _write_json(
        paths.duplicates,
        {"max_hamming": DEFAULT_MAX_HAMMING, "count": len(duplicates), "pairs": [d.to_dict() for d in duplicates]},
    )
    if duplicates:
        log.warning("%d near-duplicate pairs cross the split (%s)", len(duplicates), paths.duplicates)

    keras.utils.set_random_seed(seed)
    model = build_convlstm()
    base: dict[str, Any] | None = None
    if init_from is not None:
        # Fine-tuning: start from a trained model of the same architecture (e.g. the bundled one, on a
        # store's own footage) instead of random weights.
        from inference.model import load_classifier

        base_model = load_classifier(Path(init_from))
        model.set_weights(base_model.model.get_weights())
        # the lineage travels with the model: what the starting weights had been trained on, recursively
        base = {"version": base_model.version, "trained_on": base_model.metadata.trained_on,
                "input_bits": base_model.input_bits}
        log.info("starting from the weights of %s (%s)", init_from, base_model.version)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")],
        jit_compile=False,  # XLA on the ConvLSTM train step: ~4x longer compile and slower epochs on CPU
    )
    paths.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    timer = _EpochTimer()
    early = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True, start_from_epoch=min_epochs
    )
    lr_wait = max(1, patience // 2) if lr_patience is None else max(1, lr_patience)
    callbacks = [
        early,
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=lr_wait, min_lr=1e-5),
        keras.callbacks.ModelCheckpoint(str(paths.checkpoint), monitor="val_loss", save_best_only=True),
        timer,
    ]
    history = model.fit(
        _tf_dataset(sets["train"], batch_size, training=True, augment=augment, seed=seed, input_bits=input_bits),
        validation_data=_tf_dataset(sets["val"], batch_size, training=False, augment=False, seed=seed),
        epochs=epochs,
        class_weight=class_weights(sets["train"].labels),
        callbacks=callbacks,
        shuffle=False,  # the tf.data pipeline shuffles
        verbose=(1 if sys.stdout.isatty() else 2) if progress else 0,  # one line per epoch in logs
    )
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    hist["epoch_seconds"] = timer.seconds
    _write_json(paths.history, hist)
    best_epoch = int(early.best_epoch) + 1 if hasattr(early, "best_epoch") else len(timer.seconds)

    val_scores = _scores(model, sets["val"].clips, input_bits=input_bits)
    choice = calibrate_threshold(val_scores, sets["val"].labels, val_goal)
    test_scores = _scores(model, sets["test"].clips, input_bits=input_bits)
    test_metrics = binary_metrics(test_scores, sets["test"].labels, choice.threshold)
    val_metrics = binary_metrics(val_scores, sets["val"].labels, choice.threshold)

    now = datetime.now(UTC)
    version = f"aw-convlstm-{now:%Y%m%d}-{_weights_hash(model)[:8]}"
    counts = {name: {c: int((s.labels == k).sum()) for k, c in enumerate(CLASS_NAMES)} for name, s in sets.items()}
    per_class = {c: int((clips.labels == k).sum()) for k, c in enumerate(CLASS_NAMES)}
    synthetic = is_generator_dataset(dataset_dir)
    input_description = _input_description(sets["train"], dataset_dir)
    metadata = ModelMetadata(
        version=version,
        threshold=choice.threshold,
        threshold_goal=val_goal,
        trained_on=jsonable(
            {
                "description": f"{dataset_dir.name}: {len(clips.items)} videos "
                f"({'synthetic, generator-made' if synthetic else 'real footage'})",
                "synthetic": synthetic,
                "videos": len(clips.items),
                "videos_per_class": per_class,
                "skipped": len(skipped),
                "sha256": dataset_fingerprint(items),
                "split": counts,
                "split_by": split_by,
                "seed": seed,
                "learning_rate": learning_rate,
                "fine_tuned_from": base,
            }
        ),
        input_description=input_description,
        input_bits=input_bits,
        metrics=jsonable(
            {
                "test": test_metrics,
                "val": val_metrics,
                "calibration": choice.to_dict(),
                "cross_split_duplicates": len(duplicates),
                "epochs_run": len(timer.seconds),
                "best_epoch": best_epoch,
            }
        ),
        created_at=now.isoformat(timespec="seconds"),
    )
    save_model(model, out_path, metadata)
    report = TrainReport(
        model_path=out_path,
        version=version,
        artefacts=paths,
        videos=counts,
        skipped=tuple(skipped),
        threshold=choice,
        test_metrics=jsonable(test_metrics),
        duplicates=tuple(d.to_dict() for d in duplicates),
        epochs_run=len(timer.seconds),
        best_epoch=best_epoch,
        epoch_seconds=tuple(timer.seconds),
        decode_seconds=decode_seconds,
        cache_hits=clips.cache_hits,
        decoded=clips.decoded,
    )
    log.info("%s", report.summary())
    return report
