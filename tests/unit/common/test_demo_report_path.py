"""The demo's manager PDF is not replaced by `aislewatch report` run on the demo's config the same day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from common.app.demo import demo_report_path
from reporting.job import report_path
from reporting.periods import PERIOD_CHOICES, ReportPeriod


def test_the_demo_pdf_is_named_apart_from_every_report_of_its_day(tmp_path: Path) -> None:
    start = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)
    demo = demo_report_path(tmp_path, "demo-north", start)
    assert demo.parent == tmp_path / "demo-north" and demo.suffix == ".pdf"
    utc = ZoneInfo("UTC")
    reports = {report_path(tmp_path, "demo-north", start + timedelta(hours=h)) for h in (0, 1, 2)}
    periods = [ReportPeriod.whole_days(7, scheduled=True), *(ReportPeriod.parse(p) for p in PERIOD_CHOICES)]
    for period in periods:
        for now in (start, start + timedelta(hours=2)):
            reports.add(tmp_path / "demo-north" / f"{period.file_stem('demo-north', now, utc)}.pdf")
    assert demo not in reports, demo.name
