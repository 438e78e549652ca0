"""Which stretch of time a report covers, in each store's own time zone.

- the default (``days``): whole local days ending at the local midnight that began the run's day, so a
  scheduled Monday run covers the week before it and never a part of a day;
- ``today``: the whole local day of the run, from today's midnight to tonight's (what happened since the store
  opened, e.g. right after a run; a recording analysed faster than real time dates its alerts ahead of the
  clock, so "until now" would miss them);
- ``yesterday``: the whole local day before today;
- ``last-7-days``: the seven whole local days before today (the default of a weekly schedule);
- ``FROM..TO``: ISO dates, both included: ``2026-11-01..2026-11-30`` is the whole of November.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

PERIOD_CHOICES = ("today", "yesterday", "last-7-days")
PERIOD_HELP = "today, yesterday, last-7-days or FROM..TO (ISO dates, both included)"
MAX_PERIOD_DAYS = 36600
"""The longest period a report covers (about a century): longer ones would run past the calendar's ends."""
_EARLIEST, _LATEST = date(1900, 1, 1), date(9998, 12, 31)  # any time zone's midnights stay representable


class PeriodError(ValueError):
    """A ``--period`` that names no period (the message says why)."""


@dataclass(frozen=True)
class ReportPeriod:
    """A report period, resolved per store by :meth:`bounds`."""

    kind: Literal["days", "today", "range"]
    days: int = 7
    first: date | None = None
    last: date | None = None
    scheduled: bool = False
    """The schedule's own period (``reporting.period_days`` or ``--days``): PDFs keep their usual names."""

    @classmethod
    def whole_days(cls, days: int, *, scheduled: bool = False) -> ReportPeriod:
        if days < 1:
            raise PeriodError(f"a report covers at least 1 day, got {days}")
        if days > MAX_PERIOD_DAYS:
            raise PeriodError(f"a report covers at most {MAX_PERIOD_DAYS} days, got {days}")
        return cls("days", days=days, scheduled=scheduled)

    @classmethod
    def parse(cls, text: str) -> ReportPeriod:
        """``today``, ``yesterday``, ``last-7-days`` (any N: ``last-N-days``) or ``FROM..TO``."""
        word = text.strip().lower()
        if word == "today":
            return cls("today")
        if word == "yesterday":
            return cls("days", days=1)
        if word.startswith("last-") and word.endswith("-days") and word[5:-5].isdigit():
            return cls.whole_days(int(word[5:-5]))
        first_text, sep, last_text = word.partition("..")
        if not sep:
            raise PeriodError(f"{text!r} is not a period: expected {PERIOD_HELP}")
        try:
            first, last = date.fromisoformat(first_text), date.fromisoformat(last_text)
        except ValueError:
            raise PeriodError(f"{text!r}: FROM and TO must be ISO dates such as 2026-11-01..2026-11-30") from None
        if last < first:
            raise PeriodError(f"{text!r}: TO ({last}) is before FROM ({first})")
        if first < _EARLIEST or last > _LATEST:
            raise PeriodError(f"{text!r}: dates must lie between {_EARLIEST} and {_LATEST}")
        if (last - first).days + 1 > MAX_PERIOD_DAYS:
            raise PeriodError(f"{text!r}: a report covers at most {MAX_PERIOD_DAYS} days, "
                              f"this is {(last - first).days + 1}")
        return cls("range", first=first, last=last)

    def bounds(self, now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
        """[start, end) of this period for a run at ``now`` in a store of time zone ``tz``."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        today = now.astimezone(tz).date()
        if self.kind == "today":
            return datetime.combine(today, time(0), tzinfo=tz), datetime.combine(today + timedelta(days=1), time(0), tzinfo=tz)
        if self.kind == "range":
            assert self.first is not None and self.last is not None
            return (datetime.combine(self.first, time(0), tzinfo=tz),
                    datetime.combine(self.last + timedelta(days=1), time(0), tzinfo=tz))
        end = datetime.combine(today, time(0), tzinfo=tz)
        return datetime.combine(today - timedelta(days=self.days), time(0), tzinfo=tz), end

    def file_stem(self, scope: str, now: datetime, tz: ZoneInfo) -> str:
        """``<scope>-<YYYYMMDD>`` for the default period (the run's local day), else the days it covers."""
        if self.scheduled:
            return f"{scope}-{now.astimezone(tz):%Y%m%d}"
        start, end = self.bounds(now, tz)
        last = (end - timedelta(microseconds=1)).date() if self.kind != "today" else start.date()
        return f"{scope}-{start:%Y%m%d}-{last:%Y%m%d}" + ("-today" if self.kind == "today" else "")
