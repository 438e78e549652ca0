"""Alert videos: real H.264 segments (PyAV) on disk, real SQLite, a controllable clock; e-mails through a real
SMTP server on loopback and webhooks to a real local receiver."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from alerts.delivery import EmailNotifier, WebhookNotifier
from alerts.evidence_video import AlertVideoMaker, video_deadline
from alerts.outbox import VIDEO_GRACE, OutboxSender
from alerts.worker import AlertWorker
from common.clock import FakeClock
from common.db import Database
from common.evidence import SegmentEncoder, video_duration_s
from common.inprocess_bus import InProcessBus
from common.models import Alert, AlertDelivery, AlertEvent
from common.schemas import AlertEventKind, AlertKind, AlertMessage, DeliveryStatus, Topic
from common.settings import EmailSettings, EvidenceSettings, Settings
from tests.unit.alerts.conftest import T0, result

FPS = 10
CAMERA = "cam-1"
# Clips 5 and 6 of conftest's ``result``: captured at T0+10 s and T0+12 s, each 4 s long, so the alert's span is
# T0+6 .. T0+12 s and, with the default 3 s margins, its window T0+3 .. T0+15 s (recorded by T0+19 s).
CLIPS = (5, 6)
SPAN_START, SPAN_END = T0 + timedelta(seconds=6), T0 + timedelta(seconds=12)
WINDOW_START, WINDOW_END = T0 + timedelta(seconds=3), T0 + timedelta(seconds=15)
READY_AT = WINDOW_END + timedelta(seconds=4)
DEADLINE = SPAN_END + timedelta(seconds=3 + 4 + 15)  # margin after, a segment, video_wait_s (the defaults)


@pytest.fixture
def evidence(tmp_path: Path) -> Path:
    return tmp_path / "evidence"


def write_segments(root: Path, start_s: float, end_s: float, seconds: float = 4.0, camera: str = CAMERA) -> list[Path]:
    """Motion video of ``camera`` from T0+start_s to T0+end_s in ``seconds``-long closed segments, as ingest
    writes it: a bar moving across a grey frame, a frame every 1/FPS s on the clips' clock."""
    paths = []
    at_s = start_s
    while at_s < end_s - 1e-9:
        start = T0 + timedelta(seconds=at_s)
        encoder = SegmentEncoder(root, camera, start, width=160, height=120)
        for frame in range(round(min(seconds, end_s - at_s) * FPS)):
            image = np.full((120, 160, 3), 60, np.uint8)
            x = (int(at_s * FPS) + frame) * 3 % 150
            image[:, x:x + 10] = 255
            encoder.add(image, start + timedelta(seconds=frame / FPS))
        segment = encoder.close()
        assert segment is not None
        paths.append(segment.path)
        at_s += seconds
    return paths


def raise_alert(db: Database, clock: FakeClock, channels: tuple[str, ...] = (), alert_id: str = "alert-1",
                snapshot_path: str | None = None) -> AlertMessage:
    """Store the alert's clips and the alert (with its outbox rows), as the alert worker does."""
    db.write_results([result(i, 0.9) for i in CLIPS])
    alert = AlertMessage(alert_id=alert_id, alert_kind=AlertKind.SUSPICIOUS_ACTIVITY, store_id="store-1",
                         camera_id=CAMERA, raised_at=SPAN_END, probability=0.9,
                         clip_ids=tuple(f"{CAMERA}-clip-{i}" for i in CLIPS), snapshot_path=snapshot_path,
                         message="Suspicious activity on camera cam-1")
    assert db.write_alerts([alert], list(channels), now=clock.now()) == 1
    return alert


def stored(db: Database, alert_id: str = "alert-1") -> Alert:
    with db.sessions() as session:
        row = session.scalar(select(Alert).where(Alert.alert_id == alert_id))
        assert row is not None
        return row


def events(db: Database, alert_id: str = "alert-1") -> list[str]:
    with db.sessions() as session:
        return list(session.scalars(select(AlertEvent.event).where(AlertEvent.alert_id == alert_id)
                                    .order_by(AlertEvent.id)))


def maker(db: Database, evidence: Path, clock: FakeClock, **settings: Any) -> AlertVideoMaker:
    return AlertVideoMaker(db, evidence, EvidenceSettings(**settings), clock)


def decoded_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        return sum(1 for _ in container.decode(video=0))


# -- making the video --------------------------------------------------------------------------------------
def test_the_video_covers_the_clips_and_margins_and_is_made_once_the_camera_recorded_past_them(
    db: Database, evidence: Path
) -> None:
    clock = FakeClock(SPAN_END)
    raise_alert(db, clock)
    write_segments(evidence, 0, 12)  # recorded up to the clips' end, not yet the margin after them
    videos = maker(db, evidence, clock)
    assert videos.make_due() == 0 and videos.pending == 1
    assert stored(db).evidence_video_path is None and stored(db).evidence_video_settled_at is None

    write_segments(evidence, 12, 20)  # the camera recorded on, past the window: every segment of it is closed
    assert videos.make_due() == 1
    row = stored(db)
    path = Path(row.evidence_video_path or "")
    assert path.is_file() and path.parent.name == "videos" and path.name == "alert-1.mp4"
    assert row.evidence_video_settled_at == clock.now()
    # segments 0-4, 4-8, 8-12, 12-16 overlap the window 3..15 s: every frame of them once, nothing re-encoded
    assert decoded_frames(path) == 4 * 4 * FPS
    assert 15.5 < video_duration_s(path) < 16.1
    assert events(db) == [AlertEventKind.RAISED.value, AlertEventKind.EVIDENCE_READY.value]
    assert videos.counters() | {"bytes": 0} == {"made": 1, "partial": 0, "without_video": 0, "failed": 0, "pending": 0,
                                                   "bytes": 0}

    assert videos.make_due() == 0  # settled: not made again, no second event
    assert events(db).count(AlertEventKind.EVIDENCE_READY.value) == 1


def test_when_motion_stopped_the_video_is_made_once_the_clock_has_passed_the_window(
    db: Database, evidence: Path
) -> None:
    clock = FakeClock(SPAN_END)
    raise_alert(db, clock)
    write_segments(evidence, 2, 14)  # motion stopped at 14 s: no segment ever reaches past the window
    videos = maker(db, evidence, clock)
    clock.advance((READY_AT - SPAN_END).total_seconds() - 0.5)
    assert videos.make_due() == 0  # the segment holding the window's end might still be open
    clock.advance(0.5)
    assert videos.make_due() == 1
    assert decoded_frames(Path(stored(db).evidence_video_path or "")) == 3 * 4 * FPS


def test_a_camera_that_recorded_no_video_gets_none_after_the_wait_logged_once_and_never_retried(
    db: Database, evidence: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(SPAN_END)
    raise_alert(db, clock)
    write_segments(evidence, 0, 20, camera="another-camera")  # other cameras' video is not this alert's
    videos = maker(db, evidence, clock, video_wait_s=10)
    clock.advance((READY_AT - SPAN_END).total_seconds())
    assert videos.make_due() == 0 and videos.pending == 1  # ingest may be behind: it waits
    clock.advance(9.9)
    assert videos.make_due() == 0
    with caplog.at_level(logging.WARNING, logger="aislewatch.alerts.video"):
        clock.advance(0.1)
        assert videos.make_due() == 1
        for _ in range(3):
            clock.advance(60)
            assert videos.make_due() == 0
    row = stored(db)
    assert row.evidence_video_path is None and row.evidence_video_settled_at is not None
    assert AlertEventKind.EVIDENCE_READY.value not in events(db)
    (record,) = [r for r in caplog.records if "alert-1" in r.getMessage()]
    assert "recorded no video" in record.getMessage()
    assert videos.counters()["without_video"] == 1 and videos.counters()["pending"] == 0
    # a segment that turns up later changes nothing: the alert is settled, in the database
    write_segments(evidence, 0, 20)
    assert maker(db, evidence, clock).make_due() == 0


def test_a_restarted_maker_picks_up_the_pending_alerts_from_the_database(db: Database, evidence: Path) -> None:
    clock = FakeClock(SPAN_END)
    raise_alert(db, clock, alert_id="alert-1")
    assert maker(db, evidence, clock).make_due() == 0  # nothing recorded yet; then the process stops

    write_segments(evidence, 0, 20)
    restarted = maker(db, evidence, clock)
    assert restarted.make_due() == 1 and Path(stored(db).evidence_video_path or "").is_file()
    assert maker(db, evidence, clock).make_due() == 0  # and the next one finds nothing left to do


def test_when_every_stream_has_ended_pending_videos_are_settled_at_once(db: Database, evidence: Path) -> None:
    clock = FakeClock(SPAN_END)
    raise_alert(db, clock, alert_id="with-video")
    write_segments(evidence, 0, 13)  # the file ended 13 s in: its last segment is closed, nothing more comes
    videos = maker(db, evidence, clock)
    assert videos.make_due() == 0
    assert videos.make_due(streams_ended=True) == 1
    assert decoded_frames(Path(stored(db, "with-video").evidence_video_path or "")) == 3 * 4 * FPS + 1 * FPS  # 0-4, 4-8, 8-12 and the last second

    other = FakeClock(SPAN_END)
    db.write_alerts([AlertMessage(alert_id="no-video", alert_kind=AlertKind.SUSPICIOUS_ACTIVITY, store_id="store-1",
                                  camera_id="silent-cam", raised_at=SPAN_END, clip_ids=())], now=other.now())
    assert videos.make_due(streams_ended=True) == 1  # no wait: no camera will record anything more
    assert stored(db, "no-video").evidence_video_settled_at is not None


def test_camera_offline_alerts_get_no_video(db: Database, evidence: Path) -> None:
    clock = FakeClock(SPAN_END)
    db.write_alerts([AlertMessage(alert_id="offline", alert_kind=AlertKind.CAMERA_OFFLINE, store_id="store-1",
                                  camera_id=CAMERA, raised_at=SPAN_END)], now=clock.now())
    write_segments(evidence, 0, 20)
    videos = maker(db, evidence, clock)
    assert videos.make_due(streams_ended=True) == 0 and videos.pending == 0
    assert stored(db, "offline").evidence_video_path is None


def test_a_corrupt_segment_is_counted_and_the_alert_settled_without_video_at_its_deadline(
    db: Database, evidence: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(SPAN_END)
    raise_alert(db, clock)
    paths = write_segments(evidence, 0, 20)
    paths[1].write_bytes(b"not an mp4 at all")
    videos = maker(db, evidence, clock, video_wait_s=5)
    assert videos.make_due() == 0 and videos.counters()["failed"] == 1
    clock.advance((READY_AT - SPAN_END).total_seconds() + 5)
    assert videos.make_due() == 1
    assert stored(db).evidence_video_path is None and videos.counters()["without_video"] == 1
    assert not list(evidence.rglob("*.part"))  # the failed attempt left no half-written video
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.endswith("its video could not be put together; it has none")


# -- the worker runs it ------------------------------------------------------------------------------------
def test_the_alert_worker_makes_the_video_on_its_own_thread_and_stops_it(
    db: Database, evidence: Path, tmp_path: Path
) -> None:
    write_segments(evidence, 0, 20)
    settings = Settings(stores=[{"id": "store-1", "name": "S", "cameras": [{"id": CAMERA, "name": "C",
                                                                            "source": "c.mp4"}]}],
                        database={"url": f"sqlite:///{tmp_path / 'aislewatch.db'}"},
                        service={"evidence_dir": str(evidence)}, notifications={"log": False})
    bus = InProcessBus()
    worker = AlertWorker.from_settings(settings, bus, db, threshold=0.5)
    assert worker.videos is not None
    worker.start_thread()
    try:
        publisher = bus.publisher()
        for i in range(3, 8):
            publisher.publish(Topic.RESULTS, CAMERA, result(i, 0.9 if i in CLIPS else 0.1).to_bytes())
        publisher.flush(5)
        deadline = threading.Event()
        for _ in range(100):
            alerts = db.alerts()
            if alerts and alerts[0].evidence_video_path:
                break
            deadline.wait(0.1)
        (alert,) = db.alerts()
        assert alert.evidence_video_path and Path(alert.evidence_video_path).is_file()
        assert worker.counters()["videos"]["made"] == 1
    finally:
        worker.stop()
        worker.join(30)
    assert worker.videos is not None and not worker.videos.alive and worker.error is None


# -- e-mail: waits for the video, attaches it or links it ------------------------------------------------
class Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.original_content)
        return "250 Message accepted for delivery"

    def received(self) -> list[EmailMessage]:
        out = []
        for raw in self.messages:
            message = message_from_bytes(raw, policy=policy.default)
            assert isinstance(message, EmailMessage)
            out.append(message)
        return out


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def email_outbox(db: Database, port: int, clock: FakeClock, *, wait_s: float = 15.0, **email: Any) -> OutboxSender:
    notifier = EmailNotifier(EmailSettings(enabled=True, host="127.0.0.1", port=port, recipients=["desk@example.org"]),
                             timeout_s=5, **email)
    return OutboxSender(db, [notifier], clock, video_wait_s=wait_s)


def attachments(message: EmailMessage) -> dict[str, bytes]:
    return {part.get_content_type(): part.get_content() for part in message.iter_attachments()}


def test_an_email_waits_for_the_video_and_attaches_it(db: Database, evidence: Path, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    clock = FakeClock(SPAN_END)
    raise_alert(db, clock, channels=("email",))
    outbox = email_outbox(db, port, clock, public_url="https://desk.example.org/")
    videos = AlertVideoMaker(db, evidence, EvidenceSettings(), clock, on_settled=outbox.wake)
    assert outbox.send_due() == 1 and inbox.messages == []  # held: the video is not made yet
    (row,) = db.deliveries("alert-1")
    assert row.status == DeliveryStatus.PENDING.value and row.attempts == 0
    assert row.next_attempt_at == DEADLINE + VIDEO_GRACE == video_deadline(SPAN_END, EvidenceSettings()) + VIDEO_GRACE
    clock.advance(3)
    assert outbox.send_due() == 0  # nothing due while it waits

    write_segments(evidence, 0, 20)
    assert videos.make_due() == 1  # the video is made: the waiting e-mail is due at once
    assert outbox.send_due() == 1
    (message,) = inbox.received()
    video = Path(stored(db).evidence_video_path or "")
    assert attachments(message)["video/mp4"] == video.read_bytes()
    text = message.get_body(("plain",))
    assert text is not None
    content = text.get_content()
    assert "Video: attached" in content and "https://desk.example.org/alerts/alert-1" in content
    assert db.deliveries("alert-1")[0].status == DeliveryStatus.DELIVERED.value


def test_an_email_goes_without_the_video_once_the_wait_is_over(
    db: Database, evidence: Path, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    clock = FakeClock(SPAN_END)
    raise_alert(db, clock, channels=("email",))
    outbox = email_outbox(db, port, clock, wait_s=15)  # no video maker runs: the e-mail waits to its grace's end
    assert outbox.send_due() == 1 and inbox.messages == []
    set_clock(clock, DEADLINE + VIDEO_GRACE - timedelta(seconds=0.1))
    assert outbox.send_due() == 0 and inbox.messages == []
    clock.advance(0.1)
    assert outbox.send_due() == 1
    (message,) = inbox.received()
    assert "video/mp4" not in attachments(message)
    assert outbox.waited_for_video == 1


def set_clock(clock: FakeClock, at: Any) -> None:
    clock.advance((at - clock.now()).total_seconds())


def open_segment(root: Path, start_s: float, frames: int) -> SegmentEncoder:
    """A segment of ``CAMERA`` from T0+start_s that ingest is still writing (its ``.part``)."""
    encoder = SegmentEncoder(root, CAMERA, T0 + timedelta(seconds=start_s), width=160, height=120)
    for frame in range(frames):
        encoder.add(np.full((120, 160, 3), 90, np.uint8), T0 + timedelta(seconds=start_s + frame / FPS))
    return encoder


def test_a_camera_still_writing_the_window_is_waited_for_and_its_email_waits_with_it(
    db: Database, evidence: Path, smtp: tuple[Inbox, int], caplog: pytest.LogCaptureFixture
) -> None:
    """A camera behind the alerts' clock (a file slower than real time, an ingest stall): at ready_at the
    segment holding the window's end is still open, so the video is not cut short and settled for good; at the
    deadline the best video there is is made, counted partial, and the e-mail (which waited as long) carries it."""
    inbox, port = smtp
    clock = FakeClock(SPAN_END)
    raise_alert(db, clock, channels=("email",))
    outbox = email_outbox(db, port, clock)
    videos = AlertVideoMaker(db, evidence, EvidenceSettings(), clock, on_settled=outbox.wake)
    write_segments(evidence, 0, 12)
    writing = open_segment(evidence, 12, 5)  # T0+12 .. : holds the window's end (T0+15), still being written
    try:
        assert outbox.send_due() == 1 and inbox.messages == []
        set_clock(clock, READY_AT)
        assert videos.make_due() == 0 and stored(db).evidence_video_settled_at is None
        set_clock(clock, DEADLINE - timedelta(seconds=0.1))
        assert videos.make_due() == 0 and outbox.send_due() == 0 and inbox.messages == []
        set_clock(clock, DEADLINE)
        with caplog.at_level(logging.WARNING, logger="aislewatch.alerts.video"):
            assert videos.make_due() == 1
    finally:
        writing.abandon()
    path = Path(stored(db).evidence_video_path or "")
    assert decoded_frames(path) == 3 * 4 * FPS  # segments 0-4, 4-8, 8-12: all there was
    assert videos.counters()["partial"] == 1 and videos.counters()["made"] == 1
    assert any("partial video" in r.getMessage() for r in caplog.records)
    assert outbox.send_due() == 1  # made due by the maker at its deadline, not before
    (message,) = inbox.received()
    assert attachments(message)["video/mp4"] == path.read_bytes()


def test_an_open_segment_that_closes_before_the_deadline_gives_the_whole_video(db: Database, evidence: Path) -> None:
    clock = FakeClock(READY_AT)
    raise_alert(db, clock)
    write_segments(evidence, 0, 12)
    writing = open_segment(evidence, 12, 40)
    videos = maker(db, evidence, clock)
    assert videos.make_due() == 0
    assert writing.close() is not None  # T0+12 .. T0+15.9: reaches the window's end
    clock.advance(2)
    assert videos.make_due() == 1
    assert decoded_frames(Path(stored(db).evidence_video_path or "")) == 3 * 4 * FPS + 40
    assert videos.counters()["partial"] == 0


def test_a_camera_that_stopped_recording_before_the_window_end_is_not_waited_for(
    db: Database, evidence: Path
) -> None:
    clock = FakeClock(READY_AT)
    raise_alert(db, clock)
    write_segments(evidence, 0, 12)  # motion ended at T0+12: no segment is open
    videos = maker(db, evidence, clock)
    assert videos.make_due() == 1
    assert decoded_frames(Path(stored(db).evidence_video_path or "")) == 3 * 4 * FPS
    assert videos.counters()["partial"] == 0


def test_a_video_over_the_cap_is_linked_not_attached(db: Database, evidence: Path, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    clock = FakeClock(SPAN_END)
    raise_alert(db, clock, channels=("email",))
    write_segments(evidence, 0, 20)
    assert maker(db, evidence, clock).make_due() == 1
    size = Path(stored(db).evidence_video_path or "").stat().st_size
    outbox = email_outbox(db, port, clock, public_url="https://desk.example.org",
                          attach_max_mb=(size - 1) / 1024 / 1024)
    assert outbox.send_due() == 1
    (message,) = inbox.received()
    assert "video/mp4" not in attachments(message)
    text = message.get_body(("plain",))
    assert text is not None
    assert "too large to attach: watch it at https://desk.example.org/alerts/alert-1" in text.get_content()
    html = message.get_body(("html",))
    assert html is not None and "href='https://desk.example.org/alerts/alert-1'" in html.get_content()


def test_without_a_video_maker_an_email_does_not_wait(db: Database, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    clock = FakeClock(SPAN_END)
    raise_alert(db, clock, channels=("email",))
    assert email_outbox(db, port, clock, wait_s=None).send_due() == 1  # type: ignore[arg-type]
    assert len(inbox.messages) == 1


# -- webhooks carry links ----------------------------------------------------------------------------------
def test_webhook_payload_links_the_alert_its_snapshot_and_its_video(
    db: Database, evidence: Path, webhook_server: Any
) -> None:
    clock = FakeClock(SPAN_END)
    raise_alert(db, clock, channels=("webhook",), snapshot_path=str(evidence / "snap.jpg"))
    db.write_alerts([AlertMessage(alert_id="offline-1", alert_kind=AlertKind.CAMERA_OFFLINE, store_id="store-1",
                                  camera_id=CAMERA, raised_at=SPAN_END)], ["webhook"], now=clock.now())
    notifier = WebhookNotifier(webhook_server.url, timeout_s=5, public_url="https://desk.example.org/aw/", videos=True)
    outbox = OutboxSender(db, [notifier], clock, video_wait_s=15)
    assert outbox.send_due() == 2  # webhooks never wait for the video: they link it
    by_id = {body["alert_id"]: body for body in webhook_server.bodies}
    base = "https://desk.example.org/aw/alerts/alert-1"
    assert by_id["alert-1"]["alert_url"] == base
    assert by_id["alert-1"]["snapshot_url"] == base + "/snapshot"
    assert by_id["alert-1"]["video_url"] == base + "/video"
    offline = by_id["offline-1"]
    assert offline["alert_url"].endswith("/alerts/offline-1")
    assert offline["snapshot_url"] is None and offline["video_url"] is None
    assert AlertMessage.model_validate({k: v for k, v in by_id["alert-1"].items() if not k.endswith("_url")})


def test_video_outcomes_are_exported_as_metrics(db: Database, evidence: Path) -> None:
    from common.metrics import AlertCollector

    clock = FakeClock(SPAN_END)
    raise_alert(db, clock, alert_id="made")
    write_segments(evidence, 0, 20)
    db.write_alerts([AlertMessage(alert_id="none", alert_kind=AlertKind.SUSPICIOUS_ACTIVITY, store_id="store-1",
                                  camera_id="silent-cam", raised_at=SPAN_END)], now=clock.now())
    videos = maker(db, evidence, clock)
    assert videos.make_due(streams_ended=True) == 2
    families = {f.name: f for f in AlertCollector(lambda: {"videos": videos.counters()}).collect()}
    outcomes = {s.labels["outcome"]: s.value for s in families["aislewatch_alert_videos"].samples}
    assert outcomes == {"made": 1.0, "partial": 0.0, "without_video": 1.0, "failed": 0.0}
    assert [s.value for s in families["aislewatch_alert_videos_pending"].samples] == [0.0]


def test_the_attachment_cap_is_on_the_video_as_it_stands_in_the_message(
    db: Database, evidence: Path, smtp: tuple[Inbox, int]
) -> None:
    """A video whose file fits the cap but whose base64 form in the message (about 1.37x) does not is linked:
    a mail server limits what it receives, not the file."""
    from alerts.delivery import base64_size

    inbox, port = smtp
    clock = FakeClock(SPAN_END)
    raise_alert(db, clock, channels=("email",), alert_id="alert-1")
    raise_alert(db, clock, channels=("email",), alert_id="alert-2")
    write_segments(evidence, 0, 20)
    assert maker(db, evidence, clock).make_due() == 2
    size = Path(stored(db).evidence_video_path or "").stat().st_size
    outbox = email_outbox(db, port, clock, attach_max_mb=(size * 1.2) / 1024 / 1024)  # the file fits, base64 not
    assert outbox.send_due() == 2
    for message in inbox.received():
        assert "video/mp4" not in attachments(message)
    encoded = base64_size(size)
    assert 1.33 * size < encoded < 1.40 * size
    inbox.messages.clear()
    with db.sessions() as session:  # send them again, under a cap that takes the encoded size
        session.execute(update(AlertDelivery).values(status=DeliveryStatus.PENDING.value, next_attempt_at=clock.now()))
        session.commit()
    outbox = email_outbox(db, port, clock, attach_max_mb=encoded / 1024 / 1024)
    assert outbox.send_due() == 2
    messages = inbox.received()
    assert all("video/mp4" in attachments(m) for m in messages)
    raw = max(len(m.as_bytes()) for m in messages)
    assert raw > encoded  # the message carries the encoded video (plus the rest)
