"""``aislewatch model compare``: the wiring of :mod:`inference.compare` to the pipeline's own steps.

Videos are cut into clips by ingest's motion gate and clip grid (``ingest.motion.MotionDetector``,
``ingest.clips.ClipCutter``, with the settings of the camera the video came from when the configuration
has it, else the defaults), and alerts are decided by the alert worker's rule engine
(``alerts.rules.RuleEngine`` with ``alerts.n_of_m`` and ``alerts.cooldown_s``), so a comparison measures
the models, not a re-implementation of the pipeline.  Each model alerts at the threshold the deployment
would give it: ``alerts.threshold`` or ``model.threshold`` when configured, else its own calibrated one.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from common.clock import SystemClock
from common.db import Database
from common.models import Alert, ClipResult, MissedTheft
from common.schemas import AlertKind, ResultMessage
from common.settings import CameraSettings, ConfigError, Settings
from inference.compare import (
    Contender,
    CutVideo,
    Example,
    ExportError,
    ReviewedAlert,
    ScoredClip,
    Span,
    compare_videos,
    read_export,
    shadow_report,
)

log = logging.getLogger("aislewatch.model_compare")

# Replayed clips are placed on an arbitrary timeline: the rule's cooldown reads only differences.
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _camera_for(settings: Settings, example: Example) -> CameraSettings:
    """The camera the video came from, as configured (its motion masks and clip grid), else the defaults."""
    for _, camera in settings.cameras():
        if camera.id == example.camera:
            return camera.model_copy(update={"source": str(example.path), "realtime": False, "loop": False})
    return CameraSettings(id="compare", source=str(example.path))


def cut_video(settings: Settings, example: Example) -> CutVideo:
    """The clips ingest would cut from this video (motion-gated, on the clip grid), read once."""
    from ingest.capture import SourceEnded, SourceError, VideoSource
    from ingest.clips import ClipCutter, CutClip
    from ingest.motion import MotionGate, gate_for

    camera = _camera_for(settings, example)
    source = VideoSource.from_camera(camera)
    motion: MotionGate | None = None  # the ingest worker's gate, at its rate: the same clips as a camera
    cutter: ClipCutter | None = None
    clips: list[CutClip] = []
    frames = 0
    try:
        while True:
            try:
                frame = source.read()
            except SourceEnded:
                break
            except SourceError as exc:
                raise ExportError(f"{example.path}: cannot be read as video: {exc}") from None
            if motion is None or cutter is None:
                height, width = frame.image.shape[:2]
                motion = gate_for(camera, width, height)
                cutter = ClipCutter(camera.clip, camera.motion, source.fps)
            frames += 1
            for decided, result in motion.push(frame):
                clips.extend(cutter.push(decided, result))
        if motion is not None and cutter is not None:
            for decided, result in motion.flush():
                clips.extend(cutter.push(decided, result))
            clips.extend(cutter.flush())
    finally:
        source.close()
    shape = (0, camera.clip.frames, camera.clip.size, camera.clip.size, 3)
    stacked = np.stack([c.frames for c in clips]) if clips else np.zeros(shape, np.uint8)
    return CutVideo(stacked, tuple((c.source_start_s, c.source_end_s) for c in clips),
                    frames / source.fps if source.fps else 0.0)


def _results(camera_id: str, spans: list[tuple[datetime, datetime]], probabilities: list[float] | np.ndarray,
             threshold: float, ids: list[str]) -> list[ResultMessage]:
    return [
        ResultMessage(clip_id=clip_id, store_id="compare", camera_id=camera_id, captured_at=end, start_at=start,
                      source_start_s=(start - _EPOCH).total_seconds(), source_end_s=(end - _EPOCH).total_seconds(),
                      probability=float(p), threshold=threshold, model_version="compare", inferred_at=end)
        for clip_id, (start, end), p in zip(ids, spans, probabilities, strict=True)
    ]


def rule_alerts(settings: Settings, results: list[ResultMessage], threshold: float) -> list[Any]:
    """The suspicious-activity alerts the pipeline's rule raises on ``results`` (one camera, any order)."""
    from alerts.rules import RuleEngine

    engine = RuleEngine(settings.alerts, threshold, SystemClock())
    alerts: list[Any] = []
    for result in sorted(results, key=lambda r: r.captured_at):
        alerts.extend(a for a in engine.on_result(result) if a.alert_kind == AlertKind.SUSPICIOUS_ACTIVITY)
    return alerts


def count_video_alerts(settings: Settings, example: Example, video: CutVideo, probabilities: np.ndarray,
                       threshold: float) -> int:
    """How many alerts the rule raises on one cut video scored by one model."""
    spans = [(_EPOCH + timedelta(seconds=a), _EPOCH + timedelta(seconds=b)) for a, b in video.spans]
    results = _results("video", spans, probabilities, threshold, [f"clip-{i}" for i in range(len(spans))])
    return len(rule_alerts(settings, results, threshold))


def describe_rule(settings: Settings) -> str:
    n, m = settings.alerts.n_of_m
    return f"{n} of the last {m} clips at or above the threshold, cooldown {settings.alerts.cooldown_s:g} s"


def compare_export(settings: Settings, new: Path, old: Path, data: Path, *, fast: bool = True,
                   progress: Any = None, all_rows: bool = False) -> dict[str, Any]:
    """``model compare NEW OLD DATA``: both models on the export's held-out reviewed videos (every row with
    ``all_rows``), at the alert rule."""
    from inference.model import load_classifier

    selection = read_export(data, all_rows=all_rows)
    contenders = []
    shapes = {}
    for role, path in (("new", new), ("old", old)):
        scorer = load_classifier(Path(path), fast=fast, max_batch_size=settings.inference.max_batch_size,
                                 device=settings.model.device if role == "new" else None)
        shapes[role] = tuple(scorer.input_shape)
        contenders.append(Contender(role, Path(path), scorer, settings.alert_threshold(scorer.threshold)))
    if shapes["new"] != shapes["old"]:
        raise ConfigError(str(old), [f"the old model takes clips of shape {shapes['old']}, the new one "
                                     f"{shapes['new']}: they cannot be compared on the same clips"])
    report = compare_videos(
        selection, contenders, lambda e: cut_video(settings, e),
        lambda e, v, p, t: count_video_alerts(settings, e, v, p, t),
        batch_size=settings.inference.max_batch_size, progress=progress,
    )
    report["rule"] = describe_rule(settings)
    return report


# -- from shadow scores -------------------------------------------------------------------------------


def compare_shadow(settings: Settings, db: Database, *, days: float | None = None,
                   now: datetime | None = None) -> dict[str, Any]:
    """``model compare --from-shadow``: the stored clips scored by both the active and the candidate model.

    The candidate is ``model.shadow_path`` (its sidecar gives its version and calibrated threshold); only
    clips it scored are used.  The active model's threshold is the one stored with those results.
    """
    from inference.metadata import ModelMetadata

    shadow_path = settings.model.shadow_path
    if shadow_path is None:
        raise ConfigError("model.shadow_path", ["not set: name the candidate whose stored shadow scores to compare "
                                                "(its metadata gives its version and threshold)"])
    metadata = ModelMetadata.read(Path(shadow_path))
    version: str | None = metadata.version if metadata is not None else None
    now = now or datetime.now(UTC)
    since = now - timedelta(days=days) if days is not None else None
    with db.sessions() as session:
        stmt = select(ClipResult).where(ClipResult.shadow_probability.is_not(None))
        if since is not None:
            stmt = stmt.where(ClipResult.captured_at >= since)
        rows = list(session.scalars(stmt.order_by(ClipResult.captured_at, ClipResult.id)))
        versions = Counter(r.shadow_model_version for r in rows)
        if version is None:  # a candidate without a sidecar: the version it was stored under, if only one
            if len(versions) > 1:
                raise ConfigError(str(shadow_path), [f"no metadata sidecar, and the stored shadow scores come from "
                                                     f"{len(versions)} models: {sorted(map(str, versions))}"])
            version = next(iter(versions), None) or "unknown"
        rows = [r for r in rows if r.shadow_model_version == version]
        alert_stmt = select(Alert).where(Alert.kind == AlertKind.SUSPICIOUS_ACTIVITY.value)
        missed_stmt = select(MissedTheft)
        if since is not None:
            alert_stmt = alert_stmt.where(Alert.raised_at >= since)
            missed_stmt = missed_stmt.where(MissedTheft.end_at >= since)
        alerts = list(session.scalars(alert_stmt))
        missed_rows = list(session.scalars(missed_stmt))
        wanted = {cid for a in alerts for cid in (a.clip_ids or [])}
        spans = {
            r.clip_id: (r.start_at, r.captured_at)
            for r in session.scalars(select(ClipResult).where(ClipResult.clip_id.in_(wanted)))
        } if wanted else {}
    clips = [ScoredClip(r.clip_id, r.store_id, r.camera_id, r.start_at, r.captured_at, r.probability,
                        float(r.shadow_probability or 0.0)) for r in rows]
    reviewed = []
    for alert in alerts:
        own = [spans[c] for c in (alert.clip_ids or []) if c in spans]
        start = min((s for s, _ in own), default=alert.raised_at)
        end = max((e for _, e in own), default=alert.raised_at)
        reviewed.append(ReviewedAlert(alert.alert_id, alert.camera_id, start, end, alert.verdict))
    missed = [Span(m.camera_id, m.start_at, m.end_at) for m in missed_rows]
    active_versions = Counter(r.model_version for r in rows)
    active_threshold = Counter(r.threshold for r in rows).most_common(1)[0][0] if rows else 0.5
    candidate_threshold = settings.alert_threshold(metadata.threshold if metadata is not None else 0.5)

    def replay(group: list[ScoredClip], probabilities: list[float], threshold: float) -> list[Span]:
        by_id = {c.clip_id: c for c in group}
        results = _results(group[0].camera_id, [(c.start_at, c.captured_at) for c in group], probabilities,
                           threshold, [c.clip_id for c in group])
        out = []
        for alert in rule_alerts(settings, results, threshold):
            hit = [by_id[c] for c in alert.clip_ids]
            out.append(Span(alert.camera_id, min(c.start_at for c in hit), max(c.captured_at for c in hit)))
        return out

    report = shadow_report(
        clips, reviewed, missed, replay,
        active=(", ".join(sorted(active_versions)) or "none", float(active_threshold)),
        candidate=(version, candidate_threshold),
    )
    report["rule"] = describe_rule(settings)
    report["period"] = {"since": since.isoformat() if since else None, "until": now.isoformat()}
    other = {str(v): n for v, n in versions.items() if v != version}
    if other:
        report["other_shadow_versions"] = other  # scored by an earlier candidate: not this one's scores
    return report
