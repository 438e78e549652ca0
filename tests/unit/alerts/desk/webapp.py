"""The desk's web application over its own database, for the HTTP-level desk tests (fixtures ``web`` and
``make_web`` in conftest.py): stores north and south, one user per role, helpers to raise alerts and sign in."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from pwdlib import PasswordHash
from sqlalchemy import select, update

from alerts.desk.accounts import Accounts, NewSession
from alerts.desk.app import create_app
from alerts.desk.audit import AuditAction
from alerts.desk.roles import Principal, Role
from alerts.desk.web_auth import LOGIN_CSRF_COOKIE, SESSION_COOKIE
from common.clock import FakeClock
from common.db import Database
from common.models import Alert, AlertEvent, AuditEntry
from common.schemas import AlertKind, AlertMessage, utc_now
from common.settings import Settings

USERS = {  # username → (role, stores)
    "gs": (Role.GUARD, ["south"]),
    "gs2": (Role.GUARD, ["south"]),
    "gn": (Role.GUARD, ["north"]),
    "ms": (Role.MANAGER, ["south"]),
    "mn": (Role.MANAGER, ["north"]),
    "admin": (Role.ADMIN, []),
}
PASSWORD = "correct horse battery"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]*)"')


def desk_settings(tmp: Path, **desk: Any) -> Settings:
    return Settings(
        stores=[{"id": "north", "name": "North", "cameras": [{"id": "north-cam", "name": "N cam", "source": "n.mp4"}]},
                {"id": "south", "name": "South", "cameras": [{"id": "south-cam", "name": "S cam", "source": "s.mp4"}]}],
        database={"url": f"sqlite:///{tmp}/db.sqlite"}, service={"evidence_dir": str(tmp / "evidence")},
        desk={"feed_poll_s": 0.05, **desk},
    )


def desk_database(settings: Settings) -> Database:
    database = Database.from_settings(settings)
    database.upgrade()
    database.sync_stores(settings)
    return database


@dataclass
class Web:
    """A desk app, its database, its users (``USERS``, all with ``PASSWORD``) and a TestClient that does not
    follow redirects.  ``accounts`` is the app's own, with a cheap hasher and the controllable ``clock``."""

    settings: Settings
    db: Database
    app: FastAPI
    accounts: Accounts
    clock: FakeClock
    evidence_dir: Path
    tmp: Path
    client: TestClient
    _alerts: int = 0

    @classmethod
    def build(cls, tmp: Path, hasher: PasswordHash, **desk: Any) -> Web:
        """The app and its database, users added; ``client`` is not entered yet (``with web.client:``)."""
        settings = desk_settings(tmp, **desk)
        evidence = Path(settings.service.evidence_dir)
        evidence.mkdir(parents=True)
        database = desk_database(settings)
        app = create_app(settings, database)
        clock = FakeClock(utc_now())
        accounts = Accounts.from_settings(database, settings, hasher=hasher, clock=clock.now)
        app.state.desk.accounts = accounts
        for name, (role, stores) in USERS.items():
            accounts.add_user(name, PASSWORD, role, stores)
        return cls(settings, database, app, accounts, clock, evidence, tmp, TestClient(app, follow_redirects=False))

    # -- alerts ------------------------------------------------------------------------------------------
    def raise_alert(self, store: str = "south", *, snapshot: bool = True, video: bool = False,
                    evidence_path: str | None = None, raised_at: datetime | None = None) -> str:
        """A new open alert of ``store``, with a snapshot file in the evidence directory unless told not to;
        ``raised_at`` (its clips' time) is now unless given, and it reaches the desk now."""
        self._alerts += 1
        alert_id = f"{store}-alert-{self._alerts}"
        path = evidence_path
        if snapshot and path is None:
            file = self.evidence_dir / f"{alert_id}.jpg"
            file.write_bytes(b"\xff\xd8\xff\xe0 fake jpeg " + alert_id.encode())
            path = str(file)
        self.db.write_alerts([AlertMessage(
            alert_id=alert_id, alert_kind=AlertKind.SUSPICIOUS_ACTIVITY, store_id=store, camera_id=f"{store}-cam",
            raised_at=raised_at or utc_now(), probability=0.9, clip_ids=(f"{alert_id}-clip",), snapshot_path=path,
            message=f"suspicious activity in {store}",
        )])
        if video:
            file = self.evidence_dir / f"{alert_id}.mp4"
            file.write_bytes(b"fake mp4")
            self.set_alert(alert_id, evidence_video_path=str(file))
        return alert_id

    def set_alert(self, alert_id: str, **values: Any) -> None:
        with self.db.session() as session:
            session.execute(update(Alert).where(Alert.alert_id == alert_id).values(**values))

    def stored(self, alert_id: str) -> Alert:
        with self.db.sessions() as session:
            row = session.scalar(select(Alert).where(Alert.alert_id == alert_id))
            assert row is not None
            session.expunge(row)
            return row

    def events(self, alert_id: str | None = None) -> list[tuple[int, str, str, str | None]]:
        """(id, alert id, event, actor) of the alert events, oldest first."""
        stmt = select(AlertEvent.id, AlertEvent.alert_id, AlertEvent.event, AlertEvent.actor).order_by(AlertEvent.id)
        if alert_id is not None:
            stmt = stmt.where(AlertEvent.alert_id == alert_id)
        with self.db.sessions() as session:
            return [tuple(r) for r in session.execute(stmt)]  # type: ignore[misc]

    def audit_rows(self, action: AuditAction | None = None) -> list[AuditEntry]:
        with self.db.sessions() as session:
            stmt = select(AuditEntry).order_by(AuditEntry.id)
            if action is not None:
                stmt = stmt.where(AuditEntry.action == action.value)
            rows = list(session.scalars(stmt))
            session.expunge_all()
            return rows

    # -- people ------------------------------------------------------------------------------------------
    def principal(self, username: str) -> Principal:
        info = self.accounts.user(username)
        return Principal(info.id, info.username, info.role, frozenset(info.stores))

    def new_session(self, username: str) -> NewSession:
        """A browser session made directly (no password to hash): its cookie token and CSRF token."""
        return self.accounts.create_session(self.principal(username), address="testclient")

    def sign_in_as(self, username: str, client: TestClient | None = None) -> str:
        """Put a fresh session of ``username`` in the client's cookie jar (alone); returns its CSRF token."""
        client = client or self.client
        new = self.new_session(username)
        client.cookies.clear()
        client.cookies.set(SESSION_COOKIE, new.token)
        return new.csrf_token

    def login(self, username: str, password: str = PASSWORD, *, next: str = "/",
              headers: dict[str, str] | None = None, client: TestClient | None = None) -> Response:
        """The browser's sign-in: fetch the form (its login-CSRF cookie and field), then post it."""
        client = client or self.client
        form = client.get("/login", headers=headers)
        assert form.status_code == 200, form.text
        token = csrf_of(form.text)
        assert form.cookies.get(LOGIN_CSRF_COOKIE) == token
        # The login-CSRF cookie is sent by hand: the jar would withhold it over http once it is marked Secure.
        return client.post("/login", data={"username": username, "password": password, "csrf_token": token,
                                           "next": next},
                           headers={**(headers or {}), "Cookie": f"{LOGIN_CSRF_COOKIE}={token}"})


def csrf_of(page: str) -> str:
    match = CSRF_FIELD.search(page)
    assert match is not None, "no CSRF field on the page"
    return match.group(1)
