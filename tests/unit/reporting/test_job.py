"""Scheduled reports: file layout, period, cron firing once per slot with a FakeClock, e-mail."""

from __future__ import annotations

import email
import email.policy
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller

from common.clock import FakeClock
from common.db import Database
from common.settings import Settings
from reporting.job import (
    ReportLedger,
    ReportScheduler,
    build_store_reports,
    email_reports,
    generate_reports,
    report_period,
    run_reports,
)

from .conftest import alert, make_settings, result


@pytest.mark.parametrize(
    ("now", "zone", "days", "start", "end"),
    [
        ("2026-07-06T05:00:00+00:00", "Europe/London", 7, "2026-06-29T00:00:00+01:00", "2026-07-06T00:00:00+01:00"),
        ("2026-07-05T23:30:00+00:00", "Europe/London", 1, "2026-07-05T00:00:00+01:00", "2026-07-06T00:00:00+01:00"),
        ("2026-03-30T06:00:00+00:00", "Europe/London", 2, "2026-03-28T00:00:00+00:00", "2026-03-30T00:00:00+01:00"),
        ("2026-07-06T03:00:00+00:00", "America/New_York", 1, "2026-07-04T00:00:00-04:00",
         "2026-07-05T00:00:00-04:00"),
    ],
)
def test_report_period_covers_whole_local_days(now: str, zone: str, days: int, start: str, end: str) -> None:
    got = report_period(datetime.fromisoformat(now), ZoneInfo(zone), days)
    assert (got[0].isoformat(), got[1].isoformat()) == (start, end)


def test_generate_reports_writes_one_pdf_per_store(db: Database, settings: Settings, tmp_path: Path) -> None:
    db.write_results([result("store-a", "a-entrance", datetime(2026, 7, 5, 12, tzinfo=UTC), 0.9)])
    paths = generate_reports(settings, db, now=datetime(2026, 7, 6, 6, 0, tzinfo=UTC))
    out = tmp_path / "reports"
    assert paths == [out / "store-a" / "store-a-20260706.pdf", out / "store-b" / "store-b-20260706.pdf"]
    for path in paths:
        assert path.read_bytes().startswith(b"%PDF")
        assert len(list(path.parent.glob(f"{path.stem}-*.png"))) == 6


def test_a_failing_store_does_not_stop_the_others(db: Database, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    # settings refuse an unknown zone when loaded (config check); the job still survives one set past them
    object.__setattr__(settings.stores[0], "timezone", "Mars/Olympus_Mons")
    paths = generate_reports(settings, db, now=datetime(2026, 7, 6, 6, 0, tzinfo=UTC))
    assert [p.parent.name for p in paths] == ["store-b"]


def test_scheduler_fires_once_per_cron_slot(db: Database, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, schedule_cron="0 6 * * 1")  # Mondays 06:00 UTC
    clock = FakeClock(datetime(2026, 7, 6, 5, 59, 0, tzinfo=UTC))  # Monday, one minute early
    scheduler = ReportScheduler(settings, db, clock=clock, poll_s=0, email=False, catch_up=False)
    scheduler.setup()
    assert scheduler.next_run == datetime(2026, 7, 6, 6, 0, tzinfo=UTC)

    assert scheduler.run_due() == []
    clock.advance(59)
    assert scheduler.run_due() == []
    clock.advance(1)  # 06:00:00 exactly
    assert len(scheduler.run_due()) == 3  # two stores and the chain summary
    clock.advance(30)
    assert scheduler.run_due() == []  # same slot: no second run
    scheduler.step()  # poll_s=0: returns at once, still nothing due
    assert scheduler.fired == [datetime(2026, 7, 6, 6, 0, tzinfo=UTC)]
    assert scheduler.next_run == datetime(2026, 7, 13, 6, 0, tzinfo=UTC)

    clock.advance(timedelta(days=21).total_seconds())  # asleep for three slots: one catch-up run only
    assert len(scheduler.run_due()) == 3
    assert scheduler.run_due() == []
    assert len(scheduler.fired) == 2
    assert scheduler.next_run == datetime(2026, 8, 3, 6, 0, tzinfo=UTC)
    assert (tmp_path / "reports" / "store-a" / "store-a-20260706.pdf").exists()


def test_scheduler_rejects_bad_cron(db: Database, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cron"):
        settings = make_settings(tmp_path)  # settings refuse it when loaded; the scheduler keeps its own guard
        object.__setattr__(settings.reporting, "schedule_cron", "every monday")
        ReportScheduler(settings, db)


class _Inbox:
    def __init__(self) -> None:
        self.envelopes: list[object] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_reports_are_emailed_to_their_store_managers_only(db: Database, tmp_path: Path) -> None:
    inbox = _Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings = make_settings(tmp_path)
        settings.notifications.email.enabled = True
        settings.notifications.email.port = port
        db.write_alerts([alert("store-a", "a-entrance", datetime(2026, 7, 5, 12, tzinfo=UTC))])
        reports = build_store_reports(settings, db, now=datetime(2026, 7, 6, 6, 0, tzinfo=UTC))
        assert email_reports(settings, reports) == 1  # store-b has no manager_emails
    finally:
        controller.stop()
    (envelope,) = inbox.envelopes
    assert envelope.rcpt_tos == ["alpha-manager@example.com"]
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    body = message.get_body(("plain",)).get_content()
    assert "Alpha Market" in body and "Alerts raised:       1 (▲1 vs previous 7 days)" in body
    assert "  Not yet reviewed:  1 (▲1 vs previous 7 days)" in body
    assert "  Theft confirmed:   0 (no change vs previous 7 days)" in body
    assert "False-alarm rate:    n/a (previous 7 days: n/a)" in body and "Time to acknowledge: n/a" in body
    (attachment,) = message.iter_attachments()
    assert attachment.get_filename() == "store-a-20260706.pdf"
    assert "Bravo" not in body


# -- the report_runs ledger, through a real SMTP server on loopback ----------------------------------------
MONDAY_6 = datetime(2026, 7, 6, 6, 0, tzinfo=UTC)


class _DroppingInbox(_Inbox):
    """Takes the message, then drops the connection before answering: the sender cannot know it arrived."""

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.envelopes.append(envelope)
        server.transport.close()  # type: ignore[attr-defined]
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[_Inbox, int]]:
    inbox, port = _Inbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def _mail_settings(tmp_path: Path, port: int) -> Settings:
    settings = make_settings(tmp_path, chain_recipients=["admin@example.com"])
    settings.notifications.email.enabled = True
    settings.notifications.email.port = port
    return settings


def _fill(db: Database) -> None:
    t0 = datetime(2026, 7, 3, 12, tzinfo=UTC)
    db.write_alerts([alert("store-a", "a-entrance", t0), alert("store-b", "b-till", t0),
                     alert("store-b", "b-till", t0 + timedelta(hours=1))])


def _pdf_text(data: bytes, tmp_path: Path, name: str) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return " ".join(subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True,
                                   check=True).stdout.split())


def test_emailed_pdfs_arrive_through_smtp_and_parse(
    db: Database, tmp_path: Path, smtp: tuple[_Inbox, int]
) -> None:
    inbox, port = smtp
    _fill(db)
    results = run_reports(_mail_settings(tmp_path, port), db, now=MONDAY_6, clock=FakeClock(MONDAY_6))

    assert {r.scope: r.status for r in results} == {"store-a": "sent", "store-b": "rendered", "chain": "sent"}
    by_recipient = {tuple(e.rcpt_tos): e for e in inbox.envelopes}  # type: ignore[attr-defined]
    assert set(by_recipient) == {("alpha-manager@example.com",), ("admin@example.com",)}
    store_msg = email.message_from_bytes(by_recipient[("alpha-manager@example.com",)].content,
                                         policy=email.policy.default)
    (store_pdf,) = store_msg.iter_attachments()
    assert store_pdf.get_content_type() == "application/pdf"
    text = _pdf_text(store_pdf.get_content(), tmp_path, "store.pdf")
    assert "Alpha Market" in text and "Bravo" not in text
    chain_msg = email.message_from_bytes(by_recipient[("admin@example.com",)].content, policy=email.policy.default)
    assert "Thefts caught:       0 (no change vs previous 7 days)" in chain_msg.get_body(("plain",)).get_content()
    (chain_pdf,) = chain_msg.iter_attachments()
    chain_text = _pdf_text(chain_pdf.get_content(), tmp_path, "chain.pdf")
    assert "1 Bravo Foods" in chain_text and "2 Alpha Market" in chain_text

    runs = {r.scope: r for r in ReportLedger(db).runs()}
    assert set(runs) == {"store-a", "store-b", "chain"}
    assert runs["store-a"].sent_at == MONDAY_6 and runs["chain"].sent_at == MONDAY_6
    assert runs["store-b"].sent_at is None  # no manager address: rendered, recorded, not sent
    assert runs["store-a"].period_start == datetime(2026, 6, 28, 23, tzinfo=UTC)  # local midnight, BST


def test_a_restarted_scheduler_sends_nothing_twice(db: Database, tmp_path: Path, smtp: tuple[_Inbox, int]) -> None:
    inbox, port = smtp
    _fill(db)
    settings = _mail_settings(tmp_path, port)
    clock = FakeClock(MONDAY_6 - timedelta(minutes=1))
    first = ReportScheduler(settings, db, clock=clock, poll_s=0, catch_up=False)
    first.setup()
    clock.advance(60)
    assert len(first.run_due()) == 3
    assert len(inbox.envelopes) == 2

    clock.advance(300)  # restarted five minutes later: it catches up the 06:00 slot, finds it recorded
    second = ReportScheduler(settings, db, clock=clock, poll_s=0)
    second.setup()
    assert second.run_due() == []
    assert {r.status for r in second.results} == {"skipped"} and second.fired == [MONDAY_6]

    third = ReportScheduler(settings, db, clock=FakeClock(MONDAY_6 - timedelta(seconds=1)), poll_s=0,
                            catch_up=False)  # a clock set back: the same slot comes round again
    third.setup()
    third.clock.advance(1)  # type: ignore[attr-defined]
    assert third.run_due() == []
    assert len(inbox.envelopes) == 2
    assert len(ReportLedger(db).runs()) == 3


def test_a_crash_between_claim_and_send_leaves_a_visible_unsent_row(
    db: Database, tmp_path: Path, smtp: tuple[_Inbox, int]
) -> None:
    inbox, port = smtp
    settings = _mail_settings(tmp_path, port)
    start, end = report_period(MONDAY_6, ZoneInfo("Europe/London"), 7)
    ledger = ReportLedger(db)
    assert ledger.claim("store-a", start, end, rendered_at=MONDAY_6, path=tmp_path / "a.pdf")  # then it died
    assert not ledger.claim("store-a", start, end, rendered_at=MONDAY_6, path=tmp_path / "a.pdf")

    results = {r.scope: r.status for r in run_reports(settings, db, now=MONDAY_6)}
    assert results["store-a"] == "skipped"  # maybe it was sent before the crash: at most once
    assert [e.rcpt_tos for e in inbox.envelopes] == [["admin@example.com"]]  # type: ignore[attr-defined]
    (row,) = [r for r in ledger.runs() if r.scope == "store-a"]
    assert row.sent_at is None


def test_a_refused_email_is_retried_and_sent_once(db: Database, tmp_path: Path) -> None:
    port = _free_port()  # nothing listens yet: the connection is refused, so nothing was sent
    _fill(db)
    settings = _mail_settings(tmp_path, port)
    clock = FakeClock(MONDAY_6)
    scheduler = ReportScheduler(settings, db, clock=clock, poll_s=0, catch_up=False, retry_s=60)
    scheduler.next_run = MONDAY_6
    scheduler.run_due()
    assert {r.scope: r.status for r in scheduler.results} == {"store-a": "failed", "store-b": "rendered",
                                                              "chain": "failed"}
    assert [r.scope for r in ReportLedger(db).runs()] == ["store-b"]  # the refused ones were released

    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        clock.advance(30)
        assert scheduler.run_due() == []  # retry not due yet
        clock.advance(30)
        scheduler.run_due()
        assert {r.scope: r.status for r in scheduler.results} == {"store-a": "sent", "store-b": "skipped",
                                                                  "chain": "sent"}
        clock.advance(600)
        assert scheduler.run_due() == []
    finally:
        controller.stop()
    assert len(inbox.envelopes) == 2


def test_a_connection_lost_after_the_data_is_never_resent(db: Database, tmp_path: Path) -> None:
    inbox, port = _DroppingInbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings = _mail_settings(tmp_path, port)
        settings.reporting.chain_recipients = []
        first = {r.scope: r.status for r in run_reports(settings, db, now=MONDAY_6)}
        again = {r.scope: r.status for r in run_reports(settings, db, now=MONDAY_6)}
    finally:
        controller.stop()
    assert first["store-a"] == "uncertain" and again["store-a"] == "skipped"
    assert len(inbox.envelopes) == 1
    (row,) = [r for r in ReportLedger(db).runs() if r.scope == "store-a"]
    assert row.sent_at is None


def test_cli_renders_the_chain_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from common.app.cli import main

    config = tmp_path / "aislewatch.yaml"
    config.write_text(
        f"database:\n  url: sqlite:///{tmp_path / 'cli.db'}\n"
        f"reporting:\n  output_dir: {tmp_path / 'reports'}\n  chain_recipients: [admin@example.com]\n"
        "stores:\n  - id: s1\n    name: First Store\n    cameras: [{id: c1, source: a.mp4}]\n"
        "  - id: s2\n    name: Second Store\n    cameras: [{id: c2, source: b.mp4}]\n"
    )
    assert main(["report", "--chain", "-c", str(config)]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.parent == tmp_path / "reports" / "chain" and path.read_bytes().startswith(b"%PDF")
    text = " ".join(subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True,
                                   check=True).stdout.split())
    assert "First Store" in text and "Second Store" in text
