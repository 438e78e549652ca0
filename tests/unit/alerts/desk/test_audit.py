"""The audit log: append-only in the database, scoped by role, and the sign-in rate limit read from it."""

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


def fail(db: Database, username: str, address: str, at: datetime) -> None:
    audit.record(db, AuditAction.SIGN_IN, username=username, address=address, success=False, at=at)


def blocked(db: Database, username: str, address: str, now: datetime) -> bool:
    return audit.sign_in_blocked(db, username, address, max_failures=5, window=WINDOW, now=now)


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


def test_sign_in_is_blocked_at_the_fifth_failure_until_the_window_passes(db: Database) -> None:
    for i in range(4):
        fail(db, "alice", f"10.0.0.{i}", T0 + timedelta(seconds=i))
        assert not blocked(db, "alice", "10.0.9.9", T0 + timedelta(seconds=i))
    fail(db, "alice", "10.0.0.4", T0 + timedelta(seconds=4))
    assert blocked(db, "alice", "10.0.9.9", T0 + timedelta(seconds=5))  # the sixth try
    assert not blocked(db, "bob", "10.0.9.9", T0 + timedelta(seconds=5))  # another user is not affected
    assert blocked(db, "alice", "10.0.9.9", T0 + WINDOW - timedelta(seconds=1))  # all five still inside
    assert not blocked(db, "alice", "10.0.9.9", T0 + WINDOW)  # the first has left the window
    assert not blocked(db, "alice", "10.0.9.9", T0 + WINDOW + timedelta(seconds=5))


def test_successful_sign_ins_and_other_actions_do_not_count(db: Database) -> None:
    for _ in range(10):
        audit.record(db, AuditAction.SIGN_IN, username="alice", address="10.0.0.1", success=True, at=T0)
        audit.record(db, AuditAction.ACCESS_DENIED, username="alice", address="10.0.0.1", success=False, at=T0)
    assert not blocked(db, "alice", "10.0.0.1", T0)


def test_one_address_is_blocked_whichever_names_it_tries(db: Database) -> None:
    for i in range(5):
        fail(db, f"user{i}", "203.0.113.7", T0)
    assert blocked(db, "someone-new", "203.0.113.7", T0)
    assert not blocked(db, "someone-new", "203.0.113.8", T0)
    assert not blocked(db, "user0", "", T0)  # one failure for user0: the address is what blocks


def test_an_empty_address_blocks_nobody(db: Database) -> None:
    for i in range(5):
        fail(db, f"user{i}", "", T0)
    assert not blocked(db, "someone", "", T0)
