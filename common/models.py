"""Database tables (SQLAlchemy 2.x).  The schema is created and upgraded by Alembic (common/migrations)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Store(Base):
    __tablename__ = "stores"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")


class Camera(Base):
    __tablename__ = "cameras"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    store_id: Mapped[str] = mapped_column(ForeignKey("stores.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))


class ClipResult(Base):
    """One classified clip.  ``clip_id`` is unique, so a clip delivered twice gives one row."""

    __tablename__ = "clip_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    clip_id: Mapped[str] = mapped_column(String(64), unique=True)
    store_id: Mapped[str] = mapped_column(String(64))
    camera_id: Mapped[str] = mapped_column(String(64))
    start_at: Mapped[datetime] = mapped_column(UtcDateTime())
    captured_at: Mapped[datetime] = mapped_column(UtcDateTime())
    source_start_s: Mapped[float] = mapped_column(Float)
    source_end_s: Mapped[float] = mapped_column(Float)
    probability: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    suspicious: Mapped[bool] = mapped_column(Boolean)
    model_version: Mapped[str] = mapped_column(String(100))
    evidence_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    inferred_at: Mapped[datetime] = mapped_column(UtcDateTime())
    stored_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (
        Index("ix_clip_results_store_time", "store_id", "captured_at"),
        Index("ix_clip_results_camera_time", "camera_id", "captured_at"),
    )


class Alert(Base):
    """A raised alert and what the security desk decided about it."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    store_id: Mapped[str] = mapped_column(String(64))
    camera_id: Mapped[str] = mapped_column(String(64))
    raised_at: Mapped[datetime] = mapped_column(UtcDateTime())
    probability: Mapped[float | None] = mapped_column(Float, nullable=True)
    clip_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    source_start_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    source_end_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    evidence_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(32), default="open")
    verdict: Mapped[str | None] = mapped_column(String(32), nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    __table_args__ = (
        Index("ix_alerts_store_time", "store_id", "raised_at"),
        # The alert worker's start-up rebuild: the last alert of each camera and kind (migration 0002).
        Index("ix_alerts_camera_kind_time", "camera_id", "kind", "raised_at"),
    )


class AlertDelivery(Base):
    """The outbox: one row per alert and notification channel, written in the alert's own transaction.

    The delivery loop (``alerts.outbox``) sends the due ``pending`` rows and marks each ``delivered``,
    ``failed`` (the receiver refused it for good) or ``expired`` (still undelivered after
    ``notifications.give_up_after``); a failed attempt only moves ``next_attempt_at`` on.  A row pending
    when the worker stops is sent when it starts again.
    """

    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(String(64), ForeignKey("alerts.alert_id"))
    channel: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    __table_args__ = (
        UniqueConstraint("alert_id", "channel", name="uq_alert_deliveries_alert_channel"),
        Index("ix_alert_deliveries_due", "status", "next_attempt_at"),
    )


class CameraHealthEvent(Base):
    __tablename__ = "camera_health_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    store_id: Mapped[str] = mapped_column(String(64))
    camera_id: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    detail: Mapped[str] = mapped_column(Text, default="")
    reconnects: Mapped[int] = mapped_column(Integer, default=0)
