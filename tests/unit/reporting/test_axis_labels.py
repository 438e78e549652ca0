"""Readable axes at every period length and chart size: no two tick labels of an axis run into each other.

Checked two ways: in the rendered PDF (``pdftotext -bbox``: where poppler finds each word), and on charts
drawn at widths from a narrow column to a full page (matplotlib's own text extents)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from matplotlib.axes import Axes

from common.db import Database
from reporting import charts
from reporting.pdf import render_report
from reporting.queries import ReportData, load_report_data

from .conftest import alert, make_settings, result
from .text_boxes import overlapping

PERIODS = (1, 7, 31, 365)
END = datetime(2026, 7, 6, tzinfo=ZoneInfo("Europe/London"))


@pytest.fixture(scope="module")
def period_data(tmp_path_factory: pytest.TempPathFactory) -> dict[int, ReportData]:
    """A year of results (a suspicious clip every few hours, on two cameras) and alerts, and each period's data."""
    tmp = tmp_path_factory.mktemp("axes")
    db = Database.from_url(f"sqlite:///{tmp}/axes.db")
    db.upgrade()
    results, alerts = [], []
    for h in range(0, 366 * 24, 5):
        at = (END - timedelta(hours=h + 0.5)).astimezone(UTC)
        results.append(result("store-a", "a-entrance" if h % 2 else "a-aisle", at, 0.9 if h % 3 == 0 else 0.1))
        if h % 40 == 0:
            alerts.append(alert("store-a", "a-entrance", at))
    db.write_results(results)
    db.write_alerts(alerts)
    store = make_settings(tmp).stores[0]
    data = {days: load_report_data(db, store, END - timedelta(days=days), END) for days in PERIODS}
    db.close()
    return data


@pytest.mark.parametrize("days", PERIODS)
def test_no_text_of_the_pdf_overlaps(days: int, period_data: dict[int, ReportData], tmp_path: Path) -> None:
    pdf = render_report(period_data[days], tmp_path / f"report-{days}.pdf", generated_at=END)
    clashes = [(a.page, a.text, b.text) for a, b in overlapping(pdf)]
    assert clashes == [], f"{days}-day report: words that run together: {clashes[:10]}"


def _tick_label_clashes(ax: Axes) -> list[tuple[str, str]]:
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    lo, hi = sorted(ax.get_xlim())
    shown = [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text() and lo <= t.get_position()[0] <= hi]
    boxes = sorted(((t.get_window_extent(renderer), t.get_text()) for t in shown), key=lambda b: b[0].x0)
    return [(a[1], b[1]) for a, b in pairwise(boxes) if a[0].x1 > b[0].x0]


DRAWN = {
    "suspicious over time": charts.draw_suspicious_over_time,
    "hour of day": charts.draw_hour_of_day,
    "weekday-hour heatmap": charts.draw_alert_heatmap,
}


@pytest.mark.parametrize("width_in", [2.5, 3.5, 4.5, 6.0, 9.0])
@pytest.mark.parametrize("days", PERIODS)
@pytest.mark.parametrize("chart", sorted(DRAWN))
def test_tick_labels_never_touch(chart: str, days: int, width_in: float,
                                 period_data: dict[int, ReportData]) -> None:
    fig = charts.new_figure((width_in, 3.0))
    ax = fig.add_subplot()
    DRAWN[chart](ax, period_data[days])
    clashes = _tick_label_clashes(ax)
    shown = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert clashes == [], f"{chart}, {days} days, {width_in} in wide: {clashes}"
    if width_in >= 3.5:  # narrower, with the legend beside it, a month's axis may have room for one date only
        assert len(shown) >= 2, f"{chart}, {days} days, {width_in} in wide: an axis needs labels, got {shown}"
    assert shown, f"{chart}, {days} days, {width_in} in wide: no labels at all"


def test_a_wide_axis_gets_more_labels_than_a_narrow_one(period_data: dict[int, ReportData]) -> None:
    def labels(width_in: float) -> int:
        fig = charts.new_figure((width_in, 3.0))
        ax = fig.add_subplot()
        charts.draw_hour_of_day(ax, period_data[7])
        fig.canvas.draw()
        return len([t for t in ax.get_xticklabels() if t.get_text()])

    assert labels(9.0) > labels(2.5) >= 2
