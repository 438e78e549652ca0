"""Reports show outcomes: verdicts in the numbers and the PDF, the previous period, heatmap, uptime, pages."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from matplotlib import image

from common.db import Database
from common.schemas import CameraState, Verdict
from common.settings import Settings
from reporting.chain import load_chain_data, rank_stores, render_chain_report
from reporting.compare import headlines
from reporting.pdf import render_report
from reporting.queries import load_report_data, previous_period

from .conftest import alert, health, result, set_verdict

LONDON = ZoneInfo("Europe/London")
START = datetime(2026, 7, 1, tzinfo=LONDON)
END = datetime(2026, 7, 3, tzinfo=LONDON)
GENERATED = datetime(2026, 7, 3, 6, tzinfo=UTC)
INK_THRESHOLD = 0.005
"""Least share of non-white pixels a page must have: the footer alone is about 0.2%, a real page > 1%."""


def pdf_text(path: Path) -> str:
    """The PDF's text in drawing order, whitespace collapsed (each tile's texts together)."""
    raw = subprocess.run(["pdftotext", "-raw", str(path), "-"], capture_output=True, text=True, check=True).stdout
    return " ".join(raw.split())


def ink_per_page(pdf: Path, out: Path) -> list[float]:
    """Render every page with pdftoppm and return each page's share of non-white pixels."""
    subprocess.run(["pdftoppm", "-png", "-r", "40", str(pdf), str(out / "page")], check=True)
    shares = []
    for png in sorted(out.glob("page-*.png")):
        pixels = image.imread(str(png))[..., :3]
        shares.append(float(np.mean(pixels.min(axis=2) < 0.94)))
    return shares


@pytest.mark.parametrize(
    ("start", "end", "prev_start"),
    [
        (START, END, datetime(2026, 6, 29, tzinfo=LONDON)),
        # a week across the clocks going back: the previous seven local days, not 168 h earlier
        (datetime(2026, 10, 26, tzinfo=LONDON), datetime(2026, 11, 2, tzinfo=LONDON),
         datetime(2026, 10, 19, tzinfo=LONDON)),
        (datetime(2026, 7, 1, 9, tzinfo=LONDON), datetime(2026, 7, 1, 11, 30, tzinfo=LONDON),
         datetime(2026, 7, 1, 6, 30, tzinfo=LONDON)),
    ],
)
def test_previous_period_has_the_same_length(start: datetime, end: datetime, prev_start: datetime) -> None:
    before = previous_period(start, end, LONDON)
    assert before == (prev_start, start)


def test_report_shows_confirmed_thefts_after_verdicts(db: Database, settings: Settings, tmp_path: Path) -> None:
    t0 = datetime(2026, 7, 1, 10, tzinfo=UTC)
    alerts = [alert("store-a", "a-aisle", t0 + timedelta(minutes=7 * i)) for i in range(5)]
    db.write_alerts(alerts)
    store = settings.stores[0]

    before = load_report_data(db, store, START, END)
    assert (before.confirmed_thefts, before.thefts_prevented, before.unreviewed) == (0, 0, 5)
    first = pdf_text(render_report(before, tmp_path / "before.pdf", generated_at=GENERATED))
    assert "Theft confirmed 0 0% of 5 alerts" in first and "Not yet reviewed 5 100% of 5 alerts" in first

    for a in alerts[:3]:
        set_verdict(db, a.alert_id, Verdict.THEFT_CONFIRMED, after=timedelta(seconds=40))
    set_verdict(db, alerts[3].alert_id, Verdict.FALSE_ALARM, after=timedelta(seconds=80))

    after = load_report_data(db, store, START, END)
    assert (after.confirmed_thefts, after.false_alarms, after.unreviewed, after.thefts_caught) == (3, 1, 1, 3)
    assert after.false_alarm_rate == pytest.approx(0.25)
    text = pdf_text(render_report(after, tmp_path / "after.pdf", generated_at=GENERATED))
    assert "Theft confirmed 3 60% of 5 alerts" in text
    assert "Not yet reviewed 1 20% of 5 alerts" in text
    assert "False-alarm rate 25% 1 of 4 reviewed alerts" in text


def test_headlines_compare_with_the_previous_period(db: Database, settings: Settings, tmp_path: Path) -> None:
    now_alerts = [alert("store-a", "a-aisle", datetime(2026, 7, 1, 12, tzinfo=UTC) + timedelta(minutes=i))
                  for i in range(3)]
    old_alerts = [alert("store-a", "a-aisle", datetime(2026, 6, 30, 12, tzinfo=UTC))]  # the previous 2 days
    db.write_alerts([*now_alerts, *old_alerts, alert("store-a", "a-aisle", datetime(2026, 6, 20, tzinfo=UTC))])
    set_verdict(db, now_alerts[0].alert_id, Verdict.THEFT_CONFIRMED)
    set_verdict(db, old_alerts[0].alert_id, Verdict.FALSE_ALARM)

    data = load_report_data(db, settings.stores[0], START, END)
    assert data.previous is not None and data.previous.alerts_raised == 1  # 20 Jun is outside both periods
    figures = headlines(data)
    assert figures["alerts"].with_change("2 days") == "3 (▲2 vs previous 2 days)"
    assert figures["theft_confirmed"].with_change("2 days") == "1 (▲1 vs previous 2 days)"
    assert figures["false_alarm"].with_change("2 days") == "0 (▼1 vs previous 2 days)"
    assert figures["false_alarm_rate"].with_change("2 days") == "0% (▼100 pts vs previous 2 days)"
    assert figures["clips"].with_change("2 days") == "0 (no change vs previous 2 days)"
    assert figures["uptime"].with_change("2 days") == "n/a (previous 2 days: n/a)"

    text = pdf_text(render_report(data, tmp_path / "r.pdf", generated_at=GENERATED))
    assert "Alerts raised 3 3 suspicious, 0 camera offline ▲2 vs previous 2 days" in text
    assert "compared with the previous 2 days Mon 29 Jun 2026 00:00 to Wed 01 Jul 2026 00:00" in text


def test_heatmap_counts_alerts_by_local_weekday_and_hour(db: Database, settings: Settings) -> None:
    db.write_alerts([
        alert("store-a", "a-aisle", datetime(2026, 7, 1, 13, 5, tzinfo=UTC)),   # Wed 14:05 BST
        alert("store-a", "a-aisle", datetime(2026, 7, 1, 13, 55, tzinfo=UTC)),  # Wed 14:55 BST
        alert("store-a", "a-aisle", datetime(2026, 7, 1, 23, 30, tzinfo=UTC)),  # Thu 00:30 BST
    ])
    grid = load_report_data(db, settings.stores[0], START, END).alerts_by_weekday_hour
    assert len(grid) == 7 and all(len(row) == 24 for row in grid)
    assert grid[2][14] == 2 and grid[3][0] == 1
    assert sum(map(sum, grid)) == 3


def test_uptime_per_camera_is_explicit(db: Database, settings: Settings, tmp_path: Path) -> None:
    db.write_health_events([
        health("store-a", "a-aisle", datetime(2026, 6, 30, tzinfo=UTC), CameraState.ONLINE),
        health("store-a", "a-aisle", datetime(2026, 7, 1, 12, tzinfo=UTC), CameraState.OFFLINE),
        health("store-a", "a-aisle", datetime(2026, 7, 1, 14, tzinfo=UTC), CameraState.ONLINE),
        # a-entrance first reports halfway through: the unknown first day is no outage
        health("store-a", "a-entrance", datetime(2026, 7, 1, 23, tzinfo=UTC), CameraState.ONLINE),
    ])
    data = load_report_data(db, settings.stores[0], START, END)
    cams = {c.camera_id: c for c in data.cameras}
    assert cams["a-aisle"].uptime == pytest.approx(46 / 48)
    assert cams["a-entrance"].uptime == 1.0
    assert data.uptime == pytest.approx((46 + 24) / (48 + 24))
    text = pdf_text(render_report(data, tmp_path / "u.pdf", generated_at=GENERATED))
    assert "Alpha Aisle 3 0 0 0 2 h 00 min 95.8%" in text
    assert "Alpha Entrance 0 0 0 0 min 100.0%" in text
    assert "Camera uptime 97.2%" in text


def test_many_cameras_continue_on_their_own_page(db: Database, settings: Settings, tmp_path: Path) -> None:
    store = settings.stores[0].model_copy(update={"cameras": [
        settings.stores[0].cameras[0].model_copy(update={"id": f"cam-{i:02d}", "name": f"Camera {i:02d}"})
        for i in range(30)]})
    data = load_report_data(db, store, START, END)
    out = render_report(data, tmp_path / "many.pdf", generated_at=GENERATED)
    text = pdf_text(out)
    assert all(f"Camera {i:02d}" in text for i in range(30))
    assert "more cameras on page 5" in text and "Cameras (continued)" in text


def _fill(db: Database) -> None:
    t0 = datetime(2026, 7, 1, 13, tzinfo=UTC)
    db.write_results([result("store-a", "a-entrance", t0 + timedelta(minutes=i), 0.9 if i % 3 == 0 else 0.2)
                      for i in range(30)])
    a = [alert("store-a", "a-entrance", t0 + timedelta(hours=i)) for i in range(4)]
    b = [alert("store-b", "b-till", t0 + timedelta(hours=i)) for i in range(6)]
    db.write_alerts([*a, *b])
    for x in a[:2] + b[:1]:
        set_verdict(db, x.alert_id, Verdict.THEFT_CONFIRMED)
    set_verdict(db, b[1].alert_id, Verdict.THEFT_PREVENTED)
    db.write_health_events([health("store-a", "a-entrance", t0, CameraState.ONLINE),
                            health("store-b", "b-till", t0, CameraState.OFFLINE)])


def test_no_page_of_the_store_report_is_blank(db: Database, settings: Settings, tmp_path: Path) -> None:
    _fill(db)
    for store in settings.stores:  # one with data, one nearly empty (its empty states must still draw)
        out = render_report(load_report_data(db, store, START, END), tmp_path / f"{store.id}.pdf",
                            generated_at=GENERATED)
        pages = tmp_path / f"{store.id}-pages"
        pages.mkdir()
        shares = ink_per_page(out, pages)
        assert len(shares) == 5
        assert min(shares) > INK_THRESHOLD, shares


def test_blank_page_check_can_fail(tmp_path: Path) -> None:
    from reporting.charts import new_figure

    fig = new_figure((8.27, 11.69))
    fig.text(0.1, 0.02, "footer only", fontsize=7.5)
    fig.savefig(tmp_path / "blank.pdf")
    assert ink_per_page(tmp_path / "blank.pdf", tmp_path) [0] < INK_THRESHOLD


def test_chain_summary_ranks_every_store(db: Database, settings: Settings, tmp_path: Path) -> None:
    _fill(db)
    chain = load_chain_data(db, settings, now=datetime(2026, 7, 3, 6, tzinfo=UTC), period_days=2)
    assert [d.store_id for d in chain.stores] == ["store-b", "store-a"]  # 2 thefts caught beat 2, on alerts
    assert [d.thefts_caught for d in chain.stores] == [2, 2]
    assert rank_stores(list(reversed(chain.stores))) == chain.stores
    out = render_chain_report(chain, tmp_path / "chain.pdf", generated_at=GENERATED)
    text = pdf_text(out)
    assert "1 Bravo Foods" in text and "2 Alpha Market" in text
    assert "Alerts raised 10" in text and "Thefts caught 4" in text
    pages = tmp_path / "chain-pages"
    pages.mkdir()
    assert min(ink_per_page(out, pages)) > INK_THRESHOLD
