"""Verdicts become training data: ``aislewatch feedback export OUT_DIR`` writes the chain's reviewed alerts and
the thefts its managers marked as missed as a class-per-folder dataset that ``aislewatch train`` reads as it is.

    OUT_DIR/shoplifting/<camera>__<alert id>.mp4     theft confirmed or prevented
    OUT_DIR/shoplifting/<camera>__missed-<id>.mp4    a theft the model missed (marked on the camera's timeline)
    OUT_DIR/normal/<camera>__<alert id>.mp4          false alarm
    OUT_DIR/labels.csv                               one row per video (``inference.labels.COLUMNS``), with its split
    OUT_DIR/camera_splits.csv                        every camera ever exported here and its split

``unsure`` and unreviewed alerts are left out, and so is a false alarm over which a manager marked a missed theft
(same camera, overlapping time): the missed theft is exported as the positive, the false alarm is counted as
*conflicting*.  Each video is the alert's evidence video, or, when it has none,
cut (packet copy, no re-encoding) from the camera's motion segments over the alert's clips plus the evidence
margins; an alert whose evidence is gone is skipped and counted.  The split is by camera, never by clip
(``inference.dataset.assign_groups``): near-identical clips of one camera are all on one side, and
``aislewatch train --split-by camera`` uses the ``split`` column as it is.  A camera keeps, in that folder, the
split it was first given (``camera_splits.csv``), whatever cameras a later export adds or ``--stores`` covers:
only cameras new to the folder are assigned, so a model fine-tuned on an earlier export's ``train`` side has
never seen a camera a later export holds out.

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
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from tqdm import tqdm

from common.db import Database
from common.evidence import cut_video
from common.models import Alert, ClipResult, MissedTheft
from common.schemas import AlertKind, Verdict
from inference.dataset import SPLIT_NAMES, assign_groups
from inference.labels import (
    CAMERA_SPLITS_COLUMNS,
    CAMERA_SPLITS_FILE,
    COLUMNS,
    LABELS_FILE,
    MISSED_VERDICT,
    REQUIRED,
    SOURCE_ALERT,
    SOURCE_MISSED,
)

log = logging.getLogger(__name__)

POSITIVE, NEGATIVE = "shoplifting", "normal"
LABEL_OF_VERDICT: dict[str, str] = {
    Verdict.THEFT_CONFIRMED.value: POSITIVE,
    Verdict.THEFT_PREVENTED.value: POSITIVE,
    Verdict.FALSE_ALARM.value: NEGATIVE,
}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Example:
    """One reviewed alert or missed theft, as the export sees it; ``label`` None means it is left out."""

    id: str
    source: str  # SOURCE_ALERT or SOURCE_MISSED
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
    ``skipped`` (evidence gone: id and reason), ``conflicting`` (false alarms overlapping a marked missed theft
    on their camera: left out, the missed theft is the positive), cameras given a split for the first time
    (``new_cameras``; the others kept theirs), and the dataset's videos per class and split afterwards."""

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
    new_cameras: list[str] = field(default_factory=list)
    conflicting: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"{self.out_dir}: {sum(self.classes.values())} videos {self.classes} from {self.cameras} camera(s)",
            f"this run: {self.exported} exported, {self.kept} already there, {self.relabelled} moved to another "
            f"class, {self.removed} removed, {self.left_out} left out (unsure or unreviewed), "
            f"{len(self.skipped)} skipped (evidence gone), {len(self.conflicting)} conflicting (a false alarm "
            "overlapping a marked missed theft: left out)",
            "split by camera: " + ", ".join(f"{n} {self.splits.get(n, {})}" for n in SPLIT_NAMES),
        ]
        if self.new_cameras:
            lines.append(f"cameras new to this folder, given a split: {', '.join(self.new_cameras)} "
                         "(every other camera kept the split an earlier export gave it)")
        lines += [f"  skipped {example}: {reason}" for example, reason in self.skipped]
        lines += [f"  conflicting {example}: reviewed as false alarm, but a missed theft was marked over it"
                  for example in self.conflicting]
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
                id=alert.alert_id, source=SOURCE_ALERT, store=alert.store_id, camera=alert.camera_id, start=start,
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
                id=f"missed-{mark.id}", source=SOURCE_MISSED, store=mark.store_id, camera=mark.camera_id,
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
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or ())]
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


def _read_camera_splits(out_dir: Path, rows: dict[str, dict[str, str]]) -> dict[str, str]:
    """Each camera's split as earlier exports into ``out_dir`` gave it: ``camera_splits.csv``, completed by the
    rows of labels.csv (an export of a release that did not write that file).  Raises ValueError when they
    disagree or a camera is on two sides: such a folder's held-out cameras can no longer be trusted."""
    given: dict[str, str] = {}
    path = out_dir / CAMERA_SPLITS_FILE
    if path.is_file():
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if list(reader.fieldnames or ()) != list(CAMERA_SPLITS_COLUMNS):
                raise ValueError(f"{path}: expected the columns {', '.join(CAMERA_SPLITS_COLUMNS)}")
            for row in reader:
                given[row["camera"]] = row["split"]
    for row in rows.values():
        camera, split = row.get("camera", ""), row.get("split", "")
        if split not in SPLIT_NAMES:
            continue
        if given.setdefault(camera, split) != split:
            raise ValueError(f"{out_dir}: camera {camera!r} is in split {given[camera]!r} and {split!r} "
                             f"({CAMERA_SPLITS_FILE}, {LABELS_FILE}); export into a new folder")
    bad = sorted(f"{c}={s!r}" for c, s in given.items() if s not in SPLIT_NAMES)
    if bad:
        raise ValueError(f"{path}: unknown split(s) {bad}")
    return given


def _write_camera_splits(out_dir: Path, split_of: dict[str, str]) -> None:
    path = out_dir / CAMERA_SPLITS_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CAMERA_SPLITS_COLUMNS)
        writer.writerows(sorted(split_of.items()))
    os.replace(tmp, path)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _missed_spans(examples: Sequence[Example], rows: dict[str, dict[str, str]]) -> list[tuple[str, datetime, datetime]]:
    """(camera, start, end) of every missed theft in scope or already exported into the folder."""
    spans = [(e.camera, _aware(e.start), _aware(e.end)) for e in examples if e.source == SOURCE_MISSED]
    for row in rows.values():
        if row.get("source") == SOURCE_MISSED and row.get("start") and row.get("end"):
            spans.append((row["camera"], _aware(datetime.fromisoformat(row["start"])),
                          _aware(datetime.fromisoformat(row["end"]))))
    return spans


def _conflicts(example: Example, missed: Sequence[tuple[str, datetime, datetime]]) -> bool:
    """A false alarm whose time span a manager marked (in part) as a missed theft on the same camera: the two
    would teach the model opposite things about the same frames."""
    if example.source != SOURCE_ALERT or example.label != NEGATIVE:
        return False
    start, end = _aware(example.start), _aware(example.end)
    return any(camera == example.camera and s <= end and start <= e for camera, s, e in missed)


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
    known_splits = _read_camera_splits(out_dir, rows)
    summary = ExportSummary(out_dir)
    before, after = timedelta(seconds=margin_before_s), timedelta(seconds=margin_after_s)
    examples = reviewed_examples(db, since=since, stores=stores)
    missed = _missed_spans(examples, rows)
    for example in tqdm(examples, desc="exporting verdicts", unit="video", disable=not progress):
        old = rows.get(example.id)
        old_file = out_dir / old["path"] if old and old.get("path") else None
        if _conflicts(example, missed):
            summary.conflicting.append(example.id)
            log.warning("leaving out %s: reviewed as false alarm, but a missed theft was marked over it", example.id)
            if old is not None:  # exported before the missed theft was marked
                if old_file is not None:
                    old_file.unlink(missing_ok=True)
                del rows[example.id]
            continue
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
    # a camera keeps the split an earlier export gave it; only cameras new to this folder are assigned
    split_of = assign_groups(sizes, seed=seed, fixed=known_splits)
    summary.new_cameras = sorted(set(split_of) - set(known_splits))
    _write_camera_splits(out_dir, split_of)
    ordered = sorted(rows.values(), key=lambda r: (r["camera"], r["start"], r["id"]))
    for row in ordered:
        row["split"] = split_of[row["camera"]]
    _write_rows(labels_path, ordered)
    summary.cameras = len(sizes)  # cameras with rows (camera_splits.csv may remember more)
    for row in ordered:
        summary.classes[row["label"]] = summary.classes.get(row["label"], 0) + 1
        per = summary.splits.setdefault(row["split"], {})
        per[row["label"]] = per.get(row["label"], 0) + 1
    return summary
