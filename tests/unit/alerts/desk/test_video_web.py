"""The desk and evidence videos over HTTP: a real remuxed MP4 served with byte ranges (what lets a <video> seek),
the alert page while its video is pending and once it is made, and the evidence_ready event on the live feed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from alerts.desk.audit import AuditAction
from alerts.evidence_video import AlertVideoMaker
from common.clock import FakeClock
from common.evidence import SegmentEncoder
from common.models import Alert
from common.schemas import AlertEventKind, utc_now
from common.settings import EvidenceSettings
from tests.unit.alerts.desk.webapp import Web


def record_camera(web: Web, alert_id: str) -> AlertVideoMaker:
    """Video of the alert's camera around its time, as ingest writes it, and a maker over the desk's database."""
    alert = web.stored(alert_id)
    start = alert.raised_at - timedelta(seconds=8)
    for index in range(3):
        at = start + timedelta(seconds=4 * index)
        encoder = SegmentEncoder(web.evidence_dir, alert.camera_id, at, width=96, height=64)
        for frame in range(40):
            encoder.add(np.full((64, 96, 3), frame * 6, np.uint8), at + timedelta(seconds=frame / 10))
        assert encoder.close() is not None
    return AlertVideoMaker(web.db, web.evidence_dir, EvidenceSettings(), FakeClock(utc_now() + timedelta(minutes=1)))


def test_the_video_is_served_in_byte_ranges_so_a_player_can_seek(web: Web) -> None:
    alert_id = web.raise_alert("south")
    assert record_camera(web, alert_id).make_due() == 1
    video = Path(web.stored(alert_id).evidence_video_path or "")
    size = video.stat().st_size
    web.sign_in_as("gs")

    whole = web.client.get(f"/alerts/{alert_id}/video")
    assert whole.status_code == 200 and whole.content == video.read_bytes()
    assert whole.headers["content-type"] == "video/mp4" and whole.headers["accept-ranges"] == "bytes"

    first = web.client.get(f"/alerts/{alert_id}/video", headers={"Range": "bytes=0-99"})
    assert first.status_code == 206
    assert first.headers["content-range"] == f"bytes 0-99/{size}"
    assert first.content == video.read_bytes()[:100]
    seek = web.client.get(f"/alerts/{alert_id}/video", headers={"Range": f"bytes={size - 50}-"})
    assert seek.status_code == 206 and seek.content == video.read_bytes()[-50:]
    assert web.client.get(f"/alerts/{alert_id}/video", headers={"Range": f"bytes={size + 10}-"}).status_code == 416
    # a playback is one view in the audit log, however many ranges the player asks for while it seeks
    assert len(web.audit_rows(AuditAction.EVIDENCE_VIEWED)) == 1


def test_a_range_that_skips_the_first_byte_is_audited_too(web: Web) -> None:
    """Auditing only requests from byte 0 would let `Range: bytes=1-` fetch a video unaudited."""
    alert_id = web.raise_alert("south")
    assert record_camera(web, alert_id).make_due() == 1
    web.sign_in_as("gs")
    assert web.client.get(f"/alerts/{alert_id}/video", headers={"Range": "bytes=1-"}).status_code == 206
    rows = web.audit_rows(AuditAction.EVIDENCE_VIEWED)
    assert [(r.username, r.target, r.detail) for r in rows] == [("gs", alert_id, "video")]


@pytest.mark.parametrize("role_user", ["gn", "mn"])
def test_another_stores_staff_get_no_bytes_of_the_video(web: Web, role_user: str) -> None:
    alert_id = web.raise_alert("south")
    assert record_camera(web, alert_id).make_due() == 1
    web.sign_in_as(role_user)
    assert web.client.get(f"/alerts/{alert_id}/video", headers={"Range": "bytes=0-99"}).status_code == 404


def test_the_alert_page_says_the_video_is_coming_then_shows_it_and_the_feed_carries_evidence_ready(web: Web) -> None:
    alert_id = web.raise_alert("south")
    web.sign_in_as("ms")
    pending = web.client.get(f"/alerts/{alert_id}")
    assert pending.status_code == 200
    assert 'id="video-notice"' in pending.text and "<video" not in pending.text
    assert f'data-last-event-id="{web.events()[-1][0]}"' in pending.text

    assert record_camera(web, alert_id).make_due() == 1
    ready = web.client.get(f"/alerts/{alert_id}")
    assert '<video id="evidence-video"' in ready.text and 'id="video-notice"' not in ready.text
    assert 'id="download-video"' in ready.text
    assert web.client.get("/?store=south").text.count('class="video-badge"') == 1

    (event_id, _, event, actor), = [e for e in web.events(alert_id) if e[2] != AlertEventKind.RAISED.value]
    assert event == AlertEventKind.EVIDENCE_READY.value and actor is None
    (replayed,) = web.app.state.desk.feed.replay(frozenset({"south"}), event_id - 1)
    assert replayed.event == "evidence_ready" and '"has_video": true' in replayed.data
    assert '"video_pending": false' in replayed.data
    assert web.app.state.desk.feed.replay(frozenset({"north"}), event_id - 1) == []  # other stores never see it


def test_an_alert_settled_without_video_says_so_rather_than_waiting(web: Web) -> None:
    alert_id = web.raise_alert("south")
    with web.db.session() as session:
        row = session.scalar(select(Alert).where(Alert.alert_id == alert_id))
        assert row is not None
        row.evidence_video_settled_at = utc_now()
    web.sign_in_as("gs")
    page = web.client.get(f"/alerts/{alert_id}").text
    assert 'id="video-notice"' not in page and "<video" not in page


def test_with_evidence_video_off_the_page_promises_no_video(make_web) -> None:  # type: ignore[no-untyped-def]
    web = make_web()
    web.app.state.desk.videos = False
    alert_id = web.raise_alert("south")
    web.sign_in_as("gs")
    assert 'id="video-notice"' not in web.client.get(f"/alerts/{alert_id}").text
