"""Database access: engine, schema upgrades (Alembic), idempotent batched writes, reconnect with backoff."""

from __future__ import annotations

import io
import logging
import random
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from common.models import Alert, AlertDelivery, AlertEvent, Camera, CameraHealthEvent, ClipResult, Store
from common.schemas import (
    MODEL_FIT_STATES,
    AlertEventKind,
    AlertKind,
    AlertMessage,
    AlertStatus,
    CameraHealthMessage,
    CameraState,
    DeliveryStatus,
    ResultMessage,
    utc_now,
)

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_MIGRATION_LOCK_KEY = 0x41574442  # "AWDB": advisory lock serializing schema upgrades and store syncs (PostgreSQL)
T = TypeVar("T")


class DatabaseUnavailable(Exception):
    """The database cannot be reached right now; the caller keeps its data and retries."""


@dataclass(frozen=True)
class DueDelivery:
    """One outbox row that is due, with the alert it delivers."""

    id: int
    channel: str
    attempts: int  # attempts made before this one
    created_at: datetime
    alert: AlertMessage
    video_path: str | None = None  # the alert's evidence video, once made
    video_settled: bool = True  # False while the video maker may still make one (e-mails wait for it)


# PostgreSQL error classes that mean "the server cannot serve us now", not "this statement is wrong":
# connection exceptions (08xxx), the server shutting down or starting (57P01-57P03), too many connections.
_PG_TRANSIENT_PREFIXES = ("08", "57P01", "57P02", "57P03", "53300")
# Connection errors that waiting cannot cure: wrong credentials, a database or role that is not there.
_PG_REFUSALS = ("authentication failed", "does not exist", "no pg_hba.conf entry", "password")
# SQLite operational errors that pass: another writer holds the file, or the file system hiccupped.
_SQLITE_TRANSIENT = ("database is locked", "database table is locked", "busy", "unable to open database file",
                     "disk i/o error")


def _is_disconnect(exc: BaseException) -> bool:
    """Whether retrying can help: the connection was lost or the server is away; never a schema or
    programming error (SQLite's "no such table" is an OperationalError too, and fails fast)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    orig = exc.orig
    if isinstance(orig, sqlite3.Error):
        message = str(orig).lower()
        return any(part in message for part in _SQLITE_TRANSIENT)
    code = getattr(orig, "pgcode", None)
    if code is None:  # raised while connecting: the server is away, or it refused us for good
        message = str(orig).lower()
        return not any(part in message for part in _PG_REFUSALS)
    return code.startswith(_PG_TRANSIENT_PREFIXES)


class Database:
    """One database (SQLite file or PostgreSQL) with the AisleWatch schema."""

    def __init__(self, engine: Engine, retry_max_s: float = 30.0) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self.retry_max_s = retry_max_s

    @classmethod
    def from_url(cls, url: str, pool_size: int = 5, retry_max_s: float = 30.0) -> Database:
        parsed = make_url(url)
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)
        engine = create_engine(url, **kwargs)
        if parsed.get_backend_name() == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        return cls(engine, retry_max_s=retry_max_s)

    @classmethod
    def from_settings(cls, settings: Any) -> Database:
        return cls.from_url(
            settings.database_url(), pool_size=settings.database.pool_size, retry_max_s=settings.database.retry_max_s
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def upgrade(self, revision: str = "head") -> None:
        """Create or upgrade the schema with Alembic (the same migrations for SQLite and PostgreSQL)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.begin() as connection:
            if self.dialect == "postgresql":
                # Scaled mode starts several workers at once: without this lock two of them create the
                # schema concurrently and one fails (duplicate alembic_version).  The lock is released when
                # this transaction ends; the next process then finds the schema up to date.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as session, session.begin():
            yield session

    def close(self) -> None:
        self.engine.dispose()

    # -- reconnecting ----------------------------------------------------------------------------
    def retrying(
        self,
        operation: Callable[[], T],
        stop: threading.Event | None = None,
        what: str = "database write",
    ) -> T:
        """Run ``operation`` until it succeeds, backing off (capped, jittered) while the database is down.

        Raises DatabaseUnavailable only when ``stop`` is set, so the caller can keep its batch.
        """
        delay = 0.2
        attempt = 0
        while True:
            try:
                return operation()
            except DBAPIError as exc:
                if not _is_disconnect(exc):
                    raise
                attempt += 1
                log.warning("%s failed (attempt %d, database unavailable): %s; retrying in %.1fs",
                            what, attempt, type(exc.orig).__name__ if exc.orig else exc, delay)
                self.engine.dispose()
                waiter = stop or threading.Event()
                if waiter.wait(delay):
                    raise DatabaseUnavailable(f"{what} abandoned at shutdown after {attempt} attempts") from exc
                delay = min(self.retry_max_s, delay * 2) * random.uniform(0.8, 1.2)

    # -- idempotent writes -----------------------------------------------------------------------
    def _insert_ignore_stmt(self, table: Any, keys: Sequence[str]) -> Any:
        if self.dialect == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing(index_elements=list(keys))
        if self.dialect == "sqlite":
            return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(keys))
        raise NotImplementedError(self.dialect)  # pragma: no cover - other backends are not supported

    def _insert_ignore(self, table: Any, rows: Sequence[dict[str, Any]], key: str) -> int:
        """Insert ``rows``, skipping those whose ``key`` is stored already; how many were new."""
        return len(self._insert_new_keys(table, rows, key))

    def _insert_new_keys(
        self, table: Any, rows: Sequence[dict[str, Any]], key: str, connection: Connection | None = None
    ) -> list[Any]:
        """Insert ``rows``, skipping those whose ``key`` is stored already; the keys that were new."""
        if not rows:
            return []
        stmt = self._insert_ignore_stmt(table, [key]).returning(getattr(table.c, key))
        if connection is not None:
            return list(connection.execute(stmt, list(rows)).scalars())
        with self.engine.begin() as own:
            return list(own.execute(stmt, list(rows)).scalars())

    def _copy_insert_ignore(self, table: Any, rows: Sequence[dict[str, Any]], key: str) -> int:
        """PostgreSQL bulk path: COPY into a session-local staging table, then one
        ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``.  Same idempotence as ``_insert_ignore``, but the
        server parses one small statement instead of a multi-row VALUES text (2-3x the rows/s, see bench db).
        """
        if not rows:
            return 0
        columns = list(rows[0])
        cols = ", ".join(columns)
        stage = f"_stage_{table.name}"
        buffer = io.StringIO()
        for row in rows:
            buffer.write("\t".join(_copy_text(row[c]) for c in columns))
            buffer.write("\n")
        buffer.seek(0)
        with self.engine.begin() as connection:
            cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(
                    f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS "
                    f"SELECT {cols} FROM {table.name} WITH NO DATA"
                )
                cursor.copy_expert(f"COPY {stage} ({cols}) FROM STDIN", buffer)
                cursor.execute(
                    f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {stage} "
                    f"ON CONFLICT ({key}) DO NOTHING RETURNING {key}"
                )
                return len(cursor.fetchall())
            finally:
                cursor.close()

    @staticmethod
    def result_rows(results: Sequence[ResultMessage]) -> list[dict[str, Any]]:
        """The clip_results rows for ``results`` (one per clip id, stamped with the time of storing)."""
        now = utc_now()
        return [
            {
                "clip_id": r.clip_id,
                "store_id": r.store_id,
                "camera_id": r.camera_id,
                "start_at": r.start_at,
                "captured_at": r.captured_at,
                "source_start_s": r.source_start_s,
                "source_end_s": r.source_end_s,
                "probability": r.probability,
                "threshold": r.threshold,
                "suspicious": r.probability >= r.threshold,
                "model_version": r.model_version,
                "evidence_path": r.snapshot_path,
                "inferred_at": r.inferred_at,
                "stored_at": now,
                "shadow_probability": r.shadow_probability,
                "shadow_model_version": r.shadow_model_version,
            }
            for r in _unique(results, lambda r: r.clip_id)
        ]

    def write_results(self, results: Sequence[ResultMessage]) -> int:
        """Insert results; a clip already stored is ignored.  Returns how many rows were new."""
        rows = self.result_rows(results)
        if self.dialect == "postgresql":
            return self._copy_insert_ignore(ClipResult.__table__, rows, "clip_id")
        return self._insert_ignore(ClipResult.__table__, rows, "clip_id")

    def stored_capture_times(self, clip_ids: Sequence[str]) -> dict[str, datetime]:
        """``captured_at`` of those of ``clip_ids`` that have a result row: a clip id stored with another capture
        time was cut again (a re-run, or an ingest restarted on the file), one with the same time is a redelivery."""
        if not clip_ids:
            return {}
        with self.sessions() as session:
            rows = session.execute(
                select(ClipResult.clip_id, ClipResult.captured_at).where(ClipResult.clip_id.in_(list(clip_ids)))
            )
            return {clip_id: captured_at for clip_id, captured_at in rows}

    def write_alerts(
        self, alerts: Sequence[AlertMessage], channels: Sequence[str] = (), now: datetime | None = None
    ) -> int:
        """Store alerts (an alert id stored before is ignored) and, in the same transaction, their "raised"
        event and one pending outbox row per new alert and channel in ``channels``, due at ``now``.  Returns
        how many were new.

        One transaction for both is what makes "stored" imply "will be delivered": a crash either keeps
        the alert and its deliveries or neither, and a re-raised alert adds no second delivery.
        """
        rows = [
            {
                "alert_id": a.alert_id,
                "kind": a.alert_kind.value,
                "store_id": a.store_id,
                "camera_id": a.camera_id,
                "raised_at": a.raised_at,
                "probability": a.probability,
                "clip_ids": list(a.clip_ids),
                "source_start_s": a.source_start_s,
                "source_end_s": a.source_end_s,
                "evidence_path": a.snapshot_path,
                "message": a.message,
                "status": AlertStatus.OPEN.value,
            }
            for a in _unique(alerts, lambda a: a.alert_id)
        ]
        if not rows:
            return 0
        when = now or utc_now()
        stores = {row["alert_id"]: row["store_id"] for row in rows}
        with self.engine.begin() as connection:
            new_ids = self._insert_new_keys(Alert.__table__, rows, "alert_id", connection)
            if new_ids:  # the security desk's live feed follows this history (AlertEvent)
                connection.execute(insert(AlertEvent), [
                    {"alert_id": alert_id, "store_id": stores[alert_id], "event": AlertEventKind.RAISED.value,
                     "at": when, "actor": None}
                    for alert_id in new_ids
                ])
            deliveries = [
                {
                    "alert_id": alert_id,
                    "channel": channel,
                    "status": DeliveryStatus.PENDING.value,
                    "attempts": 0,
                    "created_at": when,
                    "next_attempt_at": when,
                }
                for alert_id in new_ids
                for channel in dict.fromkeys(channels)
            ]
            if deliveries:
                connection.execute(insert(AlertDelivery), deliveries)
        return len(new_ids)

    def write_health_events(self, events: Sequence[CameraHealthMessage]) -> int:
        rows = [
            {
                "event_id": e.event_id,
                "store_id": e.store_id,
                "camera_id": e.camera_id,
                "state": e.state.value,
                "at": e.at,
                "detail": e.detail,
                "reconnects": e.reconnects,
            }
            for e in _unique(events, lambda e: e.event_id)
        ]
        return self._insert_ignore(CameraHealthEvent.__table__, rows, "event_id")

    def sync_stores(self, settings: Any) -> None:
        """Make the stores and cameras tables match the configuration (adds and renames, never deletes)."""
        with self.session() as session:
            if self.dialect == "postgresql":
                # merge() is select-then-insert: processes starting together would insert the same rows.
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            for store in settings.stores:
                session.merge(Store(id=store.id, name=store.name, timezone=store.timezone))
                for camera in store.cameras:
                    session.merge(Camera(id=camera.id, store_id=store.id, name=camera.name))

    # -- the outbox ------------------------------------------------------------------------------
    def due_deliveries(self, channels: Sequence[str], now: datetime, limit: int = 50) -> list[DueDelivery]:
        """Pending outbox rows of ``channels`` whose next attempt is due at ``now``, oldest due first."""
        if not channels:
            return []
        stmt = (
            select(AlertDelivery, Alert)
            .join(Alert, Alert.alert_id == AlertDelivery.alert_id)
            .where(
                AlertDelivery.status == DeliveryStatus.PENDING.value,
                AlertDelivery.channel.in_(list(channels)),
                AlertDelivery.next_attempt_at <= now,
            )
            .order_by(AlertDelivery.next_attempt_at, AlertDelivery.id)
            .limit(limit)
        )
        with self.sessions() as session:
            return [
                DueDelivery(d.id, d.channel, d.attempts, d.created_at, alert_message(a),
                            video_path=a.evidence_video_path, video_settled=a.evidence_video_settled_at is not None)
                for d, a in session.execute(stmt)
            ]

    def record_delivery(
        self,
        delivery_id: int,
        status: DeliveryStatus,
        attempts: int,
        *,
        next_attempt_at: datetime | None = None,
        last_error: str | None = None,
        delivered_at: datetime | None = None,
    ) -> None:
        """Write the outcome of one delivery attempt (or of giving up) to its outbox row."""
        values: dict[str, Any] = {"status": status.value, "attempts": attempts, "last_error": last_error}
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        if delivered_at is not None:
            values["delivered_at"] = delivered_at
        with self.engine.begin() as connection:
            connection.execute(update(AlertDelivery).where(AlertDelivery.id == delivery_id).values(**values))

    def pending_deliveries(self) -> dict[str, int]:
        """How many outbox rows are still pending, by channel."""
        stmt = (
            select(AlertDelivery.channel, func.count())
            .where(AlertDelivery.status == DeliveryStatus.PENDING.value)
            .group_by(AlertDelivery.channel)
        )
        with self.engine.connect() as connection:
            return {channel: int(n) for channel, n in connection.execute(stmt)}

    def deliveries(self, alert_id: str | None = None) -> list[AlertDelivery]:
        with self.sessions() as session:
            stmt = select(AlertDelivery).order_by(AlertDelivery.id)
            if alert_id:
                stmt = stmt.where(AlertDelivery.alert_id == alert_id)
            return list(session.scalars(stmt))

    # -- what the alert rules rebuild their state from ---------------------------------------------
    def results_before(
        self, camera_id: str, before: datetime, after: datetime | None = None, limit: int = 100
    ) -> list[ResultMessage]:
        """The newest ``limit`` results of a camera captured in (``after``, ``before``), oldest first."""
        stmt = select(ClipResult).where(ClipResult.camera_id == camera_id, ClipResult.captured_at < before)
        if after is not None:
            stmt = stmt.where(ClipResult.captured_at > after)
        stmt = stmt.order_by(ClipResult.captured_at.desc(), ClipResult.id.desc()).limit(limit)
        with self.sessions() as session:
            rows = list(session.scalars(stmt))
        return [result_message(r) for r in reversed(rows)]

    def last_alert_at(self, camera_id: str, kind: AlertKind, before: datetime | None = None) -> datetime | None:
        """When the camera's newest alert of ``kind`` (raised before ``before``, if given) was raised."""
        stmt = select(Alert.raised_at).where(Alert.camera_id == camera_id, Alert.kind == kind.value)
        if before is not None:
            stmt = stmt.where(Alert.raised_at < before)
        with self.sessions() as session:
            return session.scalar(stmt.order_by(Alert.raised_at.desc()).limit(1))

    def alert_exists(self, alert_id: str) -> bool:
        with self.sessions() as session:
            return session.scalar(select(Alert.id).where(Alert.alert_id == alert_id)) is not None

    def open_outages(self, history: int = 100) -> dict[str, list[CameraHealthMessage]]:
        """Cameras whose newest health event is an outage (offline or error), each with its newest events,
        newest first, back to and including the last event that was not an outage (at most ``history``)."""
        outage_states = [CameraState.OFFLINE.value, CameraState.ERROR.value]
        fit_states = [state.value for state in MODEL_FIT_STATES]  # about the model, not the connection
        newest = (
            select(CameraHealthEvent.camera_id, func.max(CameraHealthEvent.at).label("at"))
            .where(CameraHealthEvent.state.notin_(fit_states))
            .group_by(CameraHealthEvent.camera_id)
            .subquery()
        )
        stmt = select(CameraHealthEvent.camera_id).join(
            newest, (CameraHealthEvent.camera_id == newest.c.camera_id) & (CameraHealthEvent.at == newest.c.at)
        ).where(CameraHealthEvent.state.in_(outage_states))
        out: dict[str, list[CameraHealthMessage]] = {}
        with self.sessions() as session:
            for camera_id in sorted(set(session.scalars(stmt))):
                events = session.scalars(
                    select(CameraHealthEvent)
                    .where(CameraHealthEvent.camera_id == camera_id, CameraHealthEvent.state.notin_(fit_states))
                    .order_by(CameraHealthEvent.at.desc(), CameraHealthEvent.id.desc())
                    .limit(history)
                )
                tail: list[CameraHealthMessage] = []
                for event_row in events:
                    tail.append(health_message(event_row))
                    if event_row.state not in outage_states:
                        break
                if tail and tail[0].state.value in outage_states:
                    out[camera_id] = tail
        return out

    # -- reads -----------------------------------------------------------------------------------
    def results(self, camera_id: str | None = None) -> list[ClipResult]:
        with self.sessions() as session:
            stmt = select(ClipResult).order_by(ClipResult.captured_at, ClipResult.id)
            if camera_id:
                stmt = stmt.where(ClipResult.camera_id == camera_id)
            return list(session.scalars(stmt))

    def alerts(self, store_id: str | None = None) -> list[Alert]:
        with self.sessions() as session:
            stmt = select(Alert).order_by(Alert.raised_at, Alert.id)
            if store_id:
                stmt = stmt.where(Alert.store_id == store_id)
            return list(session.scalars(stmt))

    def health_events(self, camera_id: str | None = None) -> list[CameraHealthEvent]:
        with self.sessions() as session:
            stmt = select(CameraHealthEvent).order_by(CameraHealthEvent.at, CameraHealthEvent.id)
            if camera_id:
                stmt = stmt.where(CameraHealthEvent.camera_id == camera_id)
            return list(session.scalars(stmt))


def result_message(row: ClipResult) -> ResultMessage:
    """A stored result as the message it was stored from."""
    return ResultMessage(
        clip_id=row.clip_id,
        store_id=row.store_id,
        camera_id=row.camera_id,
        captured_at=row.captured_at,
        start_at=row.start_at,
        source_start_s=row.source_start_s,
        source_end_s=row.source_end_s,
        probability=row.probability,
        threshold=row.threshold,
        model_version=row.model_version,
        snapshot_path=row.evidence_path,
        inferred_at=row.inferred_at,
    )


def alert_message(row: Alert) -> AlertMessage:
    """A stored alert as the message it was stored from."""
    return AlertMessage(
        alert_id=row.alert_id,
        alert_kind=AlertKind(row.kind),
        store_id=row.store_id,
        camera_id=row.camera_id,
        raised_at=row.raised_at,
        probability=row.probability,
        clip_ids=tuple(row.clip_ids or ()),
        source_start_s=row.source_start_s,
        source_end_s=row.source_end_s,
        snapshot_path=row.evidence_path,
        message=row.message,
    )


def health_message(row: CameraHealthEvent) -> CameraHealthMessage:
    """A stored health event as the message it was stored from."""
    return CameraHealthMessage(
        event_id=row.event_id,
        store_id=row.store_id,
        camera_id=row.camera_id,
        state=CameraState(row.state),
        at=row.at,
        detail=row.detail,
        reconnects=row.reconnects,
    )


def _unique(items: Sequence[T], key: Callable[[T], str]) -> list[T]:
    seen: set[str] = set()
    out: list[T] = []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            out.append(item)
    return out


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: Any) -> str:
    """One value in PostgreSQL's COPY text format (NULL is \\N)."""
    if value is None:
        return "\\N"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.isoformat()
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value).translate(_COPY_ESCAPES)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
