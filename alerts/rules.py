"""Alert rules: turn a stream of clip results and camera health events into alerts.

Two rules:

* ``suspicious_activity`` — N of the last M clips of a camera score at or above the threshold.  One
  alert per burst: after an alert the camera's window is cleared and a cooldown starts.
* ``camera_offline`` — a camera reported offline (or failed) and stayed so longer than
  ``offline_alert_after_s``.  One alert per outage.

The engine is pure state + arithmetic (no I/O), so it is driven the same way live, in replays and in
tests; the caller (``alerts.worker``) persists, publishes and delivers what it returns.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from common.clock import Clock
from common.schemas import AlertKind, AlertMessage, CameraHealthMessage, CameraState, ResultMessage
from common.settings import AlertRuleSettings

log = logging.getLogger(__name__)

# States that start (or continue) an outage.  ENDED is a file source that finished: not an outage.
_OUTAGE_STATES = frozenset({CameraState.OFFLINE, CameraState.ERROR})


def alert_id_for(kind: AlertKind, camera_id: str, first_id: str) -> str:
    """A deterministic alert id, so reprocessing the same input after a crash gives the same alert.

    Alert rows are unique on ``alert_id``, so a re-raised alert is recognised as already stored.
    """
    return hashlib.sha1(f"{kind.value}|{camera_id}|{first_id}".encode()).hexdigest()


class _SeenIds:
    """A bounded set of recently seen ids (oldest forgotten first)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, item: str) -> bool:
        """Remember ``item``; False when it was already known."""
        if item in self._ids:
            return False
        self._ids[item] = None
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._ids)

    def items(self) -> list[str]:
        return list(self._ids)


@dataclass
class _CameraWindow:
    """The last M results of one camera ordered by ``captured_at``, and its alert history."""

    seen: _SeenIds
    results: list[ResultMessage] = field(default_factory=list)
    last_alert_at: datetime | None = None  # result time of the last raised alert
    watermark: datetime | None = None  # newest result time already consumed by an alert


@dataclass
class _Outage:
    """Where a camera stands with respect to the offline rule."""

    store_id: str
    offline: bool = False
    since_mono: float = 0.0  # clock.monotonic() when the outage was first seen
    since_wall: datetime | None = None  # clock.now() at the same moment (for snapshots)
    reported_at: datetime | None = None  # the ``at`` of the health message that started the outage
    event_id: str = ""
    state: CameraState = CameraState.ONLINE
    alerted: bool = False
    last_at: datetime | None = None  # newest health ``at`` applied, to ignore stale messages


class RuleEngine:
    """Stateful alert rules for every camera; not thread-safe (one worker thread drives it)."""

    def __init__(
        self,
        rules: AlertRuleSettings,
        threshold: float,
        clock: Clock,
        seen_capacity: int = 4096,
    ) -> None:
        """``threshold`` is the resolved one (``Settings.alert_threshold``), the same the results were marked by."""
        self.rules = rules
        self.threshold = threshold
        self.n, self.m = rules.n_of_m
        self.clock = clock
        self.seen_capacity = seen_capacity
        self._windows: dict[str, _CameraWindow] = {}
        self._outages: dict[str, _Outage] = {}
        self._health_seen = _SeenIds(seen_capacity)

    # -- suspicious activity ---------------------------------------------------------------------
    def on_result(self, result: ResultMessage) -> list[AlertMessage]:
        """Add one clip result; return the alert it completes, if any (at most one)."""
        window = self._windows.get(result.camera_id)
        if window is None:
            window = self._windows[result.camera_id] = _CameraWindow(seen=_SeenIds(self.seen_capacity))
        if not window.seen.add(result.clip_id):
            return []  # at-least-once delivery: a clip seen before must not count twice
        if window.watermark is not None and result.captured_at <= window.watermark:
            # A late clip from a stretch that already raised an alert: that window is closed.
            log.debug("late result %s of camera %s ignored (older than its last alert)",
                      result.clip_id, result.camera_id)
            return []

        # Keep the window ordered by capture time: results may arrive slightly out of order.
        times = [r.captured_at for r in window.results]
        window.results.insert(bisect.bisect_right(times, result.captured_at), result)
        del window.results[: max(0, len(window.results) - self.m)]

        hits = [r for r in window.results if r.probability >= self.threshold]
        if len(hits) < self.n:
            return []
        newest = max(r.captured_at for r in hits)
        # Cooldown is measured on result time (captured_at), not on the clock: a replay of a recorded
        # day or a backlog processed in one batch then raises exactly the alerts the live run would
        # have, instead of collapsing hours of video into one cooldown period.
        if window.last_alert_at is not None:
            if (newest - window.last_alert_at).total_seconds() < self.rules.cooldown_s:
                return []
        alert = self._suspicious_alert(result.camera_id, hits)
        window.last_alert_at = newest
        window.watermark = max(r.captured_at for r in window.results)
        window.results.clear()  # the clips that raised this alert cannot raise another
        return [alert]

    def _suspicious_alert(self, camera_id: str, hits: list[ResultMessage]) -> AlertMessage:
        best = max(hits, key=lambda r: r.probability)
        # Evidence: the best clip's snapshot, else the best-scoring clip that has one.
        with_snapshot = [r for r in sorted(hits, key=lambda r: -r.probability) if r.snapshot_path]
        snapshot = best.snapshot_path or (with_snapshot[0].snapshot_path if with_snapshot else None)
        start_s = min(r.source_start_s for r in hits)
        end_s = max(r.source_end_s for r in hits)
        raised_at = max(r.captured_at for r in hits)
        message = (
            f"Suspicious activity on camera {camera_id} (store {best.store_id}): "
            f"{len(hits)} of the last {self.m} clips scored >= {self.threshold:.2f}, "
            f"peak {best.probability:.2f}, at {raised_at.strftime('%Y-%m-%d %H:%M:%S %Z').strip()} "
            f"(source {start_s:.1f}-{end_s:.1f} s)"
        )
        return AlertMessage(
            alert_id=alert_id_for(AlertKind.SUSPICIOUS_ACTIVITY, camera_id, hits[0].clip_id),
            alert_kind=AlertKind.SUSPICIOUS_ACTIVITY,
            store_id=best.store_id,
            camera_id=camera_id,
            raised_at=raised_at,
            probability=best.probability,
            clip_ids=tuple(r.clip_id for r in hits),
            source_start_s=start_s,
            source_end_s=end_s,
            snapshot_path=snapshot,
            message=message,
        )

    # -- camera offline --------------------------------------------------------------------------
    def on_health(self, health: CameraHealthMessage) -> list[AlertMessage]:
        """Track when each camera went offline; alerts come from ``tick`` once the limit has passed."""
        if not self._health_seen.add(health.event_id):
            return []
        outage = self._outages.get(health.camera_id)
        if outage is None:
            outage = self._outages[health.camera_id] = _Outage(store_id=health.store_id)
        if outage.last_at is not None and health.at < outage.last_at:
            return []  # stale: a newer state of this camera was already applied
        outage.last_at = health.at
        outage.store_id = health.store_id
        outage.state = health.state
        if health.state in _OUTAGE_STATES:
            if not outage.offline:  # a repeated OFFLINE/ERROR continues the same outage
                outage.offline = True
                outage.alerted = False
                outage.since_mono = self.clock.monotonic()
                outage.since_wall = self.clock.now()
                outage.reported_at = health.at
                outage.event_id = health.event_id
        else:  # ONLINE, or ENDED (a file that finished is not an outage)
            outage.offline = False
            outage.alerted = False
        return []

    def tick(self) -> list[AlertMessage]:
        """Raise one ``camera_offline`` alert for each outage that has lasted past the limit."""
        alerts: list[AlertMessage] = []
        now_mono = self.clock.monotonic()
        for camera_id, outage in self._outages.items():
            if not outage.offline or outage.alerted:
                continue
            # Measured on the local clock from when the outage was received, so clock skew between
            # the capture host and this one cannot fire (or hold back) the alert.
            elapsed = now_mono - outage.since_mono
            if elapsed < self.rules.offline_alert_after_s:
                continue
            outage.alerted = True
            since = outage.reported_at or self.clock.now()
            alerts.append(
                AlertMessage(
                    alert_id=alert_id_for(AlertKind.CAMERA_OFFLINE, camera_id, outage.event_id),
                    alert_kind=AlertKind.CAMERA_OFFLINE,
                    store_id=outage.store_id,
                    camera_id=camera_id,
                    raised_at=self.clock.now(),
                    probability=None,
                    message=(
                        f"Camera {camera_id} (store {outage.store_id}) is {outage.state.value} since "
                        f"{since.strftime('%Y-%m-%d %H:%M:%S %Z').strip()} ({elapsed:.0f} s)"
                    ),
                )
            )
        return alerts

    # -- persistence -----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The engine's state as JSON-compatible data, to survive a restart with ``restore``."""
        now_wall = self.clock.now()
        now_mono = self.clock.monotonic()
        return {
            "windows": {
                camera: {
                    "results": [r.model_dump(mode="json") for r in w.results],
                    "seen": w.seen.items(),
                    "last_alert_at": w.last_alert_at.isoformat() if w.last_alert_at else None,
                    "watermark": w.watermark.isoformat() if w.watermark else None,
                }
                for camera, w in self._windows.items()
            },
            "outages": {
                camera: {
                    "store_id": o.store_id,
                    "offline": o.offline,
                    # Monotonic time does not survive a restart: store the wall-clock start instead.
                    "since": (now_wall - timedelta(seconds=now_mono - o.since_mono)).isoformat(),
                    "reported_at": o.reported_at.isoformat() if o.reported_at else None,
                    "event_id": o.event_id,
                    "state": o.state.value,
                    "alerted": o.alerted,
                    "last_at": o.last_at.isoformat() if o.last_at else None,
                }
                for camera, o in self._outages.items()
            },
            "health_seen": self._health_seen.items(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Replace the engine's state with one taken by ``snapshot``."""

        def when(text: str | None) -> datetime | None:
            return datetime.fromisoformat(text) if text else None

        self._windows = {}
        for camera, data in state.get("windows", {}).items():
            window = _CameraWindow(seen=_SeenIds(self.seen_capacity))
            for clip_id in data["seen"]:
                window.seen.add(clip_id)
            window.results = [ResultMessage.model_validate(r) for r in data["results"]][-self.m :]
            window.last_alert_at = when(data["last_alert_at"])
            window.watermark = when(data["watermark"])
            self._windows[camera] = window
        self._outages = {}
        now_wall = self.clock.now()
        now_mono = self.clock.monotonic()
        for camera, data in state.get("outages", {}).items():
            since = when(data["since"]) or now_wall
            self._outages[camera] = _Outage(
                store_id=data["store_id"],
                offline=data["offline"],
                since_mono=now_mono - max(0.0, (now_wall - since).total_seconds()),
                since_wall=since,
                reported_at=when(data["reported_at"]),
                event_id=data["event_id"],
                state=CameraState(data["state"]),
                alerted=data["alerted"],
                last_at=when(data["last_at"]),
            )
        self._health_seen = _SeenIds(self.seen_capacity)
        for event_id in state.get("health_seen", []):
            self._health_seen.add(event_id)
