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
from sqlalchemy.sql.expression import false
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
    # Shadow mode (model.shadow_path): a candidate model's score of the same clip; it raises nothing.
    shadow_probability: Mapped[float | None] = mapped_column(Float, nullable=True)
    shadow_model_version: Mapped[str | None] = mapped_column(String(100), nullable=True)

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
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    evidence_video_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Bumped by every desk action: an acknowledgement sent against an older version is refused, so two
    # guards acting at once never overwrite each other (migration 0003).
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # A manager's hold: the evidence of a held alert is never deleted (migration 0004).
    evidence_hold: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    hold_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    hold_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    evidence_deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # When the video maker (alerts.evidence_video) was done with the alert: its video stored in
    # evidence_video_path, or none to be had (the camera recorded no video); NULL while it is pending.
    evidence_video_settled_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

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


class AlertEvent(Base):
    """Append-only history of every alert: raised (in the alert's own transaction), acknowledged, reopened,
    resolved.  ``id`` is the security desk's live-feed event id, so a page that lost its connection asks for
    everything after the last id it saw (``Last-Event-ID``)."""

    __tablename__ = "alert_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(String(64), ForeignKey("alerts.alert_id"), index=True)
    store_id: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    actor: Mapped[str | None] = mapped_column(String(200), nullable=True)

    __table_args__ = (Index("ix_alert_events_store_id", "store_id", "id"),)


class User(Base):
    """A person who signs in to the security desk.  ``stores`` are the stores a guard or manager works for;
    an admin sees every store."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(200), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    stores: Mapped[list[str]] = mapped_column(JSON, default=list)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class DeskSession(Base):
    """A signed-in browser.  Only the SHA-256 of the cookie's token is stored; revoking sets ``revoked_at``."""

    __tablename__ = "desk_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    address: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")


class ApiToken(Base):
    """A token for an integration, acting as its user with that user's role and stores; stored hashed."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class LoginAttempt(Base):
    """One sign-in try, written before the password is checked: the rate limit counts these (pending and
    failed ones since the last success), so parallel guesses cannot all pass the check before any is
    recorded.  Unlike the audit log these rows are pruned once older than a day."""

    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    outcome: Mapped[str] = mapped_column(String(16))  # pending, ok, failed, refused

    __table_args__ = (
        Index("ix_login_attempts_user_at", "username", "at"),
        Index("ix_login_attempts_address_at", "address", "at"),
    )


class AuditEntry(Base):
    """Append-only: who did what, where, from which address.  Triggers (migration 0003) refuse UPDATE and
    DELETE on both SQLite and PostgreSQL; no code path issues either."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    action: Mapped[str] = mapped_column(String(48))
    success: Mapped[bool] = mapped_column(Boolean, default=True)
    username: Mapped[str | None] = mapped_column(String(200), nullable=True)
    role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    store_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    target: Mapped[str | None] = mapped_column(String(200), nullable=True)
    address: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_store_at", "store_id", "at"),
        # Sign-in rate limiting counts recent failures per user and per address.
        Index("ix_audit_log_action_user_at", "action", "username", "at"),
        Index("ix_audit_log_action_address_at", "action", "address", "at"),
    )


class MissedTheft(Base):
    """A theft the model did not alert on, marked by a manager on a camera's timeline: a positive example
    for the next training run (``aislewatch feedback export``)."""

    __tablename__ = "missed_thefts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(64), index=True)
    camera_id: Mapped[str] = mapped_column(String(64))
    start_at: Mapped[datetime] = mapped_column(UtcDateTime())
    end_at: Mapped[datetime] = mapped_column(UtcDateTime())
    marked_by: Mapped[str] = mapped_column(String(200))
    marked_at: Mapped[datetime] = mapped_column(UtcDateTime())
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    video_path: Mapped[str | None] = mapped_column(Text, nullable=True)


class ReportRun(Base):
    """One report rendered (and sent) for a scope and period: a restarted scheduler never sends a period twice."""

    __tablename__ = "report_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(64))  # a store id, or "chain" for the admins' summary
    period_start: Mapped[datetime] = mapped_column(UtcDateTime())
    period_end: Mapped[datetime] = mapped_column(UtcDateTime())
    rendered_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    path: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (UniqueConstraint("scope", "period_start", "period_end", name="uq_report_runs_period"),)
