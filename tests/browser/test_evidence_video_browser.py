"""An alert's evidence video in Chromium: made from real H.264 segments while the guard has the alert open, it
appears on the page without a reload (the evidence_ready event), loads under the desk's CSP, and plays to its end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from alerts.evidence_video import AlertVideoMaker
from common.clock import SystemClock
from common.evidence import SegmentEncoder
from tests.browser.desk_support import CAMERA_OF, GUARD_A, RunningDesk

pytestmark = pytest.mark.browser

PLAY = """
const done = arguments[arguments.length - 1];
const v = document.getElementById("evidence-video");
v.muted = true;
v.playbackRate = 8;
v.play().then(() => done("playing")).catch((e) => done("refused: " + e));
"""


def record_motion(desk: RunningDesk, store_id: str, start: datetime, seconds: int) -> None:
    """What ingest writes while the camera sees motion: closed 4 s H.264 segments, on the clips' clock."""
    camera = CAMERA_OF[store_id]
    for index in range(seconds // 4):
        at = start + timedelta(seconds=4 * index)
        encoder = SegmentEncoder(desk.evidence_dir, camera, at, width=320, height=240)
        for frame in range(60):
            image = np.full((240, 320, 3), 50, np.uint8)
            x = (index * 60 + frame) * 4 % 300
            image[60:180, x:x + 20] = (0, 160, 255)
            encoder.add(image, at + timedelta(seconds=frame / 15))
        assert encoder.close() is not None


def test_a_guard_watches_the_alerts_video_appear_and_play_to_its_end(desk: RunningDesk, chromium: WebDriver) -> None:
    raised_at = datetime.now(UTC)
    alert_id = desk.raise_alert("north", raised_at=raised_at)  # its clips span raised_at - 8 s .. raised_at - 2 s
    desk.sign_in(chromium, GUARD_A, f"/alerts/{alert_id}")
    assert chromium.find_element(By.ID, "video-notice").is_displayed()
    assert not chromium.find_elements(By.ID, "evidence-video")

    record_motion(desk, "north", raised_at - timedelta(seconds=12), 16)  # through the window and past it
    videos = AlertVideoMaker(desk.db, desk.evidence_dir, desk.settings.evidence, SystemClock())
    videos.make_due()  # the module's older alerts (minutes old, no video recorded) are settled without one
    assert desk.alert(alert_id).evidence_video_path and videos.made == 1

    # live: the page is not reloaded, the stream's evidence_ready puts the video in
    chromium.execute_script("window.__samePage = true")
    video = WebDriverWait(chromium, 10).until(lambda d: d.find_elements(By.ID, "evidence-video"))[0]
    assert chromium.execute_script("return window.__samePage === true")
    assert "ready" in chromium.find_element(By.ID, "video-notice").text

    WebDriverWait(chromium, 10).until(lambda d: d.execute_script(
        "const v = document.getElementById('evidence-video'); return v.readyState >= 1 || v.error !== null"))
    error = chromium.execute_script("const e = document.getElementById('evidence-video').error; "
                                    "return e ? e.code + ' ' + e.message : null")
    assert error is None, f"Chromium could not load the video: {error}"
    duration = chromium.execute_script("return document.getElementById('evidence-video').duration")
    assert 15.0 < duration < 17.0  # the 4 segments overlapping the window, every frame of them

    assert chromium.execute_async_script(PLAY) == "playing"
    WebDriverWait(chromium, 20, poll_frequency=0.1).until(
        lambda d: d.execute_script("return document.getElementById('evidence-video').ended"))
    played = chromium.execute_script("return document.getElementById('evidence-video').currentTime")
    assert played == pytest.approx(duration, abs=0.2)
    assert video.get_attribute("src").endswith(f"/alerts/{alert_id}/video")
    # the player's range requests were served (206), and the page's CSP allowed the media
    logs = chromium.execute_script(
        "return performance.getEntriesByType('resource').filter(e => e.name.endsWith('/video'))"
        ".map(e => e.responseStatus)")
    assert logs and all(status in (200, 206) for status in logs)
