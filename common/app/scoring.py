"""Scoring an embedded run against ground truth: which scripted incidents raised an alert, which alerts were
for nothing, and how the model saw each incident.  Shared by ``aislewatch demo`` and ``evaluate-streams``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common.schemas import AlertKind
from inference.synth import GroundTruth

# An alert counts for an incident when its clips overlap the act, allowing for the clip window.
MATCH_BEFORE_S = 2.0
MATCH_AFTER_S = 5.0


def load_truths(streams: dict[str, Path]) -> dict[str, GroundTruth]:
    """camera id → the ground truth written beside its recording (``X.mp4`` → ``X.truth.json``)."""
    return {cid: GroundTruth.from_json(p.with_suffix(".truth.json").read_text()) for cid, p in streams.items()}


def _alert_matches(alert: Any, camera_id: str, incident: Any) -> bool:
    start, end = alert.source_start_s or 0.0, alert.source_end_s or 0.0
    return (
        alert.kind == AlertKind.SUSPICIOUS_ACTIVITY
        and alert.camera_id == camera_id
        and start <= incident.end_s + MATCH_AFTER_S
        and end >= incident.start_s - MATCH_BEFORE_S
    )


def score_against_truth(alerts: list[Any], truths: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Match suspicious-activity alerts to ground-truth incidents.  Returns per-incident rows and the number
    of false alarms: alerts near no incident (a second alert for a caught incident is a repeat, not one)."""
    rows, false_alarms = match_alerts(alerts, truths)
    return rows, len(false_alarms)


def match_alerts(alerts: list[Any], truths: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Any]]:
    """``score_against_truth`` with the false alarms themselves, so they can be counted per camera.  A camera
    whose truth lists no incident (a recording known to hold none) makes every alert on it a false alarm."""
    rows: list[dict[str, Any]] = []
    near_an_incident: set[str] = set()
    for camera_id, truth in truths.items():
        for incident in truth.incidents:
            matching = [a for a in alerts if _alert_matches(a, camera_id, incident)]
            near_an_incident.update(a.alert_id for a in matching)
            hit = matching[0] if matching else None
            rows.append({
                "camera": camera_id,
                "start_s": round(incident.start_s, 1),
                "end_s": round(incident.end_s, 1),
                "detected": hit is not None,
                "alert_id": hit.alert_id if hit else None,
                "alert_at_s": round(hit.source_end_s, 1) if hit and hit.source_end_s is not None else None,
                "probability": round(hit.probability, 3) if hit and hit.probability is not None else None,
            })
    false_alarms = [a for a in alerts if a.kind == AlertKind.SUSPICIOUS_ACTIVITY and a.alert_id not in near_an_incident]
    return rows, false_alarms


# Bin edges of the score histogram: tenths of the probability axis.
HISTOGRAM_EDGES: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))


def score_distribution(probabilities: Sequence[float], threshold: float) -> dict[str, Any]:
    """How a model scored a camera's clips: count, min / median / p90 / p99 / max, the share of clips at or
    over ``threshold``, and counts per tenth of [0, 1] (the last bin holds 1.0).  Quantiles interpolate
    linearly between clips (numpy's default); with no clips every statistic is None."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.size == 0:
        return {"clips": 0, "min": None, "median": None, "p90": None, "p99": None, "max": None,
                "at_or_over_threshold": None, "histogram": {"edges": list(HISTOGRAM_EDGES), "counts": [0] * 10}}
    counts, _ = np.histogram(np.clip(p, 0.0, 1.0), bins=np.asarray(HISTOGRAM_EDGES))
    q = np.quantile(p, [0.5, 0.9, 0.99])
    return {
        "clips": int(p.size),
        "min": round(float(p.min()), 4),
        "median": round(float(q[0]), 4),
        "p90": round(float(q[1]), 4),
        "p99": round(float(q[2]), 4),
        "max": round(float(p.max()), 4),
        "at_or_over_threshold": round(float(np.mean(p >= threshold)), 4),
        "histogram": {"edges": list(HISTOGRAM_EDGES), "counts": [int(c) for c in counts]},
    }


def incident_detail(results: list[Any], camera_id: str, start_s: float, end_s: float,
                    threshold: float) -> dict[str, Any]:
    """How the model saw one incident: the clips whose window overlaps it, holds it whole, scores over the
    threshold, and their best score."""
    overlapping = [
        r for r in results
        if r.camera_id == camera_id and r.source_start_s is not None and r.source_end_s is not None
        and r.source_start_s < end_s and start_s < r.source_end_s
    ]
    holding = [r for r in overlapping if r.source_start_s <= start_s and end_s <= r.source_end_s]
    return {
        "clips_overlapping": len(overlapping),
        "clips_over_threshold": sum(1 for r in overlapping if r.probability >= threshold),
        "clips_holding_act": len(holding),
        "peak_p": round(max((r.probability for r in overlapping), default=0.0), 3),
    }


# An extra column of the incident table: header, width, and the cell's text for a row.
Column = tuple[str, int, Callable[[dict[str, Any]], str]]


def print_incident_table(rows: list[dict[str, Any]], columns: Sequence[Column]) -> None:
    """One line per incident: camera, span, caught or MISSED, then ``columns``; ruled above and below."""
    width = max([10, *(len(r["camera"]) for r in rows)])
    header = f"{'camera':{width}} {'incident (s)':>14} {'caught':>7}" + "".join(f" {h:>{w}}" for h, w, _ in columns)
    line = "-" * max(72, len(header))
    print(line)
    print(header)
    for row in rows:
        span = f"{row['start_s']:.1f}-{row['end_s']:.1f}"
        caught = "yes" if row["detected"] else "MISSED"
        cells = "".join(f" {cell(row):>{w}}" for _, w, cell in columns)
        print(f"{row['camera']:{width}} {span:>14} {caught:>7}{cells}")
    print(line)
