"""Migration 0003 on the real PostgreSQL: an existing database upgrades, and the audit log is append-only."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from common.db import Database
from common.schemas import AlertKind, AlertMessage

pytestmark = pytest.mark.postgres


def test_0002_database_upgrades_and_the_audit_log_refuses_update_and_delete(pg_url: str) -> None:
    db = Database.from_url(pg_url)
    try:
        db.upgrade("0002")
        with db.engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO alerts (alert_id, kind, store_id, camera_id, raised_at, clip_ids, message, status, "
                "verdict, acknowledged_at, acknowledged_by) VALUES ('old-1', 'suspicious_activity', 's1', 'c1', "
                "now(), '[]', '', 'acknowledged', 'theft', now(), 'ana')"
            ))
        db.upgrade()
        db.write_alerts([AlertMessage(alert_id="new-1", alert_kind=AlertKind.CAMERA_OFFLINE, store_id="s1",
                                      camera_id="c1", raised_at=datetime.now(UTC))])
        with db.engine.begin() as connection:
            assert connection.execute(text("SELECT verdict FROM alerts WHERE alert_id = 'old-1'")).scalar() \
                == "theft_confirmed"
            events = connection.execute(text("SELECT alert_id, event FROM alert_events ORDER BY id")).all()
            connection.execute(text("INSERT INTO audit_log (at, action, success, address, detail) "
                                    "VALUES (now(), 'sign_in', true, '', '')"))
        assert [tuple(e) for e in events] == [("old-1", "raised"), ("old-1", "acknowledged"), ("new-1", "raised")]
        for statement in ("UPDATE audit_log SET detail = 'edited'", "DELETE FROM audit_log"):
            with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as connection:
                connection.execute(text(statement))
        with db.engine.begin() as connection:
            assert connection.execute(text("SELECT count(*) FROM audit_log")).scalar() == 1
    finally:
        db.close()
