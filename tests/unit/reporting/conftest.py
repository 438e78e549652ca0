"""Shared fixtures for reporting tests: a migrated SQLite database and helpers that insert rows."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from common.db import Database
from common.models import Alert, AlertEvent
from common.schemas import (
    AlertKind,
    AlertMessage,
    AlertStatus,
    CameraHealthMessage,
    CameraState,
    ResultMessage,
    Verdict,
)
from common.settings import Settings, load_settings

_ids = itertools.count()


def result(store: str, camera: str, at: datetime, probability: float, threshold: float = 0.5,
           snapshot: str | None = None) -> ResultMessage:
    n = next(_ids)
    return ResultMessage(
        clip_id=f"clip-{n}", store_id=store, camera_id=camera, captured_at=at, start_at=at - timedelta(seconds=4),
        source_start_s=float(n), source_end_s=float(n) + 4, probability=probability, threshold=threshold,
        model_version="test-1", snapshot_path=snapshot, inferred_at=at,
    )


def alert(store: str, camera: str, at: datetime, probability: float | None = 0.9,
          kind: AlertKind = AlertKind.SUSPICIOUS_ACTIVITY, snapshot: str | None = None) -> AlertMessage:
    return AlertMessage(
        alert_id=f"alert-{next(_ids)}", alert_kind=kind, store_id=store, camera_id=camera, raised_at=at,
        probability=probability, snapshot_path=snapshot, message="test alert",
    )


def health(store: str, camera: str, at: datetime, state: CameraState) -> CameraHealthMessage:
    return CameraHealthMessage(event_id=f"ev-{next(_ids)}", store_id=store, camera_id=camera, state=state, at=at)


def set_verdict(
    db: Database,
    alert_id: str,
    verdict: Verdict | None,
    *,
    after: timedelta = timedelta(minutes=1),
    by: str = "guard.one",
    note: str | None = None,
    status: AlertStatus = AlertStatus.ACKNOWLEDGED,
    reached_desk: timedelta | None = timedelta(0),
) -> None:
    """Acknowledge an alert the way the desk does: verdict, status, who, when (``after`` it was raised).
    Its "raised" event is moved to ``reached_desk`` after it was raised (the desk had it as it was raised),
    or, with None, left at when ``write_alerts`` stored it."""
    with db.session() as session:
        raised_at = session.scalars(select(Alert.raised_at).where(Alert.alert_id == alert_id)).one()
        session.execute(update(Alert).where(Alert.alert_id == alert_id).values(
            verdict=verdict, status=status, acknowledged_by=by, acknowledged_at=raised_at + after, note=note))
        if reached_desk is not None:
            session.execute(update(AlertEvent).where(AlertEvent.alert_id == alert_id, AlertEvent.event == "raised")
                            .values(at=raised_at + reached_desk))


def make_settings(tmp_path: Path, **reporting: object) -> Settings:
    return load_settings(overrides={
        "stores": [
            {"id": "store-a", "name": "Alpha Market", "timezone": "Europe/London",
             "manager_emails": ["alpha-manager@example.com"],
             "cameras": [{"id": "a-entrance", "name": "Alpha Entrance", "source": "a.mp4"},
                         {"id": "a-aisle", "name": "Alpha Aisle 3", "source": "b.mp4"}]},
            {"id": "store-b", "name": "Bravo Foods", "timezone": "America/New_York",
             "cameras": [{"id": "b-till", "name": "Bravo Tills", "source": "c.mp4"}]},
        ],
        "reporting": {"output_dir": str(tmp_path / "reports"), **reporting},
        "service": {"evidence_dir": str(tmp_path / "evidence")},
    })


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)
