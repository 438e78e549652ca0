"""Comparing two models before a chain switches: on reviewed alerts at the alert rule, or on shadow scores.

Two sources of evidence, both judged the way a guard meets a model, as alerts rather than clip scores:

* **A reviewed-alert export** (``aislewatch feedback export``: ``shoplifting/`` and ``normal/`` videos plus
  ``labels.csv``).  Each video is cut into clips exactly as ingest cuts a camera (motion gate and clip
  grid), each model scores the same clips, and the pipeline's alert rule (N of the last M clips at or above
  the threshold, with its cooldown) decides whether it would have alerted.  A ``shoplifting/`` video that
  raised an alert is a caught theft, one that did not a missed one; every alert on a ``normal/`` video is a
  false alarm.  Only the held-out ``test`` rows are used (the split is by camera, so a model fine-tuned on
  the rest never saw those cameras); an export without any is refused unless every row is asked for
  (``--all-rows``), and the report says so.  The export holds only the seconds around each alert, so no
  rate per camera-hour is given from it; and its videos were chosen by the active model (``SELECTION_BIAS``,
  printed with every report).
* **Shadow scores** already stored (``model.shadow_path``): see :func:`shadow_report`.

The cutting and the rule belong to ingest and alerts, which this role does not import; the composition
root hands them in (``common.app.model_compare``), so what is compared is what runs.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from common.schemas import Verdict
from inference.labels import LABELS_FILE, REQUIRED
from inference.metadata import CLASS_NAMES

NORMAL, SHOPLIFTING = CLASS_NAMES
THEFT_VERDICTS = frozenset({Verdict.THEFT_CONFIRMED.value, Verdict.THEFT_PREVENTED.value})
FALSE_ALARM = Verdict.FALSE_ALARM.value
SELECTION_BIAS = (
    "selection bias: every normal/ video is an alert raised by the active model (judged a false alarm), and "
    "every shoplifting/ video but the marked missed thefts is one of its alerts too, so the active (old) model "
    "scores near 100% false alarms on normal/ and near 100% recall by construction. These numbers say which of "
    "the old model's alerts the new one would keep or drop, not either model's rate on ordinary footage; "
    "for alerts per real camera-hour use --from-shadow."
)


class ExportError(ValueError):
    """A folder that is not a reviewed-alert export (or one whose rows name videos it lacks)."""


@dataclass(frozen=True)
class Example:
    """One reviewed video of the export and its label (the class folder it lies in)."""

    path: Path
    label: str  # "shoplifting" or "normal"
    id: str  # the labels.csv ``id``: an alert id, or ``missed-<n>`` for a marked missed theft
    store: str
    camera: str
    split: str = ""

    @property
    def positive(self) -> bool:
        return self.label == SHOPLIFTING


@dataclass(frozen=True)
class ExportSelection:
    """The examples compared and which rows of the export they are (``rows`` says it in words)."""

    examples: tuple[Example, ...]
    rows: str  # e.g. "held-out test split (12 of 40 rows)" or "all 40 rows (the export has no test split)"
    skipped: tuple[str, ...] = ()


def _find_video(folder: Path, row: dict[str, str]) -> Path | None:
    """The video a labels.csv row names in its ``path`` column (relative to the export folder)."""
    named = (row.get("path") or "").strip()
    if not named:
        return None
    path = Path(named) if Path(named).is_absolute() else folder / named
    return path if path.is_file() else None


def read_export(folder: Path, *, all_rows: bool = False) -> ExportSelection:
    """The examples of a feedback export (``inference.labels``): its held-out ``test`` rows.

    An export without ``test`` rows (fewer than 2 cameras, or not split) is refused, because the models may
    have trained on every row, unless ``all_rows``: then every row is used and the selection says so.
    Raises ExportError naming what is wrong: no labels.csv, missing columns, a row whose video is not in
    ``shoplifting/`` or ``normal/``.
    """
    folder = Path(folder)
    labels = folder / LABELS_FILE
    if not labels.is_file():
        raise ExportError(f"{folder}: no {LABELS_FILE} (expected a folder written by `aislewatch feedback export`)")
    with labels.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ExportError(f"{labels}: missing column(s) {', '.join(missing)}; has {reader.fieldnames} "
                              "(expected a folder written by `aislewatch feedback export`)")
        rows = list(reader)
    if not rows:
        raise ExportError(f"{labels}: no rows")
    test_rows = [r for r in rows if (r.get("split") or "").strip().lower() == "test"]
    if all_rows:
        chosen = rows
        described = (f"all {len(rows)} rows (--all-rows: {len(test_rows)} held out for test, the rest possibly "
                     "trained on by the models)")
    elif test_rows:
        chosen = test_rows
        described = f"held-out test split ({len(test_rows)} of {len(rows)} rows, split by camera)"
    else:
        raise ExportError(
            f"{labels}: no row is in the held-out test split (an export of fewer than 2 cameras has none), so "
            "the models may have trained on every row; pass --all-rows to compare on them anyway"
        )
    examples: list[Example] = []
    problems: list[str] = []
    skipped: list[str] = []
    for number, row in enumerate(chosen, start=2):  # line 1 is the header
        row_id = (row.get("id") or "").strip()
        path = _find_video(folder, row)
        if path is None:
            problems.append(f"{labels} line {number}: no video for {row_id!r} at {row.get('path')!r}")
            continue
        label = path.parent.name
        if label not in (SHOPLIFTING, NORMAL):
            problems.append(f"{labels} line {number}: {path} is not in {SHOPLIFTING}/ or {NORMAL}/")
            continue
        verdict = (row.get("verdict") or "").strip()
        if verdict == Verdict.UNSURE.value:
            skipped.append(f"{row_id}: verdict unsure")
            continue
        examples.append(Example(path=path, label=label, id=row_id or path.stem,
                                store=(row.get("store") or "").strip(), camera=(row.get("camera") or "").strip(),
                                split=(row.get("split") or "").strip()))
    if problems:
        raise ExportError("; ".join(problems[:10]) + (f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""))
    if not examples:
        raise ExportError(f"{labels}: none of the chosen rows can be compared")
    return ExportSelection(tuple(examples), described, tuple(skipped))


# -- scoring videos at the alert rule -----------------------------------------------------------------


@dataclass(frozen=True)
class CutVideo:
    """A video cut the way ingest cuts a camera: its clips (K, T, H, W, 3), their source spans, its length."""

    clips: np.ndarray = field(repr=False)
    spans: tuple[tuple[float, float], ...]
    duration_s: float

    def __post_init__(self) -> None:
        if len(self.clips) != len(self.spans):
            raise ValueError(f"{len(self.clips)} clips but {len(self.spans)} spans")


class Scorer(Protocol):
    """What compare needs of a model (``inference.model.ClipClassifier`` provides it)."""

    @property
    def version(self) -> str: ...

    def predict(self, clips: np.ndarray) -> np.ndarray: ...


# (example, cut video, each clip's probability, threshold) -> how many alerts the rule raises on it
AlertCounter = Callable[[Example, CutVideo, np.ndarray, float], int]
Cutter = Callable[[Example], CutVideo]


@dataclass(frozen=True)
class Contender:
    """One model in the comparison: its role ("new", "old"), file, loaded scorer and alert threshold."""

    role: str
    path: Path
    scorer: Scorer
    threshold: float


def rates(caught: int, missed: int, flagged_normal: int, false_alarms: int) -> dict[str, Any]:
    """Precision and recall over videos.  No rate per camera-hour: the export holds only the seconds around
    each alert, not the hours the cameras filmed (``--from-shadow`` gives alerts per real camera-hour)."""
    alerted = caught + flagged_normal
    return {
        "caught": caught,
        "missed": missed,
        "normal_videos_alerted": flagged_normal,
        "false_alarms": false_alarms,
        "precision": round(caught / alerted, 4) if alerted else None,
        "recall": round(caught / (caught + missed), 4) if caught + missed else None,
    }


def compare_videos(
    selection: ExportSelection,
    contenders: Sequence[Contender],
    cut: Cutter,
    count_alerts: AlertCounter,
    *,
    batch_size: int = 32,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Cut each video once, score its clips with every model, count each model's alerts by the rule."""
    examples = selection.examples
    outcomes: dict[str, list[dict[str, Any]]] = {c.role: [] for c in contenders}
    normal_s = 0.0
    no_clips = 0
    for index, example in enumerate(examples, start=1):
        video = cut(example)
        if example.label == NORMAL:
            normal_s += video.duration_s
        no_clips += int(len(video.clips) == 0)
        for contender in contenders:
            probabilities = _predict(contender.scorer, video.clips, batch_size)
            alerts = count_alerts(example, video, probabilities, contender.threshold) if len(video.clips) else 0
            outcomes[contender.role].append({
                "id": example.id, "camera": example.camera, "label": example.label,
                "clips": len(video.clips), "alerts": alerts,
                "peak_p": round(float(probabilities.max()), 4) if len(probabilities) else None,
            })
        if progress is not None and (index == len(examples) or index % 10 == 0):
            progress(f"  {index}/{len(examples)} videos cut and scored")
    normal_hours = normal_s / 3600.0
    models = []
    for contender in contenders:
        rows = outcomes[contender.role]
        caught = sum(1 for r in rows if r["label"] == SHOPLIFTING and r["alerts"])
        missed = sum(1 for r in rows if r["label"] == SHOPLIFTING and not r["alerts"])
        flagged = sum(1 for r in rows if r["label"] == NORMAL and r["alerts"])
        false_alarms = sum(r["alerts"] for r in rows if r["label"] == NORMAL)
        models.append({
            "role": contender.role, "path": str(contender.path), "version": contender.scorer.version,
            "threshold": round(contender.threshold, 4),
            **rates(caught, missed, flagged, false_alarms),
            "videos": rows,
        })
    return {
        "source": "export",
        "rows": selection.rows,
        "skipped": list(selection.skipped),
        "videos": len(examples),
        "shoplifting_videos": sum(1 for e in examples if e.positive),
        "normal_videos": sum(1 for e in examples if not e.positive),
        "normal_video_hours": round(normal_hours, 4),
        "videos_without_clips": no_clips,
        "models": models,
        "selection_bias": SELECTION_BIAS,
    }


def _predict(scorer: Scorer, clips: np.ndarray, batch_size: int) -> np.ndarray:
    if not len(clips):
        return np.zeros((0,), dtype=np.float32)
    parts = [np.asarray(scorer.predict(clips[i : i + batch_size]), dtype=np.float32).reshape(-1)
             for i in range(0, len(clips), batch_size)]
    return np.clip(np.concatenate(parts), 0.0, 1.0)


def format_export_report(report: dict[str, Any]) -> str:
    """The comparison as a table a person reads: one row per model."""
    lines = [
        f"Reviewed alerts: {report['rows']}; {report['shoplifting_videos']} shoplifting and "
        f"{report['normal_videos']} normal videos ({report['normal_video_hours'] * 60:.1f} minutes of reviewed "
        "normal video)",
    ]
    if report.get("rule"):
        lines.append(f"Alert rule: {report['rule']}")
    if report["videos_without_clips"]:
        lines.append(f"note: {report['videos_without_clips']} video(s) cut no clip (no motion, or too short): "
                     "no model can alert on them")
    if report["skipped"]:
        lines.append(f"note: {len(report['skipped'])} row(s) left out ({', '.join(report['skipped'][:3])}...)")
    header = (f"{'model':6} {'version':22} {'thr':>5} {'precision':>9} {'recall':>7} {'caught':>7} {'missed':>7} "
              f"{'false alarms':>12}")
    rule = "-" * len(header)
    lines += [rule, header, rule]
    for m in report["models"]:
        lines.append(
            f"{m['role']:6} {m['version'][:22]:22} {m['threshold']:5.2f} {_cell(m['precision']):>9} "
            f"{_cell(m['recall']):>7} {m['caught']:7d} {m['missed']:7d} {m['false_alarms']:12d}"
        )
    lines += [rule, f"note: {report['selection_bias']}"]
    return "\n".join(lines)


def _cell(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# -- shadow scores already stored --------------------------------------------------------------------


@dataclass(frozen=True)
class ScoredClip:
    """A stored clip result with both models' scores (the active one's and the candidate's)."""

    clip_id: str
    store_id: str
    camera_id: str
    start_at: datetime
    captured_at: datetime
    probability: float
    shadow_probability: float


@dataclass(frozen=True)
class ReviewedAlert:
    """A stored suspicious-activity alert and its verdict (None: not reviewed)."""

    alert_id: str
    camera_id: str
    start_at: datetime
    end_at: datetime
    verdict: str | None


@dataclass(frozen=True)
class Span:
    """A camera's time span (an alert the replayed rule raised, or a marked missed theft)."""

    camera_id: str
    start_at: datetime
    end_at: datetime

    def overlaps(self, camera_id: str, start_at: datetime, end_at: datetime) -> bool:
        return self.camera_id == camera_id and self.start_at <= end_at and start_at <= self.end_at


# (clips of one camera, oldest first, the probability of each, threshold) -> the alerts the rule raises
RuleReplay = Callable[[list[ScoredClip], list[float], float], list[Span]]


def camera_hours(clips: Iterable[ScoredClip]) -> float:
    """Camera-hours the clips cover: per camera, from its first clip's start to its last clip's end.

    Both models are judged over the same hours, so the ratio between them does not depend on this choice;
    the absolute rate counts the hours a camera was filmed in shadow, idle hours between included.
    """
    first: dict[str, datetime] = {}
    last: dict[str, datetime] = {}
    for clip in clips:
        first[clip.camera_id] = min(first.get(clip.camera_id, clip.start_at), clip.start_at)
        last[clip.camera_id] = max(last.get(clip.camera_id, clip.captured_at), clip.captured_at)
    return sum((last[c] - first[c]).total_seconds() for c in first) / 3600.0


def shadow_report(
    clips: Sequence[ScoredClip],
    reviewed: Sequence[ReviewedAlert],
    missed_thefts: Sequence[Span],
    replay: RuleReplay,
    *,
    active: tuple[str, float],
    candidate: tuple[str, float],
) -> dict[str, Any]:
    """What each model's scores of the same clips would have raised, and how that meets the verdicts.

    ``active`` and ``candidate`` are (version, threshold).  Both models are replayed through the same rule
    over the same clips, so their alert counts are comparable.  Verdicts exist only for alerts the active
    model raised, so they are used as far as they go and no further:

    * of the reviewed alerts judged theft (confirmed or prevented), how many the candidate also raises
      (an alert of its own overlapping in time on that camera): thefts it would keep;
    * of those judged false alarm, how many it also raises: false alarms it would keep;
    * missed thefts a manager marked (no active alert) that the candidate would have alerted on;
    * candidate alerts matching no reviewed alert nor missed theft: *unjudged*, neither right nor wrong.

    No precision is claimed for the candidate: its unjudged alerts may be thefts the active model missed or
    false alarms, and only a review (or ``model compare`` on a later export) can tell.
    """
    by_camera: dict[str, list[ScoredClip]] = defaultdict(list)
    for clip in sorted(clips, key=lambda c: (c.camera_id, c.captured_at)):
        by_camera[clip.camera_id].append(clip)
    hours = camera_hours(clips)
    covered = {c: (group[0].start_at, group[-1].captured_at) for c, group in by_camera.items()}

    def in_shadow(camera_id: str, start_at: datetime, end_at: datetime) -> bool:
        span = covered.get(camera_id)
        return span is not None and span[0] <= end_at and start_at <= span[1]

    judged = [a for a in reviewed if in_shadow(a.camera_id, a.start_at, a.end_at)]
    thefts = [a for a in judged if a.verdict in THEFT_VERDICTS]
    false_alarms = [a for a in judged if a.verdict == FALSE_ALARM]
    missed = [m for m in missed_thefts if in_shadow(m.camera_id, m.start_at, m.end_at)]
    models = []
    for role, (version, threshold), pick in (
        ("active", active, lambda c: c.probability),
        ("candidate", candidate, lambda c: c.shadow_probability),
    ):
        alerts: list[Span] = []
        for group in by_camera.values():
            alerts.extend(replay(group, [pick(c) for c in group], threshold))

        def raised(camera_id: str, start_at: datetime, end_at: datetime, spans: list[Span] = alerts) -> bool:
            return any(s.overlaps(camera_id, start_at, end_at) for s in spans)

        matched = [s for s in alerts if any(s.overlaps(a.camera_id, a.start_at, a.end_at) for a in judged)
                   or any(s.overlaps(m.camera_id, m.start_at, m.end_at) for m in missed)]
        models.append({
            "role": role, "version": version, "threshold": round(threshold, 4),
            "alerts": len(alerts),
            "alerts_per_camera_hour": round(len(alerts) / hours, 2) if hours > 0 else None,
            "thefts_kept": sum(1 for a in thefts if raised(a.camera_id, a.start_at, a.end_at)),
            "false_alarms_kept": sum(1 for a in false_alarms if raised(a.camera_id, a.start_at, a.end_at)),
            "missed_thefts_caught": sum(1 for m in missed if raised(m.camera_id, m.start_at, m.end_at)),
            "unjudged_alerts": len(alerts) - len(matched),
        })
    return {
        "source": "shadow",
        "clips": len(clips),
        "cameras": len(by_camera),
        "camera_hours": round(hours, 3),
        "reviewed_thefts": len(thefts),
        "reviewed_false_alarms": len(false_alarms),
        "unreviewed_alerts": sum(1 for a in judged if a.verdict is None),
        "missed_thefts": len(missed),
        "models": models,
        "note": ("Verdicts exist only for alerts the active model raised, so the candidate's precision cannot be "
                 "measured from them: 'unjudged' alerts are the candidate's own, never reviewed."),
    }


def format_shadow_report(report: dict[str, Any]) -> str:
    """The shadow comparison as a table."""
    lines = [
        f"Shadow scores: {report['clips']} clips of {report['cameras']} camera(s), "
        f"{report['camera_hours']:.2f} camera-hours; reviewed: {report['reviewed_thefts']} theft(s), "
        f"{report['reviewed_false_alarms']} false alarm(s), {report['unreviewed_alerts']} unreviewed; "
        f"{report['missed_thefts']} marked missed theft(s)",
    ]
    if report.get("rule"):
        lines.append(f"Alert rule: {report['rule']}")
    header = (f"{'model':9} {'version':22} {'thr':>5} {'alerts':>6} {'per cam-h':>9} {'thefts kept':>11} "
              f"{'FA kept':>7} {'missed caught':>13} {'unjudged':>8}")
    rule = "-" * len(header)
    lines += [rule, header, rule]
    for m in report["models"]:
        lines.append(
            f"{m['role']:9} {m['version'][:22]:22} {m['threshold']:5.2f} {m['alerts']:6d} "
            f"{_cell(m['alerts_per_camera_hour'], 2):>9} "
            f"{m['thefts_kept']:>5d} of {report['reviewed_thefts']:<3d} "
            f"{m['false_alarms_kept']:>3d}/{report['reviewed_false_alarms']:<3d} "
            f"{m['missed_thefts_caught']:>7d} of {report['missed_thefts']:<3d} "
            f"{m['unjudged_alerts']:8d}"
        )
    lines += [rule, f"note: {report['note']}"]
    return "\n".join(lines)


def to_json(report: dict[str, Any]) -> str:
    """The report as JSON (paths and times as text)."""
    return json.dumps(report, indent=2, default=str)
