"""The alert rules: N of M, thresholds, cooldown, de-duplication, camera offline."""

from __future__ import annotations

import hashlib

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


def test_snapshot_restore_keeps_window_cooldown_and_outage(make_result, make_health) -> None:
    clock = FakeClock()
    rules = engine(2, 3, cooldown_s=100, clock=clock)
    assert rules.on_result(make_result(0, HI)) == []
    assert rules.on_result(make_result(1, HI))  # alert at t=2 s, cooldown until t=102 s
    assert rules.on_result(make_result(40, HI)) == []  # t=80 s: one hit, kept in the window
    rules.on_health(make_health("e1", OFFLINE, at=clock.now()))
    clock.advance(20)
    restored = engine(2, 3, cooldown_s=100, clock=clock)
    restored.restore(rules.snapshot())

    later = [make_result(40, HI), make_result(41, HI), make_result(60, HI)]  # 40 again: a redelivery
    expected = [a for r in later for a in rules.on_result(r)]
    got = [a for r in later for a in restored.on_result(r)]
    assert [a.clip_ids for a in got] == [("cam-1-clip-40", "cam-1-clip-41", "cam-1-clip-60")]
    assert got == expected
    clock.advance(15)
    assert [a.alert_kind for a in restored.tick()] == [AlertKind.CAMERA_OFFLINE]
