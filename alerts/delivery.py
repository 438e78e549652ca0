"""Alert delivery to people and systems: the log, a webhook (signed JSON POST) and e-mail.

Each channel is a ``Notifier`` that makes one attempt per ``send`` and raises ``DeliveryError`` when it
fails, saying whether asking again can help.  The log channel is ``immediate``: the alert worker writes
it as soon as an alert is stored.  Webhook and e-mail go through the outbox (``alerts.outbox``), which
retries them with backoff until they are delivered or expire, across restarts.  Sending is therefore
at-least-once; every attempt of one alert on one channel carries the same id (``webhook-id``, the
e-mail's ``Message-ID``), so the receiver can keep exactly one.

With ``desk.public_url`` set, deliveries link to the alert on the security desk: webhooks carry ``alert_url``,
``snapshot_url`` and ``video_url``; e-mails link the alert.  An e-mail attaches the alert's evidence video when
the attachment, as it stands in the message (base64, about 4/3 of the file plus line breaks), is at most
``evidence.email_attach_max_mb``, and otherwise links to it.
"""

from __future__ import annotations

import html
import json
import logging
import smtplib
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from standardwebhooks import Webhook

from common.redaction import redact
from common.schemas import AlertKind, AlertMessage
from common.settings import EmailSettings, NotificationSettings

log = logging.getLogger(__name__)

# Answers a webhook receiver gives while it is busy or briefly unable: worth asking again.
_RETRYABLE_HTTP = frozenset({408, 425, 429})


class DeliveryError(Exception):
    """One delivery attempt failed; ``retryable`` says whether another attempt could succeed."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Notifier(Protocol):
    name: str
    immediate: bool  # True: sent once when the alert is stored; False: through the outbox

    def send(self, alert: AlertMessage, video_path: str | None = None) -> None:
        """Make one attempt to deliver ``alert`` (with its evidence video, once made), or raise DeliveryError."""

    def close(self) -> None:
        """Release connections."""


def delivery_id(alert_id: str, channel: str) -> str:
    """The id every attempt of one alert on one channel carries, for the receiver to de-duplicate on."""
    return f"{alert_id}-{channel}"


def alert_url(public_url: str, alert_id: str) -> str:
    """The alert's page on the security desk."""
    return f"{public_url.rstrip('/')}/alerts/{quote(alert_id, safe='')}"


def desk_links(public_url: str | None, alert: AlertMessage, *, video: bool) -> dict[str, str | None]:
    """``alert_url``, ``snapshot_url`` and ``video_url`` of an alert on the desk (empty without a public URL;
    a link is None when the alert has no such evidence).  The desk serves them to a signed-in user of the
    alert's store."""
    if not public_url:
        return {}
    page = alert_url(public_url, alert.alert_id)
    return {"alert_url": page, "snapshot_url": f"{page}/snapshot" if alert.snapshot_path else None,
            "video_url": f"{page}/video" if video else None}


def _when(alert: AlertMessage) -> str:
    return alert.raised_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


class LogNotifier:
    """Writes each alert as one log line (the channel that always works)."""

    name = "log"
    immediate = True

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger("aislewatch.alerts")

    def send(self, alert: AlertMessage, video_path: str | None = None) -> None:
        probability = f" p={alert.probability:.2f}" if alert.probability is not None else ""
        self.log.warning(
            "ALERT %s store=%s camera=%s at=%s%s id=%s: %s",
            alert.alert_kind.value, alert.store_id, alert.camera_id, alert.raised_at.isoformat(),
            probability, alert.alert_id, alert.message,
        )

    def close(self) -> None:
        pass


class WebhookNotifier:
    """POSTs the alert as JSON, signed the Standard Webhooks way (https://www.standardwebhooks.com/).

    Headers: ``webhook-id`` (the alert id and channel, the same on every attempt), ``webhook-timestamp``
    (unix seconds of this attempt) and, with a secret, ``webhook-signature``: ``v1,`` + base64 of
    HMAC-SHA256(key, ``{id}.{timestamp}.{body}``).  2xx is delivered; 5xx, 408, 425, 429 and connection
    errors are worth retrying; any other answer is the receiver refusing this alert.
    """

    name = "webhook"
    immediate = False

    def __init__(
        self,
        url: str,
        timeout_s: float = 5.0,
        secret: bytes | None = None,
        client: httpx.Client | None = None,
        unix_time: Callable[[], float] = time.time,
        public_url: str | None = None,
        videos: bool = False,
    ) -> None:
        """``public_url``: the desk's, for the links in the payload; ``videos``: suspicious-activity alerts get
        evidence videos (the video maker runs), so ``video_url`` is given before the video is made (it answers
        404 until then, and for good when the camera recorded none)."""
        self.url = url
        self.public_url = public_url
        self.videos = videos
        self._client = client or httpx.Client(timeout=timeout_s)
        self._shown_url = redact(url)
        # The library does the signing (a few lines, but the receiver verifies with the same reference code).
        self._signer = Webhook(secret) if secret else None
        self._unix_time = unix_time  # the receiver checks the timestamp against its clock: real time only

    def payload(self, alert: AlertMessage, video_path: str | None = None) -> dict[str, Any]:
        """The JSON posted: the alert, plus links to it on the desk when ``desk.public_url`` is set."""
        video = bool(video_path) or (self.videos and alert.alert_kind == AlertKind.SUSPICIOUS_ACTIVITY)
        return alert.model_dump(mode="json") | desk_links(self.public_url, alert, video=video)

    def request(self, alert: AlertMessage, video_path: str | None = None) -> tuple[bytes, dict[str, str]]:
        """The body and headers of one attempt (separate from sending so they can be inspected)."""
        body = json.dumps(self.payload(alert, video_path), separators=(",", ":")).encode("utf-8")
        webhook_id = delivery_id(alert.alert_id, self.name)
        timestamp = int(self._unix_time())
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
        }
        if self._signer is not None:
            headers["webhook-signature"] = self._signer.sign(
                webhook_id, datetime.fromtimestamp(timestamp, UTC), body.decode("utf-8")
            )
        return body, headers

    def send(self, alert: AlertMessage, video_path: str | None = None) -> None:
        body, headers = self.request(alert, video_path)
        try:
            response = self._client.post(self.url, content=body, headers=headers)
        except httpx.TransportError as exc:  # refused, reset, timed out
            raise DeliveryError(f"{type(exc).__name__}: {redact(str(exc))}") from None
        status = response.status_code
        if 200 <= status < 300:
            return
        raise DeliveryError(f"HTTP {status} from {self._shown_url}", retryable=status >= 500 or status in _RETRYABLE_HTTP)

    def close(self) -> None:
        self._client.close()


def base64_size(size: int) -> int:
    """The bytes a ``size``-byte attachment takes in a message: base64 (4 characters per 3 bytes) in lines of
    76 characters, each ended by CRLF on the wire."""
    encoded = 4 * -(-size // 3)
    return encoded + 2 * -(-encoded // 76)


class EmailNotifier:
    """Sends each alert as an e-mail (plain text + HTML) with the evidence snapshot attached and inlined, and its
    evidence video attached while its base64 form in the message is at most ``attach_max_mb`` (linked on the desk
    beyond that: mail servers limit the message as sent, not the file)."""

    name = "email"
    immediate = False

    def __init__(
        self,
        settings: EmailSettings,
        timeout_s: float = 10.0,
        smtp_factory: Callable[..., smtplib.SMTP] = smtplib.SMTP,
        public_url: str | None = None,
        attach_max_mb: float = 8.0,
    ) -> None:
        if not settings.recipients:
            raise ValueError("e-mail notifications are enabled but notifications.email.recipients is empty")
        self.settings = settings
        self.public_url = public_url
        self.attach_max_bytes = int(attach_max_mb * 1024 * 1024)
        self.timeout_s = timeout_s
        self._smtp_factory = smtp_factory

    def build(self, alert: AlertMessage, video_path: str | None = None) -> EmailMessage:
        """The e-mail for one alert (separate from sending so it can be inspected)."""
        s = self.settings
        label = alert.alert_kind.label
        when = _when(alert)
        msg = EmailMessage()
        msg["Subject"] = f"[AisleWatch] {label} - store {alert.store_id}, camera {alert.camera_id}, {when}"
        msg["From"] = s.sender
        msg["To"] = ", ".join(s.recipients)
        msg["Date"] = formatdate(localtime=False)
        # The same on every attempt, so a mail system (or a person's client) can see a retry as one message.
        msg["Message-ID"] = f"<{delivery_id(alert.alert_id, self.name)}@aislewatch>"

        facts: list[tuple[str, str]] = [
            ("Alert", label),
            ("Store", alert.store_id),
            ("Camera", alert.camera_id),
            ("Time", when),
        ]
        if alert.probability is not None:
            facts.append(("Peak probability", f"{alert.probability:.2f}"))
        if alert.source_start_s is not None and alert.source_end_s is not None:
            facts.append(("Video position", f"{alert.source_start_s:.1f} - {alert.source_end_s:.1f} s"))
        if alert.clip_ids:
            facts.append(("Clips", ", ".join(alert.clip_ids)))
        facts.append(("Alert id", alert.alert_id))
        page = alert_url(self.public_url, alert.alert_id) if self.public_url else None
        video = self._video(alert, video_path)
        if video is not None:
            data, size = video
            if data is not None:
                facts.append(("Video", f"attached ({size / 1e6:.1f} MB)"))
            elif page is not None:
                facts.append(("Video", f"{size / 1e6:.1f} MB, too large to attach: watch it at {page}"))
            else:
                facts.append(("Video", f"{size / 1e6:.1f} MB, too large to attach: watch it on the security desk"))
        if page is not None:
            facts.append(("On the security desk", page))

        text = alert.message + "\n\n" + "\n".join(f"{k}: {v}" for k, v in facts) + "\n"
        msg.set_content(text)

        snapshot = self._snapshot(alert)
        cid = make_msgid(domain="aislewatch")
        rows = "".join(f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
        image = f"<p><img src='cid:{cid[1:-1]}' alt='evidence snapshot' style='max-width:100%'></p>" if snapshot else ""
        link = (f"<p><a href='{html.escape(page, quote=True)}'>Open the alert on the security desk</a></p>"
                if page is not None else "")
        body = (
            f"<html><body><h2>{html.escape(label)}</h2><p>{html.escape(alert.message)}</p>"
            f"<table>{rows}</table>{link}{image}</body></html>"
        )
        msg.add_alternative(body, subtype="html")
        if snapshot is not None:
            data, filename = snapshot
            html_part = msg.get_body(("html",))
            assert html_part is not None
            html_part.add_related(data, maintype="image", subtype="jpeg", cid=cid, disposition="inline")
            msg.add_attachment(data, maintype="image", subtype="jpeg", filename=filename)
        if video is not None and video[0] is not None:
            msg.add_attachment(video[0], maintype="video", subtype="mp4",
                               filename=f"{alert.camera_id}-{alert.raised_at.strftime('%Y%m%dT%H%M%S')}.mp4")
        return msg

    def _video(self, alert: AlertMessage, video_path: str | None) -> tuple[bytes | None, int] | None:
        """(the video's bytes, or None when it is over the attachment cap; its size), or None without a video."""
        if not video_path:
            return None
        path = Path(video_path)
        try:
            size = path.stat().st_size
            return (path.read_bytes() if base64_size(size) <= self.attach_max_bytes else None), size
        except OSError as exc:
            log.warning("video %s of alert %s cannot be read (%s); sending without it",
                        path, alert.alert_id, exc.strerror or exc)
            return None

    def _snapshot(self, alert: AlertMessage) -> tuple[bytes, str] | None:
        if not alert.snapshot_path:
            return None
        path = Path(alert.snapshot_path)
        try:
            return path.read_bytes(), f"{alert.camera_id}-{alert.raised_at.strftime('%Y%m%dT%H%M%S')}.jpg"
        except OSError as exc:
            log.warning("snapshot %s of alert %s cannot be read (%s); sending without it",
                        path, alert.alert_id, exc.strerror or exc)
            return None

    def send(self, alert: AlertMessage, video_path: str | None = None) -> None:
        s = self.settings
        msg = self.build(alert, video_path)
        try:
            with self._smtp_factory(s.host, s.port, timeout=self.timeout_s) as smtp:
                if s.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if s.username:
                    password = s.password.get_secret_value() if s.password is not None else ""
                    smtp.login(s.username, password)
                smtp.send_message(msg)
        except (smtplib.SMTPException, OSError) as exc:
            # Only the exception type and SMTP code: the text of an auth error may echo credentials.
            code = getattr(exc, "smtp_code", None)
            detail = f"{type(exc).__name__}" + (f" {code}" if code else "")
            # Recipients refused for good (5xx) are a fact about the addresses; anything else (a login
            # fixed later, a server away, a full mailbox) may pass on another attempt.
            retryable = True
            if isinstance(exc, smtplib.SMTPRecipientsRefused):
                retryable = any(code < 500 for code, _ in exc.recipients.values())
            raise DeliveryError(f"e-mail via {s.host}:{s.port}: {detail}", retryable=retryable) from None

    def close(self) -> None:
        pass


def notifiers_from_settings(
    settings: NotificationSettings, *, public_url: str | None = None, videos: bool = False,
    email_attach_max_mb: float = 8.0,
) -> list[Notifier]:
    """The channels the notification settings enable, in a fixed order: log, webhook, e-mail.  ``public_url``
    (``desk.public_url``) makes them link to the desk; ``videos``: the video maker runs (``evidence.video``)."""
    notifiers: list[Notifier] = []
    if settings.log:
        notifiers.append(LogNotifier())
    webhook = settings.webhook
    if webhook.url:
        if webhook.secret is None:
            log.warning("notifications.webhook.secret is not set: webhooks to %s go out unsigned",
                        redact(webhook.url))
        notifiers.append(WebhookNotifier(webhook.url, timeout_s=webhook.timeout_s, secret=webhook.signing_key(),
                                         public_url=public_url, videos=videos))
    if settings.email.enabled:
        notifiers.append(EmailNotifier(settings.email, public_url=public_url, attach_max_mb=email_attach_max_mb))
    return notifiers
