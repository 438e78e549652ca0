"""The security desk in a real browser: sign-in, the live feed, acting on alerts, store isolation, CSRF and
evidence paths, each checked through the pages a guard uses (headless Chromium against a running desk)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from alerts.worker import AlertWorker
from common.inprocess_bus import InProcessBus
from common.models import Alert
from common.schemas import ResultMessage, Topic
from tests.browser.desk_support import (
    ADMIN,
    CAMERA_NAME,
    GUARD_A,
    GUARD_B,
    GUARD_C,
    MANAGER,
    STORE_NAME,
    RunningDesk,
    click_to_new_page,
    fill_sign_in,
    screenshot,
)

pytestmark = pytest.mark.browser

LIVE_WITHIN_S = 2.0

FETCH = """
const [url, method, form, headers, done] = arguments;
const init = {method: method, headers: headers || {}, credentials: "same-origin"};
if (form) init.body = new URLSearchParams(form);
fetch(url, init).then(r => r.text().then(t => done({status: r.status, body: t, url: r.url})))
  .catch(e => done({status: -1, body: String(e), url: url}));
"""


# -- helpers -------------------------------------------------------------------------------------------------
def fetch(driver: WebDriver, path: str, method: str = "GET", form: dict[str, str] | None = None,
          headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A request from the page itself (its cookies, its origin): {status, body, url}."""
    return driver.execute_async_script(FETCH, path, method, form, headers)  # type: ignore[no-any-return]


def page_status(driver: WebDriver) -> int:
    """The HTTP status of the document now shown (Navigation Timing's responseStatus)."""
    return int(driver.execute_script("return performance.getEntriesByType('navigation')[0].responseStatus"))


def wait(driver: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 5.0, message: str = "") -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.05,
                         ignored_exceptions=(StaleElementReferenceException,)).until(condition, message)


def wait_live(driver: WebDriver) -> None:
    wait(driver, lambda d: d.find_element(By.ID, "live-state").text == "live", 10, "the live feed never connected")


def row(driver: WebDriver, alert_id: str) -> Any:
    found = driver.find_elements(By.CSS_SELECTOR, f'tr.alert-row[data-alert-id="{alert_id}"]')
    return found[0] if found else None


def row_ids(driver: WebDriver) -> list[str]:
    return [tr.get_attribute("data-alert-id") for tr in driver.find_elements(By.CSS_SELECTOR, "tr.alert-row")]


def open_count(driver: WebDriver, store_id: str) -> int:
    return int(driver.find_element(By.CSS_SELECTOR, f'[data-count-for="{store_id}"]').text)


def mark_page(driver: WebDriver) -> None:
    """A value that only survives as long as this document does: a reload would lose it."""
    driver.execute_script("window.__noReload = 'still here'")


def not_reloaded(driver: WebDriver) -> bool:
    return driver.execute_script("return window.__noReload") == "still here"


def acknowledge(driver: WebDriver, verdict: str, note: str = "") -> None:
    driver.find_element(By.ID, f"verdict-{verdict}").click()
    if note:
        driver.find_element(By.ID, "note").send_keys(note)
    click_to_new_page(driver, driver.find_element(By.ID, "acknowledge"))


def is_404(driver: WebDriver) -> bool:
    return page_status(driver) == 404 and driver.find_element(By.ID, "error-title").text == "Not found"


# -- signing in and out ---------------------------------------------------------------------------------------
def test_sign_in_shows_the_feed_and_sign_out_ends_the_session(desk: RunningDesk, chromium: WebDriver) -> None:
    desk.sign_in(chromium, GUARD_A)
    assert urlsplit(chromium.current_url).path == "/"
    assert chromium.find_element(By.ID, "whoami").text == "guard-a"
    assert chromium.find_elements(By.ID, "feed") and "seed-north-1" in row_ids(chromium)

    click_to_new_page(chromium, chromium.find_element(By.ID, "sign-out"))
    assert urlsplit(chromium.current_url).path == "/login"
    assert not chromium.find_elements(By.ID, "whoami")

    chromium.get(desk.url + "/")
    parts = urlsplit(chromium.current_url)
    assert parts.path == "/login" and parse_qs(parts.query) == {"next": ["/"]}
    assert not chromium.find_elements(By.ID, "feed")


def test_a_signed_out_link_to_an_alert_signs_in_then_opens_it(desk: RunningDesk, chromium: WebDriver) -> None:
    alert_id = desk.raise_alert("north")
    chromium.get(f"{desk.url}/alerts/{alert_id}")
    parts = urlsplit(chromium.current_url)
    assert parts.path == "/login" and parse_qs(parts.query) == {"next": [f"/alerts/{alert_id}"]}

    fill_sign_in(chromium, GUARD_A)
    wait(chromium, lambda d: d.find_elements(By.ID, "alert"))
    assert urlsplit(chromium.current_url).path == f"/alerts/{alert_id}"
    assert chromium.find_element(By.ID, "alert").get_attribute("data-alert-id") == alert_id


def test_a_wrong_password_is_refused_with_a_message(desk: RunningDesk, chromium: WebDriver) -> None:
    # The module's only failed sign-in: the limit counts per address, and every test browser is 127.0.0.1.
    chromium.get(desk.url + "/login")
    fill_sign_in(chromium, GUARD_B, password="not-the-password")
    error = wait(chromium, lambda d: d.find_elements(By.ID, "login-error"))[0]
    assert error.text == "Wrong username or password."
    assert page_status(chromium) == 401
    assert not chromium.find_elements(By.ID, "whoami")
    fill_sign_in(chromium, GUARD_B)  # the form is usable again, and the right password still works
    wait(chromium, lambda d: d.find_elements(By.ID, "whoami"))


def test_the_sixth_rapid_failed_sign_in_is_refused_with_429(fresh_desk: RunningDesk, chromium: WebDriver) -> None:
    chromium.get(fresh_desk.url + "/login")
    for attempt in range(1, 6):
        fill_sign_in(chromium, GUARD_A, password=f"wrong-password-{attempt}")
        wait(chromium, lambda d: d.find_elements(By.ID, "login-error"))
        assert page_status(chromium) == 401, f"attempt {attempt}"
    fill_sign_in(chromium, GUARD_A, password="wrong-password-6")
    wait(chromium, lambda d: "Too many failed sign-ins" in d.find_element(By.ID, "login-error").text)
    assert page_status(chromium) == 429
    # Blocked means unchecked: the right password is refused too while the window lasts.
    fill_sign_in(chromium, GUARD_A)
    wait(chromium, lambda d: "Too many failed sign-ins" in d.find_element(By.ID, "login-error").text)
    assert page_status(chromium) == 429 and not chromium.find_elements(By.ID, "whoami")


# -- the live feed --------------------------------------------------------------------------------------------
def test_a_new_alert_appears_on_an_open_feed_within_two_seconds(desk: RunningDesk, chromium: WebDriver) -> None:
    desk.sign_in(chromium, ADMIN)
    wait_live(chromium)
    mark_page(chromium)
    before = open_count(chromium, "north")
    banner = chromium.find_element(By.ID, "new-alert-banner")
    assert not banner.is_displayed()

    alert_id = desk.raise_alert("north")
    written = time.monotonic()
    wait(chromium, lambda d: row(d, alert_id) is not None, LIVE_WITHIN_S, "the new alert did not appear in 2 s")
    took = time.monotonic() - written

    assert took < LIVE_WITHIN_S and not_reloaded(chromium)
    assert row_ids(chromium)[0] == alert_id  # newest first
    cells = row(chromium, alert_id).find_elements(By.TAG_NAME, "td")
    assert [c.text for c in cells[1:3]] == [STORE_NAME["north"], CAMERA_NAME["north"]]
    assert cells[5].text == "open"
    wait(chromium, lambda d: open_count(d, "north") == before + 1, 1)
    assert banner.is_displayed() and CAMERA_NAME["north"] in banner.text and "New alert" in banner.text
    assert chromium.title.startswith("(1) ")
    screenshot(chromium, "feed.png")


def test_an_alert_raised_from_results_on_the_bus_appears_on_an_open_page(
    desk: RunningDesk, chromium: WebDriver
) -> None:
    desk.sign_in(chromium, GUARD_B)
    wait_live(chromium)
    mark_page(chromium)
    shown = set(row_ids(chromium))

    bus, stop = InProcessBus(), threading.Event()
    worker = AlertWorker.from_settings(desk.settings, bus, desk.db, threshold=0.5, stop=stop)
    worker.start_thread()
    try:
        publisher = bus.publisher()
        start = datetime.now(UTC) + timedelta(seconds=1)
        for i, probability in enumerate([0.2, 0.93, 0.96]):  # 2 of the last 4 above 0.5: one alert
            at = start + timedelta(seconds=2 * i)
            result = ResultMessage(
                clip_id=f"bus-south-{i}", store_id="south", camera_id="south-cam", captured_at=at,
                start_at=at - timedelta(seconds=4), source_start_s=2.0 * i, source_end_s=2.0 * i + 4,
                probability=probability, threshold=0.5, model_version="test", inferred_at=at,
            )
            desk.db.write_results([result])  # as inference does: stored, then published
            publisher.publish(Topic.RESULTS, result.camera_id, result.to_bytes())
        new = wait(chromium, lambda d: [i for i in row_ids(d) if i not in shown], 10,
                   "the bus alert never reached the open page")
    finally:
        stop.set()
        worker.join(10)
        bus.close()
    assert worker.error is None
    (alert_id,) = new
    stored = desk.alert(alert_id)
    assert (stored.store_id, stored.camera_id, stored.kind) == ("south", "south-cam", "suspicious_activity")
    assert stored.clip_ids == ["bus-south-1", "bus-south-2"]
    assert not_reloaded(chromium)
    assert CAMERA_NAME["south"] in chromium.find_element(By.ID, "new-alert-banner").text


def test_a_page_that_lost_its_stream_catches_up_on_reconnect(fresh_desk: RunningDesk, chromium: WebDriver) -> None:
    fresh_desk.sign_in(chromium, ADMIN)
    wait_live(chromium)
    mark_page(chromium)
    # A second stream like the page's, recording every event it is sent: a reconnect that replayed from
    # the page's first id instead of its Last-Event-ID would send ``first`` twice.
    chromium.execute_script("""
        window.__events = [];
        const es = new EventSource("/api/stream?after=" + document.getElementById("feed").dataset.lastEventId);
        es.addEventListener("alert", m => window.__events.push(JSON.parse(m.data).alert.alert_id));
        es.addEventListener("ready", () => { window.__ready = true; });
    """)
    wait(chromium, lambda d: d.execute_script("return window.__ready === true"))
    first = fresh_desk.raise_alert("north")  # delivered live: the page's Last-Event-ID is now this event
    wait(chromium, lambda d: row(d, first) is not None, LIVE_WITHIN_S)
    wait(chromium, lambda d: d.execute_script("return window.__events") == [first])

    fresh_desk.stop()  # the desk goes away (a restart, a deploy): the page's stream breaks
    wait(chromium, lambda d: d.find_element(By.ID, "live-state").text != "live", 10)
    missed = fresh_desk.raise_alert("south")  # raised while no desk was serving the page
    fresh_desk.start()  # the same port: EventSource reconnects on its own, sending Last-Event-ID

    wait(chromium, lambda d: row(d, missed) is not None, 15, "the alert raised during the outage never came")
    wait_live(chromium)
    assert not_reloaded(chromium)
    assert row_ids(chromium)[:2] == [missed, first]
    wait(chromium, lambda d: missed in d.execute_script("return window.__events"), 15)
    assert chromium.execute_script("return window.__events") == [first, missed]
    assert open_count(chromium, "south") == 1


# -- acting on alerts -----------------------------------------------------------------------------------------
def test_an_acknowledgement_is_stored_and_seen_live_by_the_manager(
    desk: RunningDesk, browsers: Callable[[], WebDriver]
) -> None:
    alert_id = desk.raise_alert("north")
    manager, guard = browsers(), browsers()
    desk.sign_in(manager, MANAGER)
    wait_live(manager)
    mark_page(manager)
    assert row(manager, alert_id).find_element(By.CSS_SELECTOR, "td.status").text == "open"
    open_before = open_count(manager, "north")

    desk.sign_in(guard, GUARD_A, f"/alerts/{alert_id}")
    acknowledge(guard, "theft_prevented", "stopped at the door, goods returned")
    wait(guard, lambda d: d.find_element(By.ID, "alert-status").text == "acknowledged")
    assert "Theft prevented — by guard-a" in guard.find_element(By.ID, "alert-verdict").text
    assert guard.find_element(By.ID, "alert-note").text == "stopped at the door, goods returned"

    stored = desk.alert(alert_id)
    assert (stored.status, stored.verdict, stored.acknowledged_by) == ("acknowledged", "theft_prevented", "guard-a")
    assert stored.note == "stopped at the door, goods returned" and stored.version == 2

    wait(manager, lambda d: row(d, alert_id).find_element(By.CSS_SELECTOR, "td.status").text == "acknowledged",
         LIVE_WITHIN_S, "the manager's open feed did not show the acknowledgement")
    assert row(manager, alert_id).find_element(By.CSS_SELECTOR, "td.verdict").text == "Theft prevented by guard-a"
    wait(manager, lambda d: open_count(d, "north") == open_before - 1, 1)
    assert not_reloaded(manager)

    manager.get(f"{desk.url}/alerts/{alert_id}")
    assert "Theft prevented — by guard-a" in manager.find_element(By.ID, "alert-verdict").text
    assert manager.find_element(By.ID, "alert-note").text == "stopped at the door, goods returned"


def test_the_second_guard_to_act_is_told_who_was_first_and_changes_nothing(
    desk: RunningDesk, browsers: Callable[[], WebDriver]
) -> None:
    alert_id = desk.raise_alert("north")
    first, second = browsers(), browsers()
    desk.sign_in(first, GUARD_A, f"/alerts/{alert_id}")
    desk.sign_in(second, GUARD_C, f"/alerts/{alert_id}")  # both look at version 1

    acknowledge(first, "theft_confirmed")
    wait(first, lambda d: d.find_element(By.ID, "alert-status").text == "acknowledged")
    acknowledge(second, "false_alarm", "nothing taken")
    problem = wait(second, lambda d: d.find_elements(By.ID, "problem"))[0]

    assert page_status(second) == 409
    assert problem.text.startswith("guard-a acknowledged it first")
    assert "Theft confirmed" in problem.text and "Nothing was changed" in problem.text
    assert second.find_element(By.ID, "alert-status").text == "acknowledged"
    stored = desk.alert(alert_id)
    assert (stored.verdict, stored.acknowledged_by, stored.note) == ("theft_confirmed", "guard-a", None)


def test_a_manager_reopens_an_acknowledged_alert_and_a_guard_cannot(
    desk: RunningDesk, browsers: Callable[[], WebDriver]
) -> None:
    alert_id = desk.raise_alert("north")
    guard, manager = browsers(), browsers()
    desk.sign_in(guard, GUARD_A, f"/alerts/{alert_id}")
    acknowledge(guard, "unsure")
    wait(guard, lambda d: d.find_element(By.ID, "alert-status").text == "acknowledged")
    assert not guard.find_elements(By.ID, "reopen") and not guard.find_elements(By.ID, "resolve")
    # Not only hidden: the desk refuses a guard's reopen even with the page's CSRF token and version.
    token = guard.find_element(By.CSS_SELECTOR, "input[name=csrf_token]").get_attribute("value")
    refused = fetch(guard, f"/alerts/{alert_id}/reopen", "POST", {"csrf_token": token, "version": "2"})
    assert refused["status"] == 403 and desk.alert(alert_id).status == "acknowledged"

    desk.sign_in(manager, MANAGER, f"/alerts/{alert_id}")
    assert manager.find_element(By.ID, "resolve").is_displayed()
    click_to_new_page(manager, manager.find_element(By.ID, "reopen"))
    wait(manager, lambda d: d.find_element(By.ID, "alert-status").text == "open")
    assert manager.find_elements(By.ID, "ack-form") and not manager.find_elements(By.ID, "alert-verdict")
    stored = desk.alert(alert_id)
    assert (stored.status, stored.verdict, stored.acknowledged_by) == ("open", None, None)


def test_the_alert_page_shows_snapshot_chart_store_and_camera(desk: RunningDesk, chromium: WebDriver) -> None:
    # An hour back, so the chart's window (2 minutes either side) holds only this alert's clips.
    alert_id = desk.raise_alert("north", clips=8, raised_at=datetime.now(UTC) - timedelta(hours=1))
    desk.sign_in(chromium, MANAGER, f"/alerts/{alert_id}")
    image = chromium.find_element(By.ID, "evidence-snapshot")
    wait(chromium, lambda d: d.execute_script("return arguments[0].complete", image))
    assert chromium.execute_script("return arguments[0].naturalWidth", image) == 320
    assert chromium.execute_script("return arguments[0].naturalHeight", image) == 240

    chart = chromium.find_element(By.ID, "probability-chart")
    assert len(chart.find_elements(By.CSS_SELECTOR, "circle")) == 8
    assert len(chart.find_elements(By.CSS_SELECTOR, "circle.hit")) == 2  # the alert's own two clips
    assert chart.find_elements(By.CSS_SELECTOR, "line.threshold")
    assert chromium.find_element(By.ID, "alert-store").text == STORE_NAME["north"]
    assert chromium.find_element(By.ID, "alert-camera").text == f"{CAMERA_NAME['north']} north-cam"
    assert chromium.find_element(By.ID, "alert-status").text == "open"
    screenshot(chromium, "alert.png", full_page=True)


# -- store isolation ------------------------------------------------------------------------------------------
def test_a_guard_of_one_store_sees_nothing_of_another(desk: RunningDesk, chromium: WebDriver) -> None:
    north = desk.raise_alert("north")
    desk.sign_in(chromium, GUARD_B)
    ids = row_ids(chromium)
    assert ids and not [i for i in ids if i.startswith("north") or i.startswith("seed-north")]
    assert [c.get_attribute("data-count-for") for c in chromium.find_elements(By.CSS_SELECTOR, "[data-count-for]")] \
        == ["south"]

    listed = fetch(chromium, "/api/alerts")
    assert listed["status"] == 200
    stores = {a["store_id"] for a in json.loads(listed["body"])["alerts"]}
    assert stores == {"south"}
    assert fetch(chromium, f"/api/alerts/{north}")["status"] == 404
    assert fetch(chromium, f"/alerts/{north}/snapshot")["status"] == 404
    assert fetch(chromium, f"/alerts/{north}/acknowledge", "POST", {
        "csrf_token": chromium.find_element(By.CSS_SELECTOR, "input[name=csrf_token]").get_attribute("value"),
        "verdict": "false_alarm", "version": "1"})["status"] == 404
    assert desk.alert(north).status == "open"

    chromium.get(f"{desk.url}/alerts/{north}")
    assert is_404(chromium) and north not in chromium.page_source


def test_the_live_stream_does_not_carry_another_stores_alerts(desk: RunningDesk, chromium: WebDriver) -> None:
    desk.sign_in(chromium, GUARD_B)
    wait_live(chromium)
    # A second listener on the guard's own session records every event the server sends to it.
    chromium.execute_script("""
        window.__events = [];
        const es = new EventSource("/api/stream?after=" + document.getElementById("feed").dataset.lastEventId);
        es.addEventListener("alert", m => window.__events.push(JSON.parse(m.data).alert.alert_id));
        es.addEventListener("ready", () => { window.__ready = true; });
    """)
    wait(chromium, lambda d: d.execute_script("return window.__ready === true"))
    north = desk.raise_alert("north")
    south = desk.raise_alert("south")

    wait(chromium, lambda d: row(d, south) is not None, LIVE_WITHIN_S)
    wait(chromium, lambda d: south in d.execute_script("return window.__events"))
    time.sleep(2 * desk.settings.desk.feed_poll_s)  # the north event, raised first, was polled with or before it
    assert row(chromium, north) is None
    assert chromium.execute_script("return window.__events") == [south]
    assert CAMERA_NAME["north"] not in chromium.find_element(By.ID, "new-alert-banner").text


# -- CSRF and evidence paths ----------------------------------------------------------------------------------
def test_a_post_without_the_csrf_token_is_refused(desk: RunningDesk, chromium: WebDriver) -> None:
    alert_id = desk.raise_alert("north")
    desk.sign_in(chromium, GUARD_A, f"/alerts/{alert_id}")
    form = {"verdict": "false_alarm", "version": "1"}

    refused = fetch(chromium, f"/alerts/{alert_id}/acknowledge", "POST", form)
    assert refused["status"] == 403 and "security token" in refused["body"]
    wrong = fetch(chromium, f"/alerts/{alert_id}/acknowledge", "POST", form | {"csrf_token": "forged"})
    assert wrong["status"] == 403
    assert desk.alert(alert_id).status == "open"

    token = chromium.find_element(By.CSS_SELECTOR, "#ack-form input[name=csrf_token]").get_attribute("value")
    accepted = fetch(chromium, f"/alerts/{alert_id}/acknowledge", "POST", form | {"csrf_token": token})
    assert accepted["status"] == 200 and urlsplit(accepted["url"]).path == f"/alerts/{alert_id}"
    assert desk.alert(alert_id).verdict == "false_alarm"


ESCAPES = [
    "/alerts/..%2F..%2Fetc%2Fpasswd/snapshot",
    "/alerts/%2Fetc%2Fpasswd/snapshot",
    "/alerts/..%2F..%2Fetc%2Fpasswd/snapshot/download",
    "/alerts/..%2F..%2Fetc%2Fpasswd/video",
    "/static/..%2F..%2Fapp.py",
    "/static/..%2Fapp.py",
    "/static/%2Fetc%2Fpasswd",
]


def test_paths_out_of_the_evidence_and_static_folders_are_404(desk: RunningDesk, chromium: WebDriver) -> None:
    desk.sign_in(chromium, ADMIN)
    answers = {path: fetch(chromium, path) for path in ESCAPES}
    assert {path: a["status"] for path, a in answers.items()} == dict.fromkeys(ESCAPES, 404)
    assert not [p for p, a in answers.items() if "root:" in a["body"] or "create_app" in a["body"]]
    assert fetch(chromium, "/static/desk.js")["status"] == 200  # the control: the folder itself is served
    chromium.get(desk.url + ESCAPES[0])
    assert is_404(chromium)


def test_evidence_stored_outside_the_evidence_folder_is_not_served(
    desk: RunningDesk, chromium: WebDriver, tmp_path: Any
) -> None:
    outside = desk.snapshot("outside", "north", directory=tmp_path)  # a real JPEG, but not in evidence_dir
    link = desk.evidence_dir / "link-out.jpg"
    link.symlink_to(outside)
    escaped = desk.raise_alert("north", snapshot=False)
    linked = desk.raise_alert("north", snapshot=False)
    dotted = desk.raise_alert("north", snapshot=False)
    beside = desk.snapshot(f"beside-{dotted}", "north", directory=desk.evidence_dir.parent)
    with desk.db.session() as session:
        session.query(Alert).filter(Alert.alert_id == escaped).update({"evidence_path": str(outside)})
        session.query(Alert).filter(Alert.alert_id == linked).update({"evidence_path": str(link)})
        session.query(Alert).filter(Alert.alert_id == dotted).update(
            {"evidence_path": f"{desk.evidence_dir}/../{beside.name}"})  # starts with evidence_dir
    good = desk.raise_alert("north")

    desk.sign_in(chromium, ADMIN, f"/alerts/{escaped}")
    assert page_status(chromium) == 200  # the alert itself is shown; only its file is refused
    for alert_id in (escaped, linked, dotted):
        assert fetch(chromium, f"/alerts/{alert_id}/snapshot")["status"] == 404, alert_id
        assert fetch(chromium, f"/alerts/{alert_id}/snapshot/download")["status"] == 404, alert_id
    assert fetch(chromium, f"/alerts/{good}/snapshot")["status"] == 200  # the control: a contained file is served
    chromium.get(f"{desk.url}/alerts/{escaped}/snapshot")
    assert is_404(chromium)
