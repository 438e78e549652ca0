"""A store's PDF report: cover with headline numbers, chart pages, and a paginated alerts table.

Drawn with matplotlib alone (PdfPages + Figure objects), so reporting adds no PDF dependency.
"""

from __future__ import annotations

import logging
import textwrap
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.patches import FancyBboxPatch, Rectangle
from matplotlib.textpath import text_to_path
from PIL import Image

from common.db import Database
from common.schemas import OUT_OF_DISTRIBUTION_NOTE, AlertKind, Verdict
from common.settings import StoreSettings
from reporting import charts
from reporting.charts import (
    DOWN,
    MUTED,
    OTHER_OUTCOME_COLOUR,
    OUTCOME_COLOURS,
    TEXT,
    UP,
    format_duration,
    format_local,
    format_period_length,
    format_uptime,
    format_wait,
)
from reporting.compare import Headline, headlines, previous_words
from reporting.queries import (
    OUTCOMES,
    UNREVIEWED,
    AlertRow,
    CameraStats,
    ReportData,
    load_report_data,
    outcome_label,
)

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
    "staff (for example by reviewing the footage) before any action is taken. The verdicts ("
    + ", ".join(f"'{v.label}'" for v in Verdict)
    + ") are recorded by staff at the security desk; alerts without a verdict are shown as "
    f"'{outcome_label(UNREVIEWED).lower()}'."
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
    cover_cameras = cover_camera_rows(data)
    more_cameras = data.cameras[cover_cameras:]
    camera_pages = -(-len(more_cameras) // CAMERA_ROWS_PER_PAGE)
    total_pages = FIXED_PAGES + camera_pages + table_pages
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
        pdf.savefig(_cover_page(data, generated_at, total_pages, cover_cameras, FIXED_PAGES + 1))
        pdf.savefig(_activity_page(data, total_pages))
        pdf.savefig(_outcomes_page(data, total_pages))
        pdf.savefig(_cameras_page(data, total_pages))
        for page in range(camera_pages):
            cams = more_cameras[page * CAMERA_ROWS_PER_PAGE : (page + 1) * CAMERA_ROWS_PER_PAGE]
            pdf.savefig(_camera_table_page(data, cams, FIXED_PAGES + 1 + page, total_pages))
        for page in range(table_pages):
            chunk = listed[page * rows_per_page : (page + 1) * rows_per_page]
            pdf.savefig(_alerts_page(data, chunk, page, table_pages, total_pages, evidence_root,
                                     first_page=FIXED_PAGES + camera_pages + 1))
    tmp.replace(out_path)
    return out_path


FIXED_PAGES = 4
"""Cover, suspicious activity, alert outcomes and their times, cameras; then camera rows that did not fit on
the cover, then the alerts table."""


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
def _cover_page(data: ReportData, generated_at: datetime, total: int, camera_rows: int,
                continued_on: int) -> Figure:
    fig = _page()
    x0 = _x(fig, MARGIN)
    fig.add_artist(Rectangle((0, _y(fig, 2.2)), 1, _y(fig, 0) - _y(fig, 2.2), transform=fig.transFigure,
                             color=ACCENT, linewidth=0))
    fig.text(x0, _y(fig, 0.5), "AisleWatch  |  store activity report", fontsize=11, color="#d6e4f0", va="top")
    fig.text(x0, _y(fig, 0.88), _shorten(data.store_name, 38), fontsize=26, fontweight="bold", color="white",
             va="top")
    fig.text(x0, _y(fig, 1.5), f"Store id {data.store_id}", fontsize=10, color="#d6e4f0", va="top")
    fig.text(x0, _y(fig, 1.78), f"Times in {data.timezone}", fontsize=10, color="#d6e4f0", va="top")

    fig.text(x0, _y(fig, 2.5), "Period", fontsize=9, color=MUTED, va="top")
    fig.text(x0, _y(fig, 2.7), _period_text(data), fontsize=11, color=TEXT, va="top")
    generated = generated_at.astimezone(data.tz)
    fig.text(x0, _y(fig, 3.05), "Generated", fontsize=9, color=MUTED, va="top")
    fig.text(x0, _y(fig, 3.25), format_local(generated), fontsize=11, color=TEXT, va="top")
    if data.previous is not None:
        x1 = _x(fig, 3.6)
        fig.text(x1, _y(fig, 3.05), f"{UP}{DOWN} compared with the previous {previous_words(data)}", fontsize=9,
                 color=MUTED, va="top")
        before = data.previous
        fig.text(x1, _y(fig, 3.25), f"{format_local(before.start, False)}  to  {format_local(before.end, False)}",
                 fontsize=10, color=TEXT, va="top")

    figures = headlines(data)
    period = previous_words(data)
    suspicious_alerts = len(data.suspicious_alerts)
    offline_alerts = data.alerts_raised - suspicious_alerts
    width = A4[0] - 2 * MARGIN
    top = TILES_TOP

    def tile(key: str, sub: str, colour: str | None = None) -> Tile:
        figure = figures[key]
        return Tile(figure.label, figure.text(), sub, colour, figure.change(period), _short_change(figure))

    _tile_row(fig, top, width, TILE_H, [
        tile("clips", "short video clips classified"),
        tile("suspicious_clips", _share(data.suspicious_clips, data.clips)),
        tile("alerts", f"{suspicious_alerts} suspicious, {offline_alerts} camera offline"),
    ])
    top += TILE_H + TILE_GAP
    outcomes = data.alert_outcomes
    _tile_row(fig, top, width, VERDICT_TILE_H, [
        tile(key, f"{outcomes[key] / suspicious_alerts:.0%} of {suspicious_alerts} alerts" if suspicious_alerts
             else "no suspicious alerts", OUTCOME_COLOURS.get(key, OTHER_OUTCOME_COLOUR))
        for key in OUTCOMES
    ])
    top += VERDICT_TILE_H + TILE_GAP
    rate = data.false_alarm_rate
    p90 = data.ack_p90_s
    _tile_row(fig, top, width, TILE_H, [
        tile("false_alarm_rate", "no alert reviewed yet" if rate is None else
             f"{data.false_alarms} of {data.reviewed} reviewed alerts"),
        tile("ack_median_s", "no alert acknowledged yet" if p90 is None else f"median; p90 {format_wait(p90)}"),
        tile("uptime", "all cameras (see below)" if data.uptime is not None else "no camera status recorded"),
        tile("offline_s", "offline or error" if data.has_health_data else "no camera status recorded"),
    ])

    note_top = top + TILE_H + 0.22
    note_lines = textwrap.wrap(VERIFY_NOTE, 112)
    if data.out_of_distribution:
        flagged = ", ".join(data.camera_names.get(c, c) for c in data.out_of_distribution)
        note_lines += textwrap.wrap(f"Out of distribution: {flagged}: {OUT_OF_DISTRIBUTION_NOTE}; alerts from "
                                    "these cameras come from a model not validated on them.", 112)
    note_h = 0.42 + 0.17 * len(note_lines)
    fig.add_artist(Rectangle((_x(fig, MARGIN), _y(fig, note_top + note_h)), 1 - 2 * _x(fig, MARGIN),
                             _y(fig, 0) - _y(fig, note_h), transform=fig.transFigure, facecolor="#fef5e7",
                             edgecolor="#e6a23c", linewidth=0.8))
    fig.text(_x(fig, MARGIN + 0.15), _y(fig, note_top + 0.1), "Please note", fontsize=9.5, fontweight="bold",
             color="#8a5a00", va="top")
    fig.text(_x(fig, MARGIN + 0.15), _y(fig, note_top + 0.34), "\n".join(note_lines), fontsize=8, color=TEXT,
             va="top", linespacing=1.3)

    _camera_table(fig, data, data.cameras[:camera_rows], CAMERAS_TOP, "Cameras")
    if camera_rows < len(data.cameras):
        fig.text(_x(fig, MARGIN), _y(fig, CAMERAS_TOP + 0.4 + CAMERA_ROW_H * (camera_rows + 1) + 0.05),
                 f"... and {len(data.cameras) - camera_rows} more cameras on page {continued_on}.", fontsize=8.5,
                 color=MUTED, va="top")
    _footer(fig, data, 1, total)
    return fig


def _short_change(figure: Headline) -> str:
    """The change without 'vs previous ...' (the cover names the period once), for a narrow tile."""
    change = figure.change("period")
    return change.removesuffix(" vs previous period").replace("no change", "=") if figure.compared else ""


TILES_TOP = 3.7
TILE_H = 1.08
VERDICT_TILE_H = 1.0
TILE_GAP = 0.14
TILE_PAD = 0.13
CAMERAS_TOP = 8.85
CAMERA_ROW_H = 0.22
CAMERA_ROWS_PER_PAGE = 40
UPTIME_NOTE = ("Uptime: the share of the time a camera's status was known and live that it was online; time "
               "before its first status report and after a video file ended counts as neither.")


@dataclass(frozen=True)
class Tile:
    """One headline figure on the cover; ``colour`` draws a stripe that matches the outcome chart."""

    label: str
    value: str
    sub: str
    colour: str | None = None
    change: str = ""
    """Against the previous period ('▲1 vs previous 7 days'), shown under the sub line."""
    short_change: str = ""
    """The same without the period's name, used where ``change`` does not fit the tile."""


def _tile_row(fig: Figure, top: float, width: float, height: float, tiles: list[Tile]) -> None:
    """Tiles side by side across ``width`` inches; every text is fitted to its tile (shrunk or shortened)."""
    gap = 0.15 if len(tiles) > 3 else 0.235
    tile_w = (width - gap * (len(tiles) - 1)) / len(tiles)
    inner = tile_w - 2 * TILE_PAD
    big = 20 if len(tiles) <= 3 else 17
    for i, tile in enumerate(tiles):
        left = MARGIN + i * (tile_w + gap)
        fig.add_artist(FancyBboxPatch((_x(fig, left), _y(fig, top + height)), _x(fig, tile_w),
                                      _y(fig, 0) - _y(fig, height), boxstyle="round,pad=0,rounding_size=0.01",
                                      transform=fig.transFigure, facecolor="#f4f6f7", edgecolor="#d5d8dc"))
        if tile.colour is not None:
            fig.add_artist(Rectangle((_x(fig, left), _y(fig, top + height)), _x(fig, 0.05),
                                     _y(fig, 0) - _y(fig, height), transform=fig.transFigure,
                                     color=tile.colour, linewidth=0))
        fig.text(_x(fig, left + TILE_PAD), _y(fig, top + 0.12), fit_line(tile.label, inner, 8.5), fontsize=8.5,
                 color=MUTED, va="top")
        size = fit_fontsize(tile.value, inner, big, weight="bold")
        fig.text(_x(fig, left + TILE_PAD), _y(fig, top + 0.33), tile.value, fontsize=size, fontweight="bold",
                 color=TEXT, va="top")
        sub_top = top + height - (0.37 if tile.change else 0.2)
        fig.text(_x(fig, left + TILE_PAD), _y(fig, sub_top), fit_line(tile.sub, inner, 7.5),
                 fontsize=7.5, color=MUTED, va="top")
        if tile.change:
            change = tile.change if text_width(tile.change, 7.5, "bold") <= inner else tile.short_change
            fig.text(_x(fig, left + TILE_PAD), _y(fig, top + height - 0.2), fit_line(change, inner, 7.5),
                     fontsize=7.5, color=ACCENT, fontweight="bold", va="top")


def cover_camera_rows(data: ReportData) -> int:
    """How many camera rows the cover holds; the rest continue on their own pages."""
    room = int((A4[1] - 0.8 - CAMERAS_TOP - 0.4 - 0.55) // CAMERA_ROW_H) - 1  # header, uptime note
    return len(data.cameras) if len(data.cameras) <= room else room - 1  # keep a line for '... and N more'


CAMERA_COLUMNS = ((MARGIN, "Camera", "left"), (3.55, "Clips", "right"), (4.5, "Suspicious", "right"),
                  (5.25, "Alerts", "right"), (6.5, "Offline time", "right"), (7.67, "Uptime", "right"))


def _camera_table(fig: Figure, data: ReportData, cams: Sequence[CameraStats], top: float, title: str) -> None:
    """Per camera: clips, suspicious clips, alerts, offline time and uptime, with a note saying what uptime is."""
    fig.text(_x(fig, MARGIN), _y(fig, top), title, fontsize=12, fontweight="bold", color=ACCENT, va="top")
    y = top + 0.4
    for x, header, align in CAMERA_COLUMNS:
        fig.text(_x(fig, x), _y(fig, y), header, fontsize=8.5, color=MUTED, ha=align, va="top",
                 fontweight="bold")
    if not cams:
        fig.text(_x(fig, MARGIN), _y(fig, y + 0.3), "No cameras configured or seen in this period.", fontsize=9,
                 color=MUTED, va="top")
        return
    for cam in cams:
        y += CAMERA_ROW_H
        uptime = "n/a" if cam.uptime is None else format_uptime(cam.uptime)
        values = [fit_line(cam.name, 2.2, 8.5), f"{cam.clips:,}", f"{cam.suspicious_clips:,}",
                  f"{cam.alerts + cam.offline_alerts:,}", format_duration(cam.offline_s), uptime]
        for (x, _, align), value in zip(CAMERA_COLUMNS, values, strict=True):
            fig.text(_x(fig, x), _y(fig, y), value, fontsize=8.5, color=TEXT, ha=align, va="top",
                     parse_math=False)
    fig.text(_x(fig, MARGIN), _y(fig, A4[1] - 0.85), "\n".join(textwrap.wrap(UPTIME_NOTE, 120)), fontsize=7,
             color=MUTED, va="bottom", linespacing=1.3)


def _camera_table_page(data: ReportData, cams: Sequence[CameraStats], page: int, total: int) -> Figure:
    fig = _page()
    _header(fig, data, "Cameras (continued)")
    _footer(fig, data, page, total)
    _camera_table(fig, data, cams, 1.15, "Uptime and activity per camera")
    return fig


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
    grid = fig.add_gridspec(2, 1, height_ratios=[1.2, 1])
    charts.draw_suspicious_over_time(fig.add_subplot(grid[0]), data)
    charts.draw_hour_of_day(fig.add_subplot(grid[1]), data)
    return fig


def _outcomes_page(data: ReportData, total: int) -> Figure:
    fig = _chart_page(data, "Alert outcomes", 3, total)
    grid = fig.add_gridspec(2, 1, height_ratios=[1, 0.9])
    charts.draw_alert_outcomes(fig.add_subplot(grid[0]), data)
    charts.draw_alert_heatmap(fig.add_subplot(grid[1]), data)
    return fig


def _cameras_page(data: ReportData, total: int) -> Figure:
    fig = _chart_page(data, "Cameras", 4, total)
    grid = fig.add_gridspec(3, 1)
    charts.draw_per_camera(fig.add_subplot(grid[0]), fig.add_subplot(grid[1]), data)
    charts.draw_uptime(fig.add_subplot(grid[2]), data)
    return fig


# -- alerts table ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    x: float
    """Left edge, inches from the page's left."""
    header: str
    width: float
    """Inches the cell's text may use; the next column starts after a small gap."""


COLUMNS = (
    Column(MARGIN, "Evidence", 1.15),
    Column(1.88, "Time", 1.0),
    Column(3.0, "Camera", 0.98),
    Column(4.08, "Kind", 0.76),
    Column(5.02, "Verdict", 1.13),  # a colour bar in the gap before it matches the outcome chart
    Column(6.25, "Note", A4[0] - MARGIN - 6.25),  # ends at the right margin
)
TABLE_FONT = 8.5
NOTE_FONT = 8.0
NOTE_LINES = 5


def _alerts_page(
    data: ReportData,
    rows: tuple[AlertRow, ...],
    index: int,
    pages: int,
    total: int,
    evidence_root: Path | None,
    first_page: int = FIXED_PAGES + 1,
) -> Figure:
    fig = _page()
    title = "Alerts" if pages == 1 else f"Alerts ({index + 1} of {pages})"
    _header(fig, data, title)
    _footer(fig, data, first_page + index, total)
    if index == 0:
        intro = f"{data.alerts_raised} alert(s) in the period, oldest first; times in {data.timezone}."
        if data.alerts_raised > MAX_TABLE_ALERTS:
            intro += f" Only the first {MAX_TABLE_ALERTS} are listed."
        fig.text(_x(fig, MARGIN), _y(fig, 1.08), intro, fontsize=8.5, color=MUTED, va="top")
    if not rows:
        fig.text(0.5, _y(fig, 3.0), charts.EMPTY_ALERTS, fontsize=12, color=MUTED, ha="center", va="center")
        return fig
    for column in COLUMNS:
        fig.text(_x(fig, column.x), _y(fig, TABLE_TOP - 0.14), column.header, fontsize=8.5, fontweight="bold",
                 color=MUTED, va="bottom")
    for i, row in enumerate(rows):
        top = TABLE_TOP + i * TABLE_ROW_H
        if i % 2 == 0:
            fig.add_artist(Rectangle((_x(fig, MARGIN - 0.1), _y(fig, top + TABLE_ROW_H)),
                                     1 - 2 * _x(fig, MARGIN - 0.1), _y(fig, 0) - _y(fig, TABLE_ROW_H),
                                     transform=fig.transFigure, facecolor="#f7f9fa", linewidth=0, zorder=-1))
        _thumbnail(fig, row, top + 0.06, evidence_root)
        at = row.raised_at
        time_col, camera_col, kind_col, verdict_col, note_col = COLUMNS[1:]
        kind = fit_lines(AlertKind.label_of(row.kind), kind_col.width, TABLE_FONT, 2)
        if row.probability is not None:
            kind += f"\np = {row.probability:.2f}"
        cells = [
            (time_col, f"{at:%a %d %b %Y}\n{at:%H:%M:%S %Z}", TABLE_FONT),
            (camera_col, fit_lines(row.camera_name or row.camera_id, camera_col.width, TABLE_FONT, 3), TABLE_FONT),
            (kind_col, kind, TABLE_FONT),
            (verdict_col, _verdict_text(row, verdict_col.width), TABLE_FONT),
            (note_col, fit_lines(row.note or "", note_col.width, NOTE_FONT, NOTE_LINES), NOTE_FONT),
        ]
        for column, text, size in cells:
            # parse_math off: a '$' in a camera name or a note is a dollar sign, not mathtext
            fig.text(_x(fig, column.x), _y(fig, top + 0.14), text, fontsize=size, color=TEXT, va="top",
                     linespacing=1.3, parse_math=False)
        colour = OUTCOME_COLOURS.get(row.outcome, OTHER_OUTCOME_COLOUR) if row.is_suspicious else MUTED
        fig.add_artist(Rectangle((_x(fig, verdict_col.x - 0.12), _y(fig, top + 0.42)), _x(fig, 0.06),
                                 _y(fig, 0) - _y(fig, 0.28), transform=fig.transFigure, color=colour,
                                 linewidth=0))
    return fig


def _verdict_text(row: AlertRow, width: float) -> str:
    """Verdict label, status, who acknowledged it and how long after it was raised; '-' for a camera-offline
    alert nobody judged (it is never a theft or a false alarm)."""
    verdict = "-" if not row.is_suspicious and row.verdict is None else outcome_label(row.outcome)
    lines = [fit_line(verdict, width, TABLE_FONT), fit_line(row.status.replace("_", " ").capitalize(), width,
                                                            TABLE_FONT)]
    if row.acknowledged_by:
        lines.append(fit_line(f"by {row.acknowledged_by}", width, TABLE_FONT))
    if (wait := row.time_to_acknowledge_s) is not None:
        lines.append(fit_line(f"after {format_wait(wait)}", width, TABLE_FONT))
    return "\n".join(lines)


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


# -- fitting text into a width -----------------------------------------------------------------------
ELLIPSIS = "…"


def text_width(text: str, fontsize: float, weight: str = "normal") -> float:
    """Width in inches of one line of ``text`` in the report font (the same metrics the PDF uses)."""
    prop = FontProperties(size=fontsize, weight=weight)
    width, _, _ = text_to_path.get_text_width_height_descent(text, prop, ismath=False)
    return float(width) / 72


def fit_fontsize(text: str, width: float, largest: float, *, weight: str = "normal", smallest: float = 9) -> float:
    """The largest size, in half points from ``largest`` down to ``smallest``, at which ``text`` fits."""
    size = largest
    while size > smallest and text_width(text, size, weight) > width:
        size -= 0.5
    return size


def fit_line(text: str, width: float, fontsize: float) -> str:
    """``text`` on one line, cut with an ellipsis where it would be wider than ``width`` inches."""
    text = " ".join(text.split())
    return text if text_width(text, fontsize) <= width else _cut(text, width, fontsize)


def _cut(text: str, width: float, fontsize: float) -> str:
    """``text`` shortened as little as needed to be followed by an ellipsis within ``width``."""
    while text and text_width(text.rstrip() + ELLIPSIS, fontsize) > width:
        text = text[:-1]
    return text.rstrip() + ELLIPSIS


def fit_lines(text: str, width: float, fontsize: float, max_lines: int) -> str:
    """``text`` wrapped at spaces into at most ``max_lines`` lines, each no wider than ``width`` inches.

    A word wider than the column is broken where it reaches the edge; text that does not fit in
    ``max_lines`` ends with an ellipsis.  Line breaks in the text count as spaces."""
    lines: list[str] = []
    words = text.split()
    current = ""
    while words:
        word = words[0]
        candidate = f"{current} {word}" if current else word
        if text_width(candidate, fontsize) <= width:
            current = candidate
            words.pop(0)
            continue
        if current:  # the word starts the next line
            lines.append(current)
            current = ""
        else:  # a word wider than the column on its own: break it
            cut = min(len(word) - 1, 120)  # more than any column holds: keeps a pasted blob cheap
            while cut > 1 and text_width(word[:cut], fontsize) > width:
                cut -= 1
            lines.append(word[:cut])
            words[0] = word[cut:]
        if len(lines) == max_lines:
            break
    if current and len(lines) < max_lines:
        lines.append(current)
        current = ""
    if words or current:  # cut short: end the last line with an ellipsis
        lines[-1] = _cut(lines[-1], width, fontsize)
    return "\n".join(lines)


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%} of clips analysed" if whole else "of clips analysed"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
