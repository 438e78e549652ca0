"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from common.db import Database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A fresh SQLite database in the test's folder, migrated to the newest schema."""
    database = Database.from_url(f"sqlite:///{tmp_path / 'aislewatch.db'}")
    database.upgrade()
    yield database
    database.close()
