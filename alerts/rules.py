"""Alert rules: turn a stream of clip results and camera health events into alerts.

Two rules:

* ``suspicious_activity`` — N of the last M clips of a camera score at or above the threshold.  One
  alert per burst: after an alert the camera's window is cleared and a cooldown starts.
* ``camera_offline`` — a camera reported offline (or failed) and stayed so longer than
  ``offline_alert_after_s``.  One alert per outage.

A suspicious-activity alert whose clips come from a camera flagged out of distribution (results with
``out_of_distribution=True``: the model was not trained on scenes like it, ``inference.ood``) is marked as
coming from an unvalidated model, held back (not raised; logged and counted), or raised as usual, per
``model.out_of_distribution`` (``mark`` | ``hold`` | ``ignore``).  Health events about the model's fit
(``MODEL_FIT_STATES``) are not about the camera's connection: the offline rule skips them.

The engine is pure state + arithmetic (no I/O), so it is driven the same way live, in replays and in
tests; the caller (``alerts.worker``) persists, publishes and delivers what it returns.

State survives a restart without a snapshot because the database holds what it was made from: the
caller hands ``rebuild_window`` a camera's stored results and last alert before that camera's first
result after the start, and ``restore_outage`` the health events of a camera that is still offline.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from common.clock import Clock
from common.metrics import ALERTS_HELD
from common.schemas import (
    MODEL_FIT_STATES,
    OUT_OF_DISTRIBUTION_NOTE,
    AlertKind,
    AlertMessage,
    CameraHealthMessage,
    CameraState,
    ResultMessage,
)
from common.settings import AlertRuleSettings

log = logging.getLogger(__name__)

# States that start (or continue) an outage.  ENDED is a file source that finished: not an outage.
_OUTAGE_STATES = frozenset({CameraState.OFFLINE, CameraState.ERROR})

# A rebuilt window replays up to this many windows' worth (x M) of a camera's stored results: M of them
# give the exact window; the rest let a restart raise an alert its predecessor died before storing.
REPLAY_WINDOWS = 16


def alert_id_for(kind: AlertKind, camera_id: str, first_id: str) -> str:
    """A deterministic alert id, so reprocessing the same input after a crash gives the same alert.

    ``first_id`` is the first clip of the incident window (suspicious activity) or the health event that
    started the outage (camera offline).  Both are reproduced by a restarted worker: its window is
    rebuilt from the results stored before the first one it consumes, starting after the camera's last
    alert (``RuleEngine.rebuild_window``), so it holds the same clips the dead worker's did, and an outage
    is restored from the event that started it.  Alert rows are unique on ``alert_id``, so a re-raised
    alert is recognised as already stored and delivered no second time.
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
        out_of_distribution: str = "mark",
    ) -> None:
        """``threshold`` is the resolved one (``Settings.alert_threshold``), the same the results were marked by;
        ``out_of_distribution`` what becomes of alerts from a camera flagged so (``model.out_of_distribution``)."""
        if out_of_distribution not in ("mark", "hold", "ignore"):
            raise ValueError(f"out_of_distribution must be mark, hold or ignore, got {out_of_distribution!r}")
        self.out_of_distribution = out_of_distribution
        self.held = 0  # alerts held back: their camera was out of distribution
        self.rules = rules
        self.threshold = threshold
        self.n, self.m = rules.n_of_m
        self.clock = clock
        self.seen_capacity = seen_capacity
        self._windows: dict[str, _CameraWindow] = {}
        self._outages: dict[str, _Outage] = {}
        self._health_seen = _SeenIds(seen_capacity)

    # -- suspicious activity ---------------------------------------------------------------------
    @property
    def replay_limit(self) -> int:
        """How many stored results of a camera ``rebuild_window`` wants."""
        return REPLAY_WINDOWS * self.m

    def has_window(self, camera_id: str) -> bool:
        """True once the camera's window exists (built live or rebuilt)."""
        return camera_id in self._windows

    def rebuild_window(
        self, camera_id: str, last_alert_at: datetime | None, history: list[ResultMessage]
    ) -> list[AlertMessage]:
        """Rebuild a camera's window after a restart; the alerts the replay raises (normally none).

        ``last_alert_at`` is the camera's newest suspicious-activity alert before the first result this
        worker consumes, ``history`` the results stored between the two, oldest first (the newest
        ``replay_limit``).  The window starts as that alert left it (empty, cooling down from it) and
        the history is replayed through ``on_result``: the window ends up holding the clips it held
        before the restart.  A replayed stretch that completes an alert raises it again; its id is the
        one it had, so an alert stored before is not stored twice, and one that was never stored (the
        worker died first) is raised now.
        """
        self._windows[camera_id] = _CameraWindow(
            seen=_SeenIds(self.seen_capacity), last_alert_at=last_alert_at, watermark=last_alert_at
        )
        alerts: list[AlertMessage] = []
        for result in sorted(history, key=lambda r: r.captured_at):
            alerts.extend(self.on_result(result))
        return alerts

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
        unvalidated = self.out_of_distribution != "ignore" and any(r.out_of_distribution for r in hits)
        alert = self._suspicious_alert(result.camera_id, hits, unvalidated=unvalidated)
        window.last_alert_at = newest
        window.watermark = max(r.captured_at for r in window.results)
        window.results.clear()  # the clips that raised this alert cannot raise another
        if unvalidated and self.out_of_distribution == "hold":
            # Consumed like a raised alert (cooldown, window cleared), so a held burst is counted once.
            self.held += 1
            ALERTS_HELD.labels(result.camera_id).inc()
            log.warning("alert held back (model.out_of_distribution = hold): %s", alert.message)
            return []
        return [alert]

    def _suspicious_alert(self, camera_id: str, hits: list[ResultMessage], *, unvalidated: bool = False) -> AlertMessage:
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
        if unvalidated:
            message = f"Unvalidated model: {OUT_OF_DISTRIBUTION_NOTE}. {message}"
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
        if health.state in MODEL_FIT_STATES:
            return []  # about the model's fit to the scene (inference.ood), not the connection
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
                outage.reported_at = health.at
                outage.event_id = health.event_id
        else:  # ONLINE, or ENDED (a file that finished is not an outage)
            outage.offline = False
            outage.alerted = False
        return []

    def restore_outage(self, events: list[CameraHealthMessage], alert_stored: Callable[[str], bool]) -> bool:
        """Restore a camera's outage after a restart from its stored health events, newest first, back to
        the last event that was not an outage; ``alert_stored(alert_id)`` says whether its offline alert
        is stored already.  True when an outage was restored.

        The outage counts from the ``at`` of the event that started it (the local receipt time is gone
        with the old process), so the alert comes as soon as the outage has lasted
        ``offline_alert_after_s``, once: its id comes from that same event.
        """
        if not events or events[0].state not in _OUTAGE_STATES:
            return False
        latest = events[0]
        start = latest
        for event in events[1:]:
            if event.state not in _OUTAGE_STATES:
                break
            start = event
        for event in events:
            self._health_seen.add(event.event_id)
        now_wall = self.clock.now()
        elapsed = max(0.0, (now_wall - start.at).total_seconds())
        self._outages[latest.camera_id] = _Outage(
            store_id=latest.store_id,
            offline=True,
            since_mono=self.clock.monotonic() - elapsed,
            reported_at=start.at,
            event_id=start.event_id,
            state=latest.state,
            alerted=alert_stored(alert_id_for(AlertKind.CAMERA_OFFLINE, latest.camera_id, start.event_id)),
            last_at=latest.at,
        )
        return True

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
