"""The schema of a feedback export's ``labels.csv``, defined once: ``inference.feedback`` writes it and
``inference.compare`` (``aislewatch model compare``) reads it, so the two cannot drift apart."""

from __future__ import annotations

LABELS_FILE = "labels.csv"
# one row per exported video; ``path`` is relative to the export folder (``<label>/<camera>__<id>.mp4``)
COLUMNS: tuple[str, ...] = (
    "id", "source", "path", "label", "store", "camera", "start", "end", "model_version", "score", "verdict",
    "who", "when", "split",
)
# what a reader needs to find each row's video, its camera and its side of the split
REQUIRED: tuple[str, ...] = ("id", "path", "camera")
SOURCE_ALERT, SOURCE_MISSED = "alert", "missed"
MISSED_VERDICT = "missed_theft"
# every camera ever given a split in an export folder, and that split: kept even when all of a camera's rows
# leave labels.csv, so a camera once held out never comes back on the training side
CAMERA_SPLITS_FILE = "camera_splits.csv"
CAMERA_SPLITS_COLUMNS: tuple[str, ...] = ("camera", "split")
