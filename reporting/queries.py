"""The database reads behind a store report, aggregated in Python so the SQL stays portable.

Every query filters on ``store_id``: a report for one store never sees another store's rows.
Counting per camera happens in SQL (plain GROUP BY); anything that depends on calendar time (hour of day,
local day) is done in Python in the store's time zone, because SQLite and PostgreSQL date functions differ.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from common.db import Database
from common.models import Alert, AlertEvent, Camera, CameraHealthEvent, ClipResult
from common.schemas import MODEL_FIT_STATES, AlertKind, CameraState, Verdict
from common.settings import StoreSettings

DOWN_STATES = frozenset({"offline", "error"})
"""Camera health states that count as an outage (offline time, drawn as offline)."""

FIT_STATES = frozenset(state.value for state in MODEL_FIT_STATES)
"""Health events about the model's fit to a camera's scenes (inference.ood): not uptime, listed on their own."""

ENDED_STATES = frozenset({"ended"})
"""A finite source (a video file) that reached its end: not an outage, so it never counts as offline time."""

HealthCategory = Literal["online", "offline", "ended", "unknown"]

HOURLY_BINS_UP_TO_DAYS = 14
"""Periods up to this long are charted per hour; longer ones per day."""

UNREVIEWED = "unreviewed"
"""The outcome of an alert nobody has given a verdict yet."""

OUTCOMES: tuple[str, ...] = (*(v.value for v in Verdict), UNREVIEWED)
"""Every outcome a suspicious-activity alert can have in a report, in the order they are shown."""


def outcome_label(outcome: str) -> str:
    """How an outcome reads in charts and tables: the verdict's label, or 'Not yet reviewed'."""
    return Verdict.label_of(None if outcome == UNREVIEWED else outcome)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of non-empty ``values``, interpolating linearly between ranks."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class CameraStats:
    camera_id: str
    name: str
    clips: int = 0
    suspicious_clips: int = 0
    alerts: int = 0
    """Suspicious-activity alerts raised for this camera."""
    offline_alerts: int = 0
    offline_s: float = 0.0
    """Seconds in the period the camera was known to be offline or erroring (an ended source is not)."""
    online_s: float = 0.0
    """Seconds in the period the camera was known to be online."""

    @property
    def uptime(self) -> float | None:
        """Share (0..1) of the time this camera's status was known and live that it was online.

        Time before its first health event (unknown) and after a file source ended are left out: neither is
        an outage.  None when the camera reported no status in the period."""
        live = self.online_s + self.offline_s
        return self.online_s / live if live else None


@dataclass(frozen=True)
class AlertRow:
    alert_id: str
    raised_at: datetime
    """Local time in the store's time zone."""
    camera_id: str
    camera_name: str
    kind: str
    probability: float | None
    status: str
    verdict: str | None
    evidence_path: str | None
    message: str
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    """Local time in the store's time zone."""
    note: str | None = None
    reached_desk_at: datetime | None = None
    """When it reached the desk (its "raised" event), local time; None for an alert stored before the desk."""

    @property
    def outcome(self) -> str:
        """One of ``OUTCOMES`` (``unreviewed`` when there is no verdict yet), or an unknown verdict as stored."""
        return self.verdict or UNREVIEWED

    @property
    def is_suspicious(self) -> bool:
        return self.kind == AlertKind.SUSPICIOUS_ACTIVITY

    @property
    def time_to_acknowledge_s(self) -> float | None:
        """Seconds from reaching the desk to acknowledging, or None while unacknowledged.

        Counted from when the desk had it, not from ``raised_at``: that is the clips' time, which a backlog
        puts earlier (the guard could not have seen it) and a replayed file or a camera clock running ahead
        puts later, even after the verdict.  Without a desk arrival time (alerts stored before the desk) it
        counts from ``raised_at``, a negative difference as 0 s rather than pulling the median below zero."""
        if self.acknowledged_at is None:
            return None
        since = self.reached_desk_at or self.raised_at
        return max(0.0, (self.acknowledged_at - since).total_seconds())


@dataclass(frozen=True)
class HealthSegment:
    camera_id: str
    start: datetime
    end: datetime
    state: HealthCategory


@dataclass(frozen=True)
class ReportData:
    """Everything one store's report shows, computed once and used by both the charts and the PDF."""

    store_id: str
    store_name: str
    timezone: str
    start: datetime
    """Period start (inclusive), in the store's time zone."""
    end: datetime
    """Period end (exclusive), in the store's time zone."""
    cameras: tuple[CameraStats, ...]
    alerts: tuple[AlertRow, ...]
    bin_unit: Literal["hour", "day"]
    bin_starts: tuple[datetime, ...]
    """Local start of each time bin across the period."""
    suspicious_series: Mapping[str, tuple[int, ...]]
    """camera_id -> suspicious clips per bin (aligned with bin_starts); only cameras with any."""
    suspicious_by_hour_of_day: tuple[int, ...]
    """24 counts, local hour 0..23."""
    suspicious_by_day: tuple[tuple[date, int], ...]
    """Every local day of the period with its suspicious clip count."""
    health_segments: tuple[HealthSegment, ...] = ()
    has_health_data: bool = False
    camera_names: Mapping[str, str] = field(default_factory=dict)
    out_of_distribution: tuple[str, ...] = ()
    """Cameras flagged at some time in the period as showing scenes unlike the model's training inputs."""
    previous: ReportData | None = None
    """The same figures for the period of the same length just before this one (see ``previous_period``)."""

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def clips(self) -> int:
        return sum(c.clips for c in self.cameras)

    @property
    def suspicious_clips(self) -> int:
        return sum(c.suspicious_clips for c in self.cameras)

    @property
    def alerts_raised(self) -> int:
        return len(self.alerts)

    @property
    def suspicious_alerts(self) -> tuple[AlertRow, ...]:
        """The alerts verdicts are about; camera-offline alerts are never thefts or false alarms."""
        return tuple(a for a in self.alerts if a.is_suspicious)

    @property
    def alert_outcomes(self) -> dict[str, int]:
        """Outcome counts of suspicious-activity alerts: every one of ``OUTCOMES`` (+ any unknown verdict)."""
        counts = dict.fromkeys(OUTCOMES, 0)
        for a in self.suspicious_alerts:
            counts[a.outcome] = counts.get(a.outcome, 0) + 1
        return counts

    @property
    def confirmed_thefts(self) -> int:
        return self.alert_outcomes[Verdict.THEFT_CONFIRMED]

    @property
    def thefts_prevented(self) -> int:
        return self.alert_outcomes[Verdict.THEFT_PREVENTED]

    @property
    def false_alarms(self) -> int:
        return self.alert_outcomes[Verdict.FALSE_ALARM]

    @property
    def unsure(self) -> int:
        return self.alert_outcomes[Verdict.UNSURE]

    @property
    def unreviewed(self) -> int:
        return self.alert_outcomes[UNREVIEWED]

    @property
    def reviewed(self) -> int:
        """Suspicious-activity alerts with any verdict, 'unsure' included: someone looked at them."""
        return len(self.suspicious_alerts) - self.unreviewed

    @property
    def false_alarm_rate(self) -> float | None:
        """False alarms among the reviewed suspicious-activity alerts (0..1); None when none was reviewed."""
        return self.false_alarms / self.reviewed if self.reviewed else None

    @property
    def ack_times_s(self) -> tuple[float, ...]:
        """Time to acknowledge (seconds, clamped at 0) of each acknowledged suspicious-activity alert."""
        return tuple(t for a in self.suspicious_alerts if (t := a.time_to_acknowledge_s) is not None)

    @property
    def ack_median_s(self) -> float | None:
        times = self.ack_times_s
        return percentile(times, 50) if times else None

    @property
    def ack_p90_s(self) -> float | None:
        times = self.ack_times_s
        return percentile(times, 90) if times else None

    @property
    def offline_s(self) -> float:
        return sum(c.offline_s for c in self.cameras)

    @property
    def online_s(self) -> float:
        return sum(c.online_s for c in self.cameras)

    @property
    def uptime(self) -> float | None:
        """All cameras together: online time over the time their status was known and live (0..1)."""
        live = self.online_s + self.offline_s
        return self.online_s / live if live else None

    @property
    def thefts_caught(self) -> int:
        """Confirmed plus prevented thefts: the alerts that were real."""
        return self.confirmed_thefts + self.thefts_prevented

    @property
    def camera_ids(self) -> tuple[str, ...]:
        return tuple(c.camera_id for c in self.cameras)

    @property
    def alerts_by_weekday_hour(self) -> tuple[tuple[int, ...], ...]:
        """Suspicious-activity alerts per local weekday (rows, Monday first) and local hour (24 columns)."""
        grid = [[0] * 24 for _ in range(7)]
        for a in self.suspicious_alerts:
            grid[a.raised_at.weekday()][a.raised_at.hour] += 1
        return tuple(tuple(row) for row in grid)


def store_zone(store: StoreSettings) -> ZoneInfo:
    """The store's time zone, with a clear error for a misspelt IANA name."""
    try:
        return ZoneInfo(store.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"store {store.id!r} has an unknown time zone {store.timezone!r}") from exc


def report_period(now: datetime, tz: ZoneInfo, period_days: int) -> tuple[datetime, datetime]:
    """[start, end) of whole local days ending at the local midnight that began ``now``'s day."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    today = now.astimezone(tz).date()
    end = datetime.combine(today, time(0), tzinfo=tz)
    start = datetime.combine(today - timedelta(days=period_days), time(0), tzinfo=tz)
    return start, end


def previous_period(start: datetime, end: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The period of the same length that ends where [start, end) begins.

    Whole local days count calendar days (a week across a DST change is the previous seven local days,
    not 168 hours); any other period is the same number of seconds earlier."""
    local_start, local_end = start.astimezone(tz), end.astimezone(tz)
    if local_start.time() == local_end.time() == time(0) and local_end.date() > local_start.date():
        days = (local_end.date() - local_start.date()).days
        return datetime.combine(local_start.date() - timedelta(days=days), time(0), tzinfo=tz), local_start
    elapsed = end.astimezone(UTC) - start.astimezone(UTC)
    return (start.astimezone(UTC) - elapsed).astimezone(tz), local_start


def load_report_data(
    db: Database,
    store: StoreSettings,
    start: datetime,
    end: datetime,
    *,
    stop: threading.Event | None = None,
    compare: bool = True,
) -> ReportData:
    """Read and aggregate one store's results, alerts and camera health for [start, end).

    With ``compare`` the same queries also run for the previous period of the same length, as ``previous``.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("report period needs timezone-aware datetimes")
    if end <= start:
        raise ValueError(f"report period is empty: start {start.isoformat()} >= end {end.isoformat()}")
    tz = store_zone(store)

    def read() -> ReportData:
        with db.sessions() as session:
            return _aggregate(session, store, tz, start.astimezone(UTC), end.astimezone(UTC))

    data = db.retrying(read, stop, what=f"report query for store {store.id}")
    if not compare:
        return data
    before = load_report_data(db, store, *previous_period(start, end, tz), stop=stop, compare=False)
    return replace(data, previous=before)


def _aggregate(session: Session, store: StoreSettings, tz: ZoneInfo, start: datetime, end: datetime) -> ReportData:
    sid = store.id
    in_clips = and_(ClipResult.store_id == sid, ClipResult.captured_at >= start, ClipResult.captured_at < end)
    clip_counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for camera_id, suspicious, n in session.execute(
        select(ClipResult.camera_id, ClipResult.suspicious, func.count()).where(in_clips).group_by(
            ClipResult.camera_id, ClipResult.suspicious
        )
    ):
        clip_counts[camera_id][0] += n
        if suspicious:
            clip_counts[camera_id][1] += n
    suspicious_times = list(
        session.execute(
            select(ClipResult.camera_id, ClipResult.captured_at).where(in_clips, ClipResult.suspicious.is_(True))
        )
    )
    alerts = list(
        session.scalars(
            select(Alert)
            .where(Alert.store_id == sid, Alert.raised_at >= start, Alert.raised_at < end)
            .order_by(Alert.raised_at, Alert.id)
        )
    )
    reached_desk: dict[str, datetime] = dict(
        session.execute(  # type: ignore[arg-type]
            select(AlertEvent.alert_id, func.min(AlertEvent.at))
            .where(AlertEvent.alert_id.in_([a.alert_id for a in alerts]), AlertEvent.event == "raised")
            .group_by(AlertEvent.alert_id)
        ).all()
    ) if alerts else {}
    all_events = list(
        session.scalars(
            select(CameraHealthEvent)
            .where(CameraHealthEvent.store_id == sid, CameraHealthEvent.at >= start, CameraHealthEvent.at < end)
            .order_by(CameraHealthEvent.at, CameraHealthEvent.id)
        )
    )
    events = [e for e in all_events if e.state not in FIT_STATES]
    flagged = _out_of_distribution(session, sid, start, [e for e in all_events if e.state in FIT_STATES])
    last_before = (
        select(CameraHealthEvent.camera_id, func.max(CameraHealthEvent.at).label("at"))
        .where(CameraHealthEvent.store_id == sid, CameraHealthEvent.at < start,
               CameraHealthEvent.state.notin_(FIT_STATES))
        .group_by(CameraHealthEvent.camera_id)
        .subquery()
    )
    initial: dict[str, str] = {}
    for ev in session.scalars(
        select(CameraHealthEvent)
        .join(
            last_before,
            and_(CameraHealthEvent.camera_id == last_before.c.camera_id, CameraHealthEvent.at == last_before.c.at),
        )
        .where(CameraHealthEvent.store_id == sid)
        .order_by(CameraHealthEvent.id)
    ):
        initial[ev.camera_id] = ev.state  # ties on the same instant: the last inserted wins

    # Camera order: as configured, then any others seen in the data (renamed or removed cameras).
    names = {c.id: c.name for c in store.cameras}
    seen = set(clip_counts) | {a.camera_id for a in alerts} | {e.camera_id for e in events} | set(initial)
    extra = sorted(seen - set(names))
    if extra:
        for cid, name in session.execute(select(Camera.id, Camera.name).where(Camera.id.in_(extra))):
            names[cid] = name
    order = [c.id for c in store.cameras if c.enabled or c.id in seen] + extra
    for cid in order:
        names.setdefault(cid, cid)

    segments, seconds = _health_segments(order, initial, events, start, end)
    alert_counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for a in alerts:
        alert_counts[a.camera_id][0 if a.kind == AlertKind.SUSPICIOUS_ACTIVITY else 1] += 1
    cameras = tuple(
        CameraStats(
            camera_id=cid,
            name=names[cid],
            clips=clip_counts[cid][0] if cid in clip_counts else 0,
            suspicious_clips=clip_counts[cid][1] if cid in clip_counts else 0,
            alerts=alert_counts[cid][0] if cid in alert_counts else 0,
            offline_alerts=alert_counts[cid][1] if cid in alert_counts else 0,
            offline_s=seconds.get(cid, {}).get("offline", 0.0),
            online_s=seconds.get(cid, {}).get("online", 0.0),
        )
        for cid in order
    )

    bin_unit: Literal["hour", "day"] = "hour" if end - start <= timedelta(days=HOURLY_BINS_UP_TO_DAYS) else "day"
    bins = time_bins(start, end, tz, bin_unit)
    index = {b: i for i, b in enumerate(bins)}
    series: dict[str, list[int]] = {}
    by_hour = [0] * 24
    by_day: dict[date, int] = {d: 0 for d in local_days(start, end, tz)}
    for camera_id, at in suspicious_times:
        key = bin_start(at, tz, bin_unit)
        counts = series.setdefault(camera_id, [0] * len(bins))
        if key in index:
            counts[index[key]] += 1
        local = at.astimezone(tz)
        by_hour[local.hour] += 1
        by_day[local.date()] = by_day.get(local.date(), 0) + 1

    return ReportData(
        store_id=sid,
        store_name=store.name,
        timezone=store.timezone,
        start=start.astimezone(tz),
        end=end.astimezone(tz),
        cameras=cameras,
        alerts=tuple(
            AlertRow(
                alert_id=a.alert_id,
                raised_at=a.raised_at.astimezone(tz),
                camera_id=a.camera_id,
                camera_name=names.get(a.camera_id, a.camera_id),
                kind=a.kind,
                probability=a.probability,
                status=a.status,
                verdict=a.verdict,
                evidence_path=a.evidence_path,
                message=a.message,
                acknowledged_by=a.acknowledged_by,
                acknowledged_at=a.acknowledged_at.astimezone(tz) if a.acknowledged_at else None,
                note=a.note,
                reached_desk_at=reached_desk[a.alert_id].astimezone(tz) if a.alert_id in reached_desk else None,
            )
            for a in alerts
        ),
        bin_unit=bin_unit,
        bin_starts=tuple(b.astimezone(tz) for b in bins),
        suspicious_series={cid: tuple(series[cid]) for cid in [*order, *sorted(set(series) - set(order))]
                           if cid in series},
        suspicious_by_hour_of_day=tuple(by_hour),
        suspicious_by_day=tuple(sorted(by_day.items())),
        health_segments=tuple(segments),
        has_health_data=bool(events or initial),
        camera_names=dict(names),
        out_of_distribution=tuple(cid for cid in [*order, *sorted(flagged - set(order))] if cid in flagged),
    )


def bin_start(at: datetime, tz: ZoneInfo, unit: Literal["hour", "day"]) -> datetime:
    """The UTC instant at which the local hour (or local day) containing ``at`` began.

    Works on instants, so repeated local hours at a DST fall-back stay distinct bins and
    half-hour offsets (e.g. Asia/Kolkata) bin on local hour boundaries.
    """
    at = at.astimezone(UTC)
    local = at.astimezone(tz)
    if unit == "hour":
        return at - timedelta(minutes=local.minute, seconds=local.second, microseconds=local.microsecond)
    return datetime.combine(local.date(), time(0), tzinfo=tz).astimezone(UTC)


def time_bins(start: datetime, end: datetime, tz: ZoneInfo, unit: Literal["hour", "day"]) -> list[datetime]:
    """UTC starts of every local hour/day bin touching [start, end)."""
    if unit == "day":
        return [datetime.combine(d, time(0), tzinfo=tz).astimezone(UTC) for d in local_days(start, end, tz)]
    bins = []
    b = bin_start(start, tz, "hour")
    while b < end:
        bins.append(b)
        b += timedelta(hours=1)
    return bins


def local_days(start: datetime, end: datetime, tz: ZoneInfo) -> list[date]:
    """Every local calendar day that [start, end) touches."""
    first = start.astimezone(tz).date()
    last = (end - timedelta(microseconds=1)).astimezone(tz).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _out_of_distribution(session: Any, sid: str, start: datetime, in_period: list[CameraHealthEvent]) -> set[str]:
    """Cameras flagged out of distribution at the period's start or by an event within it."""
    flagged = {e.camera_id for e in in_period if e.state == CameraState.OUT_OF_DISTRIBUTION.value}
    last_fit = (
        select(CameraHealthEvent.camera_id, func.max(CameraHealthEvent.at).label("at"))
        .where(CameraHealthEvent.store_id == sid, CameraHealthEvent.at < start, CameraHealthEvent.state.in_(FIT_STATES))
        .group_by(CameraHealthEvent.camera_id)
        .subquery()
    )
    for ev in session.scalars(
        select(CameraHealthEvent).join(
            last_fit, and_(CameraHealthEvent.camera_id == last_fit.c.camera_id, CameraHealthEvent.at == last_fit.c.at)
        ).where(CameraHealthEvent.state == CameraState.OUT_OF_DISTRIBUTION.value)
    ):
        flagged.add(ev.camera_id)
    return flagged


def health_category(state: str | None) -> HealthCategory:
    """How a camera health state is shown and counted: only OFFLINE/ERROR are outages."""
    if state is None:
        return "unknown"
    if state in DOWN_STATES:
        return "offline"
    return "ended" if state in ENDED_STATES else "online"


def _health_segments(
    cameras: list[str],
    initial: dict[str, str],
    events: list[CameraHealthEvent],
    start: datetime,
    end: datetime,
) -> tuple[list[HealthSegment], dict[str, dict[HealthCategory, float]]]:
    """Per camera, consecutive [from, to) segments of online / offline / ended / unknown, and seconds per state."""

    by_camera: dict[str, list[CameraHealthEvent]] = defaultdict(list)
    for ev in events:
        by_camera[ev.camera_id].append(ev)
    segments: list[HealthSegment] = []
    seconds: dict[str, dict[HealthCategory, float]] = {}
    for cid in cameras:
        if cid not in initial and cid not in by_camera:
            continue
        current = health_category(initial.get(cid))
        since = start
        for ev in by_camera.get(cid, []):
            state = health_category(ev.state)
            if state == current:
                continue
            if ev.at > since:
                segments.append(HealthSegment(cid, since, ev.at, current))
            current, since = state, ev.at
        segments.append(HealthSegment(cid, since, end, current))
        totals = seconds.setdefault(cid, {})
        for s in segments:
            if s.camera_id == cid:
                totals[s.state] = totals.get(s.state, 0.0) + (s.end - s.start).total_seconds()
    return segments, seconds
