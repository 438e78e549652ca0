"""Alert videos on the real PostgreSQL: an upgraded database's older alerts are not revisited, a new alert gets
its video, its evidence_ready event and its waiting e-mail row made due, in one transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from alerts.evidence_video import AlertVideoMaker
from common.clock import FakeClock
from common.db import Database
from common.evidence import SegmentEncoder
from common.schemas import AlertKind, AlertMessage, DeliveryStatus
from common.settings import EvidenceSettings

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def test_older_alerts_are_settled_by_the_upgrade_and_a_new_one_gets_its_video(pg_url: str, tmp_path: Path) -> None:
    db = Database.from_url(pg_url)
    try:
        db.upgrade("0003")
        with db.engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO alerts (alert_id, kind, store_id, camera_id, raised_at, clip_ids, message, status) "
                "VALUES ('old-1', 'suspicious_activity', 's1', 'cam', now(), '[]', '', 'open')"))
        db.upgrade()
        encoder = SegmentEncoder(tmp_path, "cam", T0 - timedelta(seconds=5), width=64, height=48)
        for i in range(100):
            encoder.add(np.full((48, 64, 3), i * 2, np.uint8), T0 - timedelta(seconds=5) + timedelta(seconds=i / 10))
        assert encoder.close() is not None
        clock = FakeClock(T0)
        db.write_alerts([AlertMessage(alert_id="new-1", alert_kind=AlertKind.SUSPICIOUS_ACTIVITY, store_id="s1",
                                      camera_id="cam", raised_at=T0)], ["email"], now=clock.now())
        db.record_delivery(db.deliveries("new-1")[0].id, DeliveryStatus.PENDING,
                           0, next_attempt_at=T0 + timedelta(seconds=15))  # held for the video, as the outbox does
        videos = AlertVideoMaker(db, tmp_path, EvidenceSettings(), clock)
        assert videos.make_due() == 1 and videos.made == 1
        with db.engine.begin() as connection:
            rows = dict(connection.execute(text("SELECT alert_id, evidence_video_path FROM alerts")).all())
            events = connection.execute(text("SELECT alert_id, event FROM alert_events ORDER BY id")).all()
            due = connection.execute(text("SELECT next_attempt_at FROM alert_deliveries")).scalar_one()
        assert rows["old-1"] is None and Path(rows["new-1"]).is_file()
        assert [tuple(e) for e in events][-1] == ("new-1", "evidence_ready")
        assert due == T0
        assert videos.make_due() == 0
    finally:
        db.close()
