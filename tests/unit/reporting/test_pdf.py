"""The PDF report: valid multi-page file, the right store's data only, empty state, thumbnails, charts."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from PIL import Image

from common.db import Database
from common.schemas import CameraState
from common.settings import Settings
from reporting import charts
from reporting.pdf import render_report, render_store_report
from reporting.queries import load_report_data

from .conftest import alert, health, result, set_verdict

LONDON = ZoneInfo("Europe/London")
START = datetime(2026, 7, 1, 0, 0, tzinfo=LONDON)
END = datetime(2026, 7, 3, 0, 0, tzinfo=LONDON)
GENERATED = datetime(2026, 7, 3, 6, 0, tzinfo=UTC)


def pdf_pages(path: Path) -> int:
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    return int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))


def pdf_info(path: Path) -> str:
    return subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout


def pdf_text(path: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True,
                          check=True).stdout


def fill_two_stores(db: Database, tmp_path: Path) -> None:
    snap = tmp_path / "snap.jpg"
    Image.new("RGB", (320, 240), (200, 40, 40)).save(snap)
    t0 = datetime(2026, 7, 1, 13, 0, tzinfo=UTC)
    db.write_results([result("store-a", "a-entrance", t0 + timedelta(minutes=i), 0.9 if i % 3 == 0 else 0.2)
                      for i in range(30)])
    db.write_results([result("store-b", "b-till", t0 + timedelta(minutes=i), 0.99) for i in range(50)])
    a_alerts = [alert("store-a", "a-entrance", t0, snapshot=str(snap)),
                alert("store-a", "a-aisle", t0 + timedelta(hours=1), snapshot=str(tmp_path / "missing.jpg"))]
    db.write_alerts([*a_alerts, alert("store-b", "b-till", t0, probability=0.97)])
    set_verdict(db, a_alerts[0].alert_id, "theft")
    db.write_health_events([health("store-a", "a-aisle", t0, CameraState.OFFLINE),
                            health("store-a", "a-aisle", t0 + timedelta(hours=2), CameraState.ONLINE),
                            health("store-b", "b-till", t0, CameraState.OFFLINE)])


def test_report_is_a_valid_pdf_with_only_its_store(db: Database, settings: Settings, tmp_path: Path) -> None:
    fill_two_stores(db, tmp_path)
    out = render_store_report(db, settings.stores[0], START, END, tmp_path / "out" / "a.pdf",
                              generated_at=GENERATED)

    assert out.read_bytes().startswith(b"%PDF")
    assert pdf_pages(out) == 4  # cover, activity, cameras, one alerts page
    info = pdf_info(out)
    assert "Author:          AisleWatch" in info and "Alpha Market" in info
    text = pdf_text(out)
    assert "Alpha Market" in text and "Alpha Entrance" in text and "Alpha Aisle 3" in text
    assert "must be verified" in " ".join(text.split())
    for foreign in ("Bravo", "b-till", "store-b"):
        assert foreign not in text
    assert "Confirmed theft" in text
    assert not list(out.parent.glob("*.part"))

    data = load_report_data(db, settings.stores[0], START, END)
    assert (data.clips, data.suspicious_clips, data.alerts_raised, data.confirmed_thefts) == (30, 10, 2, 1)
    assert data.offline_s == 7200


def test_cover_shows_headline_numbers(db: Database, settings: Settings, tmp_path: Path) -> None:
    fill_two_stores(db, tmp_path)
    text = " ".join(pdf_text(render_store_report(db, settings.stores[0], START, END, tmp_path / "a.pdf",
                                                 generated_at=GENERATED)).split())
    for label in ("Clips analysed", "Suspicious clips", "Alerts raised", "Confirmed thefts", "False alarms",
                  "Camera offline time"):
        assert label in text
    assert "2 h 00 min" in text  # a-aisle offline for two hours
    assert "Wed 01 Jul 2026 00:00 BST" in text  # period shown in the store's time zone


@pytest.mark.parametrize(
    ("start", "end", "length"),
    [
        (datetime(2026, 7, 1, 9, 0, tzinfo=LONDON), datetime(2026, 7, 1, 11, 0, tzinfo=LONDON), "2 hours"),
        (START, START + timedelta(days=1), "1 day"),
        (datetime(2026, 10, 20, tzinfo=LONDON), datetime(2026, 10, 27, tzinfo=LONDON), "7 days"),  # across DST
    ],
)
def test_cover_shows_period_length_in_words(
    start: datetime, end: datetime, length: str, db: Database, settings: Settings, tmp_path: Path
) -> None:
    out = render_store_report(db, settings.stores[0], start, end, tmp_path / "p.pdf", generated_at=GENERATED)
    text = " ".join(pdf_text(out).split())
    assert f"({length})" in text
    assert not re.search(r"\d\.\d+ days?", text)


def test_empty_period_still_renders(db: Database, settings: Settings, tmp_path: Path) -> None:
    out = render_store_report(db, settings.stores[1], START, END, tmp_path / "empty.pdf",
                              generated_at=GENERATED)
    assert out.read_bytes().startswith(b"%PDF")
    assert pdf_pages(out) > 1
    text = " ".join(pdf_text(out).split())
    assert charts.EMPTY_SUSPICIOUS in text
    assert charts.EMPTY_ALERTS in text
    assert charts.EMPTY_HEALTH in text


def test_alerts_table_paginates(db: Database, settings: Settings, tmp_path: Path) -> None:
    t0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
    db.write_alerts([alert("store-a", "a-entrance", t0 + timedelta(minutes=i)) for i in range(25)])
    data = load_report_data(db, settings.stores[0], START, END)
    out = render_report(data, tmp_path / "many.pdf", generated_at=GENERATED)
    assert pdf_pages(out) == 3 + 3  # 9 rows per alerts page
    assert "Alerts (3 of 3)" in pdf_text(out)


@pytest.mark.parametrize("name", list(charts.ALL_CHARTS))
def test_each_chart_renders_png(name: str, db: Database, settings: Settings, tmp_path: Path) -> None:
    fill_two_stores(db, tmp_path)
    data = load_report_data(db, settings.stores[0], START, END)
    fig = charts.ALL_CHARTS[name](data)
    ax = fig.axes[0]
    assert ax.get_title(loc="left")
    assert ax.get_xlabel()
    path = charts.save_png(fig, tmp_path / f"{name}.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_empty_chart_draws_message_not_bars(db: Database, settings: Settings) -> None:
    data = load_report_data(db, settings.stores[0], START, END)
    ax = charts.suspicious_over_time_chart(data).axes[0]
    assert [t.get_text() for t in ax.texts] == [charts.EMPTY_SUSPICIOUS]
    assert not ax.patches
    assert "Europe/London" in ax.get_xlabel()
