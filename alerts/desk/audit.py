"""The append-only audit log (who did what, where, from which address) and the sign-in rate limit read from it.

Rows are only ever inserted: triggers (migration 0003) refuse UPDATE and DELETE on ``audit_log``, and nothing
here issues either.  Pass an open ``Session`` to ``record`` to write the row in the caller's transaction, so an
action and its audit row commit (or roll back) together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerts.desk.roles import Principal, Role
from common.db import Database
from common.models import AuditEntry
from common.schemas import utc_now


class AuditAction(StrEnum):
    SIGN_IN = "sign_in"  # success or failure, by the row's success flag
    SIGN_OUT = "sign_out"
    ALERT_ACKNOWLEDGED = "alert_acknowledged"
    ALERT_REOPENED = "alert_reopened"
    ALERT_RESOLVED = "alert_resolved"
    EVIDENCE_VIEWED = "evidence_viewed"
    EVIDENCE_DOWNLOADED = "evidence_downloaded"
    EVIDENCE_HELD = "evidence_held"
    EVIDENCE_RELEASED = "evidence_released"
    USER_ADDED = "user_added"
    USER_DISABLED = "user_disabled"
    USER_ENABLED = "user_enabled"
    PASSWORD_CHANGED = "password_changed"
    TOKEN_CREATED = "token_created"
    TOKEN_REVOKED = "token_revoked"
    ACCESS_DENIED = "access_denied"
    MISSED_THEFT_MARKED = "missed_theft_marked"  # a manager marked a theft the model missed (target: the camera)


@dataclass(frozen=True)
class AuditRow:
    """One audit-log entry as the desk shows it."""

    id: int
    at: datetime
    action: str  # an AuditAction value (kept a str so rows written by a newer version still read)
    success: bool
    username: str | None
    role: str | None
    store_id: str | None
    target: str | None
    address: str
    detail: str


def _clip(value: str | None, length: int) -> str | None:
    """Values cut to their column's length: PostgreSQL refuses longer ones, and an audit row must not fail."""
    return None if value is None else value[:length]


def record(
    target: Database | Session,
    action: AuditAction,
    *,
    username: str | None = None,
    role: str | None = None,
    store_id: str | None = None,
    target_id: str | None = None,
    address: str = "",
    success: bool = True,
    detail: str = "",
    at: datetime | None = None,
) -> None:
    """Append one row: into ``target``'s transaction when it is a Session, else in a transaction of its own."""
    entry = AuditEntry(
        at=at or utc_now(),
        action=AuditAction(action).value,
        success=success,
        username=_clip(username, 200),
        role=_clip(role, 16),
        store_id=_clip(store_id, 64),
        target=_clip(target_id, 200),
        address=_clip(address, 64) or "",
        detail=detail,
    )
    if isinstance(target, Session):
        target.add(entry)
        return
    with target.session() as session:
        session.add(entry)


def record_for(target: Database | Session, action: AuditAction, principal: Principal, **kw: Any) -> None:
    """``record`` with the username and role taken from ``principal``."""
    record(target, action, username=principal.username, role=principal.role.value, **kw)


def entries(
    db: Database,
    principal: Principal,
    *,
    limit: int = 200,
    before_id: int | None = None,
    action: str | None = None,
) -> list[AuditRow]:
    """The newest ``limit`` rows the principal may read, newest first; page on with ``before_id``.

    An admin reads everything; a manager reads the rows of their stores (``store_id`` in their stores: rows
    about no single store, such as a failed sign-in of an unknown name, are the admin's); a guard none.
    """
    if not principal.can_view_audit:
        raise PermissionError(f"{principal.username} ({principal.role}) may not read the audit log")
    stmt = select(AuditEntry)
    if principal.role is not Role.ADMIN:
        stmt = stmt.where(AuditEntry.store_id.in_(sorted(principal.stores)))
    if before_id is not None:
        stmt = stmt.where(AuditEntry.id < before_id)
    if action is not None:
        stmt = stmt.where(AuditEntry.action == action)
    stmt = stmt.order_by(AuditEntry.id.desc()).limit(max(0, limit))
    with db.sessions() as session:
        return [
            AuditRow(
                id=r.id, at=r.at, action=r.action, success=r.success, username=r.username, role=r.role,
                store_id=r.store_id, target=r.target, address=r.address, detail=r.detail,
            )
            for r in session.scalars(stmt)
        ]


def sign_in_blocked(
    db: Database | Session,
    username: str,
    address: str,
    *,
    max_failures: int,
    window: timedelta,
    now: datetime | None = None,
) -> bool:
    """Whether a sign-in must be refused unchecked: ``max_failures`` failed sign-ins within ``window`` for this
    username, or from this address (so with 5 allowed, the sixth rapid try is refused).  An empty username or
    address counts nothing, so requests without a known address do not block each other."""
    since = (now or utc_now()) - window
    failed = select(func.count()).select_from(AuditEntry).where(
        AuditEntry.action == AuditAction.SIGN_IN.value, AuditEntry.success.is_(False), AuditEntry.at > since
    )
    checks = []
    if username:
        checks.append(failed.where(AuditEntry.username == username[:200]))
    if address:
        checks.append(failed.where(AuditEntry.address == address[:64]))

    def blocked(session: Session) -> bool:
        return any((session.scalar(stmt) or 0) >= max_failures for stmt in checks)

    if isinstance(db, Session):
        return blocked(db)
    with db.sessions() as session:
        return blocked(session)
