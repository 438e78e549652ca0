"""Fixtures of the desk tests: a migrated SQLite file with two stores, a controllable clock, cheap hashing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from alerts.desk.accounts import Accounts
from common.clock import FakeClock
from common.db import Database
from common.models import Store

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
