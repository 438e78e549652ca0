"""The live stream (/api/stream) over a real server: replay after Last-Event-ID, then live events, only of the
signed-in person's stores; a stream whose session or token ends is closed within REVALIDATE_S."""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from pwdlib import PasswordHash

from alerts.desk import api
from alerts.desk.server import DeskServer
from alerts.desk.web_auth import SESSION_COOKIE
from common.schemas import Verdict
from tests.unit.alerts.desk.webapp import Web

END = object()


@dataclass
class Stream:
    """An open /api/stream read on a thread: its events (id, event, data) arrive on ``events``; END when closed."""

    response: httpx.Response
    events: queue.Queue[object] = field(default_factory=queue.Queue)

    def next(self, timeout_s: float = 5.0) -> dict[str, str]:
        item = self.events.get(timeout=timeout_s)
        assert item is not END, "the stream closed"
        return item  # type: ignore[return-value]

    def next_alert(self, timeout_s: float = 5.0) -> tuple[int, str, str]:
        """(event id, event, alert id) of the next alert event."""
        item = self.next(timeout_s)
        assert item.get("event") == "alert", item
        data = json.loads(item["data"])
        assert int(item["id"]) == data["event_id"]
        return data["event_id"], data["event"], data["alert"]["alert_id"]

    def until_ready(self) -> list[tuple[int, str, str]]:
        """The replayed alert events, up to the "ready" marker."""
        replayed = []
        while (item := self.next()).get("event") != "ready":
            data = json.loads(item["data"])
            replayed.append((data["event_id"], data["event"], data["alert"]["alert_id"]))
        return replayed

    def quiet_for(self, seconds: float) -> bool:
        try:
            item = self.events.get(timeout=seconds)
        except queue.Empty:
            return True
        raise AssertionError(f"expected nothing, got {item!r}")

    def closed_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if self.events.get(timeout=max(0.01, deadline - time.monotonic())) is END:
                    return True
            except queue.Empty:
                break
        return False


def _read(response: httpx.Response, events: queue.Queue[object]) -> None:
    current: dict[str, str] = {}
    try:
        for line in response.iter_lines():
            if not line:
                if current:
                    events.put(current)
                current = {}
            elif not line.startswith(":"):  # ":" starts a comment (the keep-alive ping)
                key, _, value = line.partition(":")
                current[key] = value.removeprefix(" ")
    except (httpx.HTTPError, RuntimeError):
        pass
    finally:
        events.put(END)


@pytest.fixture
def web(tmp_path: Path, hasher: PasswordHash) -> Iterator[Web]:
    """The desk app without its TestClient entered: the real server below runs its lifespan (and feed)."""
    built = Web.build(tmp_path / "web", hasher)
    yield built
    built.db.close()


@pytest.fixture
def server(web: Web, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(api, "REVALIDATE_S", 0.5)
    desk = DeskServer(web.app, "127.0.0.1", 0).start()
    # The feed's first poll sets where it starts; an alert raised before it is only seen through a replay.
    deadline = time.monotonic() + 10
    while web.app.state.desk.feed.polls < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield desk.url
    finally:
        desk.stop()


@pytest.fixture
def open_stream(server: str) -> Iterator[Callable[..., Stream]]:
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(httpx.Client(base_url=server, timeout=httpx.Timeout(10.0)))

        def open_(headers: dict[str, str], params: dict[str, str] | None = None) -> Stream:
            response = stack.enter_context(client.stream("GET", "/api/stream", headers=headers, params=params))
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            stream = Stream(response)
            threading.Thread(target=_read, args=(response, stream.events), daemon=True).start()
            return stream

        yield open_


def _feed_caught_up(web: Web) -> None:
    """Wait until the server's feed has polled every event raised so far.  A stream replays from the lower
    of its last id and the feed's safe position (an event may commit late below ids already sent), and the
    feed puts what it polls after a stream opened on that stream as live: both need the poll to be done."""
    last = max(i for i, _, _, _ in web.events())
    feed = web.app.state.desk.feed
    deadline = time.monotonic() + 10
    while (feed.safe_position or 0) < last and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (feed.safe_position or 0) >= last, (feed.safe_position, last)


def _cookie(web: Web, username: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={web.new_session(username).token}"}


def test_signed_out_stream_is_401(web: Web, server: str) -> None:
    assert httpx.get(server + "/api/stream").status_code == 401


def test_live_events_only_of_the_guards_store(web: Web, open_stream: Callable[..., Stream]) -> None:
    guard = open_stream(_cookie(web, "gs"))
    admin = open_stream(_cookie(web, "admin"))
    assert guard.until_ready() == [] and admin.until_ready() == []
    north = web.raise_alert("north")
    south = web.raise_alert("south")
    event_id, event, alert_id = guard.next_alert()
    assert (event, alert_id) == ("raised", south)  # north's came first, and was not sent
    assert [a for _, _, a in (admin.next_alert(), admin.next_alert())] == [north, south]
    web.app.state.desk.queries.acknowledge(web.principal("gn"), north, Verdict.FALSE_ALARM, version=1)
    web.app.state.desk.queries.acknowledge(web.principal("gs"), south, Verdict.FALSE_ALARM, version=1)
    later_id, event, alert_id = guard.next_alert()
    assert (event, alert_id) == ("acknowledged", south) and later_id > event_id
    assert guard.quiet_for(0.3)


def test_replay_after_last_event_id_then_live(web: Web, open_stream: Callable[..., Stream]) -> None:
    raised = [web.raise_alert(store) for store in ("south", "north", "south", "north", "south")]
    south_events = [(i, e, a) for i, a, e, _ in web.events() if a.startswith("south")]
    _feed_caught_up(web)  # else the feed's position (not yet past these) is where the replays start
    everything = open_stream({**_cookie(web, "gs"), "Last-Event-ID": "0"})
    assert everything.until_ready() == south_events  # no north event, in id order
    after = south_events[0][0]
    rest = open_stream({**_cookie(web, "gs"), "Last-Event-ID": str(after)})
    assert rest.until_ready() == south_events[1:]
    from_param = open_stream(_cookie(web, "gs"), params={"after": str(south_events[1][0])})
    assert from_param.until_ready() == south_events[2:]
    web.raise_alert("north")
    live = web.raise_alert("south")
    for stream in (everything, rest, from_param):
        assert stream.next_alert()[2] == live  # and nothing replayed a second time
    assert len(raised) == 5


def test_admin_replay_includes_every_store(web: Web, open_stream: Callable[..., Stream]) -> None:
    north, south = web.raise_alert("north"), web.raise_alert("south")
    stream = open_stream({**_cookie(web, "admin"), "Last-Event-ID": "0"})
    assert [a for _, _, a in stream.until_ready()] == [north, south]


def test_revoked_session_closes_the_stream(web: Web, open_stream: Callable[..., Stream]) -> None:
    new = web.new_session("gs")
    stream = open_stream({"Cookie": f"{SESSION_COOKIE}={new.token}"})
    other = open_stream(_cookie(web, "gs"))
    stream.until_ready()
    other.until_ready()
    web.accounts.revoke_session(new.token)
    assert stream.closed_within(3.0)  # REVALIDATE_S is 0.5 here; a quiet stream must not wait for an event
    assert not other.closed_within(0.2)  # another session of the same user stays


def test_disabled_user_stream_is_closed(web: Web, open_stream: Callable[..., Stream]) -> None:
    stream = open_stream(_cookie(web, "gs"))
    stream.until_ready()
    web.accounts.disable_user("gs")
    assert stream.closed_within(3.0)


def test_expired_session_closes_the_stream(web: Web, open_stream: Callable[..., Stream]) -> None:
    stream = open_stream(_cookie(web, "gs"))
    stream.until_ready()
    web.clock.advance(31 * 60)
    assert stream.closed_within(3.0)


def test_revoked_token_closes_the_stream(web: Web, open_stream: Callable[..., Stream]) -> None:
    token = web.accounts.create_token("gs", "wallboard")
    stream = open_stream({"Authorization": f"Bearer {token}"})
    stream.until_ready()
    [info] = web.accounts.list_tokens("gs")
    web.accounts.revoke_token(info.id)
    assert stream.closed_within(3.0)
