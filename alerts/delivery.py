"""Alert delivery to people and systems: the log, a webhook (JSON POST) and e-mail.

Each channel is a ``Notifier``.  A notifier raises ``DeliveryError`` when it gives up; the
``Dispatcher`` sends every alert to every channel, isolates one channel's failure from the others,
counts sent/failed per channel and never raises into the worker.
"""

from __future__ import annotations

import html
import logging
import random
import smtplib
import ssl
import threading
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Protocol

import httpx

from common.redaction import redact
from common.schemas import AlertMessage
from common.settings import EmailSettings, NotificationSettings

log = logging.getLogger(__name__)

class DeliveryError(Exception):
    """A notifier gave up on an alert (after its retries); already logged by the notifier."""


class Notifier(Protocol):
    name: str

    def send(self, alert: AlertMessage) -> None:
        """Deliver one alert, or raise DeliveryError."""

    def close(self) -> None:
        """Release connections."""


def _when(alert: AlertMessage) -> str:
    return alert.raised_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


class LogNotifier:
    """Writes each alert as one log line (the channel that always works)."""

    name = "log"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger("aislewatch.alerts")

    def send(self, alert: AlertMessage) -> None:
        probability = f" p={alert.probability:.2f}" if alert.probability is not None else ""
        self.log.warning(
            "ALERT %s store=%s camera=%s at=%s%s id=%s: %s",
            alert.alert_kind.value, alert.store_id, alert.camera_id, alert.raised_at.isoformat(),
            probability, alert.alert_id, alert.message,
        )

    def close(self) -> None:
        pass


class WebhookNotifier:
    """POSTs the alert as JSON; retries 5xx answers and connection errors with capped backoff."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        stop: threading.Event | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = url
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        # Waiting on the stop event (not time.sleep) lets shutdown cut a retry sequence short.
        self._stop = stop or threading.Event()
        self._client = client or httpx.Client(timeout=timeout_s)
        self._shown_url = redact(url)

    def send(self, alert: AlertMessage) -> None:
        payload = alert.model_dump(mode="json")
        attempts = self.retries + 1
        problem = ""
        for attempt in range(1, attempts + 1):
            try:
                response = self._client.post(self.url, json=payload)
            except httpx.TransportError as exc:  # refused, reset, timed out
                problem = f"{type(exc).__name__}: {redact(str(exc))}"
            else:
                if response.status_code < 400:
                    return
                problem = f"HTTP {response.status_code}"
                if response.status_code < 500:  # the receiver rejects this alert; asking again won't help
                    break
            if attempt < attempts:
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)
                log.warning("webhook %s failed for alert %s (attempt %d/%d, %s); retrying in %.1fs",
                            self._shown_url, alert.alert_id, attempt, attempts, problem, delay)
                if self._stop.wait(delay):
                    problem += " (stopped while retrying)"
                    break
        log.error("webhook %s gave up on alert %s (camera %s): %s",
                  self._shown_url, alert.alert_id, alert.camera_id, problem)
        raise DeliveryError(f"webhook: {problem}")

    def close(self) -> None:
        self._client.close()


class EmailNotifier:
    """Sends each alert as an e-mail (plain text + HTML) with the evidence snapshot attached and inlined."""

    name = "email"

    def __init__(
        self,
        settings: EmailSettings,
        timeout_s: float = 10.0,
        smtp_factory: Callable[..., smtplib.SMTP] = smtplib.SMTP,
    ) -> None:
        if not settings.recipients:
            raise ValueError("e-mail notifications are enabled but notifications.email.recipients is empty")
        self.settings = settings
        self.timeout_s = timeout_s
        self._smtp_factory = smtp_factory

    def build(self, alert: AlertMessage) -> EmailMessage:
        """The e-mail for one alert (separate from sending so it can be inspected)."""
        s = self.settings
        label = alert.alert_kind.label
        when = _when(alert)
        msg = EmailMessage()
        msg["Subject"] = f"[AisleWatch] {label} - store {alert.store_id}, camera {alert.camera_id}, {when}"
        msg["From"] = s.sender
        msg["To"] = ", ".join(s.recipients)
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(idstring=alert.alert_id[:16], domain="aislewatch")

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

        text = alert.message + "\n\n" + "\n".join(f"{k}: {v}" for k, v in facts) + "\n"
        msg.set_content(text)

        snapshot = self._snapshot(alert)
        cid = make_msgid(domain="aislewatch")
        rows = "".join(f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
        image = f"<p><img src='cid:{cid[1:-1]}' alt='evidence snapshot' style='max-width:100%'></p>" if snapshot else ""
        body = (
            f"<html><body><h2>{html.escape(label)}</h2><p>{html.escape(alert.message)}</p>"
            f"<table>{rows}</table>{image}</body></html>"
        )
        msg.add_alternative(body, subtype="html")
        if snapshot is not None:
            data, filename = snapshot
            html_part = msg.get_body(("html",))
            assert html_part is not None
            html_part.add_related(data, maintype="image", subtype="jpeg", cid=cid, disposition="inline")
            msg.add_attachment(data, maintype="image", subtype="jpeg", filename=filename)
        return msg

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

    def send(self, alert: AlertMessage) -> None:
        s = self.settings
        msg = self.build(alert)
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
            log.error("e-mail for alert %s via %s:%d failed: %s", alert.alert_id, s.host, s.port, detail)
            raise DeliveryError(f"email: {detail}") from None

    def close(self) -> None:
        pass


class Dispatcher:
    """Sends every alert to every notifier, isolating failures and counting them per channel."""

    def __init__(self, notifiers: Sequence[Notifier]) -> None:
        self.notifiers = list(notifiers)
        self.sent: dict[str, int] = {n.name: 0 for n in self.notifiers}
        self.failed: dict[str, int] = {n.name: 0 for n in self.notifiers}

    @classmethod
    def from_settings(cls, settings: NotificationSettings, stop: threading.Event | None = None) -> Dispatcher:
        """The channels the notification settings enable."""
        notifiers: list[Notifier] = []
        if settings.log:
            notifiers.append(LogNotifier())
        if settings.webhook_url:
            notifiers.append(WebhookNotifier(settings.webhook_url, timeout_s=settings.webhook_timeout_s, stop=stop))
        if settings.email.enabled:
            notifiers.append(EmailNotifier(settings.email))
        return cls(notifiers)

    def send(self, alert: AlertMessage) -> bool:
        """Deliver to all channels; True when every channel succeeded.  Never raises."""
        ok = True
        for notifier in self.notifiers:
            try:
                notifier.send(alert)
            except DeliveryError:
                ok = False
                self.failed[notifier.name] = self.failed.get(notifier.name, 0) + 1
            except Exception:  # a bug in one channel must not stop the others or the worker
                ok = False
                self.failed[notifier.name] = self.failed.get(notifier.name, 0) + 1
                log.exception("notifier %s failed on alert %s", notifier.name, alert.alert_id)
            else:
                self.sent[notifier.name] = self.sent.get(notifier.name, 0) + 1
        return ok

    def close(self) -> None:
        for notifier in self.notifiers:
            try:
                notifier.close()
            except Exception:
                log.exception("closing notifier %s failed", notifier.name)
