"""Event-level evaluation: recorded camera streams with ground truth → the real pipeline → caught, missed,
false alarms per camera-hour.

Clip accuracy on a held-out split says how often one window is right; a security desk feels something
else: whether each theft raised an alert, and how many alerts were for nothing.  This runs the production
workers (motion gating, the clip grid, the model, the N-of-M rule and its cooldown) embedded over every
``*.mp4`` in a folder that has a ``.truth.json`` beside it (as ``aislewatch synth stream`` writes them,
or as a deployment writes for its own labelled recordings), and scores the alerts against the truth.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from common.app.embedded import prepare_output, run_embedded, stream_settings
from common.app.scoring import incident_detail, load_truths, print_incident_table, score_against_truth


def find_streams(stream_dir: Path) -> dict[str, Path]:
    """camera id (the file stem) → video, for every video with a ground-truth sidecar."""
    stream_dir = Path(stream_dir)
    if not stream_dir.is_dir():
        raise FileNotFoundError(f"{stream_dir} is not a folder of streams")
    streams = {
        p.stem: p for p in sorted(stream_dir.glob("*.mp4")) if p.with_suffix(".truth.json").is_file()
    }
    if not streams:
        raise FileNotFoundError(f"no *.mp4 with a .truth.json beside it in {stream_dir}")
    return streams


def evaluate_streams(
    stream_dir: Path,
    out: Path,
    *,
    model_path: Path | None = None,
    threshold: float | None = None,
    n_of_m: tuple[int, int] | None = None,
    overlap: float | None = None,
) -> dict[str, Any]:
    """Run the embedded pipeline over ``stream_dir`` and write ``out/stream-eval.json``."""
    from common.app.runtime import alert_threshold
    from inference.model import classifier_from_settings

    started = time.monotonic()
    streams = find_streams(stream_dir)
    truths = load_truths(streams)
    out = prepare_output(out)
    settings = stream_settings(
        out,
        [{"id": cid, "source": path} for cid, path in streams.items()],
        store={"id": "eval", "name": "Stream evaluation", "timezone": "UTC"},
        model_path=model_path,
        threshold=threshold,
        n_of_m=n_of_m,
        overlap=overlap,
        # generator streams may put two incidents on one camera 10 s apart; the rule's cooldown must not
        # hide the second (one incident's clips span about 5 s, so 8 s still stops repeats)
        cooldown_s=8.0,
    )
    classifier = classifier_from_settings(settings.model, settings.inference)
    used_threshold = alert_threshold(settings, classifier)
    rule = settings.alerts.n_of_m
    print(f"{len(streams)} streams, model {classifier.version}, threshold {used_threshold:.2f}, "
          f"rule {rule[0]} of {rule[1]}", flush=True)
    run = run_embedded(settings, classifier, started=started, timeout_s=max(240.0, 60.0 * len(streams)))
    try:
        rows, false_alarms = score_against_truth(run.alerts, truths)
        # score_against_truth lists the incidents in this order
        incidents = [incident for truth in truths.values() for incident in truth.incidents]
        for row, incident in zip(rows, incidents, strict=True):
            row.update(incident_detail(run.results, row["camera"], incident.start_s, incident.end_s,
                                        used_threshold))
        hours = sum(t.duration_s for t in truths.values()) / 3600.0
        detected = sum(1 for r in rows if r["detected"])
        report: dict[str, Any] = {
            "streams": len(streams),
            "hours": round(hours, 4),
            "model_version": classifier.version,
            "threshold": used_threshold,
            "n_of_m": list(rule),
            "incidents": len(rows),
            "detected": detected,
            "recall": round(detected / len(rows), 4) if rows else None,
            "false_alarms": false_alarms,
            "false_alarms_per_camera_hour": round(false_alarms / hours, 2) if hours else None,
            "normal_shoppers": sum(len(t.normal_events) for t in truths.values()),
            "clips": run.clips,
            "results": len(run.results),
            "incident_table": rows,
            "seconds": round(time.monotonic() - started, 1),
            "note": "Synthetic streams measure the pipeline and the model on generator scenes, not a real store.",
        }
    finally:
        run.db.close()
    (out / "stream-eval.json").write_text(json.dumps(report, indent=2, default=str))
    _print_report(report)
    return report


def _print_report(report: dict[str, Any]) -> None:
    print_incident_table(report["incident_table"], [
        ("clips>=thr", 11, lambda r: str(r["clips_over_threshold"])),
        ("holding", 8, lambda r: str(r["clips_holding_act"])),
        ("peak p", 7, lambda r: f"{r['peak_p']:.2f}"),
    ])
    print(f"incidents {report['incidents']}  detected {report['detected']}  false alarms {report['false_alarms']} "
          f"({report['false_alarms_per_camera_hour']} per camera-hour over {report['hours'] * 60:.0f} camera-minutes, "
          f"{report['normal_shoppers']} normal shoppers)")
