"""The live feed: new alert events, read from the database once per desk replica and fanned out to every page.

The database, not the bus, is the source: an alert is on the desk once it is stored (the alert worker writes
its "raised" event in the alert's own transaction), the same in embedded mode and in scaled mode, and any
number of desk replicas can serve pages without talking to each other or joining a consumer group.  A page
that lost its connection reconnects with the last event id it saw and gets everything after it, from the
same table.

PostgreSQL hands out sequence values before commit, so two transactions can become visible out of order
(id 7 before id 6).  The poller remembers the ids it skipped over and asks for them again for a while
(``gap_grace_s``); a gap that stays empty that long was a rolled-back transaction.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from alerts.desk.queries import AlertView, DeskQueries

log = logging.getLogger("aislewatch.desk.feed")

REPLAY_BATCH = 1000
STARTUP_LOOKBACK = 200
"""At start, ids this far below the newest event that are missing are watched as gaps (late commits)."""
QUEUE_LIMIT = 1000
"""Events a slow page may fall behind by before it is disconnected (it then reconnects and replays)."""


@dataclass(frozen=True)
class FeedEvent:
    """One event as every page receives it: ``data`` is serialised once, not once per page."""

    id: int
    store_id: str
    event: str
    data: str

    def sse(self) -> dict[str, str]:
        return {"id": str(self.id), "event": "alert", "data": self.data}


def feed_event(event_id: int, event: str, alert: AlertView, open_alerts: int | None) -> FeedEvent:
    payload = {"event_id": event_id, "event": event, "alert": alert.as_json(),
               "store_open_alerts": open_alerts, "sent_at": time.time()}
    return FeedEvent(event_id, alert.store_id, event, json.dumps(payload))


@dataclass(eq=False)
class Subscription:
    """One open page: the stores it may see (None = all) and its queue of events."""

    stores: frozenset[str] | None
    queue: asyncio.Queue[FeedEvent | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    overflowed: bool = False

    def wants(self, event: FeedEvent) -> bool:
        return self.stores is None or event.store_id in self.stores

    def disconnect(self) -> None:
        """End the page's stream: drop what it has not read yet and queue the end sentinel.  Dropping the whole
        backlog, not just the oldest event, is what keeps the reconnect's replay gapless: the page's last id is
        then one it really saw, and the replay resends everything after it."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class Feed:
    """Polls ``alert_events`` every ``poll_s`` and puts each new event on every subscription that may see it."""

    def __init__(self, queries: DeskQueries, *, poll_s: float = 0.25, gap_grace_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.queries = queries
        self.poll_s = poll_s
        self.gap_grace_s = gap_grace_s
        self.clock = clock
        self.subscriptions: set[Subscription] = set()
        self.high_water: int | None = None
        self._gaps: dict[int, float] = {}  # skipped id → when first skipped
        self.safe_position: int | None = None
        self.polls = 0
        self.last_poll_ok_at: float | None = None
        self._stopped = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- subscribers -----------------------------------------------------------------------------
    def subscribe(self, stores: frozenset[str] | None) -> Subscription:
        subscription = Subscription(stores)
        self.subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscriptions.discard(subscription)

    def replay(self, stores: frozenset[str] | None, after_id: int, limit: int = REPLAY_BATCH) -> list[FeedEvent]:
        """Up to ``limit`` events after ``after_id``, oldest first (blocking: call from a worker thread); page on
        from the last one's id until fewer than ``limit`` come back."""
        rows = self.queries.events(after_id=after_id, stores=stores, limit=limit)
        counts = self.queries.open_counts([alert.store_id for _, _, alert in rows])
        return [feed_event(event_id, event, alert, counts.get(alert.store_id)) for event_id, event, alert in rows]

    def resume_from(self, last_seen: int) -> int:
        """Where a page that saw up to ``last_seen`` must replay from: no later than the feed's safe position,
        so an event committed late below ids the page has already seen is replayed too (pages apply events
        idempotently, by alert)."""
        safe = self.safe_position
        return last_seen if safe is None else min(last_seen, safe)

    def publish(self, events: Iterable[FeedEvent]) -> None:
        for event in events:
            for subscription in list(self.subscriptions):
                if not subscription.wants(event) or subscription.overflowed:
                    continue
                try:
                    subscription.queue.put_nowait(event)
                except asyncio.QueueFull:
                    # Disconnect rather than block everyone: the page reconnects and replays from its last id.
                    subscription.overflowed = True
                    subscription.disconnect()

    # -- the poller ------------------------------------------------------------------------------
    def poll_once(self) -> list[FeedEvent]:
        """Read the events after the high-water mark (and the gaps still in their grace period). Blocking."""
        now = self.clock()
        if self.high_water is None:
            # Start at the present (a page catches up on older events through its own replay), watching the
            # missing ids just below it: transactions that took them may still commit.
            top = self.queries.last_event_id(None)
            present = set(self.queries.event_ids(after_id=max(0, top - STARTUP_LOOKBACK), upto=top))
            self._gaps = {i: now for i in range(max(1, top - STARTUP_LOOKBACK + 1), top + 1) if i not in present}
            self.high_water = top
            self._update_safe_position()
            return []
        self._gaps = {i: t for i, t in self._gaps.items() if now - t < self.gap_grace_s}
        rows = self.queries.events(after_id=self.high_water, also_ids=list(self._gaps))
        fresh = [(i, e, a) for i, e, a in rows if i > self.high_water or i in self._gaps]
        for event_id, _, _ in fresh:
            self._gaps.pop(event_id, None)
            if event_id > self.high_water:
                self._gaps.update(dict.fromkeys(range(self.high_water + 1, event_id), now))
                self.high_water = event_id
        self._update_safe_position()
        counts = self.queries.open_counts([alert.store_id for _, _, alert in fresh])
        return [feed_event(i, e, a, counts.get(a.store_id)) for i, e, a in fresh]

    def _update_safe_position(self) -> None:
        # One assignment, read by request threads: every id at or below it was published or given up on.
        self.safe_position = (min(self._gaps) - 1) if self._gaps else self.high_water

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        while not self._stopped.is_set():
            try:
                events = await asyncio.to_thread(self.poll_once)
                self.polls += 1
                self.last_poll_ok_at = self.clock()
                self.publish(events)
            except Exception as exc:  # the database is away: pages keep their connection, we keep polling
                log.warning("live feed could not read alert events: %s", exc)
            try:
                await asyncio.wait_for(self._stopped.wait(), timeout=self.poll_s)
            except TimeoutError:
                pass

    def healthy(self, stale_after_s: float = 30.0) -> bool:
        return self.last_poll_ok_at is not None and self.clock() - self.last_poll_ok_at < stale_after_s

    def stop_threadsafe(self) -> None:
        """``stop`` from another thread (the one that stops the server)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.stop)

    def stop(self) -> None:
        self._stopped.set()
        for subscription in list(self.subscriptions):
            try:
                subscription.queue.put_nowait(None)
            except asyncio.QueueFull:
                subscription.overflowed = True
                subscription.disconnect()
