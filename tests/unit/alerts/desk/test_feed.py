"""The live feed: events polled from ``alert_events`` once, in order, gaps of out-of-order commits filled in
for a grace period, and a subscriber that falls too far behind disconnected instead of blocking the rest."""

from __future__ import annotations

import asyncio
import json

import pytest

from alerts.desk import feed as feed_module
from alerts.desk.feed import Feed, FeedEvent
from alerts.desk.queries import DeskQueries
from common.clock import FakeClock
from common.models import AlertEvent
from common.schemas import Verdict, utc_now
from tests.unit.alerts.desk.webapp import Web


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def feed(web: Web, clock: FakeClock) -> Feed:
    return Feed(DeskQueries(web.db), poll_s=0.01, gap_grace_s=10.0, clock=clock.monotonic)


def _insert_event(web: Web, event_id: int, alert_id: str, store_id: str = "south") -> None:
    """An alert event with an explicit id: how a transaction that got its id earlier commits later."""
    with web.db.session() as session:
        session.add(AlertEvent(id=event_id, alert_id=alert_id, store_id=store_id, event="acknowledged",
                               at=utc_now(), actor="gs"))


def _ids(events: list[FeedEvent]) -> list[int]:
    return [e.id for e in events]


def test_the_first_poll_starts_at_the_present(web: Web, feed: Feed) -> None:
    web.raise_alert()
    assert feed.poll_once() == []
    assert feed.high_water == 1


def test_events_are_delivered_once_and_in_order(web: Web, feed: Feed) -> None:
    feed.poll_once()
    first, second = web.raise_alert("south"), web.raise_alert("north")
    web.app.state.desk.queries.acknowledge(web.principal("gs"), first, Verdict.FALSE_ALARM, version=1)
    events = feed.poll_once()
    assert [(e.event, json.loads(e.data)["alert"]["alert_id"]) for e in events] == [
        ("raised", first), ("raised", second), ("acknowledged", first)]
    assert _ids(events) == sorted(_ids(events))
    assert [e.store_id for e in events] == ["south", "north", "south"]
    assert feed.poll_once() == []
    payload = json.loads(events[0].data)
    assert payload["event_id"] == events[0].id and payload["store_open_alerts"] == 0  # first is acknowledged now
    assert events[0].sse() == {"id": str(events[0].id), "event": "alert", "data": events[0].data}


def test_an_event_committed_after_a_later_one_is_still_delivered(web: Web, feed: Feed) -> None:
    alert_id = web.raise_alert()  # event 1
    feed.poll_once()
    _insert_event(web, 10, alert_id)
    assert _ids(feed.poll_once()) == [10]
    _insert_event(web, 9, alert_id)  # its transaction took id 9 before id 10 committed
    assert _ids(feed.poll_once()) == [9]
    assert feed.poll_once() == []  # once
    _insert_event(web, 4, alert_id)
    assert _ids(feed.poll_once()) == [4]


def test_a_gap_is_forgotten_after_the_grace_period(web: Web, feed: Feed, clock: FakeClock) -> None:
    alert_id = web.raise_alert()
    feed.poll_once()
    _insert_event(web, 10, alert_id)
    assert _ids(feed.poll_once()) == [10]
    clock.advance(9.0)
    _insert_event(web, 5, alert_id)
    assert _ids(feed.poll_once()) == [5]  # still within the grace period
    clock.advance(1.5)
    feed.poll_once()  # 10.5 s after the gap opened: a rolled-back transaction, not a late one
    _insert_event(web, 6, alert_id)
    assert feed.poll_once() == []
    assert web.app.state.desk.queries.events(after_id=5, also_ids=[])[0][0] == 6  # it is there, just too late


def test_publish_filters_by_store() -> None:
    feed = Feed(None, poll_s=1)  # type: ignore[arg-type]
    south, everyone = feed.subscribe(frozenset({"south"})), feed.subscribe(None)
    events = [FeedEvent(1, "north", "raised", "{}"), FeedEvent(2, "south", "raised", "{}")]
    feed.publish(events)
    assert [south.queue.get_nowait().id] == [2]  # type: ignore[union-attr]
    assert south.queue.empty()
    assert [everyone.queue.get_nowait().id, everyone.queue.get_nowait().id] == [1, 2]  # type: ignore[union-attr]
    feed.unsubscribe(south)
    feed.publish([FeedEvent(3, "south", "raised", "{}")])
    assert south.queue.empty()


def test_a_subscriber_that_falls_behind_is_disconnected_without_skipping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feed_module, "QUEUE_LIMIT", 3)
    feed = Feed(None, poll_s=1)  # type: ignore[arg-type]
    slow, fast = feed.subscribe(None), feed.subscribe(None)
    received: list[int] = []
    for n in range(1, 8):
        feed.publish([FeedEvent(n, "south", "raised", "{}")])
        received.append(fast.queue.get_nowait().id)  # type: ignore[union-attr]
    assert received == list(range(1, 8))  # the slow page never held the others up
    assert slow.overflowed
    seen = []
    while (item := slow.queue.get_nowait()) is not None:
        seen.append(item.id)
    # It reconnects with the last id it saw and replays the rest: what it saw must be a prefix, with no hole.
    assert seen == list(range(1, len(seen) + 1))
    assert slow.queue.empty()


def test_stop_ends_every_subscription_even_a_full_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feed_module, "QUEUE_LIMIT", 2)
    feed = Feed(None, poll_s=1)  # type: ignore[arg-type]
    idle, full = feed.subscribe(None), feed.subscribe(frozenset({"south"}))
    feed.publish([FeedEvent(1, "south", "raised", "{}"), FeedEvent(2, "south", "raised", "{}")])
    assert idle.queue.get_nowait().id == 1  # type: ignore[union-attr]
    assert idle.queue.get_nowait().id == 2  # type: ignore[union-attr]
    feed.stop()
    assert idle.queue.get_nowait() is None
    items = []
    while not full.queue.empty():
        items.append(full.queue.get_nowait())
    assert items and items[-1] is None


def test_run_polls_publishes_and_reports_health(web: Web) -> None:
    async def scenario() -> list[int]:
        feed = Feed(DeskQueries(web.db), poll_s=0.01)
        assert not feed.healthy()
        subscription = feed.subscribe(frozenset({"south"}))
        task = asyncio.create_task(feed.run())
        while feed.polls < 1:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(web.raise_alert, "north")
        await asyncio.to_thread(web.raise_alert, "south")
        event = await asyncio.wait_for(subscription.queue.get(), 5)
        assert feed.healthy()
        feed.stop()
        await asyncio.wait_for(task, 5)
        assert await subscription.queue.get() is None
        return [event.id] if event is not None else []

    assert asyncio.run(scenario()) == [web.events("south-alert-2")[0][0]]


def test_a_page_resumes_from_before_an_open_gap_so_a_late_commit_is_replayed(web: Web, feed: Feed) -> None:
    """A page that has seen event 10 while 9 was still uncommitted must get 9 when it reconnects (or when it
    is rendered then): the resume position stays below the open gap."""
    alert_id = web.raise_alert()  # event 1
    feed.poll_once()
    assert feed.resume_from(1) == 1
    _insert_event(web, 10, alert_id)
    feed.poll_once()
    assert feed.safe_position == 1 and feed.resume_from(10) == 1
    _insert_event(web, 9, alert_id)  # commits late
    replayed = _ids(feed.replay(None, feed.resume_from(10)))
    assert 9 in replayed and 10 in replayed  # the page applies 10 again by alert: harmless, and 9 is not lost
    feed.poll_once()
    assert feed.safe_position == 1  # 2..8 are still open gaps within their grace period


def test_at_start_missing_ids_just_below_the_newest_are_watched(web: Web, feed: Feed) -> None:
    alert_id = web.raise_alert()  # event 1
    _insert_event(web, 5, alert_id)  # 2..4 taken by transactions still open when the desk starts
    assert feed.poll_once() == []
    assert feed.high_water == 5 and feed.safe_position == 1
    _insert_event(web, 3, alert_id)
    assert _ids(feed.poll_once()) == [3]
