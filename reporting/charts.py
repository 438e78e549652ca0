"""Report charts drawn on plain matplotlib Figure objects (Agg/PDF canvases, never pyplot's global state).

Each public ``*_chart`` function returns a new Figure; ``draw_*`` functions draw the same chart onto a
given Axes so the PDF can put two charts on one page.  An empty data set draws a plain message inside
the axes instead of an empty grid.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import matplotlib.dates as mdates
import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import Patch
from matplotlib.textpath import text_to_path
from matplotlib.ticker import Formatter, FuncFormatter, Locator, MaxNLocator

from common.schemas import Verdict
from reporting.queries import OUTCOMES, UNREVIEWED, CameraStats, ReportData, local_days, outcome_label

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a")
OUTCOME_COLOURS: dict[str, str] = {  # labels come from queries.outcome_label (the Verdict labels)
    Verdict.THEFT_CONFIRMED: "#c0392b",
    Verdict.THEFT_PREVENTED: "#d98880",  # a lighter red: a real attempt, nothing lost
    Verdict.FALSE_ALARM: "#7f8c8d",
    Verdict.UNSURE: "#5d8aa8",
    UNREVIEWED: "#e6a23c",
}
OTHER_OUTCOME_COLOUR = "#34495e"
STATE_COLOURS = {"online": "#2e9d5b", "offline": "#c0392b", "ended": "#ffffff", "unknown": "#d5d8dc"}
STATE_LABELS = {"online": "Online", "offline": "Offline / error", "ended": "Source ended (not an outage)",
                "unknown": "No status known"}
TEXT = "#222222"
MUTED = "#666666"
CHART_SIZE = (9.0, 4.2)

UP, DOWN = "▲", "▼"
"""Marks of a rise and a fall against the previous period (DejaVu Sans, matplotlib's font, has both)."""

EMPTY_SUSPICIOUS = "No suspicious activity in this period"
EMPTY_ALERTS = "No alerts raised in this period"
EMPTY_HEALTH = "No camera health events recorded in this period"
EMPTY_CAMERAS = "No camera data in this period"
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


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


# Most ticks a label style can have without overlap on the narrowest time axis we draw (~4.5 in): used when
# no axis is at hand to measure (the fitted locators below measure the real one).
_HHMM_TICKS, _DAY_HOUR_TICKS, _DATE_TICKS = 9, 7, 8
TICK_GAP_PT = 6.0
"""Least white space between two tick labels, in points."""
_DEFAULT_FITS = {"%H:%M": _HHMM_TICKS, "%a %d %b\n%H:%M": _DAY_HOUR_TICKS}


def text_width_pt(text: str, size: float) -> float:
    """Width in points of ``text`` (its widest line) at font ``size``, from the font's metrics (no drawing)."""
    font = FontProperties(size=size)
    return max(text_to_path.get_text_width_height_descent(line, font, ismath=False)[0]
               for line in text.split("\n"))


def _axis_width_pt(axis: Any) -> float:
    ax = axis.axes
    box = ax.get_window_extent()
    return float(box.width if axis is ax.xaxis else box.height) * 72.0 / ax.figure.dpi


def _tick_size(axis: Any) -> float:
    ticks = axis.get_major_ticks(1)
    return float(ticks[0].label1.get_fontsize()) if ticks else 8.5


def time_axis_style(
    start: datetime, end: datetime, tz: ZoneInfo, fits: Callable[[str], int] | None = None
) -> tuple[mdates.DateLocator, str]:
    """Tick locator and strftime format for a local time axis over [start, end), chosen by its length.

    Up to a day: HH:MM; up to three days: weekday, date and hour; longer: dates (weekday for a week or so).
    The step is the smallest whose most possible ticks (span // step + 1) keep the labels from overlapping:
    ``fits(fmt)`` says how many labels of that format fit side by side on the axis (default: the narrowest
    axis the PDF draws).
    """
    def most(fmt: str) -> int:
        return max(1, fits(fmt)) if fits is not None else _DEFAULT_FITS.get(fmt, _DATE_TICKS)

    hours = (end.astimezone(UTC) - start.astimezone(UTC)).total_seconds() / 3600
    if hours <= 25:  # a local day is 25 h when the clocks go back
        for minutes in (5, 10, 15, 20, 30):
            if hours * 60 // minutes + 1 <= most("%H:%M"):
                return mdates.MinuteLocator(byminute=range(0, 60, minutes), tz=tz), "%H:%M"
        step = next((h for h in (1, 2, 3, 4, 6, 12) if hours // h + 1 <= most("%H:%M")), 24)
        return mdates.HourLocator(byhour=range(0, 24, step), tz=tz), "%H:%M"
    for step in (6, 12):
        if hours // step + 1 <= most("%a %d %b\n%H:%M"):
            return mdates.HourLocator(byhour=range(0, 24, step), tz=tz), "%a %d %b\n%H:%M"
    days = hours / 24
    for step in (1, 2, 3, 7, 14):
        fmt = "%a\n%d %b" if step == 1 else "%d %b"
        if days // step + 1 <= most(fmt):
            if step == 7:
                return mdates.WeekdayLocator(byweekday=mdates.MO, tz=tz), fmt
            return mdates.DayLocator(interval=step, tz=tz), fmt
    months = 12
    for interval in (1, 2, 3, 4, 6, 12):  # months that divide the year, so the ticks fall on the same months
        ticks = mdates.MonthLocator(interval=interval, tz=tz).tick_values(start, end)
        if len(ticks) <= most("%b %Y"):
            months = interval
            break
    return mdates.MonthLocator(interval=months, tz=tz), "%b %Y"


_SAMPLE_TIMES = [datetime(2026, 9, d, 23, 58, tzinfo=UTC) for d in range(21, 28)]  # a week of wide labels (Wed, Sep…)


class FittedTimeLocator(Locator):
    """The ticks of :func:`time_axis_style`, their density chosen from the axis's width when drawn: as many
    labels as stand side by side without touching, at any period length and any chart size."""

    def __init__(self, start: datetime, end: datetime, tz: ZoneInfo) -> None:
        self.start, self.end, self.tz = start, end, tz
        self.fmt = time_axis_style(start, end, tz)[1]

    def fits(self, fmt: str) -> int:
        size = _tick_size(self.axis)
        widest = max(text_width_pt(t.strftime(fmt), size) for t in _SAMPLE_TIMES)
        return int(_axis_width_pt(self.axis) // (widest + TICK_GAP_PT))

    def __call__(self) -> Any:
        locator, self.fmt = time_axis_style(self.start, self.end, self.tz, self.fits)
        locator.set_axis(self.axis)
        return locator()


class _FittedTimeFormatter(Formatter):
    """Labels in the format the :class:`FittedTimeLocator` chose for its ticks."""

    def __init__(self, locator: FittedTimeLocator) -> None:
        self.locator = locator

    def __call__(self, x: float, pos: int | None = None) -> str:
        return mdates.num2date(x, tz=self.locator.tz).strftime(self.locator.fmt)


class HourOfDayLocator(Locator):
    """Hours 0..23 at the smallest step (1, 2, 3, 4, 6, 12 h) whose labels fit the axis's drawn width."""

    STEPS = (1, 2, 3, 4, 6, 12, 24)  # 24: the first hour alone, on an axis too narrow for two labels

    def __init__(self, label: Callable[[int], str]) -> None:
        self.label = label

    def step(self) -> int:
        if self.axis is None:  # not on an axis yet: the density of a full-page chart
            return 2
        lo, hi = sorted(self.axis.get_view_interval())
        per_hour = _axis_width_pt(self.axis) / max(hi - lo, 1e-9)
        need = max(text_width_pt(self.label(h), _tick_size(self.axis)) for h in range(24)) + TICK_GAP_PT
        return next((s for s in self.STEPS if s * per_hour >= need), self.STEPS[-1])

    def __call__(self) -> Any:
        return list(range(0, 24, self.step()))


def _hour_axis(ax: Axes, label: Callable[[int], str]) -> None:
    ax.xaxis.set_major_locator(HourOfDayLocator(label))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: label(round(x) % 24)))


def _date_axis(ax: Axes, data: ReportData) -> None:
    locator = FittedTimeLocator(data.start, data.end, data.tz)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(_FittedTimeFormatter(locator))
    ax.set_xlim(mdates.date2num(data.start), mdates.date2num(data.end))
    last = data.end - timedelta(microseconds=1)
    if data.end - data.start > timedelta(days=1):
        where = ""
    elif last.date() == data.start.date():
        where = f" on {data.start:%a %d %b %Y}"
    else:
        where = f" from {data.start:%a %d %b} to {last:%a %d %b %Y}"
    ax.set_xlabel(f"Local time{where} ({_tz_label(data)})", color=TEXT, fontsize=9)


# -- suspicious activity over time ---------------------------------------------------------------------
def draw_suspicious_over_time(ax: Axes, data: ReportData) -> None:
    unit = "hour" if data.bin_unit == "hour" else "day"
    _style(ax, f"Suspicious clips per {unit}")
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
    _hour_axis(ax, lambda h: f"{h:02d}:00")
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
    keys = [*OUTCOMES, *[k for k in outcomes if k not in OUTCOMES]]
    labels = [outcome_label(k) for k in keys]
    if total == 0:
        ax.set_yticks(range(len(keys)), labels)
        ax.invert_yaxis()
        ax.set_xticks([])
        _empty(ax, EMPTY_ALERTS)
        return
    values = [outcomes.get(k, 0) for k in keys]
    colours = [OUTCOME_COLOURS.get(k, OTHER_OUTCOME_COLOUR) for k in keys]
    bars = ax.barh(range(len(keys)), values, color=colours, height=0.6)
    texts = [f"{v}  ({v / total:.0%})" for v in values]
    if data.previous is not None:
        before = data.previous.alert_outcomes
        texts = [f"{text}   {count_change(v, before.get(k, 0))}" for text, v, k in zip(texts, values, keys,
                                                                                     strict=True)]
        ax.set_xlabel(f"Alerts (count); {UP}{DOWN} change against the previous period of the same length",
                      color=TEXT, fontsize=9)
    ax.bar_label(bars, labels=texts, padding=4, fontsize=9, color=TEXT)
    ax.set_yticks(range(len(keys)), labels)
    ax.invert_yaxis()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.margins(x=0.2)


def count_change(now: int, before: int) -> str:
    """'▲2', '▼1' or '=' : a count against the previous period's."""
    return "=" if now == before else f"{UP if now > before else DOWN}{abs(now - before)}"


def alert_outcomes_chart(data: ReportData) -> Figure:
    """How staff judged the suspicious-activity alerts: each verdict, and those not yet reviewed."""
    fig = new_figure((9.0, 3.4))
    draw_alert_outcomes(fig.add_subplot(), data)
    return fig


# -- alerts by weekday and hour ------------------------------------------------------------------------
def draw_alert_heatmap(ax: Axes, data: ReportData) -> None:
    """Suspicious-activity alerts per local weekday and hour; weekdays the period never had are greyed."""
    _style(ax, "Suspicious-activity alerts by weekday and hour of day")
    ax.grid(False)
    ax.set_xlabel(f"Hour of day ({_tz_label(data)})", color=TEXT, fontsize=9)
    grid = np.array(data.alerts_by_weekday_hour, dtype=float)
    days_in_period = [0] * 7
    for day in local_days(data.start, data.end, data.tz):
        days_in_period[day.weekday()] += 1
    _hour_axis(ax, lambda h: f"{h:02d}")
    ax.set_yticks(range(7), [_weekday_label(name, n) for name, n in zip(WEEKDAYS, days_in_period, strict=True)])
    ax.tick_params(axis="both", length=0)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    top = int(grid.max())
    shown = np.ma.masked_where(np.array(days_in_period)[:, None].repeat(24, axis=1) == 0, grid)
    cmap = colormaps["Reds"].with_extremes(bad="#eef0f2")
    image = ax.imshow(shown, cmap=cmap, vmin=0, vmax=max(top, 1), aspect="auto", interpolation="nearest")
    ax.set_xticks(np.arange(-0.5, 24, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, 7, 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.2)
    ax.tick_params(which="minor", length=0)
    if top == 0:
        _empty(ax, EMPTY_ALERTS)
        ax.set_yticks(range(7), [f"{name}" for name in WEEKDAYS])
        return
    for (row, col), n in np.ndenumerate(grid):
        if n:
            ax.text(col, row, f"{int(n)}", ha="center", va="center", fontsize=7,
                    color="white" if n > top * 0.6 else TEXT)
    bar = ax.figure.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    bar.set_label("Alerts (count)", fontsize=8.5, color=TEXT)
    bar.ax.tick_params(labelsize=8, colors=TEXT)
    bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    bar.outline.set_visible(False)


def _weekday_label(name: str, days: int) -> str:
    """'Mon', or 'Mon (2 days)' when the period holds that weekday more than once; 'Mon (not in period)'."""
    if days == 1:
        return name
    return f"{name} (not in period)" if days == 0 else f"{name} ({days} days)"


def alert_heatmap_chart(data: ReportData) -> Figure:
    """When in the week alerts happen: a weekday x hour grid (store local time) of suspicious-activity alerts."""
    fig = new_figure((9.0, 3.6))
    draw_alert_heatmap(fig.add_subplot(), data)
    return fig


# -- camera uptime ---------------------------------------------------------------------------------------
def draw_uptime(ax: Axes, data: ReportData) -> None:
    _style(ax, "Camera status over the period")
    ax.grid(axis="y", visible=False)
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.8)
    _date_axis(ax, data)
    if not data.has_health_data:
        _empty(ax, EMPTY_HEALTH)
        return
    cams = [c for c in data.cameras if any(s.camera_id == c.camera_id for s in data.health_segments)]
    for row, cam in enumerate(cams):
        spans: dict[str, list[tuple[float, float]]] = {state: [] for state in STATE_COLOURS}
        for s in data.health_segments:
            if s.camera_id == cam.camera_id:
                x0 = mdates.date2num(s.start)
                spans[s.state].append((x0, mdates.date2num(s.end) - x0))
        for state, ranges in spans.items():
            if ranges:
                ax.broken_barh(ranges, (row - 0.3, 0.6), **_state_style(state))
    ax.set_yticks(range(len(cams)), [_uptime_label(c) for c in cams])
    ax.set_ylim(max(len(cams), 3) - 0.5, -0.5)
    shown = {s.state for s in data.health_segments} | {"online", "offline"}
    ax.legend(
        handles=[Patch(label=STATE_LABELS[k], **_state_style(k)) for k in STATE_COLOURS if k in shown],
        fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0),
    )


def _uptime_label(camera: CameraStats) -> str:
    """'Alpha Aisle 3\n97.6% online': the camera's uptime (see ``CameraStats.uptime``) beside its timeline."""
    uptime = camera.uptime
    share = "no live status" if uptime is None else f"{format_uptime(uptime)} online"
    return f"{_shorten(camera.name, 22)}\n{share}"


def _state_style(state: str) -> dict[str, Any]:
    """An ended source is drawn hatched on white, so it cannot be mistaken for an outage."""
    if state == "ended":
        return {"facecolor": STATE_COLOURS[state], "edgecolor": "#9aa5ad", "hatch": "////", "linewidth": 0.6}
    return {"facecolor": STATE_COLOURS[state], "linewidth": 0}


def uptime_chart(data: ReportData) -> Figure:
    """A timeline per camera: online, offline/error, source ended, or unknown (no health event yet)."""
    fig = new_figure((9.0, max(2.6, 1.6 + 0.4 * len(data.cameras))))
    draw_uptime(fig.add_subplot(), data)
    return fig


ALL_CHARTS = {
    "suspicious-over-time": suspicious_over_time_chart,
    "suspicious-by-hour": hour_of_day_chart,
    "per-camera": per_camera_chart,
    "alert-outcomes": alert_outcomes_chart,
    "alerts-by-weekday-hour": alert_heatmap_chart,
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


def format_uptime(share: float) -> str:
    """Uptime to a tenth of a percent, never rounded up to 100% while any outage was recorded."""
    text = f"{share:.1%}"
    return "99.9%" if text == "100.0%" and share < 1 else text


def format_wait(seconds: float) -> str:
    """A short wait to the second: '45 s', '2 min 05 s'; an hour or more as ``format_duration``."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return format_duration(seconds)


def format_period_length(start: datetime, end: datetime) -> str:
    """Human length of a report period: '2 hours', '1 day', '7 days', '1 day 6 hours', '45 minutes'.

    A period from local midnight to local midnight counts calendar days, so a week across a DST change
    is still '7 days' (not '6 days 23 hours').
    """
    if start.time() == end.time() == time(0) and end.date() > start.date():
        days, minutes = (end.date() - start.date()).days, 0
    else:
        elapsed = end.astimezone(UTC) - start.astimezone(UTC)  # same-zone subtraction would use wall time
        days, minutes = divmod(round(elapsed.total_seconds() / 60), 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{n} {unit}{'' if n == 1 else 's'}" for n, unit in
             ((days, "day"), (hours, "hour"), (minutes, "minute")) if n]
    return " ".join(parts) or "0 minutes"


def format_local(at: datetime, with_zone: bool = True) -> str:
    text = at.strftime("%a %d %b %Y %H:%M")
    return f"{text} {at.tzname()}" if with_zone else text
