"""The evidence janitor and evidence holds on the real PostgreSQL: batched marking (UPDATE ... RETURNING) with
the hold in its WHERE clause, and the desk refusing a hold on evidence already deleted."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from alerts.desk.queries import ActionNotAllowed, DeskQueries
from alerts.desk.roles import Principal, Role
from alerts.janitor import EvidenceJanitor, Owner, Reason
from common.clock import FakeClock
from common.db import Database
from common.models import Alert, Store
from common.settings import EvidenceSettings
from tests.unit.alerts.test_janitor import NOW, add_alert, stored

pytestmark = pytest.mark.postgres


def test_retention_holds_and_a_racing_hold_on_postgres(pg_url: str, tmp_path: Path) -> None:
    db = Database.from_url(pg_url)
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    try:
        db.upgrade()
        with db.session() as session:
            session.add(Store(id="store-1", name="Store 1", timezone="UTC"))
        expired = add_alert(db, evidence, "expired", raised_ago=timedelta(days=10), verdict="false_alarm")
        held = add_alert(db, evidence, "held", raised_ago=timedelta(days=10), verdict="false_alarm", held=True)
        racing = add_alert(db, evidence, "racing", raised_ago=timedelta(days=10), verdict="false_alarm")
        fresh = add_alert(db, evidence, "fresh", raised_ago=timedelta(days=1), verdict="false_alarm")

        class HeldMeanwhile(EvidenceJanitor):
            def _owners(self, *args: Any, **kwargs: Any) -> list[Owner]:
                owners = super()._owners(*args, **kwargs)
                with db.session() as session:
                    session.execute(update(Alert).where(Alert.alert_id == "racing").values(evidence_hold=True))
                return owners

        clock = FakeClock(NOW)
        report = HeldMeanwhile(db, evidence, EvidenceSettings(keep_false_alarm_days=7), clock=clock.now).sweep()
        assert not any(f.exists() for f in expired) and all(f.exists() for f in held + racing + fresh)
        assert report.alerts_deleted == {Reason.FALSE_ALARM: 1} and report.deleted == {Reason.FALSE_ALARM: 3}
        assert stored(db, "expired").evidence_deleted_at == NOW and stored(db, "expired").verdict == "false_alarm"
        assert stored(db, "racing").evidence_deleted_at is None

        manager = Principal(1, "ms", Role.MANAGER, frozenset({"store-1"}))
        queries = DeskQueries(db)
        with pytest.raises(ActionNotAllowed, match="already deleted"):
            queries.hold(manager, "expired", version=stored(db, "expired").version)
        view = queries.hold(manager, "fresh", version=stored(db, "fresh").version)
        assert view.evidence_hold and view.hold_by == "ms"
    finally:
        db.close()
