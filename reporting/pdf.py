"""A store's PDF report: cover with headline numbers, chart pages, and a paginated alerts table.

Drawn with matplotlib alone (PdfPages + Figure objects), so reporting adds no PDF dependency.
"""

from __future__ import annotations

import logging
import textwrap
import threading
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.patches import FancyBboxPatch, Rectangle
from PIL import Image

from common.db import Database
from common.schemas import AlertKind
from common.settings import StoreSettings
from reporting import charts
from reporting.charts import MUTED, OUTCOME_STYLE, TEXT, format_duration, format_local, format_period_length
from reporting.queries import AlertRow, ReportData, load_report_data

log = logging.getLogger(__name__)

A4 = (8.27, 11.69)
MARGIN = 0.6
TABLE_ROW_H = 0.98
TABLE_TOP = 1.62
TABLE_BOTTOM = 0.75
MAX_TABLE_ALERTS = 200
THUMB_PX = (192, 144)  # ~170 dpi at the printed size; keeps a long table a few MB
ACCENT = "#1f4e79"

VERIFY_NOTE = (
    "Detections in this report come from an automated model, not from a person. The model can be wrong: a "
    "suspicious clip or an alert is not proof that anything was stolen. Every alert must be verified by "
    "staff (for example by reviewing the footage) before any action is taken. 'Confirmed theft' and "
    "'False alarm' are verdicts recorded by staff; alerts without a verdict are shown as not yet reviewed."
)


def render_store_report(
    db: Database,
    store: StoreSettings,
    start: datetime,
    end: datetime,
    out_path: Path,
    *,
    generated_at: datetime,
    evidence_root: Path | None = None,
    stop: threading.Event | None = None,
) -> Path:
    """Query one store's data for [start, end) and write its multi-page PDF report to ``out_path``."""
    data = load_report_data(db, store, start, end, stop=stop)
    return render_report(data, out_path, generated_at=generated_at, evidence_root=evidence_root)


def render_report(
    data: ReportData, out_path: Path, *, generated_at: datetime, evidence_root: Path | None = None
) -> Path:
    """Write the PDF for already-aggregated ``data`` (atomically: a reader never sees half a file)."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    listed = data.alerts[:MAX_TABLE_ALERTS]
    rows_per_page = int((A4[1] - TABLE_TOP - TABLE_BOTTOM) // TABLE_ROW_H)
    table_pages = max(1, -(-len(listed) // rows_per_page))
    total_pages = 3 + table_pages
    metadata = {
        "Title": f"AisleWatch report - {data.store_name} - "
                 f"{data.start:%Y-%m-%d} to {data.end:%Y-%m-%d}",
        "Author": "AisleWatch",
        "Subject": f"Suspicious-activity report for store {data.store_id}",
        "Creator": "AisleWatch reporting",
        "CreationDate": generated_at,
    }
    tmp = out_path.with_name(out_path.name + ".part")
    with PdfPages(tmp, metadata=metadata) as pdf:
        pdf.savefig(_cover_page(data, generated_at, total_pages))
        pdf.savefig(_activity_page(data, total_pages))
        pdf.savefig(_cameras_page(data, total_pages))
        for page in range(table_pages):
            chunk = listed[page * rows_per_page : (page + 1) * rows_per_page]
            pdf.savefig(_alerts_page(data, chunk, page, table_pages, total_pages, evidence_root))
    tmp.replace(out_path)
    return out_path


# -- page furniture --------------------------------------------------------------------------------------
def _page(layout: Literal["constrained"] | None = None) -> Figure:
    return charts.new_figure(A4, layout=layout)


def _y(fig: Figure, inches_from_top: float) -> float:
    return 1 - inches_from_top / fig.get_figheight()


def _x(fig: Figure, inches: float) -> float:
    return inches / fig.get_figwidth()


def _header(fig: Figure, data: ReportData, section: str) -> None:
    fig.text(_x(fig, MARGIN), _y(fig, 0.45), section, fontsize=15, fontweight="bold", color=ACCENT, va="top")
    fig.text(1 - _x(fig, MARGIN), _y(fig, 0.48), _period_text(data, short=True), fontsize=8.5, color=MUTED,
             ha="right", va="top")
    fig.text(1 - _x(fig, MARGIN), _y(fig, 0.66), data.store_name, fontsize=8.5, color=MUTED, ha="right",
             va="top")
    fig.add_artist(Rectangle((_x(fig, MARGIN), _y(fig, 0.95)), 1 - 2 * _x(fig, MARGIN), 0.0008,
                             transform=fig.transFigure, color=ACCENT, linewidth=0))


def _footer(fig: Figure, data: ReportData, page: int, total: int) -> None:
    y = _y(fig, A4[1] - 0.4)
    fig.text(_x(fig, MARGIN), y, "AisleWatch - automated detections, verify before acting", fontsize=7.5,
             color=MUTED)
    fig.text(1 - _x(fig, MARGIN), y, f"{data.store_name}  |  page {page} of {total}", fontsize=7.5,
             color=MUTED, ha="right")


def _period_text(data: ReportData, short: bool = False) -> str:
    if short:
        end = f"{data.end:%H:%M}" if data.end.date() == data.start.date() else f"{data.end:%d %b %Y %H:%M}"
        return f"{data.start:%d %b %Y %H:%M} - {end} ({data.timezone})"
    span = format_period_length(data.start, data.end)
    return f"{format_local(data.start)}  to  {format_local(data.end)}  ({span})"


# -- cover -----------------------------------------------------------------------------------------------
def _cover_page(data: ReportData, generated_at: datetime, total: int) -> Figure:
    fig = _page()
    x0 = _x(fig, MARGIN)
    fig.add_artist(Rectangle((0, _y(fig, 2.35)), 1, _y(fig, 0) - _y(fig, 2.35), transform=fig.transFigure,
                             color=ACCENT, linewidth=0))
    fig.text(x0, _y(fig, 0.55), "AisleWatch  |  store activity report", fontsize=11, color="#d6e4f0", va="top")
    fig.text(x0, _y(fig, 0.95), _shorten(data.store_name, 38), fontsize=26, fontweight="bold", color="white",
             va="top")
    fig.text(x0, _y(fig, 1.6), f"Store id {data.store_id}", fontsize=10, color="#d6e4f0", va="top")
    fig.text(x0, _y(fig, 1.9), f"Times in {data.timezone}", fontsize=10, color="#d6e4f0", va="top")

    fig.text(x0, _y(fig, 2.75), "Period", fontsize=9, color=MUTED, va="top")
    fig.text(x0, _y(fig, 2.95), _period_text(data), fontsize=11, color=TEXT, va="top")
    generated = generated_at.astimezone(data.tz)
    fig.text(x0, _y(fig, 3.35), "Generated", fontsize=9, color=MUTED, va="top")
    fig.text(x0, _y(fig, 3.55), format_local(generated), fontsize=11, color=TEXT, va="top")

    suspicious_alerts = len(data.suspicious_alerts)
    offline_alerts = data.alerts_raised - suspicious_alerts
    unreviewed = data.alert_outcomes.get("unreviewed", 0)
    tiles = [
        ("Clips analysed", f"{data.clips:,}", "short video clips classified"),
        ("Suspicious clips", f"{data.suspicious_clips:,}", _share(data.suspicious_clips, data.clips)),
        ("Alerts raised", f"{data.alerts_raised:,}",
         f"{suspicious_alerts} suspicious, {offline_alerts} camera offline"),
        ("Confirmed thefts", f"{data.confirmed_thefts:,}", f"{unreviewed} alert(s) not yet reviewed"),
        ("False alarms", f"{data.false_alarms:,}", "judged by staff"),
        ("Camera offline time", format_duration(data.offline_s), "offline or error, all cameras")
        if data.has_health_data else ("Camera offline time", "n/a", "no camera status recorded"),
    ]
    tile_w, tile_h, gap = 2.2, 1.15, 0.235
    for i, (label, value, sub) in enumerate(tiles):
        col, row = i % 3, i // 3
        left = MARGIN + col * (tile_w + gap)
        top = 4.05 + row * (tile_h + gap)
        fig.add_artist(FancyBboxPatch((_x(fig, left), _y(fig, top + tile_h)), _x(fig, tile_w),
                                      _y(fig, 0) - _y(fig, tile_h), boxstyle="round,pad=0,rounding_size=0.01",
                                      transform=fig.transFigure, facecolor="#f4f6f7", edgecolor="#d5d8dc"))
        fig.text(_x(fig, left + 0.15), _y(fig, top + 0.15), label, fontsize=9, color=MUTED, va="top")
        colour = OUTCOME_STYLE["theft"][1] if label == "Confirmed thefts" and data.confirmed_thefts else TEXT
        fig.text(_x(fig, left + 0.15), _y(fig, top + 0.4), value, fontsize=20, fontweight="bold", color=colour,
                 va="top")
        fig.text(_x(fig, left + 0.15), _y(fig, top + 0.9), _shorten(sub, 36), fontsize=7.5, color=MUTED,
                 va="top")

    note_top = 4.05 + 2 * tile_h + gap + 0.3
    note_lines = textwrap.wrap(VERIFY_NOTE, 95)
    note_h = 0.45 + 0.19 * len(note_lines)
    fig.add_artist(Rectangle((_x(fig, MARGIN), _y(fig, note_top + note_h)), 1 - 2 * _x(fig, MARGIN),
                             _y(fig, 0) - _y(fig, note_h), transform=fig.transFigure, facecolor="#fef5e7",
                             edgecolor="#e6a23c", linewidth=0.8))
    fig.text(_x(fig, MARGIN + 0.15), _y(fig, note_top + 0.12), "Please note", fontsize=10, fontweight="bold",
             color="#8a5a00", va="top")
    fig.text(_x(fig, MARGIN + 0.15), _y(fig, note_top + 0.38), "\n".join(note_lines), fontsize=8.5, color=TEXT,
             va="top", linespacing=1.35)

    _camera_table(fig, data, note_top + note_h + 0.4)
    _footer(fig, data, 1, total)
    return fig


def _camera_table(fig: Figure, data: ReportData, top: float) -> None:
    fig.text(_x(fig, MARGIN), _y(fig, top), "Cameras", fontsize=12, fontweight="bold", color=ACCENT, va="top")
    cols = [(MARGIN, "Camera", "left"), (4.1, "Clips", "right"), (5.2, "Suspicious", "right"),
            (6.2, "Alerts", "right"), (7.67, "Offline time", "right")]
    y = top + 0.4
    for x, title, align in cols:
        fig.text(_x(fig, x), _y(fig, y), title, fontsize=8.5, color=MUTED, ha=align, va="top",
                 fontweight="bold")
    room = int((A4[1] - 0.8 - y - 0.25) // 0.24)
    cams = list(data.cameras)
    if not cams:
        fig.text(_x(fig, MARGIN), _y(fig, y + 0.3), "No cameras configured or seen in this period.", fontsize=9,
                 color=MUTED, va="top")
        return
    shown = cams if len(cams) <= room else cams[: room - 1]
    for cam in shown:
        y += 0.24
        values = [_shorten(cam.name, 40), f"{cam.clips:,}", f"{cam.suspicious_clips:,}",
                  f"{cam.alerts + cam.offline_alerts:,}", format_duration(cam.offline_s)]
        for (x, _, align), value in zip(cols, values, strict=True):
            fig.text(_x(fig, x), _y(fig, y), value, fontsize=8.5, color=TEXT, ha=align, va="top")
    if len(shown) < len(cams):
        fig.text(_x(fig, MARGIN), _y(fig, y + 0.26), f"... and {len(cams) - len(shown)} more cameras (see the "
                 "per-camera chart).", fontsize=8.5, color=MUTED, va="top")


# -- chart pages -----------------------------------------------------------------------------------------
def _chart_page(data: ReportData, section: str, page: int, total: int) -> Figure:
    fig = _page(layout="constrained")
    engine = fig.get_layout_engine()
    assert isinstance(engine, ConstrainedLayoutEngine)
    left = _x(fig, MARGIN)  # charts, their tick labels and legends stay inside the page margins
    engine.set(rect=(left, 0.05, 1 - 2 * left, 0.86), h_pad=0.15, hspace=0.08)
    _header(fig, data, section)
    _footer(fig, data, page, total)
    return fig


def _activity_page(data: ReportData, total: int) -> Figure:
    fig = _chart_page(data, "Suspicious activity", 2, total)
    grid = fig.add_gridspec(3, 1, height_ratios=[1.25, 1, 0.75])
    charts.draw_suspicious_over_time(fig.add_subplot(grid[0]), data)
    charts.draw_hour_of_day(fig.add_subplot(grid[1]), data)
    charts.draw_alert_outcomes(fig.add_subplot(grid[2]), data)
    return fig


def _cameras_page(data: ReportData, total: int) -> Figure:
    fig = _chart_page(data, "Cameras", 3, total)
    grid = fig.add_gridspec(3, 1)
    charts.draw_per_camera(fig.add_subplot(grid[0]), fig.add_subplot(grid[1]), data)
    charts.draw_uptime(fig.add_subplot(grid[2]), data)
    return fig


# -- alerts table ----------------------------------------------------------------------------------------
COLUMNS = [  # x (inches), header, wrap width (characters)
    (MARGIN, "Evidence", 0),
    (1.9, "Time", 0),
    (3.25, "Camera", 20),
    (4.75, "Kind", 12),
    (5.6, "Probability", 0),
    (6.45, "Verdict (status)", 0),  # ends inside the right margin (7.67 in)
]


def _alerts_page(
    data: ReportData,
    rows: tuple[AlertRow, ...],
    index: int,
    pages: int,
    total: int,
    evidence_root: Path | None,
) -> Figure:
    fig = _page()
    title = "Alerts" if pages == 1 else f"Alerts ({index + 1} of {pages})"
    _header(fig, data, title)
    _footer(fig, data, 4 + index, total)
    if index == 0:
        intro = f"{data.alerts_raised} alert(s) in the period, oldest first; times in {data.timezone}."
        if data.alerts_raised > MAX_TABLE_ALERTS:
            intro += f" Only the first {MAX_TABLE_ALERTS} are listed."
        fig.text(_x(fig, MARGIN), _y(fig, 1.08), intro, fontsize=8.5, color=MUTED, va="top")
    if not rows:
        fig.text(0.5, _y(fig, 3.0), charts.EMPTY_ALERTS, fontsize=12, color=MUTED, ha="center", va="center")
        return fig
    for x, header, _ in COLUMNS:
        fig.text(_x(fig, x), _y(fig, TABLE_TOP - 0.14), header, fontsize=8.5, fontweight="bold", color=MUTED,
                 va="bottom")
    for i, row in enumerate(rows):
        top = TABLE_TOP + i * TABLE_ROW_H
        if i % 2 == 0:
            fig.add_artist(Rectangle((_x(fig, MARGIN - 0.1), _y(fig, top + TABLE_ROW_H)),
                                     1 - 2 * _x(fig, MARGIN - 0.1), _y(fig, 0) - _y(fig, TABLE_ROW_H),
                                     transform=fig.transFigure, facecolor="#f7f9fa", linewidth=0, zorder=-1))
        _thumbnail(fig, row, top + 0.06, evidence_root)
        at = row.raised_at
        cells = [
            f"{at:%a %d %b %Y}\n{at:%H:%M:%S %Z}",
            "\n".join(textwrap.wrap(row.camera_name, 20, max_lines=3, placeholder="…")) or row.camera_id,
            "\n".join(textwrap.wrap(AlertKind.label_of(row.kind), 12)),
            "-" if row.probability is None else f"{row.probability:.2f}",
            _status_text(row),
        ]
        for (x, _, _), text in zip(COLUMNS[1:], cells, strict=True):
            fig.text(_x(fig, x), _y(fig, top + 0.14), text, fontsize=8.5, color=TEXT, va="top",
                     linespacing=1.3)
        colour = OUTCOME_STYLE.get(row.outcome, ("", MUTED))[1] if row.kind == AlertKind.SUSPICIOUS_ACTIVITY else MUTED
        fig.add_artist(Rectangle((_x(fig, COLUMNS[-1][0] - 0.12), _y(fig, top + 0.42)), _x(fig, 0.06),
                                 _y(fig, 0) - _y(fig, 0.28), transform=fig.transFigure, color=colour,
                                 linewidth=0))
    return fig


def _status_text(row: AlertRow) -> str:
    verdict = OUTCOME_STYLE.get(row.outcome, (row.outcome.replace("_", " ").capitalize(), ""))[0]
    if row.kind != AlertKind.SUSPICIOUS_ACTIVITY and row.verdict is None:
        verdict = "-"
    return f"{verdict}\n({row.status})"


def _thumbnail(fig: Figure, row: AlertRow, top: float, evidence_root: Path | None) -> None:
    w, h = 1.15, 0.86
    ax = fig.add_axes((_x(fig, MARGIN), _y(fig, top + h), _x(fig, w), _y(fig, 0) - _y(fig, h)))
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("#d5d8dc")
    image = _load_thumbnail(row.evidence_path, evidence_root)
    if image is None:
        ax.set_facecolor("#eef0f2")
        ax.text(0.5, 0.5, "no snapshot", transform=ax.transAxes, ha="center", va="center", fontsize=7,
                color=MUTED)
        return
    ax.imshow(image, aspect="auto", interpolation="bilinear")


def _load_thumbnail(path: str | None, evidence_root: Path | None) -> np.ndarray | None:
    """A small RGB array of the evidence JPEG, or None when there is none or it cannot be read."""
    if not path:
        return None
    file = Path(path)
    if not file.is_absolute() and evidence_root is not None and not file.exists():
        file = evidence_root / file
    try:
        with Image.open(file) as source:
            source.draft("RGB", THUMB_PX)  # JPEG: decode at reduced size, cheap for 4K snapshots
            img = source.convert("RGB")
        img.thumbnail(THUMB_PX)
        return np.asarray(img)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        log.info("evidence snapshot %s not shown: %s", path, exc)
        return None


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%} of clips analysed" if whole else "of clips analysed"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
