"""Scheduled report generation: one PDF (plus chart PNGs) per store and a chain summary, e-mailed once.

A report covers whole local days: it ends at the store's local midnight at the start of the day the job
runs and starts ``period_days`` days earlier, so a Monday 06:00 run with the default 7 days covers the
previous Monday 00:00 to this Monday 00:00 in each store's own time zone.

Every run of a report (scope: a store id or ``chain``; period) is recorded in ``report_runs``, whose unique
(scope, period) is the guard against sending a period twice:

1. a period that already has a row is skipped (not rendered, not sent);
2. otherwise the PDF is rendered, then the row is inserted (rendered_at, path); losing that insert to another
   scheduler means it sends, this one does not;
3. the message goes to the SMTP server, and ``sent_at`` is set once the server accepted it.

If the server refuses the message (connection refused, a 4xx/5xx reply before or to the data), nothing was
sent: the row is removed and the scheduler tries the slot again after ``RETRY_S``.  If the connection is lost
after the message was handed over, or the process dies between steps 2 and 3, nobody knows whether it was
delivered: the row stays with ``sent_at`` empty and is never sent again automatically (sent at most once;
the unsent row is visible in ``report_runs`` and logged).  Delete that row to allow a resend.
"""

from __future__ import annotations

import logging
import smtplib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from croniter import croniter
from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.exc import IntegrityError

from common.clock import Clock, SystemClock
from common.db import Database, DatabaseUnavailable
from common.models import ReportRun
from common.settings import EmailSettings, Settings, StoreSettings
from common.worker import Worker
from reporting.chain import CHAIN_SCOPE, ChainData, chain_headlines, load_chain_data, render_chain_report
from reporting.charts import format_local, format_wait, save_all_charts
from reporting.compare import headlines, previous_words
from reporting.pdf import render_report
from reporting.periods import ReportPeriod
from reporting.queries import OUTCOMES, ReportData, load_report_data, report_period, store_zone

__all__ = ["ReportPeriod", "ReportScheduler", "StoreFailure", "build_store_reports", "email_reports",
           "generate_reports", "report_period", "run_reports"]

log = logging.getLogger(__name__)

RETRY_S = 300.0
"""Wait before a slot whose e-mail was refused is tried again (until the next slot)."""


@dataclass(frozen=True)
class StoreReport:
    store: StoreSettings
    pdf: Path
    charts: tuple[Path, ...]
    data: ReportData


@dataclass(frozen=True)
class StoreFailure:
    """A report that could not be made: which (a store id or ``chain``) and why, in one line."""

    scope: str
    reason: str


def report_path(output_dir: Path, store_id: str, day: datetime) -> Path:
    return Path(output_dir) / store_id / f"{store_id}-{day:%Y%m%d}.pdf"


def _period(settings: Settings, period_days: int | None, period: ReportPeriod | None) -> ReportPeriod:
    """``period`` if given, else the schedule's whole days (``period_days`` or the settings')."""
    if period is not None:
        return period
    days = settings.reporting.period_days if period_days is None else period_days  # 0 is an error, not "unset"
    return ReportPeriod.whole_days(days, scheduled=True)


def build_store_reports(
    settings: Settings,
    db: Database,
    *,
    now: datetime,
    period_days: int | None = None,
    stop: threading.Event | None = None,
    period: ReportPeriod | None = None,
    failures: list[StoreFailure] | None = None,
) -> list[StoreReport]:
    """Render every store's report; a store that fails is logged (and added to ``failures``) and skipped, the
    others still run."""
    chosen = _period(settings, period_days, period)
    reports: list[StoreReport] = []
    for store in settings.stores:
        report = _build_store_report(settings, db, store, now=now, period=chosen, stop=stop)
        if isinstance(report, StoreFailure):
            if failures is not None:
                failures.append(report)
        else:
            reports.append(report)
    return reports


def generate_reports(
    settings: Settings, db: Database, *, now: datetime, period_days: int | None = None,
    period: ReportPeriod | None = None, failures: list[StoreFailure] | None = None,
) -> list[Path]:
    """Write one PDF per store to ``output_dir/<store_id>/<store_id>-<YYYYMMDD>.pdf`` (charts beside it)."""
    return [r.pdf for r in build_store_reports(settings, db, now=now, period_days=period_days, period=period,
                                               failures=failures)]


def chain_report_path(output_dir: Path, day: datetime) -> Path:
    return Path(output_dir) / CHAIN_SCOPE / f"{CHAIN_SCOPE}-{day:%Y%m%d}.pdf"


def _chain_path(settings: Settings, now: datetime, period: ReportPeriod) -> Path:
    """The schedule's ``chain-<YYYYMMDD>.pdf`` (UTC date of the run), else named by the days it covers."""
    if period.scheduled:
        return chain_report_path(settings.reporting.output_dir, now.astimezone(UTC))
    return Path(settings.reporting.output_dir) / CHAIN_SCOPE / f"{period.file_stem(CHAIN_SCOPE, now, ZoneInfo('UTC'))}.pdf"


@dataclass(frozen=True)
class ChainReport:
    pdf: Path
    data: ChainData


def build_chain_report(
    settings: Settings,
    db: Database,
    *,
    now: datetime,
    period_days: int | None = None,
    stop: threading.Event | None = None,
    period: ReportPeriod | None = None,
) -> ChainReport:
    """Render the admins' chain summary to ``output_dir/chain/chain-<YYYYMMDD>.pdf`` (the UTC date of ``now``).

    Stores whose data could not be read are left out and named in ``data.failed``."""
    chosen = _period(settings, period_days, period)
    data = load_chain_data(db, settings, now=now, period_days=chosen.days, stop=stop, period=chosen)
    path = render_chain_report(data, _chain_path(settings, now, chosen), generated_at=now)
    log.info("chain summary of %d store(s) written to %s", len(data.stores), path)
    return ChainReport(path, data)


# -- e-mail ----------------------------------------------------------------------------------------------
class NotSent(Exception):
    """The SMTP server did not take the message: sending it again cannot make a duplicate."""


class MaybeSent(Exception):
    """The connection failed after the message was handed over: it may have been delivered."""


def send_email(email: EmailSettings, message: EmailMessage) -> None:
    """Hand ``message`` to the SMTP server; returns once the server accepted it (250 to the data).

    Raises NotSent when the server certainly did not take it, MaybeSent when nobody can tell."""
    recipients = [a.strip() for a in str(message["To"]).split(",") if a.strip()]
    payload = message.as_bytes(policy=policy.SMTP)
    try:
        smtp = smtplib.SMTP(email.host, email.port, timeout=30)
    except (OSError, smtplib.SMTPException) as exc:
        raise NotSent(f"cannot connect to {email.host}:{email.port}: {exc}") from exc
    with smtp:
        try:
            if email.starttls:
                smtp.starttls()
            if email.username:
                smtp.login(email.username, email.password.get_secret_value() if email.password else "")
            smtp.ehlo_or_helo_if_needed()
            code, reply = smtp.mail(str(message["From"]))
            if code != 250:
                raise NotSent(f"sender refused: {code} {reply!r}")
            refused = {r: smtp.rcpt(r) for r in recipients}
            if all(code not in (250, 251) for code, _ in refused.values()):
                raise NotSent(f"every recipient refused: {refused}")
        except (OSError, smtplib.SMTPException) as exc:
            raise NotSent(f"{email.host}:{email.port}: {exc}") from exc
        try:
            code, reply = smtp.data(payload)
        except smtplib.SMTPDataError as exc:  # DATA itself refused: the message was never sent
            raise NotSent(f"{email.host}:{email.port} refused the data: {exc}") from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise MaybeSent(f"{email.host}:{email.port}: connection failed after the message: {exc}") from exc
        if code != 250:
            raise NotSent(f"{email.host}:{email.port} rejected the message: {code} {reply!r}")


def email_reports(settings: Settings, reports: list[StoreReport]) -> int:
    """Send each store's PDF to its ``manager_emails`` when e-mail is enabled, without the ledger (a one-off
    send: ``run_reports`` is what the scheduler uses).  Returns messages sent.

    Each store's message goes only to that store's managers (never the global alert recipients).
    """
    email = settings.notifications.email
    if not email.enabled:
        return 0
    sent = 0
    for report in reports:
        if not report.store.manager_emails:
            continue
        try:
            send_email(email, store_message(settings, report))
            sent += 1
        except (NotSent, MaybeSent) as exc:
            log.error("could not e-mail the report of store %s: %s", report.store.id, exc)
    return sent


def _figure_lines(rows: Sequence[tuple[str, str]]) -> str:
    return "".join(f"{label + ':':<21}{value}\n" for label, value in rows)


def store_message(settings: Settings, report: StoreReport) -> EmailMessage:
    """The e-mail of one store's report: headline figures against the previous period, the PDF attached."""
    data = report.data
    figures = headlines(data)
    words = previous_words(data)
    p90 = data.ack_p90_s
    rows = [
        ("Clips analysed", figures["clips"].with_change(words)),
        ("Suspicious clips", figures["suspicious_clips"].with_change(words)),
        ("Alerts raised", figures["alerts"].with_change(words)),
        *((f"  {figures[key].label}", figures[key].with_change(words)) for key in OUTCOMES),
        ("False-alarm rate", figures["false_alarm_rate"].with_change(words)
         + ("" if data.false_alarm_rate is None else f", of {data.reviewed} reviewed")),
        ("Time to acknowledge", "n/a" if data.ack_median_s is None or p90 is None else
         f"median {figures['ack_median_s'].with_change(words)}, 90th percentile {format_wait(p90)}"),
        ("Camera uptime", figures["uptime"].with_change(words)),
        ("Camera offline time", figures["offline_s"].with_change(words)),
    ]
    msg = EmailMessage()
    msg["Subject"] = f"AisleWatch report for {data.store_name}: {data.start:%d %b} - {data.end:%d %b %Y}"
    msg["From"] = settings.notifications.email.sender
    msg["To"] = ", ".join(report.store.manager_emails)
    msg.set_content(
        f"AisleWatch report for {data.store_name}\n"
        f"Period: {format_local(data.start)} to {format_local(data.end)}\n\n"
        + _figure_lines(rows)
        + "\nDetections come from an automated model and must be verified by staff before any action.\n"
        "The full report is attached.\n",
        cte="quoted-printable",
    )
    msg.add_attachment(report.pdf.read_bytes(), maintype="application", subtype="pdf",
                       filename=report.pdf.name)
    return msg


def chain_message(settings: Settings, report: ChainReport) -> EmailMessage:
    """The admins' e-mail: chain totals and the top of the ranking, the chain summary PDF attached."""
    chain = report.data
    words = previous_words(chain.stores[0]) if chain.stores else "period"
    figures = chain_headlines(chain)
    msg = EmailMessage()
    msg["Subject"] = f"AisleWatch chain summary: {chain.start:%d %b} - {chain.end:%d %b %Y}"
    msg["From"] = settings.notifications.email.sender
    msg["To"] = ", ".join(settings.reporting.chain_recipients)
    ranking = "".join(f"{i:>3}. {d.store_name} ({d.store_id}): {d.alerts_raised} alerts, {d.thefts_caught} "
                      f"thefts caught, {d.unreviewed} not reviewed\n" for i, d in enumerate(chain.stores[:10], 1))
    msg.set_content(
        f"AisleWatch chain summary of {len(chain.stores)} store(s)\n\n"
        + _figure_lines([(h.label, h.with_change(words)) for h in figures.values()])
        + "\nRanking (thefts caught, then alerts):\n" + ranking
        + ("" if not chain.failed else f"Left out, data could not be read: {', '.join(chain.failed)}\n")
        + "\nThe full summary is attached.\n",
        cte="quoted-printable",
    )
    msg.add_attachment(report.pdf.read_bytes(), maintype="application", subtype="pdf", filename=report.pdf.name)
    return msg


# -- the ledger ------------------------------------------------------------------------------------------
class ReportLedger:
    """``report_runs``: which (scope, period) was rendered and when it was sent."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def find(self, scope: str, start: datetime, end: datetime) -> ReportRun | None:
        with self.db.session() as session:
            return session.scalars(select(ReportRun).where(*self._key(scope, start, end))).one_or_none()

    def claim(self, scope: str, start: datetime, end: datetime, *, rendered_at: datetime, path: Path) -> bool:
        """Insert the run's row; False when another run already holds this (scope, period)."""
        try:
            with self.db.session() as session:
                session.add(ReportRun(scope=scope, period_start=start, period_end=end, rendered_at=rendered_at,
                                      path=str(path)))
        except IntegrityError:
            return False
        return True

    def mark_sent(self, scope: str, start: datetime, end: datetime, at: datetime) -> None:
        with self.db.session() as session:
            session.execute(update(ReportRun).where(*self._key(scope, start, end)).values(sent_at=at))

    def release(self, scope: str, start: datetime, end: datetime) -> None:
        """Remove an unsent row whose e-mail certainly did not go out, so the period can be sent later."""
        with self.db.session() as session:
            session.execute(delete(ReportRun).where(*self._key(scope, start, end), ReportRun.sent_at.is_(None)))

    def runs(self) -> list[ReportRun]:
        with self.db.session() as session:
            return list(session.scalars(select(ReportRun).order_by(ReportRun.id)))

    @staticmethod
    def _key(scope: str, start: datetime, end: datetime) -> tuple[ColumnElement[bool], ...]:
        return (ReportRun.scope == scope, ReportRun.period_start == start.astimezone(UTC),
                ReportRun.period_end == end.astimezone(UTC))


RunStatus = Literal["sent", "rendered", "skipped", "failed", "uncertain"]


@dataclass(frozen=True)
class RunResult:
    """What happened to one report of a run: sent; rendered (nobody to send to); skipped (already recorded);
    failed (render or a refused e-mail: will be tried again); uncertain (maybe sent: never resent)."""

    scope: str
    start: datetime
    end: datetime
    status: RunStatus
    pdf: Path | None = None
    reason: str | None = None
    """Why it failed (or may not have been delivered), in one line."""


def run_reports(
    settings: Settings,
    db: Database,
    *,
    now: datetime,
    clock: Clock | None = None,
    email: bool = True,
    period_days: int | None = None,
    stop: threading.Event | None = None,
    period: ReportPeriod | None = None,
) -> list[RunResult]:
    """One run of every store's report and the chain summary, through the ``report_runs`` ledger.

    ``now`` is the slot (it decides the period, with ``period``: default the schedule's whole days);
    ``clock`` stamps rendered_at and sent_at."""
    clock = clock or SystemClock()
    ledger = ReportLedger(db)
    chosen = _period(settings, period_days, period)
    mail = settings.notifications.email
    results: list[RunResult] = []

    def deliver(scope: str, start: datetime, end: datetime, pdf: Path,
                message: EmailMessage | None) -> tuple[RunStatus, str | None]:
        if not ledger.claim(scope, start, end, rendered_at=clock.now(), path=pdf):
            log.info("report %s for %s already claimed by another run; not sending", scope, start.date())
            return "skipped", None
        if message is None:
            return "rendered", None
        try:
            send_email(mail, message)
        except NotSent as exc:
            ledger.release(scope, start, end)
            log.error("report %s for %s not sent (will retry): %s", scope, start.date(), exc)
            return "failed", f"not sent: {exc}"
        except MaybeSent as exc:
            log.error("report %s for %s may or may not have been delivered; left unsent in report_runs and "
                      "not retried, so it is never sent twice: %s", scope, start.date(), exc)
            return "uncertain", f"may not have been delivered: {exc}"
        ledger.mark_sent(scope, start, end, clock.now())
        log.info("report %s for %s sent to %s", scope, start.date(), message["To"])
        return "sent", None

    for store in settings.stores:
        try:
            start, end = chosen.bounds(now, store_zone(store))
        except ValueError as exc:
            log.error("report for store %s failed: %s; continuing with the other stores", store.id, exc)
            results.append(RunResult(store.id, now, now, "failed", reason=str(exc)))
            continue
        # `today` reports the whole day (alerts of a recording read faster than real time are dated ahead of
        # the clock) but is recorded as "so far": each run is a new period and is sent
        recorded_end = now if chosen.kind == "today" else end
        if ledger.find(store.id, start, recorded_end) is not None:
            results.append(RunResult(store.id, start, end, "skipped"))
            continue
        report = _build_store_report(settings, db, store, now=now, period=chosen, stop=stop)
        if isinstance(report, StoreFailure):
            results.append(RunResult(store.id, start, end, "failed", reason=report.reason))
            continue
        wanted = email and mail.enabled and bool(store.manager_emails)
        status, why = deliver(store.id, start, recorded_end, report.pdf,
                              store_message(settings, report) if wanted else None)
        results.append(RunResult(store.id, start, end, status, report.pdf, why))

    if settings.stores:
        chain = load_chain_data(db, settings, now=now, period_days=chosen.days, stop=stop, period=chosen)
        if not chain.stores:
            results.append(RunResult(CHAIN_SCOPE, now, now, "failed",
                                     reason=f"no store's data could be read ({', '.join(chain.failed)})"))
        elif ledger.find(CHAIN_SCOPE, chain.start, now if chosen.kind == "today" else chain.end) is not None:
            results.append(RunResult(CHAIN_SCOPE, chain.start, chain.end, "skipped"))
        else:
            path = render_chain_report(chain, _chain_path(settings, now, chosen), generated_at=now)
            chain_report = ChainReport(path, chain)
            wanted = email and mail.enabled and bool(settings.reporting.chain_recipients)
            status, why = deliver(CHAIN_SCOPE, chain.start, now if chosen.kind == "today" else chain.end, path,
                                  chain_message(settings, chain_report) if wanted else None)
            results.append(RunResult(CHAIN_SCOPE, chain.start, chain.end, status, path, why))
    return results


def _build_store_report(
    settings: Settings, db: Database, store: StoreSettings, *, now: datetime, period: ReportPeriod,
    stop: threading.Event | None,
) -> StoreReport | StoreFailure:
    try:
        tz = store_zone(store)
        start, end = period.bounds(now, tz)
        pdf_path = Path(settings.reporting.output_dir) / store.id / f"{period.file_stem(store.id, now, tz)}.pdf"
        data = load_report_data(db, store, start, end, stop=stop)
        render_report(data, pdf_path, generated_at=now, evidence_root=settings.service.evidence_dir)
        pngs = save_all_charts(data, pdf_path.parent, pdf_path.stem)
    except DatabaseUnavailable:
        raise
    except (ValueError, OSError) as exc:  # a setting or the disk: the reason is the whole story
        log.error("report for store %s failed: %s; continuing with the other stores", store.id, exc)
        return StoreFailure(store.id, str(exc))
    except Exception as exc:
        log.exception("report for store %s failed; continuing with the other stores", store.id)
        return StoreFailure(store.id, f"{type(exc).__name__}: {exc}")
    log.info("report for store %s written to %s (%d alerts)", store.id, pdf_path, data.alerts_raised)
    return StoreReport(store, pdf_path, tuple(pngs), data)


# -- scheduler -------------------------------------------------------------------------------------------
class ReportScheduler(Worker):
    """Runs the reports at each slot of ``settings.reporting.schedule_cron`` (evaluated in ``timezone``).

    On start it runs the latest slot that has passed (``catch_up``): the ``report_runs`` ledger skips every
    report already recorded, so a restart sends only what a stop kept from being sent, never a period twice.
    After a long stall (clock jump) only one run happens.  A slot whose e-mail the server refused is tried
    again every ``RETRY_S`` until it goes through or the next slot comes.
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
        catch_up: bool = True,
        retry_s: float = RETRY_S,
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
        self.catch_up = catch_up
        self.retry_s = retry_s
        self.next_run: datetime | None = None
        self.retry: tuple[datetime, datetime] | None = None
        """(slot, when) of a slot to run again: the latest one on start, or one whose e-mail was refused."""
        self.fired: list[datetime] = []
        """Slots that ran, in order (for status pages and tests)."""
        self.results: list[RunResult] = []
        """What the latest run did, per report."""

    def _slot_after(self, at: datetime) -> datetime:
        return croniter(self.expr, at.astimezone(self.tz)).get_next(datetime).astimezone(UTC)

    def _slot_at_or_before(self, at: datetime) -> datetime:
        probe = at.astimezone(self.tz) + timedelta(seconds=1)  # a slot exactly at ``at`` counts as passed
        return croniter(self.expr, probe).get_prev(datetime).astimezone(UTC)

    def setup(self) -> None:
        now = self.clock.now()
        self.next_run = self._slot_after(now)
        if self.catch_up:
            self.retry = (self._slot_at_or_before(now), now)
        self.log.info("next report run at %s", self.next_run.isoformat())

    def run_due(self) -> list[Path]:
        """Run the reports if a slot has come (or a retry is due).  Returns the PDFs written by this run."""
        now = self.clock.now()
        if self.next_run is None:
            self.next_run = self._slot_after(now)
        if now >= self.next_run:
            slot, self.retry = self.next_run, None
            self.next_run = self._slot_after(now)
        elif self.retry is not None and now >= self.retry[1]:
            slot, self.retry = self.retry[0], None
        else:
            return []
        self.fired.append(slot)
        try:
            self.results = run_reports(self.settings, self.db, now=slot, clock=self.clock, email=self.email,
                                       stop=self.stop_event)
        except DatabaseUnavailable as exc:
            self.log.warning("report run for %s abandoned: %s", slot.isoformat(), exc)
            self.retry = (slot, now + timedelta(seconds=self.retry_s))
            return []
        if any(r.status == "failed" for r in self.results):
            self.retry = (slot, now + timedelta(seconds=self.retry_s))
        counts = {s: sum(r.status == s for r in self.results) for s in ("sent", "rendered", "skipped", "failed",
                                                                        "uncertain")}
        self.log.info("report run for %s: %s; next at %s", slot.isoformat(),
                      ", ".join(f"{n} {s}" for s, n in counts.items() if n), self.next_run.isoformat())
        return [r.pdf for r in self.results if r.pdf is not None]

    def step(self) -> bool:
        self.run_due()
        assert self.next_run is not None
        wake = self.next_run if self.retry is None else min(self.next_run, self.retry[1])
        remaining = (wake - self.clock.now()).total_seconds()
        self.stop_event.wait(max(0.0, min(self.poll_s, remaining)))
        return True
