"""Chart details: human period lengths, readable time axes, and how camera states are drawn."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import matplotlib.colors as mcolors
import pytest

from common.db import Database
from common.schemas import CameraState
from common.settings import Settings
from reporting import charts
from reporting.charts import format_period_length
from reporting.queries import load_report_data

from .conftest import health

LONDON = ZoneInfo("Europe/London")
T0 = datetime(2026, 10, 20, 0, 0, tzinfo=LONDON)  # a week that crosses the 25 Oct 2026 DST change


@pytest.mark.parametrize(
    ("start", "length", "expected"),
    [
        (T0 + timedelta(hours=9), timedelta(hours=2), "2 hours"),
        (T0 + timedelta(hours=9), timedelta(hours=1), "1 hour"),
        (T0 + timedelta(hours=9), timedelta(minutes=5), "5 minutes"),
        (T0 + timedelta(hours=9), timedelta(minutes=90), "1 hour 30 minutes"),
        (T0, timedelta(days=1), "1 day"),
        (T0 + timedelta(hours=18), timedelta(hours=30), "1 day 6 hours"),
        (T0, timedelta(days=2), "2 days"),
        # 24 real hours from 12:00 before the clocks go back end at 11:00 local: still one day long
        (datetime(2026, 10, 24, 12, 0, tzinfo=LONDON), timedelta(hours=24), "1 day"),
    ],
)
def test_period_length_is_human(start: datetime, length: timedelta, expected: str) -> None:
    end = (start.astimezone(UTC) + length).astimezone(LONDON)  # real elapsed time, like a report period
    assert format_period_length(start, end) == expected


def test_a_local_week_across_a_dst_change_is_seven_days() -> None:
    end = datetime(2026, 10, 27, 0, 0, tzinfo=LONDON)
    assert end.astimezone(UTC) - T0.astimezone(UTC) == timedelta(days=7, hours=1)  # 169 h: clocks went back
    assert format_period_length(T0, end) == "7 days"


@pytest.mark.parametrize(
    ("length", "label_pattern"),
    [
        (timedelta(hours=2), r"^\d\d:\d\d$"),
        (timedelta(hours=12), r"^\d\d:\d\d$"),
        (timedelta(days=1), r"^\d\d:\d\d$"),
        (timedelta(days=2), r"^\w{3} \d\d \w{3}\n\d\d:\d\d$"),
        (timedelta(days=7), r"^\w{3}\n\d\d \w{3}$"),
        (timedelta(days=14), r"^\d\d \w{3}$"),
        (timedelta(days=30), r"^\d\d \w{3}$"),
        (timedelta(days=365), r"^\w{3} \d{4}$"),
    ],
)
def test_time_axis_labels_fit_without_overlap(
    length: timedelta, label_pattern: str, db: Database, settings: Settings
) -> None:
    data = load_report_data(db, settings.stores[0], T0, T0 + length)
    fig = charts.new_figure((5.5, 3.0))  # narrower than the time axes on a PDF page
    ax = fig.add_subplot()
    charts.draw_suspicious_over_time(ax, data)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    lo, hi = ax.get_xlim()
    labels = [t for t, x in zip(ax.get_xticklabels(), ax.get_xticks(), strict=True)
              if lo <= x <= hi and t.get_text()]
    assert len(labels) >= 3
    assert all(re.match(label_pattern, t.get_text()) for t in labels), [t.get_text() for t in labels]
    boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: b.x0)
    for left, right in itertools.pairwise(boxes):
        assert left.x1 < right.x0, "tick labels overlap"


def test_short_period_axis_names_the_day(db: Database, settings: Settings) -> None:
    data = load_report_data(db, settings.stores[0], T0 + timedelta(hours=9), T0 + timedelta(hours=11))
    ax = charts.suspicious_over_time_chart(data).axes[0]
    assert "Tue 20 Oct 2026" in ax.get_xlabel() and "Europe/London" in ax.get_xlabel()


def test_ended_source_is_not_drawn_as_offline(db: Database, settings: Settings) -> None:
    db.write_health_events([health("store-a", "a-aisle", T0 + timedelta(hours=9), CameraState.ONLINE),
                            health("store-a", "a-aisle", T0 + timedelta(hours=10), CameraState.ENDED)])
    data = load_report_data(db, settings.stores[0], T0 + timedelta(hours=9), T0 + timedelta(hours=11))
    ax = charts.uptime_chart(data).axes[0]

    offline = mcolors.to_rgba(charts.STATE_COLOURS["offline"])
    drawn = [tuple(c.get_facecolor()[0]) for c in ax.collections]
    assert mcolors.to_rgba(charts.STATE_COLOURS["online"]) in drawn
    assert offline not in drawn
    assert any(c.get_hatch() for c in ax.collections)  # the ended stretch, hatched
    legend = ax.get_legend()
    assert legend is not None
    assert charts.STATE_LABELS["ended"] in [t.get_text() for t in legend.get_texts()]
