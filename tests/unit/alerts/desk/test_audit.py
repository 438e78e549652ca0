"""The audit log: append-only in the database, scoped by role."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError

from alerts.desk import audit
from alerts.desk.audit import AuditAction
from alerts.desk.roles import Principal, Role
from common.db import Database
from common.models import AuditEntry

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=15)

GUARD = Principal(1, "gina", Role.GUARD, frozenset({"store-1"}))
MANAGER = Principal(2, "mo", Role.MANAGER, frozenset({"store-1"}))
ADMIN = Principal(3, "root", Role.ADMIN, frozenset())


def test_a_row_written_in_a_session_commits_with_it(db: Database) -> None:
    with pytest.raises(RuntimeError), db.session() as session:
        audit.record_for(session, AuditAction.ALERT_ACKNOWLEDGED, GUARD, store_id="store-1", target_id="al-1")
        raise RuntimeError("the acknowledgement failed")
    assert audit.entries(db, ADMIN) == []
    with db.session() as session:
        audit.record_for(session, AuditAction.ALERT_ACKNOWLEDGED, GUARD, store_id="store-1", target_id="al-1",
                         address="10.0.0.1", detail="verdict false_alarm", at=T0)
    [row] = audit.entries(db, ADMIN)
    assert (row.action, row.username, row.role, row.store_id, row.target, row.address, row.detail, row.at) == (
        "alert_acknowledged", "gina", "guard", "store-1", "al-1", "10.0.0.1", "verdict false_alarm", T0)
    assert row.success


@pytest.mark.parametrize("statement", [
    update(AuditEntry).values(detail="edited"),
    delete(AuditEntry),
    text("UPDATE audit_log SET success = 1"),
    text("DELETE FROM audit_log"),
])
def test_the_log_refuses_update_and_delete(db: Database, statement: object) -> None:
    audit.record(db, AuditAction.SIGN_IN, username="x", success=False, at=T0)
    with pytest.raises(DBAPIError, match="append-only"), db.session() as session:
        session.execute(statement)  # type: ignore[call-overload]
    with db.sessions() as session:
        assert [r.detail for r in session.scalars(select(AuditEntry))] == [""]


def test_entries_are_scoped_by_role(db: Database) -> None:
    for i, store in enumerate(["store-1", "store-2", None, "store-1"]):
        audit.record(db, AuditAction.EVIDENCE_VIEWED, username="u", store_id=store, target_id=f"al-{i}", at=T0)
    assert [r.target for r in audit.entries(db, ADMIN)] == ["al-3", "al-2", "al-1", "al-0"]  # newest first
    assert [r.target for r in audit.entries(db, MANAGER)] == ["al-3", "al-0"]
    two_stores = Principal(4, "max", Role.MANAGER, frozenset({"store-1", "store-2"}))
    assert [r.target for r in audit.entries(db, two_stores)] == ["al-3", "al-1", "al-0"]
    with pytest.raises(PermissionError):
        audit.entries(db, GUARD)


def test_entries_page_and_filter(db: Database) -> None:
    for i in range(5):
        audit.record(db, AuditAction.SIGN_OUT if i % 2 else AuditAction.SIGN_IN, username=f"u{i}", at=T0)
    first = audit.entries(db, ADMIN, limit=2)
    assert [r.username for r in first] == ["u4", "u3"]
    assert [r.username for r in audit.entries(db, ADMIN, limit=2, before_id=first[-1].id)] == ["u2", "u1"]
    assert [r.username for r in audit.entries(db, ADMIN, action="sign_out")] == ["u3", "u1"]
