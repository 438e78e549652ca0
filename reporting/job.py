"""Scheduled report generation: one PDF (plus chart PNGs) per store, on a cron schedule, optionally e-mailed.

A report covers whole local days: it ends at the store's local midnight at the start of the day the job
runs and starts ``period_days`` days earlier, so a Monday 06:00 run with the default 7 days covers the
previous Monday 00:00 to this Monday 00:00 in each store's own time zone.
"""

from __future__ import annotations

import logging
import smtplib
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

from croniter import croniter

from common.clock import Clock, SystemClock
from common.db import Database, DatabaseUnavailable
from common.settings import Settings, StoreSettings
from common.worker import Worker
from reporting.charts import format_duration, format_local, format_wait, save_all_charts
from reporting.pdf import render_report
from reporting.queries import ReportData, load_report_data, outcome_label, store_zone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreReport:
    store: StoreSettings
    pdf: Path
    charts: tuple[Path, ...]
    data: ReportData


def report_period(now: datetime, tz: ZoneInfo, period_days: int) -> tuple[datetime, datetime]:
    """[start, end) of whole local days ending at the local midnight that began ``now``'s day."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    today = now.astimezone(tz).date()
    end = datetime.combine(today, time(0), tzinfo=tz)
    start = datetime.combine(today - timedelta(days=period_days), time(0), tzinfo=tz)
    return start, end


def report_path(output_dir: Path, store_id: str, day: datetime) -> Path:
    return Path(output_dir) / store_id / f"{store_id}-{day:%Y%m%d}.pdf"


def build_store_reports(
    settings: Settings,
    db: Database,
    *,
    now: datetime,
    period_days: int | None = None,
    stop: threading.Event | None = None,
) -> list[StoreReport]:
    """Render every store's report; a store that fails is logged and skipped, the others still run."""
    days = period_days or settings.reporting.period_days
    reports: list[StoreReport] = []
    for store in settings.stores:
        try:
            tz = store_zone(store)
            start, end = report_period(now, tz, days)
            pdf_path = report_path(settings.reporting.output_dir, store.id, now.astimezone(tz))
            data = load_report_data(db, store, start, end, stop=stop)
            render_report(data, pdf_path, generated_at=now, evidence_root=settings.service.evidence_dir)
            pngs = save_all_charts(data, pdf_path.parent, pdf_path.stem)
        except DatabaseUnavailable:
            raise
        except Exception:
            log.exception("report for store %s failed; continuing with the other stores", store.id)
            continue
        log.info("report for store %s written to %s (%d alerts)", store.id, pdf_path, data.alerts_raised)
        reports.append(StoreReport(store, pdf_path, tuple(pngs), data))
    return reports


def generate_reports(
    settings: Settings, db: Database, *, now: datetime, period_days: int | None = None
) -> list[Path]:
    """Write one PDF per store to ``output_dir/<store_id>/<store_id>-<YYYYMMDD>.pdf`` (charts beside it)."""
    return [r.pdf for r in build_store_reports(settings, db, now=now, period_days=period_days)]


# -- e-mail ----------------------------------------------------------------------------------------------
def email_reports(settings: Settings, reports: list[StoreReport]) -> int:
    """Send each store's PDF to its ``manager_emails`` when e-mail is enabled.  Returns messages sent.

    Each store's message goes only to that store's managers (never the global alert recipients).
    """
    email = settings.notifications.email
    if not email.enabled:
        return 0
    sent = 0
    for report in reports:
        if not report.store.manager_emails:
            continue
        message = _report_message(settings, report)
        try:
            with smtplib.SMTP(email.host, email.port, timeout=30) as smtp:
                if email.starttls:
                    smtp.starttls()
                if email.username:
                    password = email.password.get_secret_value() if email.password else ""
                    smtp.login(email.username, password)
                smtp.send_message(message)
            sent += 1
        except (OSError, smtplib.SMTPException) as exc:
            log.error("could not e-mail the report of store %s via %s:%d: %s", report.store.id, email.host,
                      email.port, exc)
    return sent


def _report_message(settings: Settings, report: StoreReport) -> EmailMessage:
    data = report.data
    msg = EmailMessage()
    msg["Subject"] = f"AisleWatch report for {data.store_name}: {data.start:%d %b} - {data.end:%d %b %Y}"
    msg["From"] = settings.notifications.email.sender
    msg["To"] = ", ".join(report.store.manager_emails)
    rate, median, p90 = data.false_alarm_rate, data.ack_median_s, data.ack_p90_s
    figures = [
        ("Clips analysed", f"{data.clips:,}"),
        ("Suspicious clips", f"{data.suspicious_clips:,}"),
        ("Alerts raised", f"{data.alerts_raised:,}"),
        *((f"  {outcome_label(key)}", f"{n:,}") for key, n in data.alert_outcomes.items()),
        ("False-alarm rate", "n/a" if rate is None else f"{rate:.0%} of {data.reviewed} reviewed"),
        ("Time to acknowledge", "n/a" if median is None or p90 is None
         else f"median {format_wait(median)}, 90th percentile {format_wait(p90)}"),
        ("Camera offline time", format_duration(data.offline_s)),
    ]
    msg.set_content(
        f"AisleWatch report for {data.store_name}\n"
        f"Period: {format_local(data.start)} to {format_local(data.end)}\n\n"
        + "".join(f"{label + ':':<21}{value}\n" for label, value in figures)
        + "\nDetections come from an automated model and must be verified by staff before any action.\n"
        "The full report is attached.\n"
    )
    msg.add_attachment(report.pdf.read_bytes(), maintype="application", subtype="pdf",
                       filename=report.pdf.name)
    return msg


# -- scheduler -------------------------------------------------------------------------------------------
class ReportScheduler(Worker):
    """Runs the reports at each slot of ``settings.reporting.schedule_cron`` (evaluated in ``timezone``).

    Fires at most once per slot.  Slots missed while the service was down are not caught up: the first
    run is the first slot after start, and after a long stall (clock jump) only one run happens.
    """

    name = "report-scheduler"

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        clock: Clock | None = None,
        stop: threading.Event | None = None,
        timezone: str = "UTC",
        poll_s: float = 30.0,
        email: bool = True,
    ) -> None:
        super().__init__(stop)
        expr = settings.reporting.schedule_cron
        if not croniter.is_valid(expr):
            raise ValueError(f"reporting.schedule_cron {expr!r} is not a valid cron expression")
        self.settings = settings
        self.db = db
        self.clock: Clock = clock or SystemClock()
        self.tz = ZoneInfo(timezone)
        self.poll_s = poll_s
        self.email = email
        self.expr = expr
        self.next_run: datetime | None = None
        self.fired: list[datetime] = []
        """Slots that ran, in order (for status pages and tests)."""

    def _slot_after(self, at: datetime) -> datetime:
        return croniter(self.expr, at.astimezone(self.tz)).get_next(datetime).astimezone(UTC)

    def setup(self) -> None:
        self.next_run = self._slot_after(self.clock.now())
        self.log.info("next report run at %s", self.next_run.isoformat())

    def run_due(self) -> list[Path]:
        """Generate the reports if a slot has come; otherwise do nothing.  Returns the PDFs written."""
        now = self.clock.now()
        if self.next_run is None:
            self.next_run = self._slot_after(now)
        if now < self.next_run:
            return []
        slot = self.next_run
        self.next_run = self._slot_after(now)
        self.fired.append(slot)
        try:
            reports = build_store_reports(self.settings, self.db, now=slot, stop=self.stop_event)
        except DatabaseUnavailable as exc:
            self.log.warning("report run for %s abandoned: %s", slot.isoformat(), exc)
            return []
        if self.email:
            email_reports(self.settings, reports)
        self.log.info("report run for %s wrote %d report(s); next at %s", slot.isoformat(), len(reports),
                      self.next_run.isoformat())
        return [r.pdf for r in reports]

    def step(self) -> bool:
        self.run_due()
        assert self.next_run is not None
        remaining = (self.next_run - self.clock.now()).total_seconds()
        self.stop_event.wait(max(0.0, min(self.poll_s, remaining)))
        return True
