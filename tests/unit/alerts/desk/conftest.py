"""Fixtures of the desk tests: a migrated SQLite file with two stores, a controllable clock, cheap hashing,
and the desk's web application over a database of its own (``web``, ``make_web``)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from alerts.desk.accounts import Accounts
from common.clock import FakeClock
from common.db import Database
from common.models import Store
from tests.unit.alerts.desk.webapp import Web

STORES = ("store-1", "store-2")


@pytest.fixture
def hasher() -> PasswordHash:
    """Argon2 at a low cost, so the many hashes of these tests take milliseconds."""
    return PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8 * 1024, parallelism=1),))


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.from_url(f"sqlite:///{tmp_path / 'desk.db'}")
    database.upgrade()
    with database.session() as session:
        for store_id in STORES:
            session.add(Store(id=store_id, name=store_id, timezone="UTC"))
    yield database
    database.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def accounts(db: Database, clock: FakeClock, hasher: PasswordHash) -> Accounts:
    return Accounts(db, clock=clock.now, hasher=hasher)


@pytest.fixture
def make_web(tmp_path: Path, hasher: PasswordHash) -> Iterator[Callable[..., Web]]:
    """Builds a ``Web`` with its client entered (so the live feed polls); keywords override ``desk:`` settings."""
    built: list[Web] = []
    numbers = itertools.count()

    def make(**desk: Any) -> Web:
        web = Web.build(tmp_path / f"web-{next(numbers)}", hasher, **desk)
        web.client.__enter__()
        built.append(web)
        return web

    yield make
    for web in built:
        web.client.__exit__(None, None, None)
        web.db.close()


@pytest.fixture
def web(make_web: Callable[..., Web]) -> Web:
    return make_web()
