"""Scheduled reports: file layout, period, cron firing once per slot with a FakeClock, e-mail."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller

from common.clock import FakeClock
from common.db import Database
from common.settings import Settings
from reporting.job import ReportScheduler, build_store_reports, email_reports, generate_reports, report_period

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
        assert len(list(path.parent.glob(f"{path.stem}-*.png"))) == 5


def test_a_failing_store_does_not_stop_the_others(db: Database, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    settings.stores[0].timezone = "Mars/Olympus_Mons"
    paths = generate_reports(settings, db, now=datetime(2026, 7, 6, 6, 0, tzinfo=UTC))
    assert [p.parent.name for p in paths] == ["store-b"]


def test_scheduler_fires_once_per_cron_slot(db: Database, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, schedule_cron="0 6 * * 1")  # Mondays 06:00 UTC
    clock = FakeClock(datetime(2026, 7, 6, 5, 59, 0, tzinfo=UTC))  # Monday, one minute early
    scheduler = ReportScheduler(settings, db, clock=clock, poll_s=0, email=False)
    scheduler.setup()
    assert scheduler.next_run == datetime(2026, 7, 6, 6, 0, tzinfo=UTC)

    assert scheduler.run_due() == []
    clock.advance(59)
    assert scheduler.run_due() == []
    clock.advance(1)  # 06:00:00 exactly
    assert len(scheduler.run_due()) == 2
    clock.advance(30)
    assert scheduler.run_due() == []  # same slot: no second run
    scheduler.step()  # poll_s=0: returns at once, still nothing due
    assert scheduler.fired == [datetime(2026, 7, 6, 6, 0, tzinfo=UTC)]
    assert scheduler.next_run == datetime(2026, 7, 13, 6, 0, tzinfo=UTC)

    clock.advance(timedelta(days=21).total_seconds())  # asleep for three slots: one catch-up run only
    assert len(scheduler.run_due()) == 2
    assert scheduler.run_due() == []
    assert len(scheduler.fired) == 2
    assert scheduler.next_run == datetime(2026, 8, 3, 6, 0, tzinfo=UTC)
    assert (tmp_path / "reports" / "store-a" / "store-a-20260706.pdf").exists()


def test_scheduler_rejects_bad_cron(db: Database, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cron"):
        ReportScheduler(make_settings(tmp_path, schedule_cron="every monday"), db)


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
    body = envelope.content.decode()
    assert "Alpha Market" in body and "Alerts raised:       1" in body
    assert "  Not yet reviewed:  1" in body and "  Theft confirmed:   0" in body
    assert "False-alarm rate:    n/a" in body and "Time to acknowledge: n/a" in body
    assert 'filename="store-a-20260706.pdf"' in body
    assert "Bravo" not in body
