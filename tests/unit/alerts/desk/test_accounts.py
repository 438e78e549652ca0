"""Desk accounts: Argon2 passwords, sessions that end by idleness, age and revocation, API tokens."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pwdlib import PasswordHash
from sqlalchemy import select

from alerts.desk.accounts import AccountError, Accounts, token_hash
from alerts.desk.audit import AuditAction
from alerts.desk.roles import Principal, Role
from common.clock import FakeClock
from common.db import Database
from common.models import ApiToken, AuditEntry, DeskSession, User

PASSWORD = "correct horse battery"


def audit_actions(db: Database) -> list[tuple[str, str | None, str | None, str | None]]:
    with db.sessions() as session:
        return [(r.action, r.username, r.target, r.store_id)
                for r in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def signed_in(accounts: Accounts, username: str = "alice") -> Principal:
    principal = accounts.authenticate(username, PASSWORD)
    assert principal is not None
    return principal


@pytest.fixture
def alice(accounts: Accounts) -> Accounts:
    accounts.add_user("Alice", PASSWORD, Role.GUARD, ["store-1"])
    return accounts


def test_passwords_are_argon2_and_never_stored_plain(alice: Accounts, db: Database) -> None:
    with db.sessions() as session:
        stored = session.scalar(select(User.password_hash))
    assert stored is not None and stored.startswith("$argon2")
    assert PASSWORD not in stored


def test_usernames_are_case_insensitive(alice: Accounts) -> None:
    assert alice.user("ALICE").username == "alice"
    principal = signed_in(alice, " Alice ")
    assert principal == Principal(principal.user_id, "alice", Role.GUARD, frozenset({"store-1"}))


@pytest.mark.parametrize("username, password", [
    ("alice", "wrong password!"),
    ("nobody", PASSWORD),
    ("", PASSWORD),
    ("al ice", PASSWORD),
])
def test_wrong_password_or_unknown_user_is_none(alice: Accounts, username: str, password: str) -> None:
    assert alice.authenticate(username, password) is None


def test_an_outdated_hash_is_replaced_at_sign_in(db: Database, clock: FakeClock, hasher: PasswordHash) -> None:
    old = Accounts(db, clock=clock.now, hasher=hasher)
    old.add_user("bob", PASSWORD, "manager", ["store-1", "store-2"])
    with db.sessions() as session:
        before = session.scalar(select(User.password_hash))
    assert before is not None and "m=8192,t=1" in before
    assert Accounts(db, clock=clock.now).authenticate("bob", PASSWORD) is not None  # default parameters
    with db.sessions() as session:
        after = session.scalar(select(User.password_hash))
    assert after is not None and after.startswith("$argon2") and after != before
    assert old.authenticate("bob", PASSWORD) is not None


@pytest.mark.parametrize("username, password, role, stores, reason", [
    ("alice", PASSWORD, "guard", ["store-1"], "exists already"),
    ("ALICE", PASSWORD, "guard", ["store-1"], "exists already"),
    ("carol", "short", "guard", ["store-1"], "too short"),
    ("carol", PASSWORD, "guard", [], "at least one store"),
    ("carol", PASSWORD, "manager", [], "at least one store"),
    ("carol", PASSWORD, "guard", ["store-9"], "unknown store id(s): store-9"),
    ("carol", PASSWORD, "admin", ["store-9"], "unknown store id(s): store-9"),
    ("carol", PASSWORD, "superuser", ["store-1"], "bad role"),
    ("", PASSWORD, "guard", ["store-1"], "1-200 characters"),
    ("x" * 201, PASSWORD, "guard", ["store-1"], "1-200 characters"),
    ("car ol", PASSWORD, "guard", ["store-1"], "spaces"),
])
def test_bad_users_are_refused(
    alice: Accounts, username: str, password: str, role: str, stores: list[str], reason: str
) -> None:
    with pytest.raises(AccountError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        alice.add_user(username, password, role, stores)
    assert [u.username for u in alice.list_users()] == ["alice"]


def test_an_admin_needs_no_store(accounts: Accounts) -> None:
    info = accounts.add_user("root", PASSWORD, "admin")
    assert (info.role, info.stores, info.disabled) == (Role.ADMIN, (), False)
    assert signed_in(accounts, "root").store_filter() is None


def test_unknown_user_operations_are_refused(accounts: Accounts) -> None:
    for call in (lambda: accounts.user("ghost"), lambda: accounts.disable_user("ghost"),
                 lambda: accounts.set_password("ghost", PASSWORD), lambda: accounts.create_token("ghost", "x"),
                 lambda: accounts.revoke_token(999)):
        with pytest.raises(AccountError, match="unknown"):
            call()


def test_a_session_lives_until_revoked(alice: Accounts, clock: FakeClock) -> None:
    new = alice.create_session(signed_in(alice), address="10.0.0.1", user_agent="test")
    assert new.expires_at == clock.now() + timedelta(hours=12)
    info = alice.session(new.token)
    assert info is not None
    assert info.principal.username == "alice" and not info.principal.via_token
    assert info.csrf_token == new.csrf_token
    alice.revoke_session(new.token)
    assert alice.session(new.token) is None
    assert alice.session("not-a-token") is None


def test_only_the_token_hash_is_stored(alice: Accounts, db: Database) -> None:
    new = alice.create_session(signed_in(alice))
    with db.sessions() as session:
        row = session.scalars(select(DeskSession)).one()
    assert row.token_hash == token_hash(new.token) != new.token
    assert row.created_at.tzinfo is not None


def test_a_session_ends_when_idle_and_requests_keep_it_alive(alice: Accounts, clock: FakeClock) -> None:
    new = alice.create_session(signed_in(alice))
    for _ in range(10):  # 10 x 20 min of activity: more than the 30 min idle limit in all
        clock.advance(20 * 60)
        assert alice.session(new.token) is not None
    clock.advance(31 * 60)
    assert alice.session(new.token) is None


def test_a_session_ends_at_max_age_however_busy(alice: Accounts, clock: FakeClock) -> None:
    new = alice.create_session(signed_in(alice))
    for _ in range(12 * 6 - 1):  # a request every 10 min until just before 12 h
        clock.advance(10 * 60)
        assert alice.session(new.token) is not None
    clock.advance(10 * 60)
    assert alice.session(new.token) is None


def test_last_seen_is_written_at_most_every_30_s(alice: Accounts, clock: FakeClock, db: Database) -> None:
    new = alice.create_session(signed_in(alice))
    start = clock.now()

    def last_seen() -> object:
        with db.sessions() as session:
            return session.scalar(select(DeskSession.last_seen_at))

    clock.advance(10)
    assert alice.session(new.token) is not None
    assert last_seen() == start
    clock.advance(25)
    assert alice.session(new.token) is not None
    assert last_seen() == clock.now()


def test_settings_give_the_limits(db: Database) -> None:
    from common.settings import Settings

    settings = Settings.model_validate({"desk": {"session_idle_minutes": 5, "session_max_hours": 2,
                                                 "login_max_failures": 3, "login_window_minutes": 7}})
    accounts = Accounts.from_settings(db, settings)
    assert (accounts.idle, accounts.max_age, accounts.max_failures, accounts.failure_window) == (
        timedelta(minutes=5), timedelta(hours=2), 3, timedelta(minutes=7))


def test_api_tokens_act_as_their_user_until_revoked(alice: Accounts, db: Database, clock: FakeClock) -> None:
    token = alice.create_token("alice", "door sensor")
    assert token.startswith("aw_") and len(token) > 40
    principal = alice.token_principal(token)
    assert principal is not None and principal.via_token and principal.username == "alice"
    assert principal.stores == frozenset({"store-1"})
    assert alice.token_principal(token + "x") is None
    with db.sessions() as session:
        row = session.scalars(select(ApiToken)).one()
    assert row.token_hash == token_hash(token) and row.last_used_at == clock.now()
    [info] = alice.list_tokens("alice")
    assert (info.username, info.name, info.revoked) == ("alice", "door sensor", False)
    alice.revoke_token(info.id)
    alice.revoke_token(info.id)  # again: nothing more happens
    assert alice.token_principal(token) is None
    assert alice.list_tokens()[0].revoked


def test_disabling_a_user_ends_their_sessions_and_tokens(alice: Accounts) -> None:
    new = alice.create_session(signed_in(alice))
    token = alice.create_token("alice", "integration")
    alice.disable_user("alice")
    assert alice.user("alice").disabled
    assert alice.authenticate("alice", PASSWORD) is None
    assert alice.session(new.token) is None
    assert alice.token_principal(token) is None
    with pytest.raises(AccountError, match="disabled"):
        alice.create_token("alice", "another")
    alice.enable_user("alice")
    assert alice.authenticate("alice", PASSWORD) is not None
    assert alice.session(new.token) is None  # re-enabling revives nothing
    assert alice.token_principal(token) is None


def test_a_new_password_ends_sessions_but_not_tokens(alice: Accounts) -> None:
    new = alice.create_session(signed_in(alice))
    token = alice.create_token("alice", "integration")
    with pytest.raises(AccountError, match="too short"):
        alice.set_password("alice", "tiny")
    alice.set_password("alice", "a brand new secret")
    assert alice.session(new.token) is None
    assert alice.authenticate("alice", PASSWORD) is None
    assert alice.authenticate("alice", "a brand new secret") is not None
    assert alice.token_principal(token) is not None


def test_every_account_change_is_audited(alice: Accounts, db: Database) -> None:
    alice.add_user("root", PASSWORD, "admin")
    token = alice.create_token("alice", "t", actor="root", address="10.0.0.9")
    alice.revoke_token(alice.list_tokens()[0].id, actor="root")
    alice.set_password("alice", "a brand new secret")
    alice.disable_user("alice")
    alice.enable_user("alice")
    assert token
    assert audit_actions(db) == [
        (AuditAction.USER_ADDED, "cli", "alice", "store-1"),
        (AuditAction.USER_ADDED, "cli", "root", None),
        (AuditAction.TOKEN_CREATED, "root", "alice", "store-1"),
        (AuditAction.TOKEN_REVOKED, "root", "alice", "store-1"),
        (AuditAction.PASSWORD_CHANGED, "cli", "alice", "store-1"),
        (AuditAction.USER_DISABLED, "cli", "alice", "store-1"),
        (AuditAction.USER_ENABLED, "cli", "alice", "store-1"),
    ]
    with db.sessions() as session:
        rows = list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
    assert rows[0].role is None  # the CLI has no role
    assert (rows[2].role, rows[2].address) == ("admin", "10.0.0.9")
    assert all(PASSWORD not in (r.detail + (r.target or "")) for r in rows)


def test_a_refused_change_writes_no_audit_row(alice: Accounts, db: Database) -> None:
    with pytest.raises(AccountError):
        alice.add_user("carol", PASSWORD, "guard", ["store-9"])
    assert [a for a, *_ in audit_actions(db)] == [AuditAction.USER_ADDED]


def test_sign_in_records_and_rate_limits(alice: Accounts, db: Database, clock: FakeClock) -> None:
    ok = alice.sign_in("alice", PASSWORD, address="10.0.0.1", user_agent="ua")
    assert ok.ok and ok.session is not None and alice.session(ok.session.token) is not None
    for _ in range(5):
        refused = alice.sign_in("alice", "wrong password!", address="10.0.0.2")
        assert not refused.ok and not refused.blocked
    blocked = alice.sign_in("alice", PASSWORD, address="10.0.0.2")  # the right password, but the sixth try
    assert blocked.blocked and not blocked.ok
    # One outsider's guesses do not lock alice out of the guard room's machine.
    assert alice.sign_in("alice", PASSWORD, address="10.0.0.3").ok
    clock.advance(16 * 60)
    assert alice.sign_in("alice", PASSWORD, address="10.0.0.2").ok  # the window has passed
    with db.sessions() as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.action == AuditAction.SIGN_IN)))
    assert [r.success for r in rows] == [True] + [False] * 6 + [True, True]
    assert {r.store_id for r in rows} == {"store-1"}
    assert "refused" in rows[6].detail and "wrong" in rows[5].detail
    assert rows[0].role == "guard" and rows[0].address == "10.0.0.1"


def test_one_address_is_limited_whichever_names_it_tries(alice: Accounts) -> None:
    for i in range(5):
        assert not alice.sign_in(f"user{i}", "wrong password!", address="203.0.113.7").blocked
    assert alice.sign_in("alice", PASSWORD, address="203.0.113.7").blocked
    assert alice.sign_in("alice", PASSWORD, address="203.0.113.8").ok


def test_a_success_clears_the_count_and_refused_tries_do_not_extend_it(alice: Accounts, clock: FakeClock) -> None:
    for _ in range(4):
        alice.sign_in("alice", "wrong password!", address="10.0.0.9")
    assert alice.sign_in("alice", PASSWORD, address="10.0.0.9").ok
    for _ in range(5):  # five more failures are allowed again after the success
        assert not alice.sign_in("alice", "wrong password!", address="10.0.0.9").blocked
    assert alice.sign_in("alice", PASSWORD, address="10.0.0.9").blocked
    for _ in range(20):  # someone keeps hammering while blocked: those tries are refused, not counted
        clock.advance(30)
        assert alice.sign_in("alice", "wrong password!", address="10.0.0.9").blocked
    clock.advance(15 * 60 - 20 * 30 + 1)  # fifteen minutes after the fifth counted failure
    assert alice.sign_in("alice", PASSWORD, address="10.0.0.9").ok


def test_a_username_is_limited_across_addresses_at_four_times_the_limit(alice: Accounts) -> None:
    for i in range(20):
        assert not alice.sign_in("alice", "wrong password!", address=f"198.51.100.{i}").blocked
    assert alice.sign_in("alice", PASSWORD, address="198.51.100.200").blocked


def test_parallel_guesses_cannot_all_pass_the_limit(alice: Accounts) -> None:
    """Each try is recorded before its password is checked: of 16 simultaneous guesses from one address at
    most the limit are checked."""
    import threading

    results: list[bool] = []
    barrier = threading.Barrier(16)

    def guess() -> None:
        barrier.wait()
        results.append(alice.sign_in("alice", "wrong password!", address="192.0.2.1").blocked)

    threads = [threading.Thread(target=guess) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 16 and results.count(False) <= 5
