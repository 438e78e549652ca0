"""Security-desk users, their password hashes, server-side browser sessions and API tokens.

- Usernames are case-insensitive: stripped and stored lowercase (1-200 characters, no spaces or control
  characters), so "Alice" signs in as "alice".
- Passwords are hashed with Argon2id (pwdlib) at OWASP's parameters (19 MiB, 2 passes); a hash made with
  older parameters is replaced at the next successful sign-in.  At most ``HASHING_AT_ONCE`` hashes run at
  once per process, so a burst of sign-ins queues instead of running the desk out of memory.
- Sign-in tries are rate-limited from ``login_attempts``: each try is written before its password is checked,
  so parallel guesses cannot all pass the check before any of them is counted.
- Session cookies and API tokens are random; only their SHA-256 is stored, so a copy of the database does not
  sign anyone in.
- Every change to a user or token writes its audit row in the same transaction.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alerts.desk import audit
from alerts.desk.audit import AuditAction
from alerts.desk.roles import Principal, Role
from common.db import Database
from common.models import ApiToken, DeskSession, LoginAttempt, Store, User
from common.schemas import utc_now

MIN_PASSWORD_LENGTH = 10
MAX_USERNAME_LENGTH = 200
TOKEN_PREFIX = "aw_"  # makes a leaked token recognisable to secret scanners
# last_seen_at / last_used_at move at most this often: a busy page polls every few seconds, and a write per
# request would serialise every reader on SQLite.  The idle timeout is therefore accurate to this much.
TOUCH_EVERY = timedelta(seconds=30)
HASHING_AT_ONCE = 2
"""Argon2 hashes computed at once in one process (each takes 19 MiB and most of a core for ~30 ms)."""
_HASHING = threading.BoundedSemaphore(HASHING_AT_ONCE)
HASHING_WAIT_S = 10.0
USER_FAILURES_FACTOR = 4
"""A username is blocked from every address after this many times the per-address limit (guessing spread
over many addresses), so one outsider alone cannot lock a guard out."""
ATTEMPTS_KEPT = timedelta(days=1)


class DeskBusy(Exception):
    """Too many password checks are waiting: answer 503 and let the client try again shortly."""


class AccountError(ValueError):
    """A user or token operation that cannot be done, with a message fit to show the operator."""


@dataclass(frozen=True)
class UserInfo:
    id: int
    username: str
    role: Role
    stores: tuple[str, ...]
    disabled: bool
    created_at: datetime


@dataclass(frozen=True)
class TokenInfo:
    id: int
    username: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class SessionInfo:
    """A live browser session.  ``expires_at`` is the absolute end (sign-in + max age); idleness ends it sooner."""

    session_id: int
    principal: Principal
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class NewSession:
    token: str  # the cookie value: shown once, only its SHA-256 is stored
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class SignIn:
    """What ``Accounts.sign_in`` decided: a principal and session on success; ``blocked`` when rate-limited."""

    principal: Principal | None
    session: NewSession | None
    blocked: bool = False

    @property
    def ok(self) -> bool:
        return self.session is not None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def normalize_username(username: str) -> str:
    """The stored form of a username; AccountError when it cannot be one."""
    name = username.strip().lower()
    if not name or len(name) > MAX_USERNAME_LENGTH:
        raise AccountError(f"username must be 1-{MAX_USERNAME_LENGTH} characters, got {len(name)}")
    if any(c.isspace() or not c.isprintable() for c in name):
        raise AccountError(f"username {name!r} must not contain spaces or control characters")
    return name


def default_hasher() -> PasswordHash:
    # OWASP's Argon2id recommendation (m=19 MiB, t=2, p=1): argon2-cffi's default of 64 MiB per hash lets six
    # simultaneous sign-ins take a 512 MiB desk pod down.
    return PasswordHash((Argon2Hasher(time_cost=2, memory_cost=19 * 1024, parallelism=1),))


def _hashing(operation: Callable[[], Any]) -> Any:
    if not _HASHING.acquire(timeout=HASHING_WAIT_S):
        raise DeskBusy("too many sign-ins at once")
    try:
        return operation()
    finally:
        _HASHING.release()


def _principal(user: User, *, via_token: bool = False) -> Principal:
    return Principal(
        user_id=user.id, username=user.username, role=Role(user.role), stores=frozenset(user.stores or ()),
        via_token=via_token,
    )


def _user_info(user: User) -> UserInfo:
    return UserInfo(
        id=user.id, username=user.username, role=Role(user.role), stores=tuple(user.stores or ()),
        disabled=user.disabled, created_at=user.created_at,
    )


def _live_credential(session: Session, table: type[ApiToken] | type[DeskSession], token: str) -> tuple[Any, User] | None:
    """The row of a session cookie or API token (stored as its SHA-256) with its user; None when unknown,
    revoked, or its user is disabled."""
    found = session.execute(
        select(table, User).join(User, User.id == table.user_id).where(table.token_hash == token_hash(token))
    ).first()
    if found is None:
        return None
    row, user = found
    revoked = row.revoked_at  # type: ignore[attr-defined]  # both tables have it
    return None if revoked is not None or user.disabled else (row, user)


def single_store(stores: Sequence[str] | frozenset[str]) -> str | None:
    """The store an audit row about this user is filed under: theirs when they have exactly one."""
    return next(iter(stores)) if len(stores) == 1 else None


class Accounts:
    """Users, sessions and tokens in ``db``.  ``clock`` is injectable so expiry is testable."""

    def __init__(
        self,
        db: Database,
        *,
        idle: timedelta = timedelta(minutes=30),
        max_age: timedelta = timedelta(hours=12),
        clock: Callable[[], datetime] = utc_now,
        max_failures: int = 5,
        failure_window: timedelta = timedelta(minutes=15),
        hasher: PasswordHash | None = None,
    ) -> None:
        self.db = db
        self.idle = idle
        self.max_age = max_age
        self.clock = clock
        self.max_failures = max_failures
        self.failure_window = failure_window
        self.hasher = hasher or default_hasher()
        self._dummy_hash: str | None = None

    @classmethod
    def from_settings(cls, db: Database, settings: Any, **kw: Any) -> Accounts:
        desk = settings.desk
        return cls(
            db,
            idle=timedelta(minutes=desk.session_idle_minutes),
            max_age=timedelta(hours=desk.session_max_hours),
            max_failures=desk.login_max_failures,
            failure_window=timedelta(minutes=desk.login_window_minutes),
            **kw,
        )

    # -- helpers -----------------------------------------------------------------------------------
    @staticmethod
    def _find(session: Session, username: str) -> User:
        name = normalize_username(username)
        user = session.scalar(select(User).where(User.username == name))
        if user is None:
            raise AccountError(f"unknown user {name!r}")
        return user

    def _check_password(self, password: str) -> None:
        if len(password) < MIN_PASSWORD_LENGTH:
            raise AccountError(f"password too short: at least {MIN_PASSWORD_LENGTH} characters")

    @staticmethod
    def _check_stores(session: Session, role: Role, stores: Sequence[str]) -> list[str]:
        wanted = sorted({s.strip() for s in stores if s.strip()})
        if role is not Role.ADMIN and not wanted:
            raise AccountError(f"a {role} needs at least one store (--store ID)")
        known = set(session.scalars(select(Store.id).where(Store.id.in_(wanted))))
        unknown = [s for s in wanted if s not in known]
        if unknown:
            raise AccountError(f"unknown store id(s): {', '.join(unknown)} (stores come from the config's stores:)")
        return wanted

    def _audit(
        self, session: Session, action: AuditAction, actor: str, address: str, user: User, detail: str = ""
    ) -> None:
        """An account change's audit row, in its transaction: the actor, and the user it was about."""
        role = None
        if actor != "cli":
            role = session.scalar(select(User.role).where(User.username == actor.strip().lower()))
        audit.record(
            session, action, username=actor, role=role, store_id=single_store(user.stores or ()),
            target_id=user.username, address=address, detail=detail, at=self.clock(),
        )

    def _revoke_sessions(self, session: Session, user_id: int, now: datetime) -> None:
        session.execute(
            update(DeskSession)
            .where(DeskSession.user_id == user_id, DeskSession.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    # -- users -------------------------------------------------------------------------------------
    def add_user(
        self,
        username: str,
        password: str,
        role: Role | str,
        stores: Sequence[str] = (),
        *,
        actor: str = "cli",
        address: str = "",
    ) -> UserInfo:
        name = normalize_username(username)
        try:
            parsed_role = Role(str(role).strip().lower())
        except ValueError:
            raise AccountError(f"bad role {role!r}: one of {', '.join(r.value for r in Role)}") from None
        self._check_password(password)
        try:
            with self.db.session() as session:
                if session.scalar(select(User.id).where(User.username == name)) is not None:
                    raise AccountError(f"user {name!r} exists already")
                store_ids = self._check_stores(session, parsed_role, stores)
                now = self.clock()
                user = User(
                    username=name, password_hash=_hashing(lambda: self.hasher.hash(password)), role=parsed_role.value,
                    stores=store_ids, disabled=False, created_at=now, updated_at=now,
                )
                session.add(user)
                session.flush()
                self._audit(session, AuditAction.USER_ADDED, actor, address, user,
                            detail=f"role {parsed_role.value}, stores {','.join(store_ids) or '-'}")
                return _user_info(user)
        except IntegrityError:  # added by someone else between our check and our insert
            raise AccountError(f"user {name!r} exists already") from None

    def list_users(self) -> list[UserInfo]:
        with self.db.sessions() as session:
            return [_user_info(u) for u in session.scalars(select(User).order_by(User.username))]

    def user(self, username: str) -> UserInfo:
        with self.db.sessions() as session:
            return _user_info(self._find(session, username))

    def disable_user(self, username: str, *, actor: str = "cli", address: str = "") -> None:
        """Disable the user and end every session and token of theirs (re-enabling restores neither)."""
        with self.db.session() as session:
            user = self._find(session, username)
            now = self.clock()
            user.disabled = True
            user.updated_at = now
            self._revoke_sessions(session, user.id, now)
            session.execute(
                update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None)).values(revoked_at=now)
            )
            self._audit(session, AuditAction.USER_DISABLED, actor, address, user)

    def enable_user(self, username: str, *, actor: str = "cli", address: str = "") -> None:
        with self.db.session() as session:
            user = self._find(session, username)
            user.disabled = False
            user.updated_at = self.clock()
            self._audit(session, AuditAction.USER_ENABLED, actor, address, user)

    def set_password(self, username: str, password: str, *, actor: str = "cli", address: str = "") -> None:
        """Replace the password and end every session of the user (their API tokens stay valid)."""
        self._check_password(password)
        with self.db.session() as session:
            user = self._find(session, username)
            now = self.clock()
            user.password_hash = _hashing(lambda: self.hasher.hash(password))
            user.updated_at = now
            self._revoke_sessions(session, user.id, now)
            self._audit(session, AuditAction.PASSWORD_CHANGED, actor, address, user)

    # -- API tokens --------------------------------------------------------------------------------
    def create_token(self, username: str, name: str, *, actor: str = "cli", address: str = "") -> str:
        """A new API token acting as ``username``: the plaintext is returned once, only its SHA-256 is kept."""
        label = name.strip()
        if not label or len(label) > 200:
            raise AccountError("token name must be 1-200 characters")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.db.session() as session:
            user = self._find(session, username)
            if user.disabled:
                raise AccountError(f"user {user.username!r} is disabled")
            row = ApiToken(token_hash=token_hash(token), name=label, user_id=user.id, created_at=self.clock())
            session.add(row)
            session.flush()
            self._audit(session, AuditAction.TOKEN_CREATED, actor, address, user, detail=f"token {row.id} ({label})")
        return token

    def list_tokens(self, username: str | None = None) -> list[TokenInfo]:
        stmt = select(ApiToken, User.username).join(User, User.id == ApiToken.user_id).order_by(ApiToken.id)
        with self.db.sessions() as session:
            if username is not None:
                stmt = stmt.where(ApiToken.user_id == self._find(session, username).id)
            return [
                TokenInfo(id=t.id, username=owner, name=t.name, created_at=t.created_at,
                          last_used_at=t.last_used_at, revoked_at=t.revoked_at)
                for t, owner in session.execute(stmt)
            ]

    def revoke_token(self, token_id: int, *, actor: str = "cli", address: str = "") -> None:
        """Revoke token ``token_id``; revoking a revoked token again changes nothing."""
        with self.db.session() as session:
            row = session.get(ApiToken, token_id)
            if row is None:
                raise AccountError(f"unknown token id {token_id}")
            if row.revoked_at is not None:
                return
            row.revoked_at = self.clock()
            user = session.get_one(User, row.user_id)
            self._audit(session, AuditAction.TOKEN_REVOKED, actor, address, user, detail=f"token {row.id} ({row.name})")

    def token_principal(self, token: str) -> Principal | None:
        """The principal a Bearer token acts as; None when unknown, revoked, or its user is disabled."""
        with self.db.session() as session:
            found = _live_credential(session, ApiToken, token)
            if found is None:
                return None
            row, user = found
            now = self.clock()
            if row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY:
                row.last_used_at = now
            return _principal(user, via_token=True)

    # -- passwords and sessions --------------------------------------------------------------------
    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = _hashing(lambda: self.hasher.hash(secrets.token_urlsafe(16)))
        return self._dummy_hash

    def authenticate(self, username: str, password: str) -> Principal | None:
        """The principal for a correct password of an enabled user, else None.

        An unknown name is verified against a dummy hash, so the answer takes as long as for a real user and
        its timing does not reveal which names exist.  The hash is checked outside any database transaction
        (it takes tens of milliseconds).  Raises DeskBusy when too many checks are waiting.
        """
        try:
            name = normalize_username(username)
        except AccountError:
            name = ""
        dummy = self._dummy()  # made before the lookup, so the first unknown name is not slower than the rest
        with self.db.session() as session:
            user = session.scalar(select(User).where(User.username == name)) if name else None
            stored = None if user is None else (user.id, user.password_hash, user.disabled)
        if stored is None:
            _hashing(lambda: self.hasher.verify(password, dummy))
            return None
        user_id, password_hash, disabled = stored
        valid, new_hash = _hashing(lambda: self.hasher.verify_and_update(password, password_hash))
        if not valid or disabled:
            return None
        with self.db.session() as session:
            user = session.get(User, user_id)
            if user is None or user.disabled:
                return None
            if new_hash is not None and user.password_hash == password_hash:
                user.password_hash = new_hash  # hashed with older parameters: upgrade while we have the password
            return _principal(user)

    def create_session(self, principal: Principal, *, address: str = "", user_agent: str = "") -> NewSession:
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = self.clock()
        expires = now + self.max_age
        with self.db.session() as session:
            user = session.get(User, principal.user_id)
            if user is None or user.disabled:
                raise AccountError(f"user {principal.username!r} cannot sign in")
            session.add(DeskSession(
                token_hash=token_hash(token), user_id=user.id, csrf_token=csrf, created_at=now, last_seen_at=now,
                expires_at=expires, address=address[:64], user_agent=user_agent[:300],
            ))
        return NewSession(token=token, csrf_token=csrf, expires_at=expires)

    def session(self, token: str) -> SessionInfo | None:
        """The live session of a cookie; None when unknown, revoked, expired, idle too long or its user is
        disabled.  Moves ``last_seen_at`` (at most every ``TOUCH_EVERY``)."""
        with self.db.session() as session:
            found = _live_credential(session, DeskSession, token)
            if found is None:
                return None
            row, user = found
            now = self.clock()
            if now >= row.expires_at or now - row.last_seen_at > self.idle:
                return None
            if now - row.last_seen_at >= TOUCH_EVERY:
                row.last_seen_at = now
            return SessionInfo(
                session_id=row.id, principal=_principal(user), csrf_token=row.csrf_token, expires_at=row.expires_at
            )

    def revoke_session(self, token: str) -> None:
        """Sign a cookie out (unknown or already revoked: nothing to do)."""
        with self.db.session() as session:
            session.execute(
                update(DeskSession)
                .where(DeskSession.token_hash == token_hash(token), DeskSession.revoked_at.is_(None))
                .values(revoked_at=self.clock())
            )

    def sign_in(self, username: str, password: str, *, address: str = "", user_agent: str = "") -> SignIn:
        """The whole browser sign-in: the rate limit, the password, the SIGN_IN audit row and the session.

        The try is written to ``login_attempts`` first, then the tries counted: more than ``max_failures``
        unsuccessful ones (pending or failed, since the last success) for this username from this address,
        or from this address for any username, or ``USER_FAILURES_FACTOR`` times that for this username from
        anywhere, within ``failure_window``, and it is refused unchecked (``blocked``).  A refused try does
        not count toward the limit, so a locked-out window ends.  The audit row is filed under the user's
        store when they have exactly one.
        """
        try:
            name = normalize_username(username)
        except AccountError:
            name = username.strip()[:MAX_USERNAME_LENGTH]
        now = self.clock()
        with self.db.session() as session:
            store = single_store(session.scalar(select(User.stores).where(User.username == name)) or ())
            attempt = LoginAttempt(username=name, address=address[:64], at=now, outcome="pending")
            session.add(attempt)
        with self.db.session() as session:
            blocked = self._too_many_failures(session, name, address[:64], now, attempt.id)
            if blocked:
                session.execute(update(LoginAttempt).where(LoginAttempt.id == attempt.id).values(outcome="refused"))
        if blocked:
            audit.record(self.db, AuditAction.SIGN_IN, username=name, store_id=store, address=address,
                         success=False, detail="refused: too many failed sign-ins", at=now)
            return SignIn(principal=None, session=None, blocked=True)
        try:
            principal = self.authenticate(name, password)
        except BaseException:
            self._settle(attempt.id, "failed")
            raise
        self._settle(attempt.id, "ok" if principal is not None else "failed")
        if principal is None:
            audit.record(self.db, AuditAction.SIGN_IN, username=name, store_id=store, address=address,
                         success=False, detail="wrong username or password", at=now)
            return SignIn(principal=None, session=None)
        new = self.create_session(principal, address=address, user_agent=user_agent)
        audit.record(self.db, AuditAction.SIGN_IN, username=principal.username, role=principal.role.value,
                     store_id=single_store(principal.stores), address=address, at=now)
        return SignIn(principal=principal, session=new)

    def _too_many_failures(self, session: Session, name: str, address: str, now: datetime, own_id: int) -> bool:
        since = now - self.failure_window

        def unsuccessful(*where: Any) -> int:
            last_ok = session.scalar(select(func.max(LoginAttempt.id)).where(
                *where, LoginAttempt.outcome == "ok", LoginAttempt.at > since))
            stmt = select(func.count()).select_from(LoginAttempt).where(
                *where, LoginAttempt.at > since, LoginAttempt.outcome.in_(("pending", "failed")),
                LoginAttempt.id <= own_id)
            if last_ok is not None:
                stmt = stmt.where(LoginAttempt.id > last_ok)
            return int(session.scalar(stmt) or 0)

        limit = self.max_failures
        # Each count includes this try itself, hence "more than": with 5 allowed, the sixth is refused.
        if address and unsuccessful(LoginAttempt.address == address, LoginAttempt.username == name) > limit:
            return True
        if address and unsuccessful(LoginAttempt.address == address) > limit:
            return True
        return bool(name) and unsuccessful(LoginAttempt.username == name) > limit * USER_FAILURES_FACTOR

    def _settle(self, attempt_id: int, outcome: str) -> None:
        with self.db.session() as session:
            session.execute(update(LoginAttempt).where(LoginAttempt.id == attempt_id).values(outcome=outcome))
            if attempt_id % 100 == 0:  # now and then: tries older than a day are of no use to the limit
                session.execute(delete(LoginAttempt).where(LoginAttempt.at < self.clock() - ATTEMPTS_KEPT))
                session.execute(delete(DeskSession).where(DeskSession.expires_at < self.clock() - ATTEMPTS_KEPT))
