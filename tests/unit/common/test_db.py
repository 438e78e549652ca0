"""Database: the Alembic schema, idempotent writes, and backoff while the database is away."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.exc import OperationalError

from common.db import Database, DatabaseUnavailable
from common.schemas import AlertKind, AlertMessage, CameraHealthMessage, CameraState, ResultMessage

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def result(clip_id: str, p: float = 0.9) -> ResultMessage:
    return ResultMessage(
        clip_id=clip_id, store_id="s", camera_id="cam", captured_at=T0 + timedelta(seconds=4), start_at=T0,
        source_start_s=0, source_end_s=4, probability=p, threshold=0.5, model_version="v1", inferred_at=T0,
    )


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database.from_url(f"sqlite:///{tmp_path / 'aw.db'}")
    database.upgrade()
    yield database
    database.close()


def test_upgrade_creates_every_table(db: Database) -> None:
    tables = set(inspect(db.engine).get_table_names())
    assert {"stores", "cameras", "clip_results", "alerts", "camera_health_events", "alembic_version"} <= tables
    db.upgrade()  # a second upgrade is a no-op


def test_same_clip_twice_gives_one_row(db: Database) -> None:
    assert db.write_results([result("a"), result("b")]) == 2
    assert db.write_results([result("a"), result("a"), result("c")]) == 1
    rows = db.results()
    assert sorted(r.clip_id for r in rows) == ["a", "b", "c"]
    assert rows[0].captured_at.tzinfo is not None
    assert rows[0].suspicious is True


def test_alerts_and_health_events_are_idempotent(db: Database) -> None:
    alert = AlertMessage(alert_id="al1", alert_kind=AlertKind.SUSPICIOUS_ACTIVITY, store_id="s", camera_id="cam",
                         raised_at=T0, probability=0.9, clip_ids=("a", "b"))
    assert db.write_alerts([alert]) == 1
    assert db.write_alerts([alert]) == 0
    assert db.alerts()[0].clip_ids == ["a", "b"]
    event = CameraHealthMessage(event_id="e1", store_id="s", camera_id="cam", state=CameraState.OFFLINE, at=T0)
    assert db.write_health_events([event, event]) == 1


def test_retrying_waits_out_an_outage_without_losing_the_batch(db: Database) -> None:
    calls = {"n": 0}

    def flaky() -> int:
        calls["n"] += 1
        if calls["n"] < 3:
            raise OperationalError("INSERT", {}, Exception("connection refused"))
        return db.write_results([result("x")])

    assert db.retrying(flaky) == 1
    assert calls["n"] == 3
    assert [r.clip_id for r in db.results()] == ["x"]


def test_retrying_gives_up_only_at_shutdown(db: Database) -> None:
    stop = threading.Event()
    stop.set()

    def down() -> int:
        raise OperationalError("INSERT", {}, Exception("connection refused"))

    with pytest.raises(DatabaseUnavailable):
        db.retrying(down, stop)
