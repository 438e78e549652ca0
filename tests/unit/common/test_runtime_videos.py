"""An embedded run reports done only once its alerts' videos are made: when every file camera has ended, every
segment is closed, so ``Pipeline.drain`` settles the pending videos instead of leaving them to their wait."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from common.app.demo import count_evidence_videos
from common.app.runtime import Pipeline
from common.evidence import SegmentEncoder, video_duration_s
from common.inprocess_bus import InProcessBus
from common.schemas import AlertKind, AlertMessage, ResultMessage
from common.settings import load_settings


def test_drain_makes_the_pending_alert_videos_before_it_reports_done(tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    settings = load_settings(None, overrides={
        "stores": [{"id": "s", "cameras": [{"id": "cam", "source": "cam.mp4"}]}],
        "database": {"url": f"sqlite:///{tmp_path / 'aw.db'}"},
        "service": {"evidence_dir": str(evidence), "metrics_port": 0},
        "notifications": {"log": False},
    })
    # A file replayed faster than real time stamps its clips ahead of the wall clock: the window's end has not
    # come on the clock, and the file ended before the margin after the clips (no segment reaches past it).
    end = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    encoder = SegmentEncoder(evidence, "cam", end - timedelta(seconds=8), width=96, height=64)
    for i in range(80):
        encoder.add(np.full((64, 96, 3), (i * 3) % 255, np.uint8), end - timedelta(seconds=8 - i / 10))
    assert encoder.close() is not None

    pipeline = Pipeline.build(settings, {"alerts"}, bus=InProcessBus())
    db = pipeline.db
    assert db is not None
    db.write_results([ResultMessage(
        clip_id="clip-1", store_id="s", camera_id="cam", captured_at=end - timedelta(seconds=1),
        start_at=end - timedelta(seconds=5), source_start_s=0, source_end_s=4, probability=0.9, threshold=0.5,
        model_version="t", inferred_at=end)])
    db.write_alerts([AlertMessage(alert_id="a-1", alert_kind=AlertKind.SUSPICIOUS_ACTIVITY, store_id="s",
                                  camera_id="cam", raised_at=end - timedelta(seconds=1), clip_ids=("clip-1",))])
    pipeline.start()
    try:
        assert count_evidence_videos(db.alerts()) == 0
        assert pipeline.drain(timeout_s=30)
        (alert,) = db.alerts()
        assert alert.evidence_video_path and Path(alert.evidence_video_path).is_file()
        assert 7.5 < video_duration_s(Path(alert.evidence_video_path)) < 8.1
        assert count_evidence_videos(db.alerts()) == 1
    finally:
        pipeline.close()
