"""DeskQueries: reads filtered by the principal's stores in SQL, and version-checked actions whose alert state,
alert event and audit row commit together."""

from __future__ import annotations

import threading

import pytest

from alerts.desk.audit import AuditAction
from alerts.desk.queries import ActionConflict, ActionNotAllowed, AlertFilter, AlertNotFound, DeskQueries
from alerts.desk.roles import Principal
from common.schemas import Verdict
from tests.unit.alerts.desk.webapp import Web


@pytest.fixture
def queries(web: Web) -> DeskQueries:
    return web.app.state.desk.queries  # type: ignore[no-any-return]


def test_reads_are_scoped_to_the_principals_stores(web: Web, queries: DeskQueries) -> None:
    north, south = web.raise_alert("north"), web.raise_alert("south")
    guard, admin = web.principal("gs"), web.principal("admin")
    assert [v.alert_id for v in queries.list_alerts(guard)] == [south]
    assert [v.alert_id for v in queries.list_alerts(guard, AlertFilter(store_id="north"))] == []
    assert [v.alert_id for v in queries.list_alerts(admin)] == [south, north]  # newest first
    assert queries.alert(guard, south).store_name == "South"
    with pytest.raises(AlertNotFound):
        queries.alert(guard, north)
    with pytest.raises(AlertNotFound):
        queries.evidence_paths(guard, north)
    with pytest.raises(AlertNotFound):
        queries.acknowledge(guard, north, Verdict.FALSE_ALARM, version=1)
    assert queries.history(guard, north) == []
    assert [(c.store_id, c.open_alerts) for c in queries.store_counts(guard)] == [("south", 1)]
    assert [(c.store_id, c.open_alerts) for c in queries.store_counts(admin)] == [("north", 1), ("south", 1)]
    assert queries.cameras(guard) == [("south-cam", "S cam", "south")]
    assert {e for e, _, _ in queries.events(stores=frozenset({"south"}))} == {web.events(south)[0][0]}
    assert queries.last_event_id(frozenset({"north"})) == web.events(north)[0][0]


@pytest.mark.parametrize("where, expected", [
    (AlertFilter(), ["south-alert-3", "south-alert-2", "south-alert-1"]),
    (AlertFilter(status="open"), ["south-alert-3", "south-alert-2"]),
    (AlertFilter(status="acknowledged"), ["south-alert-1"]),
    (AlertFilter(camera_id="south-cam", kind="suspicious_activity"), ["south-alert-3", "south-alert-2",
                                                                      "south-alert-1"]),
    (AlertFilter(camera_id="north-cam"), []),
    (AlertFilter(kind="camera_offline"), []),
])
def test_list_filters(web: Web, queries: DeskQueries, where: AlertFilter, expected: list[str]) -> None:
    guard = web.principal("gs")
    first = web.raise_alert()
    web.raise_alert()
    web.raise_alert()
    queries.acknowledge(guard, first, Verdict.FALSE_ALARM, version=1)
    assert [v.alert_id for v in queries.list_alerts(guard, where)] == expected


def test_list_pages_with_before_id(web: Web, queries: DeskQueries) -> None:
    ids = [web.raise_alert() for _ in range(5)]
    guard = web.principal("gs")
    page = queries.list_alerts(guard, limit=2)
    assert [v.alert_id for v in page] == ids[:2:-1][:2]
    rest = queries.list_alerts(guard, limit=10, before_id=page[-1].id)
    assert [v.alert_id for v in rest] == ids[2::-1]


def test_open_acknowledged_resolved_reopened(web: Web, queries: DeskQueries) -> None:
    alert_id = web.raise_alert()
    guard, manager = web.principal("gs"), web.principal("ms")
    acked = queries.acknowledge(guard, alert_id, "theft_prevented", version=1, note="  bag left behind  ",
                                address="10.1.1.1")
    assert (acked.status, acked.verdict, acked.note, acked.acknowledged_by, acked.version) == (
        "acknowledged", "theft_prevented", "bag left behind", "gs", 2)
    assert acked.acknowledged_at is not None
    resolved = queries.resolve(manager, alert_id, version=2)
    assert (resolved.status, resolved.resolved_by, resolved.verdict, resolved.version) == (
        "resolved", "ms", "theft_prevented", 3)
    reopened = queries.reopen(manager, alert_id, version=3)
    assert (reopened.status, reopened.verdict, reopened.note, reopened.acknowledged_by, reopened.resolved_by,
            reopened.version) == ("open", None, None, None, None, 4)
    assert [(e, who) for _, _, e, who in web.events(alert_id)] == [
        ("raised", None), ("acknowledged", "gs"), ("resolved", "ms"), ("reopened", "ms")]
    assert [e for _, e, _ in queries.history(guard, alert_id)] == ["raised", "acknowledged", "resolved", "reopened"]
    audit = [(r.action, r.username, r.role, r.store_id, r.target) for r in web.audit_rows()
             if r.action.startswith("alert_")]
    assert audit == [
        ("alert_acknowledged", "gs", "guard", "south", alert_id),
        ("alert_resolved", "ms", "manager", "south", alert_id),
        ("alert_reopened", "ms", "manager", "south", alert_id),
    ]
    rows = web.audit_rows()
    ack = next(r for r in rows if r.action == AuditAction.ALERT_ACKNOWLEDGED)
    assert (ack.address, ack.detail) == ("10.1.1.1", "verdict theft_prevented; note: bag left behind")
    reopen = next(r for r in rows if r.action == AuditAction.ALERT_REOPENED)
    assert reopen.detail == "was resolved with verdict theft_prevented by gs"  # the verdict it cleared


def test_invalid_verdict_is_refused_before_anything_is_written(web: Web, queries: DeskQueries) -> None:
    alert_id = web.raise_alert()
    with pytest.raises(ValueError, match="bogus"):
        queries.acknowledge(web.principal("gs"), alert_id, "bogus", version=1)
    assert web.stored(alert_id).status == "open"


@pytest.mark.parametrize("steps, refused", [
    ([], "resolve"),  # an open alert is acknowledged first
    ([], "reopen"),  # it is open already
    (["acknowledge"], "acknowledge"),  # at its current version: not a conflict, a state that does not allow it
    (["acknowledge", "resolve"], "resolve"),
    (["acknowledge", "resolve"], "acknowledge"),
])
def test_actions_the_state_does_not_allow(web: Web, queries: DeskQueries, steps: list[str], refused: str) -> None:
    alert_id = web.raise_alert()
    manager = web.principal("ms")

    def act(name: str, version: int) -> object:
        if name == "acknowledge":
            return queries.acknowledge(manager, alert_id, Verdict.UNSURE, version=version)
        return getattr(queries, name)(manager, alert_id, version=version)

    for version, step in enumerate(steps, start=1):
        act(step, version)
    before = web.stored(alert_id)
    with pytest.raises(ActionNotAllowed):
        act(refused, before.version)
    after = web.stored(alert_id)
    assert (after.status, after.version) == (before.status, before.version)
    assert len(web.events(alert_id)) == 1 + len(steps)


def test_guard_may_not_reopen_or_resolve(web: Web, queries: DeskQueries) -> None:
    alert_id = web.raise_alert()
    guard = web.principal("gs")
    queries.acknowledge(guard, alert_id, Verdict.FALSE_ALARM, version=1)
    for action in (queries.reopen, queries.resolve):
        with pytest.raises(ActionNotAllowed):
            action(guard, alert_id, version=2)
    assert web.stored(alert_id).status == "acknowledged"


def test_stale_version_is_a_conflict_that_tells_who_acted(web: Web, queries: DeskQueries) -> None:
    alert_id = web.raise_alert()
    queries.acknowledge(web.principal("gs"), alert_id, Verdict.THEFT_CONFIRMED, version=1)
    with pytest.raises(ActionConflict) as conflict:
        queries.acknowledge(web.principal("gs2"), alert_id, Verdict.FALSE_ALARM, version=1)
    assert conflict.value.current.acknowledged_by == "gs"
    assert "gs" in str(conflict.value)
    assert web.stored(alert_id).verdict == "theft_confirmed"


def test_concurrent_acknowledgements_exactly_one_wins(web: Web, queries: DeskQueries) -> None:
    alert_id = web.raise_alert()
    guards = [Principal(web.principal("gs").user_id, f"guard-{n}", web.principal("gs").role, frozenset({"south"}))
              for n in range(8)]
    barrier = threading.Barrier(len(guards))
    outcomes: dict[str, str] = {}

    def attempt(guard: Principal) -> None:
        barrier.wait()
        try:
            queries.acknowledge(guard, alert_id, Verdict.THEFT_CONFIRMED, version=1)
            outcomes[guard.username] = "won"
        except ActionConflict as conflict:
            outcomes[guard.username] = f"conflict:{conflict.current.acknowledged_by}"
        except Exception as exc:  # anything else (a locked database) fails the test below
            outcomes[guard.username] = repr(exc)

    threads = [threading.Thread(target=attempt, args=(g,)) for g in guards]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    winners = [name for name, outcome in outcomes.items() if outcome == "won"]
    assert len(winners) == 1, outcomes
    assert sorted(o for o in outcomes.values() if o != "won") == [f"conflict:{winners[0]}"] * 7
    assert [e for _, _, e, _ in web.events(alert_id)] == ["raised", "acknowledged"]
    assert [r.username for r in web.audit_rows(AuditAction.ALERT_ACKNOWLEDGED)] == winners
    stored = web.stored(alert_id)
    assert (stored.acknowledged_by, stored.version) == (winners[0], 2)


def test_note_is_trimmed_and_cut(web: Web, queries: DeskQueries) -> None:
    alert_id = web.raise_alert()
    view = queries.acknowledge(web.principal("gs"), alert_id, Verdict.UNSURE, version=1, note="x" * 5000)
    assert view.note == "x" * 2000
    other = web.raise_alert()
    assert queries.acknowledge(web.principal("gs"), other, Verdict.UNSURE, version=1, note="   ").note is None


def test_events_carry_the_alert_as_it_stands_now(web: Web, queries: DeskQueries) -> None:
    alert_id = web.raise_alert()
    queries.acknowledge(web.principal("gs"), alert_id, Verdict.FALSE_ALARM, version=1)
    rows = queries.events(after_id=0)
    assert [(e, view.status) for _, e, view in rows] == [("raised", "acknowledged"), ("acknowledged", "acknowledged")]
    first = rows[0][0]
    assert [i for i, _, _ in queries.events(after_id=first)] == [rows[1][0]]
    assert [i for i, _, _ in queries.events(after_id=rows[1][0], also_ids=[first])] == [first]
