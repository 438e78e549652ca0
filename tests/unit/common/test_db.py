"""Database: the Alembic schema, idempotent writes, and backoff while the database is away."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError, OperationalError

from common.db import Database, DatabaseUnavailable
from common.schemas import (
    AlertKind,
    AlertMessage,
    CameraHealthMessage,
    CameraState,
    DeliveryStatus,
    ResultMessage,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def result(clip_id: str, p: float = 0.9) -> ResultMessage:
    return ResultMessage(
        clip_id=clip_id, store_id="s", camera_id="cam", captured_at=T0 + timedelta(seconds=4), start_at=T0,
        source_start_s=0, source_end_s=4, probability=p, threshold=0.5, model_version="v1", inferred_at=T0,
    )


def test_upgrade_creates_every_table(db: Database) -> None:
    tables = set(inspect(db.engine).get_table_names())
    assert {"stores", "cameras", "clip_results", "alerts", "camera_health_events", "alert_deliveries",
            "alembic_version"} <= tables
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


def test_a_schema_error_fails_fast_instead_of_being_retried(tmp_path: Path) -> None:
    fresh = Database.from_url(f"sqlite:///{tmp_path / 'never-upgraded.db'}")  # no tables
    calls = {"n": 0}

    def write() -> int:
        calls["n"] += 1
        return fresh.write_results([result("x")])

    try:
        with pytest.raises(OperationalError, match="no such table"):
            fresh.retrying(write)
        assert calls["n"] == 1
    finally:
        fresh.close()


class _Pg(Exception):
    """What psycopg2 raises: an error with the server's SQLSTATE (None for client-side connection errors)."""

    def __init__(self, message: str, pgcode: str | None) -> None:
        super().__init__(message)
        self.pgcode = pgcode


@pytest.mark.parametrize(
    ("orig", "retried"),
    [
        (sqlite3.OperationalError("database is locked"), True),
        (sqlite3.OperationalError("unable to open database file"), True),
        (sqlite3.OperationalError("no such column: shape"), False),
        (_Pg("could not connect to server: Connection refused", None), True),
        (_Pg('FATAL:  password authentication failed for user "aw"', None), False),
        (_Pg('FATAL:  database "aislewatch" does not exist', None), False),
        (_Pg("terminating connection due to administrator command", "57P01"), True),
        (_Pg("the database system is starting up", "57P03"), True),
        (_Pg("connection failure", "08006"), True),
        (_Pg("canceling statement due to statement timeout", "57014"), False),
        (_Pg("disk full", "53100"), False),
    ],
)
def test_only_connection_errors_are_retried(db: Database, orig: Exception, retried: bool) -> None:
    calls = {"n": 0}

    def once_failing() -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("INSERT", {}, orig)
        return 1

    if retried:
        assert db.retrying(once_failing) == 1 and calls["n"] == 2
    else:
        with pytest.raises(OperationalError):
            db.retrying(once_failing)
        assert calls["n"] == 1


def test_migrations_build_the_schema_the_models_describe(db: Database) -> None:
    """Alembic's own comparison: nothing in common/models.py is missing from (or different in) the migrations."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from common.models import Base

    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def alert_message(alert_id: str, at: datetime = T0, camera_id: str = "cam",
                  kind: AlertKind = AlertKind.SUSPICIOUS_ACTIVITY) -> AlertMessage:
    return AlertMessage(alert_id=alert_id, alert_kind=kind, store_id="s", camera_id=camera_id, raised_at=at,
                        probability=0.9, clip_ids=("a", "b"), message="m")


def test_an_alert_and_its_outbox_rows_are_written_together(db: Database) -> None:
    assert db.write_alerts([alert_message("al1")], ["webhook", "email"], now=T0) == 1
    rows = db.deliveries("al1")
    assert [(r.channel, r.status, r.attempts, r.next_attempt_at) for r in rows] == [
        ("webhook", "pending", 0, T0), ("email", "pending", 0, T0)]
    assert db.write_alerts([alert_message("al1")], ["webhook", "email"], now=T0) == 0
    assert len(db.deliveries()) == 2  # a re-raised alert adds no second delivery
    assert db.pending_deliveries() == {"webhook": 1, "email": 1}

    (due,) = db.due_deliveries(["webhook"], now=T0)
    assert due.channel == "webhook" and due.attempts == 0 and due.alert == alert_message("al1")
    assert db.due_deliveries(["webhook"], now=T0 - timedelta(seconds=1)) == []
    db.record_delivery(due.id, DeliveryStatus.DELIVERED, 1, delivered_at=T0)
    assert db.due_deliveries(["webhook", "email"], now=T0)[0].channel == "email"
    assert db.pending_deliveries() == {"email": 1}


def test_a_failed_outbox_insert_leaves_no_alert(db: Database) -> None:
    """One transaction: when the delivery rows cannot be written, the alert is not stored either."""
    with db.engine.begin() as connection:
        connection.execute(text(
            "CREATE TRIGGER no_deliveries BEFORE INSERT ON alert_deliveries BEGIN SELECT RAISE(ABORT, 'full'); END"))
    with pytest.raises(IntegrityError):
        db.write_alerts([alert_message("al1")], ["webhook"], now=T0)
    assert db.alerts() == []
    assert db.write_alerts([alert_message("al2")], [], now=T0) == 1  # no channels, no outbox rows to fail


def test_rebuild_reads(db: Database) -> None:
    def at(i: int, camera: str = "cam") -> ResultMessage:
        base = result(f"{camera}-{i}")
        return base.model_copy(update={"camera_id": camera, "captured_at": T0 + timedelta(seconds=i)})

    db.write_results([at(i) for i in range(6)] + [at(i, "other") for i in range(6)])
    assert [r.clip_id for r in db.results_before("cam", T0 + timedelta(seconds=4))] == [
        "cam-0", "cam-1", "cam-2", "cam-3"]
    assert [r.clip_id for r in db.results_before("cam", T0 + timedelta(seconds=4), after=T0 + timedelta(seconds=1),
                                                 limit=2)] == ["cam-2", "cam-3"]  # the newest, oldest first
    assert db.results_before("cam", T0 + timedelta(seconds=5))[0] == at(0)  # the message it was stored from

    db.write_alerts([alert_message("a1", T0 + timedelta(seconds=2)), alert_message("a2", T0 + timedelta(seconds=5)),
                     alert_message("o1", T0 + timedelta(seconds=9), kind=AlertKind.CAMERA_OFFLINE)])
    assert db.last_alert_at("cam", AlertKind.SUSPICIOUS_ACTIVITY) == T0 + timedelta(seconds=5)
    assert db.last_alert_at("cam", AlertKind.SUSPICIOUS_ACTIVITY, before=T0 + timedelta(seconds=5)) == (
        T0 + timedelta(seconds=2))
    assert db.last_alert_at("other", AlertKind.SUSPICIOUS_ACTIVITY) is None
    assert db.alert_exists("o1") and not db.alert_exists("o2")


def test_open_outages_reach_back_to_the_last_good_event(db: Database) -> None:
    def event(event_id: str, camera: str, state: CameraState, s: int) -> CameraHealthMessage:
        return CameraHealthMessage(event_id=event_id, store_id="s", camera_id=camera, state=state,
                                   at=T0 + timedelta(seconds=s))

    db.write_health_events([
        event("a1", "a", CameraState.OFFLINE, 0), event("a2", "a", CameraState.ONLINE, 1),
        event("a3", "a", CameraState.OFFLINE, 2), event("a4", "a", CameraState.ERROR, 3),  # a: down since a3
        event("b1", "b", CameraState.OFFLINE, 0), event("b2", "b", CameraState.ONLINE, 1),  # b: back
        event("c1", "c", CameraState.ERROR, 5),  # c: down since its first event
    ])
    outages = db.open_outages()
    assert {camera: [e.event_id for e in events] for camera, events in outages.items()} == {
        "a": ["a4", "a3", "a2"], "c": ["c1"]}


def test_migration_0003_upgrades_a_database_with_alerts_already_reviewed(tmp_path: Path) -> None:
    """An existing (0002) database keeps its alerts: the old "theft" verdict becomes "theft_confirmed", each
    alert gets its history for the desk's live feed, and the new audit log refuses UPDATE and DELETE."""
    db = Database.from_url(f"sqlite:///{tmp_path / 'old.db'}")
    db.upgrade("0002")
    with db.engine.begin() as connection:
        for alert_id, verdict, acked in (("a-1", "theft", "2026-01-01 10:05:00"), ("a-2", None, None),
                                         ("a-3", "false_alarm", "2026-01-01 10:07:00")):
            connection.execute(text(
                "INSERT INTO alerts (alert_id, kind, store_id, camera_id, raised_at, clip_ids, message, status, "
                "verdict, acknowledged_at, acknowledged_by) VALUES (:id, 'suspicious_activity', 's1', 'c1', "
                "'2026-01-01 10:00:00', '[]', '', :status, :verdict, :acked, :by)"
            ), {"id": alert_id, "verdict": verdict, "acked": acked, "by": "ana" if acked else None,
                "status": "acknowledged" if acked else "open"})
    db.upgrade()
    with db.engine.begin() as connection:
        verdicts = dict(connection.execute(text("SELECT alert_id, verdict FROM alerts")).tuples().all())
        events = connection.execute(text("SELECT alert_id, event, actor FROM alert_events ORDER BY id")).all()
        versions = {v for (v,) in connection.execute(text("SELECT version FROM alerts"))}
    assert verdicts == {"a-1": "theft_confirmed", "a-2": None, "a-3": "false_alarm"}
    assert [(a, e) for a, e, _ in events if e == "raised"] == [("a-1", "raised"), ("a-2", "raised"), ("a-3", "raised")]
    assert sorted((a, actor) for a, e, actor in events if e == "acknowledged") == [("a-1", "ana"), ("a-3", "ana")]
    assert versions == {1}
    with db.engine.begin() as connection:
        connection.execute(text("INSERT INTO audit_log (at, action, success, address, detail) "
                                "VALUES ('2026-01-01 11:00:00', 'sign_in', 1, '', '')"))
    for statement in ("UPDATE audit_log SET detail = 'edited'", "DELETE FROM audit_log"):
        with pytest.raises(IntegrityError, match="append-only"), db.engine.begin() as connection:
            connection.execute(text(statement))
    db.close()


def test_a_new_alert_writes_its_raised_event_in_the_same_transaction(db: Database) -> None:
    from common.models import AlertEvent

    alert = AlertMessage(alert_id="al-1", alert_kind=AlertKind.SUSPICIOUS_ACTIVITY, store_id="store-1",
                         camera_id="cam-1", raised_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert db.write_alerts([alert, alert]) == 1
    assert db.write_alerts([alert]) == 0  # stored before: no second event either
    with db.session() as session:
        events = [(e.alert_id, e.store_id, e.event) for e in session.query(AlertEvent).all()]
    assert events == [("al-1", "store-1", "raised")]


def test_migration_0003_downgrades_with_desk_data_and_upgrades_again(tmp_path: Path) -> None:
    """Downgrading a database the desk has used (events, a resolved alert, an unsure verdict) leaves what
    0002's code reads, and upgrading again restores the desk's schema."""
    db = Database.from_url(f"sqlite:///{tmp_path / 'round.db'}")
    db.upgrade()  # head, then down through every desk-era revision to 0002
    now = datetime(2026, 1, 1, tzinfo=UTC)
    db.write_alerts([AlertMessage(alert_id=f"a-{i}", alert_kind=AlertKind.SUSPICIOUS_ACTIVITY, store_id="s",
                                  camera_id="c", raised_at=now) for i in range(3)])
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE alerts SET status = 'resolved', verdict = 'theft_prevented' WHERE alert_id = 'a-0'"))
        connection.execute(text("UPDATE alerts SET status = 'acknowledged', verdict = 'unsure' WHERE alert_id = 'a-1'"))
    from alembic import command
    from alembic.config import Config

    from common.db import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0002")
    with db.engine.begin() as connection:
        rows = dict(connection.execute(text("SELECT alert_id, status || ':' || coalesce(verdict, '-') FROM alerts")).all())
        tables = set(inspect(connection).get_table_names())
    assert rows == {"a-0": "acknowledged:theft", "a-1": "open:-", "a-2": "open:-"}
    assert not tables & {"alert_events", "users", "desk_sessions", "api_tokens", "audit_log", "login_attempts"}
    db.upgrade()
    with db.engine.begin() as connection:
        assert connection.execute(text("SELECT count(*) FROM alert_events")).scalar() == 3
    db.close()
