"""``aislewatch demo``: the whole job on one machine, on synthetic store cameras with known incidents.

Cameras (video files) → motion-gated clips → in-process bus → ConvLSTM → SQLite → alert rules →
alerts → per-store PDF report, then a comparison with the streams' ground truth.  Every stage is the
production worker; only the settings differ from a real deployment.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common.settings import Settings, load_settings

# Two cameras of one store; each stream has scripted concealments among normal shoppers.
DEMO_CAMERAS: tuple[dict[str, Any], ...] = (
    {"id": "aisle-1", "name": "Aisle 1 (snacks)", "seed": 101, "view": 0},
    {"id": "aisle-2", "name": "Aisle 2 (cosmetics)", "seed": 202, "view": 1},
)
DEMO_STORE = {"id": "demo-store", "name": "Demo Store (synthetic)", "timezone": "UTC"}
# The synthetic store whose camera views the bundled model was trained on (`aislewatch synth dataset
# --cameras 6 --store-seed 7`): the demo films new shoppers with two of those views, as a deployment
# runs its model on the cameras whose footage trained it.
DEMO_STORE_SEED = 7
# A clip every window_s * (1 - overlap) seconds while there is motion, and the alert rule over them.
DEMO_OVERLAP = 0.75
DEMO_N_OF_M = (2, 4)
# An alert counts for an incident when its clips overlap the act, allowing for the clip window.
MATCH_BEFORE_S = 2.0
MATCH_AFTER_S = 5.0


@dataclass(frozen=True)
class StreamSpec:
    duration_s: float
    incidents: int
    normal_shoppers: int


FULL = StreamSpec(duration_s=150.0, incidents=2, normal_shoppers=4)
QUICK = StreamSpec(duration_s=60.0, incidents=1, normal_shoppers=2)


def stream_settings(
    out: Path,
    cameras: list[dict[str, Any]],
    *,
    store: dict[str, Any] | None = None,
    model_path: Path | None = None,
    threshold: float | None = None,
    n_of_m: tuple[int, int] = DEMO_N_OF_M,
    overlap: float = DEMO_OVERLAP,
    cooldown_s: float = 20.0,
) -> Settings:
    """Embedded settings for recorded camera files (``cameras``: id, name, source), with state under ``out``:
    the defaults of a real deployment except for where things are kept."""
    camera_settings = [
        {
            "id": cam["id"],
            "name": cam.get("name", cam["id"]),
            "source": str(cam["source"]),
            "fps": 15,
            "realtime": False,
            "clip": {"window_s": 4.0, "overlap": overlap},
        }
        for cam in cameras
    ]
    model: dict[str, Any] = {"threshold": threshold}
    if model_path is not None:
        model["path"] = str(model_path)
    return load_settings(
        None,
        overrides={
            "stores": [{**(store or DEMO_STORE), "cameras": camera_settings}],
            "database": {"url": f"sqlite:///{out / 'aislewatch.db'}"},
            "bus": {"kind": "inprocess"},
            "model": model,
            "alerts": {"n_of_m": list(n_of_m), "cooldown_s": cooldown_s},
            "reporting": {"output_dir": str(out / "reports")},
            "service": {"evidence_dir": str(out / "evidence"), "metrics_port": 0},
        },
    )


def demo_settings(out: Path, streams: dict[str, Path]) -> Settings:
    """The demo's configuration: the defaults of a real deployment, pointed at files under ``out``."""
    cameras = [{"id": cam["id"], "name": cam["name"], "source": streams[cam["id"]]} for cam in DEMO_CAMERAS]
    return stream_settings(out, cameras)


def _say(message: str) -> None:
    print(message, flush=True)


def _make_streams(out: Path, spec: StreamSpec) -> dict[str, Path]:
    from common.scenes import camera_scene_seed, write_stream

    streams: dict[str, Path] = {}
    for cam in DEMO_CAMERAS:
        path = out / "streams" / f"{cam['id']}.mp4"
        # Rendered every run (a few seconds), so a stream always matches the generator's current version.
        path.parent.mkdir(parents=True, exist_ok=True)
        _say(f"  rendering synthetic camera {cam['id']} ({spec.duration_s:.0f} s, "
             f"{spec.incidents} concealments, {spec.normal_shoppers} normal shoppers)")
        write_stream(
            path, duration_s=spec.duration_s, seed=int(cam["seed"]), incidents=spec.incidents,
            normal_shoppers=spec.normal_shoppers, progress=False,
            scene_seed=camera_scene_seed(DEMO_STORE_SEED, int(cam["view"])),
        )
        streams[str(cam["id"])] = path
    return streams


def _alert_matches(alert: Any, camera_id: str, incident: Any) -> bool:
    start, end = alert.source_start_s or 0.0, alert.source_end_s or 0.0
    return (
        alert.kind == "suspicious_activity"
        and alert.camera_id == camera_id
        and start <= incident.end_s + MATCH_AFTER_S
        and end >= incident.start_s - MATCH_BEFORE_S
    )


def score_against_truth(alerts: list[Any], truths: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Match suspicious-activity alerts to ground-truth incidents.  Returns per-incident rows and the number
    of false alarms: alerts near no incident (a second alert for a caught incident is a repeat, not one)."""
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
    false_alarms = [a for a in alerts if a.kind == "suspicious_activity" and a.alert_id not in near_an_incident]
    return rows, len(false_alarms)


@dataclass
class EmbeddedRun:
    """What one embedded run over recorded cameras left in its database."""

    db: Any  # common.db.Database, open: the caller closes it
    results: list[Any]
    alerts: list[Any]
    health: list[Any]
    frames: int
    clips: int


def prepare_output(out: Path) -> Path:
    """``out`` resolved and emptied of a previous run's database, evidence and reports."""
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("aislewatch.db", "aislewatch.db-wal", "aislewatch.db-shm"):
        (out / stale).unlink(missing_ok=True)
    shutil.rmtree(out / "evidence", ignore_errors=True)
    shutil.rmtree(out / "reports", ignore_errors=True)
    return out


def run_embedded(settings: Settings, classifier: Any, *, started: float | None = None,
                 timeout_s: float = 240.0) -> EmbeddedRun:
    """Every stage (ingest, inference, alerts) in this process until the recorded cameras have ended and
    everything they produced has been classified and ruled on, with a progress line every 5 s."""
    from common.db import Database
    from common.runtime import Pipeline
    from inference.worker import InferenceWorker

    started = time.monotonic() if started is None else started
    pipeline = Pipeline.build(settings, {"ingest", "infer", "alerts"}, classifier=classifier)
    pipeline.start()
    last_line = [0.0]

    def progress() -> None:
        now = time.monotonic()
        if now - last_line[0] < 5.0:
            return
        last_line[0] = now
        counters = [w.counters() for w in pipeline.ingest.workers.values()]
        frames = sum(c.frames_read for c in counters)
        clips = sum(c.clips_published for c in counters)
        inferred = sum(w.stats.clips for w in pipeline.workers if isinstance(w, InferenceWorker))
        _say(f"  frames {frames:6d}  clips {clips:4d}  classified {inferred:4d}  elapsed {now - started:5.0f} s")

    try:
        drained = pipeline.drain(timeout_s=timeout_s, progress=progress)
    finally:
        pipeline.close()
    ingest_counters = [w.counters() for w in pipeline.ingest.workers.values()]
    failed = pipeline.failed_worker()
    if failed is not None:
        raise RuntimeError(f"{failed.name} failed: {failed.error}")
    if not drained:
        _say("  warning: the pipeline did not drain completely before the time limit")
    db = Database.from_settings(settings)
    return EmbeddedRun(
        db=db,
        results=db.results(),
        alerts=db.alerts(),
        health=db.health_events(),
        frames=sum(c.frames_read for c in ingest_counters),
        clips=sum(c.clips_published for c in ingest_counters),
    )


def run_demo(out: Path, quick: bool = False) -> dict[str, Any]:
    """Run the embedded pipeline end to end and write ``out/summary.json``."""
    from common.runtime import load_classifier
    from common.scenes import GroundTruth
    from reporting.pdf import render_store_report

    started = time.monotonic()
    out = prepare_output(out)

    _say("[1/5] synthetic store cameras")
    streams = _make_streams(out, QUICK if quick else FULL)
    truths = {cid: GroundTruth.from_json(p.with_suffix(".truth.json").read_text()) for cid, p in streams.items()}
    settings = demo_settings(out, streams)

    _say(f"[2/5] loading the model {settings.model.path.name}")
    classifier = load_classifier(settings)
    _say(f"  model {classifier.version}, threshold {classifier.threshold:.2f} "
         f"(trained on {classifier.metadata.trained_on.get('description', 'unknown data')})")

    _say("[3/5] running cameras → clips → ConvLSTM → alerts (embedded: in-process bus + SQLite)")
    run_started = datetime.now(UTC)
    run = run_embedded(settings, classifier, started=started)
    db = run.db

    _say("[4/5] manager report")
    # The scheduled job covers whole past days; the demo's data is minutes old, so cover the run's hours.
    store = settings.stores[0]
    period_start = run_started.replace(minute=0, second=0, microsecond=0)
    period_end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    if period_end - period_start < timedelta(hours=2):
        period_start = period_end - timedelta(hours=2)
    pdf_path = settings.reporting.output_dir / store.id / f"{store.id}-{period_start:%Y%m%d}.pdf"
    report_pdf = str(render_store_report(db, store, period_start, period_end, pdf_path, generated_at=datetime.now(UTC)))

    _say("[5/5] comparing with the ground truth")
    rows, false_alarms = score_against_truth(run.alerts, truths)
    detected = sum(1 for r in rows if r["detected"])
    summary = {
        "incidents": len(rows),
        "detected": detected,
        "missed": len(rows) - detected,
        "false_alarms": false_alarms,
        "frames": run.frames,
        "clips": run.clips,
        "results": len(run.results),
        "suspicious_clips": sum(1 for r in run.results if r.suspicious),
        "alerts": len([a for a in run.alerts if a.kind == "suspicious_activity"]),
        "camera_offline_alerts": len([a for a in run.alerts if a.kind == "camera_offline"]),
        "health_events": len(run.health),
        "report_pdf": report_pdf,
        "model_version": classifier.version,
        "model_threshold": classifier.threshold,
        "model_trained_on": classifier.metadata.trained_on,
        "incident_table": rows,
        "started_at": run_started.isoformat(),
        "seconds": round(time.monotonic() - started, 1),
        "note": "Synthetic scenes: this checks the pipeline, not real-world accuracy.",
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    db.close()
    _print_summary(summary)
    return summary


def _print_summary(summary: dict[str, Any]) -> None:
    line = "-" * 72
    print(line)
    print(f"{'camera':10} {'incident (s)':>16} {'caught':>8} {'alert at (s)':>13} {'p':>6}")
    for row in summary["incident_table"]:
        span = f"{row['start_s']:.1f}-{row['end_s']:.1f}"
        caught = "yes" if row["detected"] else "MISSED"
        at = f"{row['alert_at_s']:.1f}" if row["alert_at_s"] is not None else "-"
        p = f"{row['probability']:.2f}" if row["probability"] is not None else "-"
        print(f"{row['camera']:10} {span:>16} {caught:>8} {at:>13} {p:>6}")
    print(line)
    print(f"clips {summary['clips']}  results {summary['results']}  suspicious clips {summary['suspicious_clips']}  "
          f"alerts {summary['alerts']}")
    print(f"incidents {summary['incidents']}  detected {summary['detected']}  false alarms {summary['false_alarms']}")
    print(f"report: {summary['report_pdf']}")
    print(f"finished in {summary['seconds']} s — synthetic scenes: this shows the pipeline works end to end; "
          "it says nothing about accuracy in a real store.")
