"""Scoring alerts against a stream's ground truth (the demo's and ``evaluate-streams``' verdict)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from common.app.scoring import match_alerts, score_against_truth, score_distribution
from common.models import Alert
from inference.synth import Event, GroundTruth


def _truth(*incidents: tuple[float, float]) -> GroundTruth:
    return GroundTruth(
        fps=15.0, width=640, height=360, duration_s=150.0, seed=1,
        incidents=tuple(Event("concealment", a, b, a - 3.0, b + 3.0) for a, b in incidents),
        normal_events=(Event("put_back", 90.0, 92.0, 87.0, 95.0),),
    )


def _alert(alert_id: str, camera: str, start: float, end: float, kind: str = "suspicious_activity") -> Alert:
    return Alert(
        alert_id=alert_id, kind=kind, store_id="s", camera_id=camera, raised_at=datetime.now(UTC),
        probability=0.97, source_start_s=start, source_end_s=end,
    )


def test_an_alert_over_the_act_catches_it_and_one_elsewhere_is_a_false_alarm():
    truths = {"cam-a": _truth((20.0, 22.5), (60.0, 62.4))}
    alerts = [_alert("a1", "cam-a", 19.0, 23.9), _alert("a2", "cam-a", 88.0, 92.9)]
    rows, false_alarms = score_against_truth(alerts, truths)
    assert [r["detected"] for r in rows] == [True, False]
    assert rows[0]["alert_id"] == "a1" and rows[0]["alert_at_s"] == 23.9
    assert false_alarms == 1


def test_a_repeat_alert_for_a_caught_incident_is_not_a_false_alarm():
    truths = {"cam-a": _truth((20.0, 22.5))}
    alerts = [_alert("a1", "cam-a", 19.0, 23.9), _alert("a2", "cam-a", 22.0, 26.9)]
    rows, false_alarms = score_against_truth(alerts, truths)
    assert rows[0]["detected"] and false_alarms == 0


def test_alerts_only_count_on_their_own_camera_and_kind():
    truths = {"cam-a": _truth((20.0, 22.5)), "cam-b": _truth()}
    alerts = [_alert("b1", "cam-b", 19.0, 23.9), _alert("a-off", "cam-a", 19.0, 23.9, kind="camera_offline")]
    rows, false_alarms = score_against_truth(alerts, truths)
    assert rows == [{**rows[0], "detected": False}] and rows[0]["camera"] == "cam-a"
    assert false_alarms == 1  # cam-b has no incident; the offline alert is not a suspicious one


def test_on_a_recording_with_no_incident_every_suspicious_alert_is_a_false_alarm():
    truths = {"cam-a": _truth((20.0, 22.5)), "hall": _truth()}
    alerts = [_alert("a1", "cam-a", 19.0, 23.9), _alert("h1", "hall", 19.0, 23.9), _alert("h2", "hall", 40.0, 44.0),
              _alert("h-off", "hall", 50.0, 50.0, kind="camera_offline")]
    rows, false_alarms = match_alerts(alerts, truths)
    assert [r["detected"] for r in rows] == [True]
    assert [a.alert_id for a in false_alarms] == ["h1", "h2"]


@pytest.mark.parametrize(("scores", "expected"), [
    ([0.0, 0.05, 0.38, 0.5, 1.0], {"clips": 5, "min": 0.0, "median": 0.38, "max": 1.0, "at_or_over_threshold": 0.6,
                                   "counts": [2, 0, 0, 1, 0, 1, 0, 0, 0, 1]}),
    ([0.1, 0.2, 0.3, 0.4], {"clips": 4, "min": 0.1, "median": 0.25, "max": 0.4, "at_or_over_threshold": 0.25,
                            "counts": [0, 1, 1, 1, 1, 0, 0, 0, 0, 0]}),
    ([0.2], {"clips": 1, "min": 0.2, "median": 0.2, "max": 0.2, "at_or_over_threshold": 0.0,
             "counts": [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]}),
    ([], {"clips": 0, "min": None, "median": None, "max": None, "at_or_over_threshold": None, "counts": [0] * 10}),
])
def test_the_score_distribution_of_a_camera(scores, expected):
    dist = score_distribution(scores, threshold=0.38)
    assert {k: dist[k] for k in ("clips", "min", "median", "max", "at_or_over_threshold")} == {
        k: v for k, v in expected.items() if k != "counts"}
    assert dist["histogram"]["counts"] == expected["counts"] and len(dist["histogram"]["edges"]) == 11


def test_p90_and_p99_interpolate_between_clips():
    dist = score_distribution([i / 100 for i in range(101)], threshold=0.9)
    assert dist["p90"] == pytest.approx(0.9) and dist["p99"] == pytest.approx(0.99)
    assert dist["at_or_over_threshold"] == pytest.approx(11 / 101, abs=1e-4)
