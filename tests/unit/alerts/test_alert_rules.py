"""The alert rules: N of M, thresholds, cooldown, de-duplication, camera offline."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from alerts.rules import RuleEngine
from common.clock import FakeClock
from common.schemas import AlertKind, CameraState
from common.settings import AlertRuleSettings, Settings

HI, LO = 0.9, 0.1


def engine(n: int = 2, m: int = 3, cooldown_s: float = 60.0, threshold: float | None = None,
           model_threshold: float = 0.5, offline_after_s: float = 30.0, clock: FakeClock | None = None,
           **kwargs: int) -> RuleEngine:
    rules = AlertRuleSettings(
        n_of_m=(n, m), cooldown_s=cooldown_s, threshold=threshold, offline_alert_after_s=offline_after_s
    )
    # the engine receives the threshold resolved as a deployment resolves it (settings, else the model's)
    resolved = Settings(alerts=rules).alert_threshold(model_threshold)
    return RuleEngine(rules, resolved, clock or FakeClock(), **kwargs)


@pytest.mark.parametrize(
    ("n", "m", "probabilities", "alert_at"),
    [
        (2, 3, [HI, LO, HI], [2]),
        (2, 3, [HI, LO, LO, HI], []),
        (2, 3, [HI, HI], [1]),
        (2, 3, [LO, LO, LO, LO], []),
        (3, 3, [HI, HI, LO, HI, HI], []),
        (3, 3, [HI, HI, LO, HI, HI, HI], [5]),
        (1, 1, [LO, HI], [1]),
        (2, 3, [HI, LO, HI, HI, LO, HI], [2, 5]),  # window cleared after the first alert; cooldown 0 here
    ],
)
def test_n_of_m(make_result, n: int, m: int, probabilities: list[float], alert_at: list[int]) -> None:
    rules = engine(n, m, cooldown_s=0)
    raised = [i for i, p in enumerate(probabilities) if rules.on_result(make_result(i, p))]
    assert raised == alert_at


def test_duplicate_clip_counts_once(make_result) -> None:
    rules = engine(2, 3)
    assert rules.on_result(make_result(0, HI)) == []
    assert rules.on_result(make_result(0, HI)) == []  # the same clip delivered again
    assert rules.on_result(make_result(1, LO)) == []
    assert len(rules.on_result(make_result(2, HI))) == 1


def test_seen_ids_are_bounded(make_result) -> None:
    rules = engine(1, 1, cooldown_s=0, seen_capacity=3)
    for i in range(10):
        rules.on_result(make_result(i, LO))
    assert len(rules._windows["cam-1"].seen) == 3


@pytest.mark.parametrize(
    ("config_threshold", "model_threshold", "probability", "alerts"),
    [
        (None, 0.5, 0.6, True),  # the model's calibrated threshold
        (None, 0.7, 0.6, False),
        (0.4, 0.7, 0.6, True),  # the configured threshold overrides the model's
        (0.8, 0.5, 0.6, False),
        (None, 0.6, 0.6, True),  # at the threshold counts as suspicious
    ],
)
def test_threshold_from_model_or_config(
    make_result, config_threshold: float | None, model_threshold: float, probability: float, alerts: bool
) -> None:
    rules = engine(1, 1, threshold=config_threshold, model_threshold=model_threshold)
    assert rules.threshold == (config_threshold if config_threshold is not None else model_threshold)
    assert bool(rules.on_result(make_result(0, probability))) is alerts


def test_alert_content(make_result) -> None:
    rules = engine(2, 3)
    rules.on_result(make_result(0, 0.7, snapshot_path="/ev/0.jpg"))
    rules.on_result(make_result(1, LO, snapshot_path="/ev/1.jpg"))
    (alert,) = rules.on_result(make_result(2, 0.95, snapshot_path="/ev/2.jpg"))
    assert alert.alert_kind == AlertKind.SUSPICIOUS_ACTIVITY
    assert alert.probability == 0.95
    assert alert.clip_ids == ("cam-1-clip-0", "cam-1-clip-2")
    assert (alert.source_start_s, alert.source_end_s) == (0.0, 8.0)
    assert alert.snapshot_path == "/ev/2.jpg"
    assert alert.store_id == "store-1" and alert.camera_id == "cam-1"
    assert alert.raised_at == make_result(2, 0).captured_at
    assert "cam-1" in alert.message and "0.95" in alert.message
    expected_id = hashlib.sha1(b"suspicious_activity|cam-1|cam-1-clip-0").hexdigest()
    assert alert.alert_id == expected_id

    again = engine(2, 3)  # reprocessing after a crash gives the same id
    ids = [a.alert_id for i, p in enumerate([0.7, LO, 0.95]) for a in again.on_result(make_result(i, p))]
    assert ids == [expected_id]


def test_out_of_order_results_are_windowed_by_capture_time(make_result) -> None:
    rules = engine(2, 3)
    assert rules.on_result(make_result(0, HI)) == []
    assert rules.on_result(make_result(2, LO)) == []
    (alert,) = rules.on_result(make_result(1, HI))  # arrives late, belongs between 0 and 2
    assert alert.clip_ids == ("cam-1-clip-0", "cam-1-clip-1")
    # A clip older than the window it would join is outside the last M and cannot complete a trigger.
    rules = engine(2, 2, cooldown_s=0)
    for i, p in [(1, LO), (2, LO), (0, HI), (3, HI)]:
        assert rules.on_result(make_result(i, p)) == []


def test_late_clip_of_an_alerted_window_cannot_trigger_again(make_result) -> None:
    rules = engine(2, 3, cooldown_s=0)
    rules.on_result(make_result(0, HI))
    assert rules.on_result(make_result(2, HI))
    assert rules.on_result(make_result(1, HI)) == []  # late, older than the alert
    assert rules.on_result(make_result(3, HI)) == []  # one fresh hit is not two


@pytest.mark.parametrize(
    ("second_burst_at_s", "alerts_again"),
    [(10.0, False), (59.0, False), (60.0, True), (300.0, True)],
)
def test_cooldown_on_result_time(make_result, second_burst_at_s: float, alerts_again: bool) -> None:
    clock = FakeClock()  # never advanced: the cooldown runs on captured_at, not on the clock
    rules = engine(2, 3, cooldown_s=60, clock=clock)
    first = [rules.on_result(make_result(i, HI, at_s=i - 1.0)) for i in range(2)]  # alert at t=0
    assert [len(a) for a in first] == [0, 1]
    second = [
        rules.on_result(make_result(10 + i, HI, at_s=second_burst_at_s - 1 + i)) for i in range(2)
    ]
    assert (sum(len(a) for a in second) == 1) is alerts_again


def test_cameras_are_independent(make_result) -> None:
    rules = engine(2, 3)
    assert rules.on_result(make_result(0, HI, camera_id="a")) == []
    assert rules.on_result(make_result(0, HI, camera_id="b")) == []
    (alert,) = rules.on_result(make_result(1, HI, camera_id="a"))
    assert alert.camera_id == "a"


# -- camera offline ----------------------------------------------------------------------------------
# Steps: ("health", event_id, state) | ("advance", seconds) | ("tick", expected number of alerts)
OFFLINE, ONLINE, ENDED, ERROR = CameraState.OFFLINE, CameraState.ONLINE, CameraState.ENDED, CameraState.ERROR


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param([("health", "e1", OFFLINE), ("advance", 29), ("tick", 0), ("advance", 2), ("tick", 1),
                      ("advance", 100), ("tick", 0)], id="one-alert-per-outage"),
        pytest.param([("health", "e1", OFFLINE), ("advance", 31), ("tick", 1), ("health", "e2", ONLINE),
                      ("health", "e3", OFFLINE), ("advance", 10), ("tick", 0), ("advance", 25), ("tick", 1)],
                     id="new-outage-after-online-alerts-again"),
        pytest.param([("health", "e1", OFFLINE), ("advance", 20), ("health", "e2", ONLINE), ("advance", 60),
                      ("tick", 0)], id="back-online-before-limit"),
        pytest.param([("health", "e1", ENDED), ("advance", 1000), ("tick", 0)], id="ended-is-not-offline"),
        pytest.param([("health", "e1", OFFLINE), ("advance", 10), ("health", "e2", ENDED), ("advance", 100),
                      ("tick", 0)], id="ended-closes-an-outage"),
        pytest.param([("health", "e1", OFFLINE), ("advance", 20), ("health", "e2", OFFLINE), ("advance", 15),
                      ("tick", 1)], id="repeated-offline-keeps-the-start"),
        pytest.param([("health", "e1", ERROR), ("advance", 31), ("tick", 1)], id="error-is-an-outage"),
        pytest.param([("health", "e1", OFFLINE), ("health", "e1", OFFLINE), ("advance", 31), ("tick", 1),
                      ("tick", 0)], id="duplicate-event"),
    ],
)
def test_camera_offline(make_health, steps: list[tuple]) -> None:
    clock = FakeClock()
    rules = engine(offline_after_s=30, clock=clock)
    ids: list[str] = []
    for step in steps:
        if step[0] == "health":
            assert rules.on_health(make_health(step[1], step[2], at=clock.now())) == []
        elif step[0] == "advance":
            clock.advance(step[1])
        else:
            alerts = rules.tick()
            assert len(alerts) == step[1], step
            for alert in alerts:
                assert alert.alert_kind == AlertKind.CAMERA_OFFLINE and alert.camera_id == "cam-1"
                assert alert.probability is None and "cam-1" in alert.message
            ids.extend(a.alert_id for a in alerts)
    assert len(set(ids)) == len(ids)  # each outage has its own alert id


RESTART_STREAMS = [
    pytest.param([HI, HI, LO, LO, HI, HI], 0.0, id="two-bursts"),
    pytest.param([HI, LO, HI, HI, HI, LO, HI, HI, LO, LO], 0.0, id="back-to-back"),
    pytest.param([HI, HI, HI, HI, LO, HI, HI, HI, HI, HI], 10.0, id="cooldown-10s"),
    pytest.param([HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI], 60.0, id="long-cooldown"),
    pytest.param([LO, HI, LO, LO, HI, LO, HI, LO, LO, HI, HI], 0.0, id="sparse-hits"),
]


@pytest.mark.parametrize(("probabilities", "cooldown_s"), RESTART_STREAMS)
def test_a_rebuilt_window_raises_what_the_uninterrupted_one_raises(
    make_result, probabilities: list[float], cooldown_s: float
) -> None:
    """Restart before every clip in turn: rebuilt from what a database holds at that point (the results
    before the clip, the last alert before it), the engine raises the same alerts, with the same ids,
    as one that never stopped."""
    results = [make_result(i, p) for i, p in enumerate(probabilities)]
    live = engine(2, 3, cooldown_s=cooldown_s)
    raised = [live.on_result(r) for r in results]  # raised[i]: the alerts clip i completed
    for restart in range(len(results)):
        stored = [a for step in raised[:restart] for a in step]
        first = results[restart]
        last_alert_at = max((a.raised_at for a in stored if a.raised_at < first.captured_at), default=None)
        history = [r for r in results[:restart] if last_alert_at is None or r.captured_at > last_alert_at]
        rebuilt = engine(2, 3, cooldown_s=cooldown_s)
        replayed = rebuilt.rebuild_window("cam-1", last_alert_at, history[-rebuilt.replay_limit :])
        after = [a for r in results[restart:] for a in rebuilt.on_result(r)]
        expected = [a for step in raised[restart:] for a in step]
        assert [a.alert_id for a in replayed] == [], f"restart before clip {restart} re-raised a stored alert"
        assert after == expected, f"restart before clip {restart}"


def test_a_rebuilt_window_raises_an_alert_its_predecessor_never_stored(make_result) -> None:
    """The worker died after consuming clip 1 but before storing its alert: the replay raises it."""
    results = [make_result(0, HI), make_result(1, HI), make_result(2, LO)]
    live = engine(2, 3)
    live.on_result(results[0])
    (original,) = live.on_result(results[1])
    rebuilt = engine(2, 3)
    assert rebuilt.rebuild_window("cam-1", None, results[:2]) == [original]
    assert rebuilt.on_result(results[2]) == []
    assert rebuilt.on_result(results[1]) == []  # a redelivered clip counts once


@pytest.mark.parametrize(
    ("events", "stored", "after_s", "alerts"),
    [
        pytest.param([("e2", OFFLINE, 3), ("e1", ONLINE, 0)], False, 27, 1, id="offline-3s-before-restart"),
        pytest.param([("e2", OFFLINE, 3), ("e1", ONLINE, 0)], False, 26, 0, id="not-yet-30s"),
        pytest.param([("e2", OFFLINE, 3), ("e1", ONLINE, 0)], True, 100, 0, id="alert-already-stored"),
        pytest.param([("e3", ERROR, 10), ("e2", OFFLINE, 3), ("e1", ONLINE, 0)], False, 27, 1,
                     id="counts-from-the-first-outage-event"),
        pytest.param([("e1", OFFLINE, 0)], False, 30, 1, id="offline-since-the-first-event"),
    ],
)
def test_an_outage_is_restored_from_its_health_events(
    make_health, events: list[tuple], stored: bool, after_s: float, alerts: int
) -> None:
    """Restored 3 s into the outage (the restart) and ticked ``after_s`` later: one alert once the outage
    has lasted 30 s since the event that started it, with that event's alert id, and none if stored."""
    from alerts.rules import alert_id_for

    clock = FakeClock()
    t0 = clock.now()
    messages = [make_health(e, state, at=t0 + timedelta(seconds=s)) for e, state, s in events]
    start = [m for m in messages if m.state in (OFFLINE, ERROR)][-1]
    clock.advance((start.at - t0).total_seconds() + 3)  # the restart, 3 s into the outage
    rules = engine(offline_after_s=30, clock=clock)
    asked: list[str] = []
    assert rules.restore_outage(messages, lambda alert_id: asked.append(alert_id) or stored)
    assert asked == [alert_id_for(AlertKind.CAMERA_OFFLINE, "cam-1", start.event_id)]
    assert rules.on_health(messages[0]) == []  # the same event redelivered changes nothing
    clock.advance(after_s)
    raised = rules.tick() + rules.tick()
    assert len(raised) == alerts
    assert all(a.alert_id == asked[0] for a in raised)


def test_an_outage_that_ended_is_not_restored(make_health) -> None:
    rules = engine()
    assert rules.restore_outage([make_health("e2", ONLINE), make_health("e1", OFFLINE)], lambda _: False) is False
    assert rules.restore_outage([], lambda _: False) is False
