"""Verdicts become training data: ``aislewatch feedback export OUT_DIR`` writes the chain's reviewed alerts and
the thefts its managers marked as missed as a class-per-folder dataset that ``aislewatch train`` reads as it is.

    OUT_DIR/shoplifting/<camera>__<alert id>.mp4     theft confirmed or prevented
    OUT_DIR/shoplifting/<camera>__missed-<id>.mp4    a theft the model missed (marked on the camera's timeline)
    OUT_DIR/normal/<camera>__<alert id>.mp4          false alarm
    OUT_DIR/labels.csv                               one row per video (``COLUMNS``), with its split

``unsure`` and unreviewed alerts are left out.  Each video is the alert's evidence video, or, when it has none,
cut (packet copy, no re-encoding) from the camera's motion segments over the alert's clips plus the evidence
margins; an alert whose evidence is gone is skipped and counted.  The split is by camera, never by clip
(``inference.dataset.assign_groups``): near-identical clips of one camera are all on one side, and
``aislewatch train --split-by camera`` uses the ``split`` column as it is.

Re-running into the same folder is safe: a video already exported is kept (even when its evidence has since
been deleted), a changed verdict moves it to its new class, an alert reopened or now ``unsure`` leaves the
dataset, and rows outside this run's ``--since``/``--stores`` are kept as they were.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from tqdm import tqdm

from common.db import Database
from common.evidence import cut_video
from common.models import Alert, ClipResult, MissedTheft
from common.schemas import AlertKind, Verdict
from inference.dataset import LABELS_FILE, SPLIT_NAMES, assign_groups

log = logging.getLogger(__name__)

POSITIVE, NEGATIVE = "shoplifting", "normal"
MISSED_VERDICT = "missed_theft"
LABEL_OF_VERDICT: dict[str, str] = {
    Verdict.THEFT_CONFIRMED.value: POSITIVE,
    Verdict.THEFT_PREVENTED.value: POSITIVE,
    Verdict.FALSE_ALARM.value: NEGATIVE,
}
COLUMNS: tuple[str, ...] = (
    "id", "source", "path", "label", "store", "camera", "start", "end", "model_version", "score", "verdict",
    "who", "when", "split",
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Example:
    """One reviewed alert or missed theft, as the export sees it; ``label`` None means it is left out."""

    id: str
    source: str  # "alert" or "missed"
    store: str
    camera: str
    start: datetime
    end: datetime
    model_version: str
    score: float | None
    verdict: str | None
    who: str
    when: datetime | None
    label: str | None
    video: Path | None  # the evidence video already made for it, if any

    @property
    def file_name(self) -> str:
        return f"{_safe(self.camera)}__{_safe(self.id)}.mp4"

    def row(self, split: str = "") -> dict[str, str]:
        return {
            "id": self.id, "source": self.source, "path": f"{self.label}/{self.file_name}", "label": self.label or "",
            "store": self.store, "camera": self.camera, "start": self.start.isoformat(),
            "end": self.end.isoformat(), "model_version": self.model_version,
            "score": "" if self.score is None else f"{self.score:.4f}", "verdict": self.verdict or "",
            "who": self.who, "when": self.when.isoformat() if self.when else "", "split": split,
        }


@dataclass
class ExportSummary:
    """What an export did: ``exported`` new videos, ``kept`` ones already there, ``relabelled`` moved to another
    class, ``removed`` (no longer reviewed as theft or false alarm), ``left_out`` (unsure or unreviewed),
    ``skipped`` (evidence gone: id and reason), and the dataset's videos per class and split afterwards."""

    out_dir: Path
    exported: int = 0
    kept: int = 0
    relabelled: int = 0
    removed: int = 0
    left_out: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    classes: dict[str, int] = field(default_factory=dict)
    splits: dict[str, dict[str, int]] = field(default_factory=dict)
    cameras: int = 0

    def __str__(self) -> str:
        lines = [
            f"{self.out_dir}: {sum(self.classes.values())} videos {self.classes} from {self.cameras} camera(s)",
            f"this run: {self.exported} exported, {self.kept} already there, {self.relabelled} moved to another "
            f"class, {self.removed} removed, {self.left_out} left out (unsure or unreviewed), "
            f"{len(self.skipped)} skipped (evidence gone)",
            "split by camera: " + ", ".join(f"{n} {self.splits.get(n, {})}" for n in SPLIT_NAMES),
        ]
        lines += [f"  skipped {example}: {reason}" for example, reason in self.skipped]
        if self.cameras < 3:
            lines.append("note: fewer than 3 cameras, so no camera is held out for validation and test; "
                         "`train --split-by camera` needs at least 3")
        return "\n".join(lines)


def _safe(text: str) -> str:
    return _UNSAFE.sub("-", text).strip("-") or "x"


def _scope(statement, column_store, column_time, *, since: datetime | None, stores: Sequence[str] | None):  # type: ignore[no-untyped-def]
    if since is not None:
        statement = statement.where(column_time >= since)
    if stores:
        statement = statement.where(column_store.in_(sorted(set(stores))))
    return statement


def reviewed_examples(
    db: Database, *, since: datetime | None = None, stores: Sequence[str] | None = None
) -> list[Example]:
    """Every suspicious-activity alert (any verdict, or none) and every missed theft in scope, oldest first.
    ``since`` filters on when the alert was raised (a missed theft: when it began)."""
    examples: list[Example] = []
    with db.sessions() as session:
        alerts = session.scalars(_scope(
            select(Alert).where(Alert.kind == AlertKind.SUSPICIOUS_ACTIVITY.value), Alert.store_id, Alert.raised_at,
            since=since, stores=stores,
        ).order_by(Alert.raised_at, Alert.id)).all()
        for alert in alerts:
            clips = session.execute(
                select(ClipResult.start_at, ClipResult.captured_at, ClipResult.model_version)
                .where(ClipResult.clip_id.in_(sorted(alert.clip_ids or ()))).order_by(ClipResult.captured_at)
            ).all() if alert.clip_ids else []
            start = min((c.start_at for c in clips), default=alert.raised_at)
            end = max((c.captured_at for c in clips), default=alert.raised_at)
            video = None
            if alert.evidence_video_path and alert.evidence_deleted_at is None:
                video = Path(alert.evidence_video_path)
            examples.append(Example(
                id=alert.alert_id, source="alert", store=alert.store_id, camera=alert.camera_id, start=start,
                end=end, model_version=clips[-1].model_version if clips else "", score=alert.probability,
                verdict=alert.verdict, who=alert.acknowledged_by or "", when=alert.acknowledged_at,
                label=LABEL_OF_VERDICT.get(alert.verdict or ""), video=video,
            ))
        missed = session.scalars(_scope(
            select(MissedTheft), MissedTheft.store_id, MissedTheft.start_at, since=since, stores=stores,
        ).order_by(MissedTheft.start_at, MissedTheft.id)).all()
        for mark in missed:
            scores = session.execute(
                select(ClipResult.probability, ClipResult.model_version)
                .where(ClipResult.camera_id == mark.camera_id, ClipResult.captured_at >= mark.start_at,
                       ClipResult.start_at <= mark.end_at)
                .order_by(ClipResult.captured_at)
            ).all()
            examples.append(Example(
                id=f"missed-{mark.id}", source="missed", store=mark.store_id, camera=mark.camera_id,
                start=mark.start_at, end=mark.end_at, model_version=scores[-1].model_version if scores else "",
                score=max((s.probability for s in scores), default=None), verdict=MISSED_VERDICT,
                who=mark.marked_by, when=mark.marked_at, label=POSITIVE,
                video=Path(mark.video_path) if mark.video_path else None,
            ))
    return examples


def _read_rows(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("id", "path", "camera") if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path}: not a feedback export's {LABELS_FILE} (no column {missing})")
        return {row["id"]: row for row in reader}


def _write_rows(path: Path, rows: Sequence[dict[str, str]]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _fetch_video(example: Example, target: Path, evidence_dir: Path, before: timedelta, after: timedelta) -> str | None:
    """Put the example's video at ``target``; the reason it cannot be had, or None."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if example.video is not None and example.video.is_file():
        tmp = target.with_name(target.name + ".part")
        shutil.copyfile(example.video, tmp)
        os.replace(tmp, target)
        return None
    try:
        cut = cut_video(evidence_dir, example.camera, example.start - before, example.end + after, target)
    except Exception as exc:  # a damaged segment: this example is skipped, the export goes on
        return f"cannot cut its video from the motion segments: {exc}"
    if cut is None:
        where = "its evidence video is gone and " if example.video is not None else ""
        return f"{where}no motion segments of {example.camera} cover {example.start:%Y-%m-%d %H:%M:%S} to " \
               f"{example.end:%H:%M:%S} UTC"
    return None


def export_feedback(
    db: Database,
    evidence_dir: Path,
    out_dir: Path,
    *,
    since: datetime | None = None,
    stores: Sequence[str] | None = None,
    margin_before_s: float = 3.0,
    margin_after_s: float = 3.0,
    seed: int = 0,
    progress: bool = True,
) -> ExportSummary:
    """Write (or bring up to date) the dataset at ``out_dir``; see the module docstring."""
    out_dir, evidence_dir = Path(out_dir), Path(evidence_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels_path = out_dir / LABELS_FILE
    rows = _read_rows(labels_path)
    summary = ExportSummary(out_dir)
    before, after = timedelta(seconds=margin_before_s), timedelta(seconds=margin_after_s)
    examples = reviewed_examples(db, since=since, stores=stores)
    for example in tqdm(examples, desc="exporting verdicts", unit="video", disable=not progress):
        old = rows.get(example.id)
        old_file = out_dir / old["path"] if old and old.get("path") else None
        if example.label is None:
            summary.left_out += 1
            if old is not None:  # reopened, or now unsure: it no longer says what happened
                if old_file is not None:
                    old_file.unlink(missing_ok=True)
                del rows[example.id]
                summary.removed += 1
            continue
        target = out_dir / example.label / example.file_name
        if old_file is not None and old_file.is_file() and old_file.stat().st_size > 0:
            if old_file != target:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(old_file, target)
                summary.relabelled += 1
            else:
                summary.kept += 1
        elif target.is_file() and target.stat().st_size > 0:
            summary.kept += 1  # a run that stopped before it wrote labels.csv
        else:
            reason = _fetch_video(example, target, evidence_dir, before, after)
            if reason is not None:
                summary.skipped.append((example.id, reason))
                log.warning("skipping %s: %s", example.id, reason)
                continue
            summary.exported += 1
        rows[example.id] = example.row()
    sizes: dict[str, int] = {}
    for row in rows.values():
        sizes[row["camera"]] = sizes.get(row["camera"], 0) + 1
    split_of = assign_groups(sizes, seed=seed)
    ordered = sorted(rows.values(), key=lambda r: (r["camera"], r["start"], r["id"]))
    for row in ordered:
        row["split"] = split_of[row["camera"]]
    _write_rows(labels_path, ordered)
    summary.cameras = len(sizes)
    for row in ordered:
        summary.classes[row["label"]] = summary.classes.get(row["label"], 0) + 1
        per = summary.splits.setdefault(row["split"], {})
        per[row["label"]] = per.get(row["label"], 0) + 1
    return summary
