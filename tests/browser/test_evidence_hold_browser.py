"""Holding an alert's evidence and downloading its bundle through the alert page, in headless Chromium."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.desk_support import GUARD_A, MANAGER, RunningDesk, click_to_new_page

pytestmark = pytest.mark.browser

FETCH_ZIP = """
const [url, done] = arguments;
fetch(url, {credentials: "same-origin"}).then(r => r.arrayBuffer().then(b => {
  const bytes = new Uint8Array(b);
  done({status: r.status, type: r.headers.get("content-type"), size: bytes.length,
        magic: String.fromCharCode(bytes[0], bytes[1])});
})).catch(e => done({status: -1, type: String(e), size: 0, magic: ""}));
"""


def test_a_manager_holds_and_releases_from_the_alert_page(desk: RunningDesk, chromium: WebDriver) -> None:
    alert_id = desk.raise_alert("north")
    desk.sign_in(chromium, MANAGER, f"/alerts/{alert_id}")
    click_to_new_page(chromium, chromium.find_element(By.ID, "hold"))
    WebDriverWait(chromium, 5).until(lambda d: d.find_elements(By.ID, "evidence-hold"))
    assert chromium.find_element(By.ID, "evidence-hold").text.startswith(f"Held by {MANAGER.username}")
    assert "evidence put on hold by manager-n" in chromium.find_element(By.ID, "history").text
    stored = desk.alert(alert_id)
    assert (stored.evidence_hold, stored.hold_by) == (True, MANAGER.username)

    click_to_new_page(chromium, chromium.find_element(By.ID, "release"))
    WebDriverWait(chromium, 5).until(lambda d: d.find_elements(By.ID, "hold"))
    assert not chromium.find_elements(By.ID, "evidence-hold")
    assert desk.alert(alert_id).evidence_hold is False


def test_the_bundle_link_downloads_a_zip_for_a_manager_only(desk: RunningDesk, browsers: Callable[[], WebDriver]) -> None:
    alert_id = desk.raise_alert("north")
    manager, guard = browsers(), browsers()
    desk.sign_in(manager, MANAGER, f"/alerts/{alert_id}")
    link = manager.find_element(By.ID, "download-bundle")
    assert link.get_attribute("href").endswith(f"/alerts/{alert_id}/bundle.zip")
    answer = manager.execute_async_script(FETCH_ZIP, link.get_attribute("href"))
    assert (answer["status"], answer["type"], answer["magic"]) == (200, "application/zip", "PK")
    assert answer["size"] > 0

    desk.sign_in(guard, GUARD_A, f"/alerts/{alert_id}")
    assert not guard.find_elements(By.ID, "download-bundle") and not guard.find_elements(By.ID, "hold")
    assert guard.execute_async_script(FETCH_ZIP, f"/alerts/{alert_id}/bundle.zip")["status"] == 403
