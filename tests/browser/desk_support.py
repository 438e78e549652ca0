"""What the browser tests share: Debian's headless Chromium driven by Selenium, and a running security desk.

The desk is the real thing (``create_app`` served by ``DeskServer`` with uvicorn on a loopback port) over a
fresh SQLite file with two stores and one user per role; alerts reach it the way the pipeline's do, through
``Database.write_alerts`` (its "raised" event is what the live feed follows).  Nothing is downloaded: the
driver is ``/usr/bin/chromedriver``, never Selenium Manager, and a missing Chromium fails the tests rather
than skipping them, so CI cannot pass without running them.
"""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import select

from alerts.desk.app import create_app
from alerts.desk.server import DeskServer
from common.db import Database
from common.models import Alert
from common.schemas import AlertKind, AlertMessage, ResultMessage
from common.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTEFACTS = Path(__file__).resolve().parents[2] / "build" / "browser"
"""Screenshots the README shows (feed.png, alert.png), and one per browser of a failed test."""

STORES = [
    {"id": "north", "name": "North Street",
     "cameras": [{"id": "north-cam", "name": "North entrance", "source": "rtsp://127.0.0.1:1/north"}]},
    {"id": "south", "name": "South Mall",
     "cameras": [{"id": "south-cam", "name": "South tills", "source": "rtsp://127.0.0.1:1/south"}]},
]
CAMERA_OF = {"north": "north-cam", "south": "south-cam"}
STORE_NAME = {"north": "North Street", "south": "South Mall"}
CAMERA_NAME = {"north": "North entrance", "south": "South tills"}


@dataclass(frozen=True)
class DeskUser:
    username: str
    password: str
    role: str
    stores: tuple[str, ...]


ADMIN = DeskUser("admin", "admin-password-1", "admin", ())
MANAGER = DeskUser("manager-n", "manager-password-1", "manager", ("north",))
GUARD_A = DeskUser("guard-a", "guard-a-password", "guard", ("north",))
GUARD_B = DeskUser("guard-b", "guard-b-password", "guard", ("south",))
GUARD_C = DeskUser("guard-c", "guard-c-password", "guard", ("north",))  # a second north guard: races guard-a
USERS = (ADMIN, MANAGER, GUARD_A, GUARD_B, GUARD_C)


# -- the browser ---------------------------------------------------------------------------------------------
def chrome() -> WebDriver:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"browser tests need Debian's chromium and chromium-driver; missing: {', '.join(missing)} "
                    "(apt-get install chromium chromium-driver)", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    # An explicit driver path: Selenium Manager (which would download one) never runs.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(10)
    return driver


def screenshot(driver: WebDriver, name: str, *, full_page: bool = False) -> Path:
    """Save ``build/browser/NAME``; ``full_page`` grows the window to the page's height for the shot."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / name
    size = driver.get_window_size()
    if full_page:
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
        driver.set_window_size(size["width"], max(size["height"], height + 120))
    try:
        assert driver.save_screenshot(str(path)), f"no screenshot written to {path}"
    finally:
        if full_page:
            driver.set_window_size(size["width"], size["height"])
    return path


# -- the desk ------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningDesk:
    """A desk served on loopback, its database and a few helpers the tests share."""

    settings: Settings
    db: Database
    server: DeskServer
    evidence_dir: Path
    port: int
    raised: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Serve a new app over the same database on the same port (a restarted desk replica)."""
        app = create_app(self.settings, self.db)
        app.state.desk.accounts.hasher = cheap_hasher()
        self.server = DeskServer(app, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        self.server.stop()

    def snapshot(self, name: str, store_id: str, directory: Path | None = None) -> Path:
        """A real JPEG (what the pipeline's evidence snapshots are), inside the evidence directory by default."""
        image = np.full((240, 320, 3), (40, 40, 40), np.uint8)
        cv2.rectangle(image, (90, 50), (230, 200), (0, 160, 255), 3)
        cv2.putText(image, CAMERA_OF[store_id], (10, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
        path = (directory or self.evidence_dir) / f"{name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), image), f"could not write {path}"
        return path

    def raise_alert(self, store_id: str = "north", *, alert_id: str | None = None, clips: int = 8,
                    snapshot: bool = True, raised_at: datetime | None = None) -> str:
        """Store an alert as the alert worker does, with its snapshot and the camera's clip results (the last
        two clips are the alert's), and return its id."""
        alert_id = alert_id or f"{store_id}-{uuid.uuid4().hex[:10]}"
        camera_id = CAMERA_OF[store_id]
        raised_at = raised_at or datetime.now(UTC)
        results = [
            ResultMessage(
                clip_id=f"{alert_id}-clip-{i}", store_id=store_id, camera_id=camera_id,
                captured_at=raised_at - timedelta(seconds=2 * (clips - i)),
                start_at=raised_at - timedelta(seconds=2 * (clips - i) + 4), source_start_s=2.0 * i,
                source_end_s=2.0 * i + 4, probability=0.9 if i >= clips - 2 else 0.1 + 0.05 * i, threshold=0.5,
                model_version="test", inferred_at=raised_at,
            )
            for i in range(clips)
        ]
        self.db.write_results(results)
        path = self.snapshot(alert_id, store_id) if snapshot else None
        self.db.write_alerts([AlertMessage(
            alert_id=alert_id, alert_kind=AlertKind.SUSPICIOUS_ACTIVITY, store_id=store_id, camera_id=camera_id,
            raised_at=raised_at, probability=0.9, clip_ids=tuple(r.clip_id for r in results[-2:]),
            source_start_s=results[-2].source_start_s, source_end_s=results[-1].source_end_s,
            snapshot_path=str(path) if path else None,
        )])
        self.raised.append(alert_id)
        return alert_id

    def alert(self, alert_id: str) -> Alert:
        with self.db.session() as session:
            row = session.scalar(select(Alert).where(Alert.alert_id == alert_id))
            assert row is not None, f"alert {alert_id} is not stored"
            session.expunge(row)
            return row

    def sign_in(self, driver: WebDriver, user: DeskUser, path: str = "/") -> None:
        """Sign ``user`` in through the sign-in page and wait for ``path`` to be shown."""
        driver.get(f"{self.url}/login?next={path}")
        fill_sign_in(driver, user)
        WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.ID, "whoami"))
        assert driver.find_element(By.ID, "whoami").text == user.username


def fill_sign_in(driver: WebDriver, user: DeskUser, password: str | None = None) -> None:
    driver.find_element(By.ID, "username").clear()
    driver.find_element(By.ID, "username").send_keys(user.username)
    driver.find_element(By.ID, "password").send_keys(user.password if password is None else password)
    click_to_new_page(driver, driver.find_element(By.ID, "sign-in"))


def click_to_new_page(driver: WebDriver, element: WebElement, timeout: float = 10.0) -> None:
    """Click a submit button and wait until the answer's page has replaced this one.

    A marker on the old window, not ``staleness_of``: chromedriver sometimes answers a check of an element
    whose document is being replaced with "Node with given id does not belong to the document"."""
    driver.execute_script("window.__oldPage = true")
    element.click()
    WebDriverWait(driver, timeout, poll_frequency=0.05, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script("return window.__oldPage === undefined && document.readyState !== 'loading'"))


def cheap_hasher() -> PasswordHash:
    """Argon2 at a low cost: the tests sign in dozens of times on a two-core machine."""
    return PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8 * 1024, parallelism=1),))


@contextlib.contextmanager
def running_desk(root: Path, port: int = 0) -> Iterator[RunningDesk]:
    """A desk over a fresh database in ``root``, with every user of ``USERS``; stopped afterwards."""
    evidence = root / "evidence"
    evidence.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        stores=STORES, database={"url": f"sqlite:///{root / 'db.sqlite'}"}, service={"evidence_dir": str(evidence)},
        # The bus test's worker rebuilds its window from alerts stored by other tests: no cooldown between them.
        alerts={"cooldown_s": 0},
    )
    db = Database.from_settings(settings)
    db.upgrade()
    db.sync_stores(settings)
    app = create_app(settings, db)
    accounts = app.state.desk.accounts
    accounts.hasher = cheap_hasher()
    for user in USERS:
        accounts.add_user(user.username, user.password, user.role, user.stores)
    server = DeskServer(app, "127.0.0.1", port).start()
    desk = RunningDesk(settings, db, server, evidence, server.port)
    try:
        yield desk
    finally:
        desk.stop()
        db.close()
