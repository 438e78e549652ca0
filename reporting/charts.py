"""Report charts drawn on plain matplotlib Figure objects (Agg/PDF canvases, never pyplot's global state).

Each public ``*_chart`` function returns a new Figure; ``draw_*`` functions draw the same chart onto a
given Axes so the PDF can put two charts on one page.  An empty data set draws a plain message inside
the axes instead of an empty grid.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import matplotlib.dates as mdates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from reporting.queries import ReportData

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a")
OUTCOME_STYLE = {
    "theft": ("Confirmed theft", "#c0392b"),
    "false_alarm": ("False alarm", "#7f8c8d"),
    "unreviewed": ("Not yet reviewed", "#e6a23c"),
}
STATE_COLOURS = {"online": "#2e9d5b", "offline": "#c0392b", "unknown": "#d5d8dc"}
TEXT = "#222222"
MUTED = "#666666"
CHART_SIZE = (9.0, 4.2)

EMPTY_SUSPICIOUS = "No suspicious activity in this period"
EMPTY_ALERTS = "No alerts raised in this period"
EMPTY_HEALTH = "No camera health events recorded in this period"
EMPTY_CAMERAS = "No camera data in this period"


def new_figure(size: tuple[float, float] = CHART_SIZE, layout: Literal["constrained"] | None = "constrained") -> Figure:
    """A figure with its own Agg canvas (safe in threads, not registered with pyplot)."""
    fig = Figure(figsize=size, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: Path, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG (parents created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi, facecolor="white")
    return path


def _style(ax: Axes, title: str) -> None:
    ax.set_title(title, loc="left", fontsize=12, fontweight="bold", color=TEXT, pad=10)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.spines["left"].set_color("#999999")
    ax.spines["bottom"].set_color("#999999")
    ax.tick_params(colors=TEXT, labelsize=8.5)
    ax.grid(axis="y", color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)


def _empty(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", fontsize=12, color=MUTED,
            bbox={"boxstyle": "round,pad=0.6", "facecolor": "#f4f6f7", "edgecolor": "#d5d8dc"})
    ax.set_yticks([])
    ax.grid(False)


def _tz_label(data: ReportData) -> str:
    return f"time zone {data.timezone}"


def _date_axis(ax: Axes, data: ReportData) -> None:
    tz = data.tz
    locator = mdates.AutoDateLocator(tz=tz, minticks=4, maxticks=9)
    ax.xaxis.set_major_locator(locator)
    span = data.end - data.start
    fmt = "%a %d %b\n%H:%M" if span <= timedelta(days=3) else "%a\n%d %b"
    ax.xaxis.set_major_formatter(mdates.DateFormatter(fmt, tz=tz))
    ax.set_xlim(mdates.date2num(data.start), mdates.date2num(data.end))


# -- suspicious activity over time ---------------------------------------------------------------------
def draw_suspicious_over_time(ax: Axes, data: ReportData) -> None:
    unit = "hour" if data.bin_unit == "hour" else "day"
    _style(ax, f"Suspicious clips per {unit}")
    ax.set_xlabel(f"Local time ({_tz_label(data)})", color=TEXT, fontsize=9)
    ax.set_ylabel("Suspicious clips (count)", color=TEXT, fontsize=9)
    _date_axis(ax, data)
    if not any(sum(v) for v in data.suspicious_series.values()):
        _empty(ax, EMPTY_SUSPICIOUS)
        return
    x = mdates.date2num(list(data.bin_starts))
    width = (1 / 24 if data.bin_unit == "hour" else 1.0) * 0.9
    bottom = [0] * len(x)
    for i, (cid, counts) in enumerate(data.suspicious_series.items()):
        ax.bar(x, counts, width=width, bottom=bottom, align="edge", color=PALETTE[i % len(PALETTE)],
               label=data.camera_names.get(cid, cid), linewidth=0)
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, max(bottom) * 1.15)
    if len(data.suspicious_series) > 1:
        ax.legend(title="Camera", fontsize=8, title_fontsize=8, frameon=False, loc="upper left",
                  bbox_to_anchor=(1.0, 1.0))


def suspicious_over_time_chart(data: ReportData) -> Figure:
    """Suspicious clips per hour (per day for long periods) across the period, stacked by camera."""
    fig = new_figure()
    draw_suspicious_over_time(fig.add_subplot(), data)
    return fig


def draw_hour_of_day(ax: Axes, data: ReportData) -> None:
    _style(ax, "Suspicious clips by hour of day (all days combined)")
    ax.set_xlabel(f"Hour of day ({_tz_label(data)})", color=TEXT, fontsize=9)
    ax.set_ylabel("Suspicious clips (count)", color=TEXT, fontsize=9)
    ax.set_xlim(-0.6, 23.6)
    ax.set_xticks(range(0, 24, 2), [f"{h:02d}:00" for h in range(0, 24, 2)])
    counts = data.suspicious_by_hour_of_day
    if not any(counts):
        _empty(ax, EMPTY_SUSPICIOUS)
        return
    ax.bar(range(24), counts, width=0.8, color=PALETTE[0], linewidth=0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, max(counts) * 1.15)


def hour_of_day_chart(data: ReportData) -> Figure:
    """Suspicious clips per local hour of day, summed over the period: when activity tends to happen."""
    fig = new_figure()
    draw_hour_of_day(fig.add_subplot(), data)
    return fig


# -- per camera ------------------------------------------------------------------------------------------
def draw_per_camera(ax_clips: Axes, ax_events: Axes, data: ReportData) -> None:
    _style(ax_clips, "Clips analysed per camera")
    _style(ax_events, "Suspicious clips and alerts per camera")
    ax_events.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    for ax in (ax_clips, ax_events):
        ax.grid(axis="y", visible=False)
        ax.grid(axis="x", color="#e5e5e5", linewidth=0.8)
    ax_clips.set_xlabel("Clips (count)", color=TEXT, fontsize=9)
    ax_events.set_xlabel("Count", color=TEXT, fontsize=9)
    cams = list(data.cameras)
    if not cams or not any(c.clips or c.alerts or c.offline_alerts for c in cams):
        _empty(ax_clips, EMPTY_CAMERAS)
        _empty(ax_events, EMPTY_SUSPICIOUS)
        ax_clips.set_xticks([])
        ax_events.set_xticks([])
        return
    labels = [_shorten(c.name, 22) for c in cams]
    y = list(range(len(cams)))
    rows = max(len(cams), 3)  # keep bars slim when there are only one or two cameras
    bars = ax_clips.barh(y, [c.clips for c in cams], color="#5d8aa8", height=0.55)
    ax_clips.bar_label(bars, fmt="{:,.0f}", padding=3, fontsize=8, color=TEXT)
    ax_clips.set_yticks(y, labels)
    ax_clips.set_ylim(rows - 0.5, -0.5)
    ax_clips.margins(x=0.12)
    ax_clips.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    h = 0.38
    b1 = ax_events.barh([i - h / 2 for i in y], [c.suspicious_clips for c in cams], height=h,
                        color=PALETTE[1], label="Suspicious clips")
    b2 = ax_events.barh([i + h / 2 for i in y], [c.alerts for c in cams], height=h,
                        color="#c0392b", label="Suspicious-activity alerts")
    ax_events.bar_label(b1, padding=3, fontsize=8, color=TEXT)
    ax_events.bar_label(b2, padding=3, fontsize=8, color=TEXT)
    ax_events.set_yticks(y, labels)
    ax_events.set_ylim(rows - 0.5, -0.5)
    ax_events.margins(x=0.12)
    ax_events.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if not any(c.suspicious_clips or c.alerts for c in cams):
        _empty(ax_events, EMPTY_SUSPICIOUS)


def per_camera_chart(data: ReportData) -> Figure:
    """Per camera: clips analysed (left), suspicious clips and alerts (right)."""
    fig = new_figure((9.0, max(4.5, 2.4 + 0.7 * len(data.cameras))))
    ax_clips, ax_events = fig.subplots(2, 1)
    draw_per_camera(ax_clips, ax_events, data)
    return fig


# -- alert outcomes --------------------------------------------------------------------------------------
def draw_alert_outcomes(ax: Axes, data: ReportData) -> None:
    _style(ax, "Outcome of suspicious-activity alerts")
    ax.grid(axis="y", visible=False)
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.8)
    ax.set_xlabel("Alerts (count)", color=TEXT, fontsize=9)
    outcomes = data.alert_outcomes
    total = sum(outcomes.values())
    keys = [*OUTCOME_STYLE, *[k for k in outcomes if k not in OUTCOME_STYLE]]
    labels = [OUTCOME_STYLE.get(k, (k.replace("_", " ").capitalize(), ""))[0] for k in keys]
    if total == 0:
        ax.set_yticks(range(len(keys)), labels)
        ax.invert_yaxis()
        ax.set_xticks([])
        _empty(ax, EMPTY_ALERTS)
        return
    values = [outcomes.get(k, 0) for k in keys]
    colours = [OUTCOME_STYLE.get(k, ("", "#34495e"))[1] for k in keys]
    bars = ax.barh(range(len(keys)), values, color=colours, height=0.6)
    ax.bar_label(bars, labels=[f"{v}  ({v / total:.0%})" for v in values], padding=4, fontsize=9, color=TEXT)
    ax.set_yticks(range(len(keys)), labels)
    ax.invert_yaxis()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.margins(x=0.2)


def alert_outcomes_chart(data: ReportData) -> Figure:
    """How staff judged the suspicious-activity alerts: confirmed theft, false alarm, not yet reviewed."""
    fig = new_figure((9.0, 3.0))
    draw_alert_outcomes(fig.add_subplot(), data)
    return fig


# -- camera uptime ---------------------------------------------------------------------------------------
def draw_uptime(ax: Axes, data: ReportData) -> None:
    _style(ax, "Camera status over the period")
    ax.grid(axis="y", visible=False)
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.8)
    ax.set_xlabel(f"Local time ({_tz_label(data)})", color=TEXT, fontsize=9)
    _date_axis(ax, data)
    if not data.has_health_data:
        _empty(ax, EMPTY_HEALTH)
        return
    cams = [c for c in data.cameras if any(s.camera_id == c.camera_id for s in data.health_segments)]
    for row, cam in enumerate(cams):
        spans: dict[str, list[tuple[float, float]]] = {"online": [], "offline": [], "unknown": []}
        for s in data.health_segments:
            if s.camera_id == cam.camera_id:
                x0 = mdates.date2num(s.start)
                spans[s.state].append((x0, mdates.date2num(s.end) - x0))
        for state, ranges in spans.items():
            if ranges:
                ax.broken_barh(ranges, (row - 0.3, 0.6), facecolors=STATE_COLOURS[state], linewidth=0)
    ax.set_yticks(range(len(cams)), [_shorten(c.name, 22) for c in cams])
    ax.set_ylim(max(len(cams), 3) - 0.5, -0.5)
    ax.legend(
        handles=[Patch(color=STATE_COLOURS[k], label=label) for k, label in
                 (("online", "Online"), ("offline", "Offline / error"), ("unknown", "No status known"))],
        fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0),
    )


def uptime_chart(data: ReportData) -> Figure:
    """A timeline per camera: online, offline/error, or unknown (no health event yet)."""
    fig = new_figure((9.0, max(2.6, 1.6 + 0.4 * len(data.cameras))))
    draw_uptime(fig.add_subplot(), data)
    return fig


ALL_CHARTS = {
    "suspicious-over-time": suspicious_over_time_chart,
    "suspicious-by-hour": hour_of_day_chart,
    "per-camera": per_camera_chart,
    "alert-outcomes": alert_outcomes_chart,
    "camera-status": uptime_chart,
}


def save_all_charts(data: ReportData, directory: Path, prefix: str) -> list[Path]:
    """Write every chart as ``<prefix>-<chart>.png`` in ``directory``."""
    return [save_png(make(data), directory / f"{prefix}-{name}.png") for name, make in ALL_CHARTS.items()]


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_duration(seconds: float) -> str:
    """Human duration: '0 min', '45 min', '3 h 05 min', '2 d 4 h'."""
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def format_local(at: datetime, with_zone: bool = True) -> str:
    text = at.strftime("%a %d %b %Y %H:%M")
    return f"{text} {at.tzname()}" if with_zone else text
