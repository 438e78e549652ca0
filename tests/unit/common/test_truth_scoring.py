"""Scoring alerts against a stream's ground truth (the demo's and ``evaluate-streams``' verdict)."""

from __future__ import annotations

from datetime import UTC, datetime

from common.app.scoring import score_against_truth
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
