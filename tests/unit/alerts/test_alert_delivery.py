"""Alert delivery: log line, webhook to a real local HTTP server, e-mail to a real local SMTP server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import socket
import time
from collections.abc import Iterator
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
from standardwebhooks import Webhook, WebhookVerificationError

from alerts.delivery import (
    DeliveryError,
    EmailNotifier,
    LogNotifier,
    WebhookNotifier,
    notifiers_from_settings,
)
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
SECRET_BYTES = b"\x01\x02 desk-signing-key \xff"
WHSEC = "whsec_" + base64.b64encode(SECRET_BYTES).decode()


def test_webhook_posts_the_alert_json_with_a_stable_id(webhook_server) -> None:
    alert = make_alert()
    notifier = WebhookNotifier(webhook_server.url, timeout_s=5)
    notifier.send(alert)
    notifier.send(alert)  # a retry of the same alert
    notifier.close()
    assert webhook_server.bodies == [alert.model_dump(mode="json")] * 2
    assert AlertMessage.model_validate(webhook_server.bodies[0]) == alert
    assert webhook_server.accepted_ids == [f"{alert.alert_id}-webhook"] * 2  # the same id on every attempt
    headers = webhook_server.posts[0][0]
    assert headers["content-type"] == "application/json"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    assert "webhook-signature" not in headers  # no secret, no signature


@pytest.mark.parametrize("secret", [WHSEC, "plain text secret"], ids=["whsec-base64", "plain"])
def test_webhook_signature_verifies_as_standard_webhooks(webhook_server, secret: str) -> None:
    settings = NotificationSettings(webhook={"url": webhook_server.url, "secret": secret})
    (notifier,) = [n for n in notifiers_from_settings(settings) if n.name == "webhook"]
    alert = make_alert()
    notifier.send(alert)
    notifier.close()
    ((headers, body, _),) = webhook_server.posts

    key = SECRET_BYTES if secret.startswith("whsec_") else secret.encode()
    # The reference library, as a receiver uses it (it checks the timestamp is within 5 minutes) ...
    verified = Webhook(key).verify(body, headers)
    assert verified["alert_id"] == alert.alert_id
    # ... and the scheme computed independently: v1,base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")).
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.{body.decode()}".encode()
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    # A body changed on the way fails verification.
    with pytest.raises(WebhookVerificationError):
        Webhook(key).verify(body.replace(b"cam-1", b"cam-2"), headers)


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (502, True), (503, True), (429, True), (408, True), (400, False), (404, False), (410, False),
     (301, False)],
)
def test_webhook_failure_says_whether_a_retry_can_help(webhook_server, status: int, retryable: bool) -> None:
    webhook_server.statuses.append(status)
    notifier = WebhookNotifier(webhook_server.url, timeout_s=5)
    with pytest.raises(DeliveryError) as failure:
        notifier.send(make_alert())
    assert failure.value.retryable is retryable
    assert str(status) in str(failure.value)
    assert webhook_server.requests == 1  # one attempt per send: the outbox does the retrying


def test_webhook_connection_refused_is_retryable_and_hides_credentials() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    notifier = WebhookNotifier(f"http://user:pw@127.0.0.1:{port}/hook", timeout_s=2)
    with pytest.raises(DeliveryError) as failure:
        notifier.send(make_alert())
    assert failure.value.retryable is True
    assert "pw@" not in str(failure.value)


@pytest.mark.parametrize(
    ("settings", "channels", "immediate"),
    [
        ({}, ["log"], [True]),
        ({"log": False}, [], []),
        ({"webhook": {"url": "http://127.0.0.1:1/x"}}, ["log", "webhook"], [True, False]),
        ({"log": False, "email": {"enabled": True, "recipients": ["sec@example.com"]}}, ["email"], [False]),
    ],
)
def test_channels_from_settings(settings: dict[str, Any], channels: list[str], immediate: list[bool]) -> None:
    notifiers = notifiers_from_settings(NotificationSettings(**settings))
    assert [n.name for n in notifiers] == channels
    assert [n.immediate for n in notifiers] == immediate  # only the log skips the outbox
    for n in notifiers:
        n.close()


def test_email_without_recipients_fails_at_start() -> None:
    with pytest.raises(ValueError, match="recipients"):
        notifiers_from_settings(NotificationSettings(email={"enabled": True}))


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
    notifier = EmailNotifier(settings)
    with caplog.at_level(logging.DEBUG):
        if delivered:
            notifier.send(make_alert())
        else:
            with pytest.raises(DeliveryError) as failure:
                notifier.send(make_alert())
            assert failure.value.retryable is True  # a password fixed later makes the next attempt pass
            assert password not in str(failure.value)
    assert len(inbox.messages) == (1 if delivered else 0)
    assert password not in caplog.text


def test_email_message_id_is_the_same_on_every_attempt(smtp_server) -> None:
    inbox, port = smtp_server
    notifier = EmailNotifier(EmailSettings(enabled=True, host="127.0.0.1", port=port, recipients=["d@shop.test"]))
    notifier.send(make_alert())
    notifier.send(make_alert())
    ids = [message_from_bytes(raw, policy=policy.default)["Message-ID"] for _, _, raw in inbox.messages]
    assert ids == [f"<{'a' * 40}-email@aislewatch>"] * 2


def test_email_server_down_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    notifier = EmailNotifier(EmailSettings(enabled=True, host="127.0.0.1", port=port, recipients=["d@shop.test"]))
    with pytest.raises(DeliveryError) as failure:
        notifier.send(make_alert())
    assert failure.value.retryable is True
