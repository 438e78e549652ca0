"""Fixtures of the browser tests: browsers (headless Chromium) and running desks; helpers in ``desk_support``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from alerts.desk.queries import DeskQueries
from alerts.desk.roles import Principal, Role
from tests.browser.desk_support import ARTEFACTS, GUARD_A, RunningDesk, chrome, free_port, running_desk


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def browsers(request: pytest.FixtureRequest) -> Iterator[Callable[[], WebDriver]]:
    """A factory of independent browsers (separate profiles, so separate sign-ins); all quit afterwards, each
    leaving a screenshot in build/browser/ when the test failed."""
    opened: list[WebDriver] = []

    def new() -> WebDriver:
        driver = chrome()
        opened.append(driver)
        return driver

    yield new
    failed = getattr(request.node, "report_call", None)
    for i, driver in enumerate(opened):
        if failed is not None and failed.failed:
            with contextlib.suppress(Exception):
                ARTEFACTS.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(ARTEFACTS / f"FAILED-{request.node.name}-{i}.png"))
        with contextlib.suppress(Exception):
            driver.quit()


@pytest.fixture
def chromium(browsers: Callable[[], WebDriver]) -> WebDriver:
    """One headless Chromium."""
    return browsers()


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDesk]:
    """One desk per test module, seeded with a few alerts; tests use their own alert ids so they do not
    interfere.  (At most one failed sign-in per module here: the limit counts per address, and every
    browser is 127.0.0.1.)"""
    with running_desk(tmp_path_factory.mktemp("desk")) as running:
        now = datetime.now(UTC)
        running.raise_alert("north", alert_id="seed-north-1", raised_at=now - timedelta(minutes=9))
        running.raise_alert("south", alert_id="seed-south-1", raised_at=now - timedelta(minutes=7))
        seeded = running.raise_alert("north", alert_id="seed-north-2", raised_at=now - timedelta(minutes=5))
        guard = Principal(user_id=0, username=GUARD_A.username, role=Role.GUARD, stores=frozenset({"north"}))
        DeskQueries(running.db).acknowledge(guard, seeded, "false_alarm", version=1, note="staff restocking")
        yield running


@pytest.fixture
def fresh_desk(tmp_path: Path) -> Iterator[RunningDesk]:
    """A desk of the test's own (for tests that block sign-ins or restart the server)."""
    with running_desk(tmp_path, port=free_port()) as running:
        yield running
