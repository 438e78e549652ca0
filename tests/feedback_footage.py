"""Real motion video for the feedback tests: synthetic store scenes (``inference.synth``) encoded by ingest's
``SegmentEncoder`` into H.264 segments, the classified clip stored for each, and alert videos remuxed from them
as the alert video maker does."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from common.db import Database
from common.evidence import Segment, SegmentEncoder, alert_video_path, remux
from common.models import Alert
from common.schemas import AlertKind, AlertMessage, ResultMessage
from inference.synth import render_window

FPS = 15
SECONDS = 2.0  # 30 frames: more than the 20 a training clip samples
MODEL_VERSION = "aw-convlstm-test-1"


def film(evidence_dir: Path, camera_id: str, start: datetime, label: str, seed: int) -> Segment:
    """One motion segment of ``camera_id`` from ``start``: a rendered shoplifting or normal window."""
    frames, _ = render_window(label, seed, width=160, height=96, fps=FPS, duration_s=SECONDS)  # type: ignore[arg-type]
    encoder = SegmentEncoder(evidence_dir, camera_id, start, width=160, height=96)
    for index, frame in enumerate(frames):
        encoder.add(frame, start + timedelta(seconds=index / FPS))
    segment = encoder.close()
    assert segment is not None
    return segment


def store_clip(db: Database, store_id: str, segment: Segment, probability: float, clip_id: str) -> None:
    db.write_results([ResultMessage(
        clip_id=clip_id, store_id=store_id, camera_id=segment.camera_id, start_at=segment.start,
        captured_at=segment.end, source_start_s=0.0, source_end_s=SECONDS, probability=probability,
        threshold=0.5, model_version=MODEL_VERSION, inferred_at=segment.end,
    )])


def raise_alert(db: Database, evidence_dir: Path, store_id: str, segment: Segment, alert_id: str, *,
                probability: float = 0.9, with_video: bool = True) -> None:
    """A suspicious-activity alert over the segment's one clip; its evidence video remuxed from the segment."""
    clip_id = f"{alert_id}-clip"
    store_clip(db, store_id, segment, probability, clip_id)
    db.write_alerts([AlertMessage(
        alert_id=alert_id, alert_kind=AlertKind.SUSPICIOUS_ACTIVITY, store_id=store_id,
        camera_id=segment.camera_id, raised_at=segment.end, probability=probability, clip_ids=(clip_id,),
    )])
    if with_video:
        video = remux([segment], alert_video_path(evidence_dir, segment.camera_id, alert_id, segment.end)).path
        with db.session() as session:
            session.execute(update(Alert).where(Alert.alert_id == alert_id).values(evidence_video_path=str(video)))
