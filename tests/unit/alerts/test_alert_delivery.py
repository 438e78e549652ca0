"""Alert delivery: log line, webhook to a real local HTTP server, e-mail to a real local SMTP server."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from alerts.delivery import DeliveryError, Dispatcher, EmailNotifier, LogNotifier, WebhookNotifier
from common.schemas import AlertKind, AlertMessage
from common.settings import EmailSettings, NotificationSettings

PASSWORD = "s3cret-smtp-pw"


def make_alert(snapshot_path: str | None = None) -> AlertMessage:
    return AlertMessage(
        alert_id="a" * 40,
        alert_kind=AlertKind.SUSPICIOUS_ACTIVITY,
        store_id="store-1",
        camera_id="cam-1",
        raised_at=datetime(2026, 1, 5, 9, 30, tzinfo=UTC),
        probability=0.93,
        clip_ids=("c1", "c2"),
        source_start_s=10.0,
        source_end_s=16.0,
        snapshot_path=snapshot_path,
        message="Suspicious activity on camera cam-1",
    )


# -- log ---------------------------------------------------------------------------------------------
def test_log_notifier_writes_one_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="aislewatch.alerts"):
        LogNotifier().send(make_alert())
    (record,) = [r for r in caplog.records if r.name == "aislewatch.alerts"]
    line = record.getMessage()
    assert "\n" not in line
    for part in ("suspicious_activity", "store-1", "cam-1", "p=0.93", "a" * 40):
        assert part in line


# -- webhook -----------------------------------------------------------------------------------------
def test_webhook_posts_the_alert_json(webhook_server) -> None:
    alert = make_alert()
    notifier = WebhookNotifier(webhook_server.url, timeout_s=5, retries=0)
    notifier.send(alert)
    notifier.close()
    assert webhook_server.bodies == [alert.model_dump(mode="json")]
    assert AlertMessage.model_validate(webhook_server.bodies[0]) == alert


@pytest.mark.parametrize(
    ("statuses", "retries", "delivered", "requests"),
    [
        ([500], 2, True, 2),  # a 500, then success
        ([502, 503], 2, True, 3),
        ([500, 500, 500], 2, False, 3),  # gives up after the retries
        ([400], 3, False, 1),  # a client error is not retried
    ],
)
def test_webhook_retries_server_errors(
    webhook_server, statuses: list[int], retries: int, delivered: bool, requests: int
) -> None:
    webhook_server.statuses.extend(statuses)
    notifier = WebhookNotifier(webhook_server.url, timeout_s=5, retries=retries, backoff_s=0.001)
    if delivered:
        notifier.send(make_alert())
    else:
        with pytest.raises(DeliveryError):
            notifier.send(make_alert())
    assert webhook_server.requests == requests
    assert len(webhook_server.bodies) == (1 if delivered else 0)


def test_webhook_connection_refused_is_retried_then_given_up(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    notifier = WebhookNotifier(f"http://user:pw@127.0.0.1:{port}/hook", timeout_s=2, retries=2, backoff_s=0.001)
    dispatcher = Dispatcher([notifier])
    with caplog.at_level(logging.WARNING):
        assert dispatcher.send(make_alert()) is False  # never raises into the caller
    assert dispatcher.failed == {"webhook": 1} and dispatcher.sent == {"webhook": 0}
    assert sum("retrying" in r.getMessage() for r in caplog.records) == 2
    assert any(r.levelno == logging.ERROR and "gave up" in r.getMessage() for r in caplog.records)
    assert "pw@" not in caplog.text


# -- dispatcher --------------------------------------------------------------------------------------
@dataclass
class Recorder:
    name: str
    fail: Exception | None = None
    got: list[AlertMessage] = field(default_factory=list)

    def send(self, alert: AlertMessage) -> None:
        if self.fail is not None:
            raise self.fail
        self.got.append(alert)

    def close(self) -> None:
        pass


def test_dispatcher_isolates_failures_and_counts_per_channel() -> None:
    broken = Recorder("broken", fail=RuntimeError("bug"))
    refused = Recorder("refused", fail=DeliveryError("gave up"))
    good = Recorder("good")
    dispatcher = Dispatcher([broken, refused, good])
    assert dispatcher.send(make_alert()) is False
    assert dispatcher.send(make_alert()) is False
    assert len(good.got) == 2
    assert dispatcher.sent == {"broken": 0, "refused": 0, "good": 2}
    assert dispatcher.failed == {"broken": 2, "refused": 2, "good": 0}


@pytest.mark.parametrize(
    ("settings", "channels"),
    [
        ({}, ["log"]),
        ({"log": False}, []),
        ({"webhook_url": "http://127.0.0.1:1/x"}, ["log", "webhook"]),
        ({"log": False, "email": {"enabled": True, "recipients": ["sec@example.com"]}}, ["email"]),
    ],
)
def test_dispatcher_from_settings(settings: dict[str, Any], channels: list[str]) -> None:
    dispatcher = Dispatcher.from_settings(NotificationSettings(**settings))
    assert [n.name for n in dispatcher.notifiers] == channels
    dispatcher.close()


def test_email_without_recipients_fails_at_start() -> None:
    with pytest.raises(ValueError, match="recipients"):
        Dispatcher.from_settings(NotificationSettings(email={"enabled": True}))


# -- e-mail ------------------------------------------------------------------------------------------
class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 Message accepted for delivery"


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"desk" and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = Inbox()
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, authenticator=_authenticate, auth_require_tls=False
    )
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def snapshot(tmp_path: Path) -> Path:
    image = np.zeros((48, 64, 3), np.uint8)
    image[10:30, 20:40] = (0, 0, 255)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    path = tmp_path / "evidence.jpg"
    path.write_bytes(data.tobytes())
    return path


def _received(inbox: Inbox) -> EmailMessage:
    (_, _, raw), = inbox.messages
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_email_with_snapshot_attached_and_inlined(smtp_server, snapshot: Path) -> None:
    inbox, port = smtp_server
    settings = EmailSettings(enabled=True, host="127.0.0.1", port=port, sender="aw@shop.test",
                             recipients=["desk@shop.test", "mgr@shop.test"])
    EmailNotifier(settings).send(make_alert(str(snapshot)))

    (mail_from, rcpt_tos, _), = inbox.messages
    assert mail_from == "aw@shop.test" and rcpt_tos == ["desk@shop.test", "mgr@shop.test"]
    message = _received(inbox)
    subject = message["Subject"]
    for part in ("Suspicious activity", "store-1", "cam-1", "2026-01-05 09:30:00"):
        assert part in subject
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and "Peak probability: 0.93" in plain.get_content()
    assert html is not None and "cid:" in html.get_content()

    (attachment,) = list(message.iter_attachments())
    assert attachment.get_content_type() == "image/jpeg"
    assert attachment.get_filename().endswith(".jpg")
    assert attachment.get_content() == snapshot.read_bytes()
    assert attachment.get_content()[:2] == b"\xff\xd8"  # a JPEG
    inline = [p for p in message.walk() if p.get_content_type() == "image/jpeg" and p["Content-ID"]]
    assert len(inline) == 1 and inline[0]["Content-ID"].strip("<>") in html.get_content()


def test_email_without_snapshot_file(smtp_server, tmp_path: Path) -> None:
    inbox, port = smtp_server
    settings = EmailSettings(enabled=True, host="127.0.0.1", port=port, recipients=["desk@shop.test"])
    EmailNotifier(settings).send(make_alert(str(tmp_path / "missing.jpg")))
    message = _received(inbox)
    assert list(message.iter_attachments()) == []
    assert not any(p.get_content_maintype() == "image" for p in message.walk())


@pytest.mark.parametrize(("password", "delivered"), [(PASSWORD, True), ("wrong-pw", False)])
def test_email_login_and_password_never_logged(
    smtp_server, caplog: pytest.LogCaptureFixture, password: str, delivered: bool
) -> None:
    inbox, port = smtp_server
    settings = EmailSettings(enabled=True, host="127.0.0.1", port=port, recipients=["desk@shop.test"],
                             username="desk", password=password)
    dispatcher = Dispatcher([EmailNotifier(settings)])
    with caplog.at_level(logging.DEBUG):
        assert dispatcher.send(make_alert()) is delivered
    assert len(inbox.messages) == (1 if delivered else 0)
    assert dispatcher.failed["email"] == (0 if delivered else 1)
    assert password not in caplog.text
