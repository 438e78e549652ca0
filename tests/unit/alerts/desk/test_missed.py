"""Marking a missed theft on a camera's page: store scope, roles, CSRF, the audit row, and the video cut from the
camera's motion segments at once (or a clear refusal when none are left)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av
import pytest
from sqlalchemy import select

from alerts.desk import missed
from alerts.desk.audit import AuditAction
from alerts.desk.roles import Principal, Role
from common.evidence import video_duration_s
from common.models import MissedTheft
from common.schemas import utc_now
from tests.feedback_footage import film, store_clip
from tests.unit.alerts.desk.webapp import Web, csrf_of

FORM = "%Y-%m-%dT%H:%M:%S"


def _marks(web: Web) -> list[MissedTheft]:
    with web.db.sessions() as session:
        rows = list(session.scalars(select(MissedTheft).order_by(MissedTheft.id)))
        session.expunge_all()
        return rows


def _filmed(web: Web) -> tuple[str, str]:
    """Two seconds of south-cam's motion, a minute ago, and its clip: the form's (start, end)."""
    segment = film(web.evidence_dir, "south-cam", (utc_now() - timedelta(minutes=1)).replace(microsecond=0),
                   "shoplifting", seed=7)
    store_clip(web.db, "south", segment, 0.3, "south-quiet-clip")
    return segment.start.strftime(FORM), segment.end.strftime(FORM)


def test_a_manager_marks_a_missed_theft_and_its_video_is_cut_at_once(web: Web) -> None:
    start, end = _filmed(web)
    csrf = web.sign_in_as("ms")
    page = web.client.get("/cameras/south-cam")
    assert page.status_code == 200 and 'id="missed-form"' in page.text and 'id="probability-chart"' in page.text
    answer = web.client.post("/cameras/south-cam/missed",
                             data={"start": start, "end": end, "note": "bottle in the jacket", "csrf_token": csrf})
    assert answer.status_code == 303 and answer.headers["location"] == "/cameras/south-cam?marked=1"

    (mark,) = _marks(web)
    assert (mark.store_id, mark.camera_id, mark.marked_by, mark.note) == ("south", "south-cam", "ms",
                                                                          "bottle in the jacket")
    assert mark.start_at.strftime(FORM) == start and mark.end_at.strftime(FORM) == end
    video = Path(str(mark.video_path))
    assert video.parent.name == "missed" and video.parent.parent.parent.name == "south-cam"
    assert video.is_relative_to(web.evidence_dir) and video.name == f"{mark.id}.mp4"
    with av.open(str(video)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    assert video_duration_s(video) > 1.5

    (audit,) = web.audit_rows(AuditAction.MISSED_THEFT_MARKED)
    assert (audit.username, audit.store_id, audit.target) == ("ms", "south", "south-cam")
    assert f"missed theft {mark.id}" in audit.detail and "bottle" in audit.detail
    shown = web.client.get("/cameras/south-cam?marked=1").text
    assert 'id="marked"' in shown and f'data-missed-id="{mark.id}"' in shown


def test_without_motion_video_the_mark_is_refused_and_nothing_is_stored(web: Web) -> None:
    csrf = web.sign_in_as("ms")
    now = utc_now()
    answer = web.client.post("/cameras/south-cam/missed", data={
        "start": (now - timedelta(hours=3)).strftime(FORM), "end": (now - timedelta(hours=3, seconds=-20)).strftime(FORM),
        "csrf_token": csrf})
    assert answer.status_code == 422 and "No motion video of S cam is left" in answer.text
    assert _marks(web) == [] and web.audit_rows(AuditAction.MISSED_THEFT_MARKED) == []
    assert not list(web.evidence_dir.rglob("missed/*"))


def test_bad_spans_are_refused_with_the_reason(web: Web) -> None:
    start, end = _filmed(web)
    csrf = web.sign_in_as("ms")
    for data, reason in [({"start": end, "end": start}, "The end must be after the start"),
                         ({"start": "yesterday", "end": end}, "is not a time"),
                         ({"start": start, "end": (utc_now() + timedelta(hours=1)).strftime(FORM)}, "at most 10 minutes")]:
        answer = web.client.post("/cameras/south-cam/missed", data={**data, "csrf_token": csrf})
        assert answer.status_code == 422 and reason in answer.text, (data, answer.text[:300])
    assert _marks(web) == []


def test_guards_see_the_camera_but_may_not_mark_and_other_stores_do_not_see_it(web: Web) -> None:
    start, end = _filmed(web)
    csrf = web.sign_in_as("gs")
    page = web.client.get("/cameras/south-cam")
    assert page.status_code == 200 and 'id="missed-form"' not in page.text
    assert web.client.post("/cameras/south-cam/missed",
                           data={"start": start, "end": end, "csrf_token": csrf}).status_code == 403
    csrf = web.sign_in_as("mn")  # the north manager
    assert web.client.get("/cameras/south-cam").status_code == 404
    assert web.client.get("/cameras/no-such-cam").status_code == 404
    assert web.client.post("/cameras/south-cam/missed",
                           data={"start": start, "end": end, "csrf_token": csrf}).status_code == 404
    web.sign_in_as("ms")
    assert web.client.post("/cameras/south-cam/missed", data={"start": start, "end": end}).status_code == 403  # no CSRF
    assert _marks(web) == []


def test_the_alert_page_and_the_feed_link_to_the_camera(web: Web) -> None:
    alert_id = web.raise_alert("south")
    web.sign_in_as("gs")
    assert 'href="/cameras/south-cam"' in web.client.get(f"/alerts/{alert_id}").text
    feed = web.client.get("/").text
    assert 'class="camera-link" href="/cameras/south-cam"' in feed
    assert csrf_of(feed)


def _write_from_another_connection(web: Web) -> str:
    """Take SQLite's write lock from a second connection without waiting: "ok", or the error it met."""
    database = web.db.engine.url.database
    assert database
    other = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return "ok"
    except sqlite3.OperationalError as exc:
        return str(exc)
    finally:
        other.close()


def test_the_video_is_cut_while_no_database_lock_is_held(web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    start, end = _filmed(web)
    seen: list[str] = []
    real_cut = missed.cut_video

    def cut_watching_the_lock(*args: Any, **kwargs: Any) -> Any:
        seen.append(_write_from_another_connection(web))  # another writer (the alert worker) during the cut
        return real_cut(*args, **kwargs)

    monkeypatch.setattr(missed, "cut_video", cut_watching_the_lock)
    csrf = web.sign_in_as("ms")
    answer = web.client.post("/cameras/south-cam/missed", data={"start": start, "end": end, "csrf_token": csrf})
    assert answer.status_code == 303
    assert seen == ["ok"]
    (mark,) = _marks(web)
    assert Path(str(mark.video_path)).name == f"{mark.id}.mp4" and Path(str(mark.video_path)).is_file()
    assert [p.name for p in web.evidence_dir.rglob("missed/*")] == [f"{mark.id}.mp4"]  # no pending file left


def test_when_the_row_cannot_be_stored_the_cut_video_is_deleted(web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    start, end = _filmed(web)

    def audit_fails(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the audit table is gone")

    monkeypatch.setattr(missed, "record_for", audit_fails)
    principal = Principal(1, "ms", Role.MANAGER, frozenset({"south"}))
    with pytest.raises(RuntimeError, match="audit table is gone"):
        missed.mark_missed_theft(web.db, principal, "south-cam", datetime.strptime(start, FORM).replace(tzinfo=UTC),
                                 datetime.strptime(end, FORM).replace(tzinfo=UTC), evidence_dir=web.evidence_dir)
    assert _marks(web) == [] and web.audit_rows(AuditAction.MISSED_THEFT_MARKED) == []
    assert not [p for p in web.evidence_dir.rglob("missed/*")]  # neither the pending cut nor the named video
