"""A report's headline figures against the previous period of the same length.

The cover tiles, the e-mail body and the chain summary all show the same figures the same way
("3 (▲1 vs previous 7 days)"), so they are defined once here.  The previous period's figures come from
the very same queries (``load_report_data`` runs them for ``previous_period``), never from a cache.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from reporting.charts import DOWN, UP, format_duration, format_period_length, format_uptime, format_wait
from reporting.queries import OUTCOMES, ReportData, outcome_label

Kind = Literal["count", "share", "uptime", "wait", "duration"]
"""How a figure is printed: a count, a share (whole percent), an uptime (percent to 0.1), a wait, a duration."""


@dataclass(frozen=True)
class Headline:
    """One figure of a report: its value now and in the previous period (None: not defined, e.g. no review)."""

    label: str
    value: float | None
    previous: float | None
    kind: Kind
    compared: bool = True
    """False when the report has no previous period loaded: nothing to compare with."""

    def text(self) -> str:
        """The value as the report prints it ('n/a' when undefined)."""
        return format_value(self.value, self.kind)

    def change(self, period: str) -> str:
        """'▲1 vs previous 7 days', 'no change vs previous 7 days', 'previous 7 days: n/a'; '' without one."""
        if not self.compared:
            return ""
        if self.previous is None or self.value is None:
            return f"previous {period}: {format_value(self.previous, self.kind)}"
        diff = self.value - self.previous
        amount = _amount(abs(diff), self.kind)
        if amount is None:
            return f"no change vs previous {period}"
        return f"{UP if diff > 0 else DOWN}{amount} vs previous {period}"

    def with_change(self, period: str) -> str:
        """'3 (▲1 vs previous 7 days)', or just the value when there is nothing to compare with."""
        change = self.change(period)
        return f"{self.text()} ({change})" if change else self.text()


def format_value(value: float | None, kind: Kind) -> str:
    if value is None:
        return "n/a"
    return _FORMATS[kind](value)


_FORMATS: dict[Kind, Callable[[float], str]] = {
    "count": lambda v: f"{round(v):,}",
    "share": lambda v: f"{v:.0%}",
    "uptime": format_uptime,
    "wait": format_wait,
    "duration": format_duration,
}


def _amount(diff: float, kind: Kind) -> str | None:
    """How a (positive) difference reads, or None when it rounds to nothing at the figure's precision."""
    if kind == "share":
        points = round(diff * 100)
        return f"{points} pts" if points else None
    if kind == "uptime":
        tenths = round(diff * 1000)
        return f"{tenths / 10:.1f} pts" if tenths else None
    if kind == "count":
        return f"{round(diff):,}" if round(diff) else None
    text = _FORMATS[kind](diff)
    return None if text in ("0 s", "0 min") else text


def previous_words(data: ReportData) -> str:
    """How the comparison period is named: '7 days', 'day' (for one day), '2 hours', 'hour'."""
    if data.previous is None:
        return "period"
    words = format_period_length(data.previous.start, data.previous.end)
    return {"1 day": "day", "1 hour": "hour"}.get(words, words)


def _outcome_count(key: str) -> Callable[[ReportData], float | None]:
    return lambda d: d.alert_outcomes.get(key, 0)


def headlines(data: ReportData) -> dict[str, Headline]:
    """Every headline figure of a store report, keyed by name, with the previous period's value beside it."""
    prev = data.previous
    compared = prev is not None

    def figure(label: str, kind: Kind, get: Callable[[ReportData], float | None]) -> Headline:
        return Headline(label, get(data), get(prev) if prev is not None else None, kind, compared)

    figures = {
        "clips": figure("Clips analysed", "count", lambda d: d.clips),
        "suspicious_clips": figure("Suspicious clips", "count", lambda d: d.suspicious_clips),
        "alerts": figure("Alerts raised", "count", lambda d: d.alerts_raised),
    }
    for key in OUTCOMES:
        figures[key] = figure(outcome_label(key), "count", _outcome_count(key))
    figures.update({
        "thefts_caught": figure("Thefts caught", "count", lambda d: d.thefts_caught),
        "false_alarm_rate": figure("False-alarm rate", "share", lambda d: d.false_alarm_rate),
        "ack_median_s": figure("Time to acknowledge", "wait", lambda d: d.ack_median_s),
        "offline_s": figure("Camera offline time", "duration",
                            lambda d: d.offline_s if d.has_health_data else None),
        "uptime": figure("Camera uptime", "uptime", lambda d: d.uptime),
    })
    return figures
