"""The admins' chain-wide summary: one PDF ranking every store by its outcomes.

Each store is counted over the same period as its own report (whole local days in its own time zone), with
the same queries (``load_report_data``), so a manager's PDF and the chain ranking never disagree.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from common.db import Database, DatabaseUnavailable
from common.settings import Settings
from reporting import charts, pdf
from reporting.charts import DOWN, MUTED, OTHER_OUTCOME_COLOUR, OUTCOME_COLOURS, TEXT, UP, format_local
from reporting.compare import Headline, Kind, format_value, previous_words
from reporting.periods import ReportPeriod
from reporting.queries import (
    OUTCOMES,
    ReportData,
    load_report_data,
    outcome_label,
    percentile,
    store_zone,
)

log = logging.getLogger(__name__)

CHAIN_SCOPE = "chain"
"""The ``report_runs.scope`` of the chain summary (a store's runs use its store id)."""

RANK_NOTE = "Ranked by thefts caught (confirmed + prevented), then by alerts raised."
ROW_H = 0.42
FIRST_TABLE_TOP = 5.05
TABLE_TOP = 1.5
TABLE_BOTTOM = 0.8
CHART_STORES = 30


@dataclass(frozen=True)
class ChainData:
    """Every store's report data, ranked, and the stores that could not be read."""

    stores: tuple[ReportData, ...]
    """Ranked: most thefts caught first, then most alerts, then by name."""
    failed: tuple[str, ...] = ()
    """Ids of stores left out because their data could not be read (logged)."""

    @property
    def start(self) -> datetime:
        """Earliest store period start (UTC): the chain run's ``period_start``."""
        return min(d.start for d in self.stores).astimezone(UTC)

    @property
    def end(self) -> datetime:
        return max(d.end for d in self.stores).astimezone(UTC)


def rank_stores(stores: Sequence[ReportData]) -> tuple[ReportData, ...]:
    return tuple(sorted(stores, key=lambda d: (-d.thefts_caught, -d.alerts_raised, d.store_name, d.store_id)))


def load_chain_data(
    db: Database,
    settings: Settings,
    *,
    now: datetime,
    period_days: int,
    stop: threading.Event | None = None,
    period: ReportPeriod | None = None,
) -> ChainData:
    """Each store's data over its own report period for a run at ``now``; a store that fails is left out.

    ``period`` (default: ``period_days`` whole days) is resolved in each store's time zone."""
    period = period or ReportPeriod.whole_days(period_days, scheduled=True)
    stores: list[ReportData] = []
    failed: list[str] = []
    for store in settings.stores:
        try:
            start, end = period.bounds(now, store_zone(store))
            stores.append(load_report_data(db, store, start, end, stop=stop))
        except DatabaseUnavailable:
            raise
        except ValueError as exc:  # a setting (an unknown time zone): its reason is the whole story
            log.error("chain summary: store %s could not be read (%s); leaving it out", store.id, exc)
            failed.append(store.id)
        except Exception:
            log.exception("chain summary: store %s could not be read; leaving it out", store.id)
            failed.append(store.id)
    return ChainData(rank_stores(stores), tuple(failed))


# -- chain figures ---------------------------------------------------------------------------------------
def _sum_figures(stores: Sequence[ReportData]) -> dict[str, float | None]:
    ack = [t for d in stores for t in d.ack_times_s]
    reviewed = sum(d.reviewed for d in stores)
    online = sum(d.online_s for d in stores)
    live = online + sum(d.offline_s for d in stores)
    return {
        "stores": len(stores),
        "alerts": sum(d.alerts_raised for d in stores),
        "thefts_caught": sum(d.thefts_caught for d in stores),
        "false_alarm_rate": sum(d.false_alarms for d in stores) / reviewed if reviewed else None,
        "ack_median_s": percentile(ack, 50) if ack else None,
        "unreviewed": sum(d.unreviewed for d in stores),
        "uptime": online / live if live else None,
    }


CHAIN_FIGURES: tuple[tuple[str, str, Kind], ...] = (
    ("stores", "Stores", "count"),
    ("alerts", "Alerts raised", "count"),
    ("thefts_caught", "Thefts caught", "count"),
    ("false_alarm_rate", "False-alarm share", "share"),
    ("ack_median_s", "Time to acknowledge", "wait"),
    ("unreviewed", "Not yet reviewed", "count"),
    ("uptime", "Camera uptime", "uptime"),
)


def chain_headlines(chain: ChainData) -> dict[str, Headline]:
    """The whole chain's figures (pooled over stores, not averaged), each against the previous period."""
    now = _sum_figures(chain.stores)
    previous = [d.previous for d in chain.stores if d.previous is not None]
    compared = bool(chain.stores) and len(previous) == len(chain.stores)
    before = _sum_figures(previous) if compared else {}
    return {key: Headline(label, now[key], before.get(key), kind, compared) for key, label, kind in CHAIN_FIGURES}


def store_figures(data: ReportData) -> dict[str, Headline]:
    """One store's row of the ranking."""
    now = _sum_figures([data])
    before = _sum_figures([data.previous]) if data.previous is not None else {}
    return {key: Headline(label, now[key], before.get(key), kind, data.previous is not None)
            for key, label, kind in CHAIN_FIGURES if key != "stores"}


# -- the PDF ---------------------------------------------------------------------------------------------
def render_chain_report(chain: ChainData, out_path: Path, *, generated_at: datetime) -> Path:
    """Write the chain summary PDF (atomically): totals, the ranking table, outcomes per store."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    first_rows = int((pdf.A4[1] - TABLE_BOTTOM - FIRST_TABLE_TOP - 0.3) // ROW_H)
    more_rows = int((pdf.A4[1] - TABLE_BOTTOM - TABLE_TOP - 0.3) // ROW_H)
    rest = chain.stores[first_rows:]
    pages = 1 + -(-len(rest) // more_rows) + 1
    tmp = out_path.with_name(out_path.name + ".part")
    metadata = {"Title": f"AisleWatch chain summary - {_period(chain)}", "Author": "AisleWatch",
                "Subject": "Chain-wide summary of every store's alerts and outcomes",
                "Creator": "AisleWatch reporting", "CreationDate": generated_at}
    with PdfPages(tmp, metadata=metadata) as out:
        fig = _cover(chain, generated_at)
        _table(fig, chain.stores[:first_rows], 1, FIRST_TABLE_TOP)
        _footer(fig, 1, pages)
        out.savefig(fig)
        for page, offset in enumerate(range(0, len(rest), more_rows), start=2):
            fig = charts.new_figure(pdf.A4, layout=None)
            _header(fig, chain, "Store ranking (continued)")
            _table(fig, rest[offset : offset + more_rows], first_rows + offset + 1, TABLE_TOP)
            _footer(fig, page, pages)
            out.savefig(fig)
        out.savefig(_outcomes_page(chain, pages))
    tmp.replace(out_path)
    return out_path


def _period(chain: ChainData) -> str:
    if not chain.stores:
        return "no stores"
    start = min(d.start.replace(tzinfo=None) for d in chain.stores)
    end = max(d.end.replace(tzinfo=None) for d in chain.stores)
    return f"{start:%a %d %b %Y %H:%M} to {end:%a %d %b %Y %H:%M}"


def _header(fig: Figure, chain: ChainData, section: str) -> None:
    x, y = pdf._x, pdf._y
    fig.text(x(fig, pdf.MARGIN), y(fig, 0.45), section, fontsize=15, fontweight="bold", color=pdf.ACCENT,
             va="top")
    fig.text(1 - x(fig, pdf.MARGIN), y(fig, 0.48), _period(chain), fontsize=8.5, color=MUTED, ha="right",
             va="top")
    fig.text(1 - x(fig, pdf.MARGIN), y(fig, 0.66), "Chain summary", fontsize=8.5, color=MUTED, ha="right",
             va="top")
    fig.add_artist(Rectangle((x(fig, pdf.MARGIN), y(fig, 0.95)), 1 - 2 * x(fig, pdf.MARGIN), 0.0008,
                             transform=fig.transFigure, color=pdf.ACCENT, linewidth=0))


def _footer(fig: Figure, page: int, total: int) -> None:
    y = pdf._y(fig, pdf.A4[1] - 0.4)
    fig.text(pdf._x(fig, pdf.MARGIN), y, "AisleWatch - automated detections, verify before acting", fontsize=7.5,
             color=MUTED)
    fig.text(1 - pdf._x(fig, pdf.MARGIN), y, f"Chain summary  |  page {page} of {total}", fontsize=7.5,
             color=MUTED, ha="right")


def _cover(chain: ChainData, generated_at: datetime) -> Figure:
    fig = charts.new_figure(pdf.A4, layout=None)
    x, y = pdf._x, pdf._y
    x0 = x(fig, pdf.MARGIN)
    fig.add_artist(Rectangle((0, y(fig, 1.75)), 1, y(fig, 0) - y(fig, 1.75), transform=fig.transFigure,
                             color=pdf.ACCENT, linewidth=0))
    fig.text(x0, y(fig, 0.5), "AisleWatch  |  chain summary for admins", fontsize=11, color="#d6e4f0", va="top")
    fig.text(x0, y(fig, 0.88), "All stores", fontsize=26, fontweight="bold", color="white", va="top")
    fig.text(x0, y(fig, 2.05), "Period (each store's own local days, as in its report)", fontsize=9, color=MUTED,
             va="top")
    fig.text(x0, y(fig, 2.25), _period(chain), fontsize=11, color=TEXT, va="top")
    fig.text(x(fig, 5.3), y(fig, 2.05), "Generated", fontsize=9, color=MUTED, va="top")
    fig.text(x(fig, 5.3), y(fig, 2.25), format_local(generated_at.astimezone(UTC)), fontsize=11, color=TEXT,
             va="top")
    figures = chain_headlines(chain)
    words = _previous_words(chain)
    tiles = [pdf.Tile(h.label, h.text(), "", None, h.change(words), _short(h)) for h in figures.values()]
    pdf._tile_row(fig, 2.75, pdf.A4[0] - 2 * pdf.MARGIN, 0.8, tiles[:4])
    pdf._tile_row(fig, 3.67, pdf.A4[0] - 2 * pdf.MARGIN, 0.8, tiles[4:])
    note = f"{UP}{DOWN}: change against the previous {words}.  {RANK_NOTE}"
    if chain.failed:
        note += f"  Left out (data could not be read): {', '.join(chain.failed)}."
    fig.text(x0, y(fig, 4.62), pdf.fit_lines(note, pdf.A4[0] - 2 * pdf.MARGIN, 8.5, 2), fontsize=8.5,
             color=MUTED, va="top")
    return fig


def _previous_words(chain: ChainData) -> str:
    return previous_words(chain.stores[0]) if chain.stores else "period"


def _short(h: Headline) -> str:
    return h.change("period").removesuffix(" vs previous period").replace("no change", "=") if h.compared else ""


COLUMNS: tuple[tuple[float, str, str], ...] = (
    (0.85, "#", "right"), (0.95, "Store", "left"), (3.9, "Alerts", "right"), (4.65, "Thefts\ncaught", "right"),
    (5.45, "False-alarm\nshare", "right"), (6.3, "Median time\nto ack.", "right"), (7.0, "Not\nreviewed", "right"),
    (7.67, "Camera\nuptime", "right"),
)
COLUMN_KEYS = ("alerts", "thefts_caught", "false_alarm_rate", "ack_median_s", "unreviewed", "uptime")


def _table(fig: Figure, stores: Sequence[ReportData], first_rank: int, top: float) -> None:
    x, y = pdf._x, pdf._y
    for left, title, align in COLUMNS:
        fig.text(x(fig, left), y(fig, top - 0.14), title, fontsize=8, fontweight="bold", color=MUTED, ha=align,
                 va="top", linespacing=1.2)
    if not stores and first_rank == 1:
        fig.text(x(fig, pdf.MARGIN), y(fig, top + 0.4), "No stores configured.", fontsize=10, color=MUTED,
                 va="top")
    for i, data in enumerate(stores):
        row_top = top + 0.3 + i * ROW_H
        if i % 2 == 0:
            fig.add_artist(Rectangle((x(fig, pdf.MARGIN - 0.1), y(fig, row_top + ROW_H - 0.04)),
                                     1 - 2 * x(fig, pdf.MARGIN - 0.1), y(fig, 0) - y(fig, ROW_H),
                                     transform=fig.transFigure, facecolor="#f7f9fa", linewidth=0, zorder=-1))
        figures = store_figures(data)
        cells = [f"{first_rank + i}", pdf.fit_line(data.store_name, 2.6, 9)]
        for left, _, align in COLUMNS[:2]:
            fig.text(x(fig, left), y(fig, row_top), cells.pop(0), fontsize=9, color=TEXT, ha=align, va="top",
                     parse_math=False)
        fig.text(x(fig, COLUMNS[1][0]), y(fig, row_top + 0.18), pdf.fit_line(data.store_id, 2.6, 7), fontsize=7,
                 color=MUTED, va="top", parse_math=False)
        for (left, _, align), key in zip(COLUMNS[2:], COLUMN_KEYS, strict=True):
            h = figures[key]
            fig.text(x(fig, left), y(fig, row_top), format_value(h.value, h.kind), fontsize=9, color=TEXT,
                     ha=align, va="top")
            if h.compared and h.value is not None and h.previous is not None:
                fig.text(x(fig, left), y(fig, row_top + 0.18), _short(h), fontsize=7, color=pdf.ACCENT,
                         ha=align, va="top")


def _outcomes_page(chain: ChainData, total: int) -> Figure:
    fig = charts.new_figure(pdf.A4, layout="constrained")
    engine = fig.get_layout_engine()
    assert isinstance(engine, ConstrainedLayoutEngine)
    left = pdf._x(fig, pdf.MARGIN)
    engine.set(rect=(left, 0.05, 1 - 2 * left, 0.86))
    _header(fig, chain, "Alert outcomes per store")
    _footer(fig, total, total)
    stores = chain.stores[:CHART_STORES]
    height = min(9.0, 1.6 + 0.3 * max(len(stores), 3))  # inches: bars stay slim for a few stores
    grid = fig.add_gridspec(2, 1, height_ratios=[height, max(0.01, 9.6 - height)])
    fig.add_subplot(grid[1]).set_axis_off()
    ax = fig.add_subplot(grid[0])
    charts._style(ax, "Suspicious-activity alerts by outcome, in ranking order")
    ax.title.set_position((0, 1.0))
    ax.set_title(ax.get_title(loc="left"), loc="left", fontsize=12, fontweight="bold", color=TEXT, pad=30)
    ax.grid(axis="y", visible=False)
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.8)
    ax.set_xlabel("Alerts (count)", color=TEXT, fontsize=9)
    if not any(d.suspicious_alerts for d in stores):
        charts._empty(ax, charts.EMPTY_ALERTS)
        return fig
    rows = list(range(len(stores)))
    left_edge = [0] * len(stores)
    for key in OUTCOMES:
        counts = [d.alert_outcomes.get(key, 0) for d in stores]
        ax.barh(rows, counts, left=left_edge, height=0.6, label=outcome_label(key),
                color=OUTCOME_COLOURS.get(key, OTHER_OUTCOME_COLOUR))
        left_edge = [a + b for a, b in zip(left_edge, counts, strict=True)]
    ax.set_yticks(rows, [charts._shorten(d.store_name, 26) for d in stores])
    ax.set_ylim(max(len(stores), 3) - 0.5, -0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.02), ncols=5)
    if len(chain.stores) > CHART_STORES:
        ax.set_title(f"first {CHART_STORES} of {len(chain.stores)} stores", loc="right", fontsize=8, color=MUTED)
    return fig
