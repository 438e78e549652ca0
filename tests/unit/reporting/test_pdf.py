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
from common.schemas import AlertKind, AlertStatus, CameraState, Verdict
from common.settings import Settings
from reporting import charts, pdf
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


def pdf_text(path: Path, mode: str = "-layout") -> str:
    """The PDF's text laid out as on the page, or with ``-raw`` in drawing order (each tile's texts together)."""
    return subprocess.run(["pdftotext", mode, str(path), "-"], capture_output=True, text=True,
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
    set_verdict(db, a_alerts[0].alert_id, Verdict.THEFT_CONFIRMED)
    db.write_health_events([health("store-a", "a-aisle", t0, CameraState.OFFLINE),
                            health("store-a", "a-aisle", t0 + timedelta(hours=2), CameraState.ONLINE),
                            health("store-b", "b-till", t0, CameraState.OFFLINE)])


def test_report_is_a_valid_pdf_with_only_its_store(db: Database, settings: Settings, tmp_path: Path) -> None:
    fill_two_stores(db, tmp_path)
    out = render_store_report(db, settings.stores[0], START, END, tmp_path / "out" / "a.pdf",
                              generated_at=GENERATED)

    assert out.read_bytes().startswith(b"%PDF")
    assert pdf_pages(out) == 5  # cover, activity, outcomes, cameras, one alerts page
    info = pdf_info(out)
    assert "Author:          AisleWatch" in info and "Alpha Market" in info
    text = pdf_text(out)
    assert "Alpha Market" in text and "Alpha Entrance" in text and "Alpha Aisle 3" in text
    assert "must be verified" in " ".join(text.split())
    for foreign in ("Bravo", "b-till", "store-b"):
        assert foreign not in text
    assert Verdict.THEFT_CONFIRMED.label in text
    assert not list(out.parent.glob("*.part"))

    data = load_report_data(db, settings.stores[0], START, END)
    assert (data.clips, data.suspicious_clips, data.alerts_raised, data.confirmed_thefts) == (30, 10, 2, 1)
    assert data.offline_s == 7200


def test_cover_shows_headline_numbers(db: Database, settings: Settings, tmp_path: Path) -> None:
    fill_two_stores(db, tmp_path)
    text = " ".join(pdf_text(render_store_report(db, settings.stores[0], START, END, tmp_path / "a.pdf",
                                                 generated_at=GENERATED)).split())
    for label in ("Clips analysed", "Suspicious clips", "Alerts raised", *(v.label for v in Verdict),
                  "Not yet reviewed", "False-alarm rate", "Time to acknowledge", "Camera offline time"):
        assert label in text
    assert "0 of 1 reviewed alerts" in text  # the one reviewed alert was a confirmed theft
    assert "2 h 00 min" in text  # a-aisle offline for two hours
    assert "Wed 01 Jul 2026 00:00 BST" in text  # period shown in the store's time zone


def test_cover_shows_false_alarm_rate_and_time_to_acknowledge(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    t0 = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
    alerts = [alert("store-a", "a-aisle", t0 + timedelta(minutes=10 * i)) for i in range(4)]
    db.write_alerts(alerts)
    set_verdict(db, alerts[0].alert_id, Verdict.FALSE_ALARM, after=timedelta(seconds=60))
    set_verdict(db, alerts[1].alert_id, Verdict.FALSE_ALARM, after=timedelta(seconds=120))
    set_verdict(db, alerts[2].alert_id, Verdict.THEFT_PREVENTED, after=timedelta(seconds=180))

    out = render_store_report(db, settings.stores[0], START, END, tmp_path / "r.pdf", generated_at=GENERATED)

    cover = " ".join(pdf_text(out, "-raw").split("\f")[0].split())
    assert "False-alarm rate 67% 2 of 3 reviewed alerts" in cover  # 2 false alarms of 3 reviewed; the open one not counted
    assert "Time to acknowledge 2 min 00 s median; p90 2 min 48 s" in cover  # 60, 120, 180 s
    assert "False alarm 2 50% of 4 alerts" in cover and "Not yet reviewed 1 25% of 4 alerts" in cover


def test_cover_shows_n_a_before_any_review(db: Database, settings: Settings, tmp_path: Path) -> None:
    db.write_alerts([alert("store-a", "a-aisle", datetime(2026, 7, 1, 9, 0, tzinfo=UTC))])
    out = render_store_report(db, settings.stores[0], START, END, tmp_path / "r.pdf", generated_at=GENERATED)
    cover = " ".join(pdf_text(out, "-raw").split("\f")[0].split())
    assert "False-alarm rate n/a no alert reviewed yet" in cover
    assert "Time to acknowledge n/a no alert acknowledged yet" in cover


def test_alerts_table_shows_verdict_status_who_and_note(db: Database, settings: Settings, tmp_path: Path) -> None:
    t0 = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
    judged = alert("store-a", "a-aisle", t0)
    offline = alert("store-a", "a-aisle", t0 + timedelta(minutes=5), probability=None,
                    kind=AlertKind.CAMERA_OFFLINE)
    db.write_alerts([judged, offline, alert("store-a", "a-entrance", t0 + timedelta(minutes=9))])
    set_verdict(db, judged.alert_id, Verdict.THEFT_PREVENTED, by="j.smith", after=timedelta(seconds=95),
                note="Staff approached; items returned", status=AlertStatus.RESOLVED)
    set_verdict(db, offline.alert_id, None, by="m.jones")

    out = render_store_report(db, settings.stores[0], START, END, tmp_path / "t.pdf", generated_at=GENERATED)

    table = " ".join(pdf_text(out, "-raw").split("\f")[4].split())  # each cell's lines together
    assert "Theft prevented Resolved by j.smith after 1 min 35 s Staff approached; items returned" in table
    assert "Camera offline - Acknowledged by m.jones after 1 min 00 s" in table  # never a verdict of its own
    assert "p = 0.90 Not yet reviewed Open" in table


def test_alerts_table_text_stays_inside_its_columns(db: Database, settings: Settings, tmp_path: Path) -> None:
    t0 = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
    alerts = [alert("store-a", "a-aisle", t0 + timedelta(minutes=i)) for i in range(3)]
    db.write_alerts(alerts)
    long_note = ("Man in grey hoodie put two bottles of whisky in his jacket and left through the entrance "
                 "without paying; police called, reference 24-118833, footage exported for them. ") * 3
    set_verdict(db, alerts[0].alert_id, Verdict.THEFT_CONFIRMED, note=long_note,
                by="a.very.long.guard.name@store-0142.example.com")
    set_verdict(db, alerts[1].alert_id, Verdict.FALSE_ALARM, note="W" * 300)  # no space to wrap at
    set_verdict(db, alerts[2].alert_id, Verdict.UNSURE, note="$40 + $25 bottles, maybe")  # not mathtext
    data = load_report_data(db, settings.stores[0], START, END)

    fig = pdf._alerts_page(data, data.alerts, 0, 1, 4, None)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    dpi, page_w = fig.dpi, fig.get_figwidth()
    checked = 0
    ends = [c.x for c in pdf.COLUMNS[2:]] + [page_w - pdf.MARGIN / 2]  # the next column, or the page margin
    for column, end in zip(pdf.COLUMNS[1:], ends, strict=True):
        cells = [t for t in fig.texts if abs(t.get_position()[0] * page_w - column.x) < 1e-6
                 and t.get_text() != column.header]
        assert len(cells) == len(data.alerts)
        for cell in cells:
            box = cell.get_window_extent(renderer)
            assert box.x1 < end * dpi, (column.header, cell.get_text())
            checked += 1
    assert checked == 5 * 3
    notes = [t for t in fig.texts if abs(t.get_position()[0] * page_w - pdf.COLUMNS[-1].x) < 1e-6][1:]
    assert notes[0].get_text().endswith("…") and len(notes[0].get_text().splitlines()) == pdf.NOTE_LINES
    assert notes[1].get_text().endswith("…") and len(notes[1].get_text().splitlines()) == pdf.NOTE_LINES
    assert notes[2].get_text() == "$40 + $25 bottles,\nmaybe" and not notes[2].get_parse_math()


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        ("short", ["short"]),
        ("", [""]),
        ("two words " * 20, None),
        ("x" * 400, None),
        ("line\nbreaks   and   spaces", ["line breaks and spaces"]),
    ],
)
def test_fit_lines_wraps_within_the_width(text: str, lines: list[str] | None) -> None:
    fitted = pdf.fit_lines(text, 1.4, 8.0, 4).split("\n")
    if lines is not None:
        assert fitted == lines
    else:
        assert len(fitted) == 4 and fitted[-1].endswith("…")
    assert all(pdf.text_width(line, 8.0) <= 1.4 for line in fitted)


@pytest.mark.parametrize(
    ("afters", "expected"),
    [(timedelta(seconds=45), "45 s"), (timedelta(seconds=125), "2 min 05 s"), (timedelta(hours=3), "3 h 00 min")],
)
def test_wait_format(afters: timedelta, expected: str) -> None:
    assert charts.format_wait(afters.total_seconds()) == expected


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
    assert pdf_pages(out) == 4 + 3  # 9 rows per alerts page
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
