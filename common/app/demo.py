"""``aislewatch demo``: the whole job on one machine, on synthetic store cameras with known incidents.

Cameras (video files) → motion-gated clips → in-process bus → ConvLSTM → SQLite → alert rules →
alerts → per-store PDF report, then a comparison with the streams' ground truth.  Every stage is the
production worker; only the settings differ from a real deployment.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common.app.embedded import prepare_output, run_embedded, say, stream_settings
from common.app.scoring import load_truths, print_incident_table, score_against_truth
from common.config_paths import resolve_relative_paths
from common.schemas import AlertKind
from common.settings import Settings
from common.words import count

# Two stores of one chain with a camera each (so the security desk can show a guard only their store); each
# stream has scripted concealments among normal shoppers.
DEMO_CAMERAS: tuple[dict[str, Any], ...] = (
    {"id": "aisle-1", "name": "Aisle 1 (snacks)", "seed": 101, "view": 0, "store": "demo-north"},
    {"id": "aisle-2", "name": "Aisle 2 (cosmetics)", "seed": 202, "view": 1, "store": "demo-south"},
)
DEMO_STORES: dict[str, dict[str, Any]] = {
    "demo-north": {"id": "demo-north", "name": "Demo North (synthetic)", "timezone": "UTC"},
    "demo-south": {"id": "demo-south", "name": "Demo South (synthetic)", "timezone": "UTC"},
}
DEMO_ADMIN = "demo"
# The synthetic store whose camera views the bundled model was trained on (`aislewatch synth dataset
# --cameras 6 --store-seed 7`): the demo films new shoppers with two of those views, as a deployment
# runs its model on the cameras whose footage trained it.
DEMO_STORE_SEED = 7


@dataclass(frozen=True)
class DemoStreams:
    """How long each demo camera films and how many scripted concealments and normal shoppers it shows."""

    duration_s: float
    incidents: int
    normal_shoppers: int


FULL = DemoStreams(duration_s=150.0, incidents=2, normal_shoppers=4)
QUICK = DemoStreams(duration_s=60.0, incidents=1, normal_shoppers=2)


def demo_report_path(output_dir: Path, store_id: str, period_start: datetime) -> Path:
    """The demo's PDF of a store: its period is the run's hours, so it is named apart from what
    ``aislewatch report`` writes for the same store and day (``<store>-<day>.pdf``), which would replace it."""
    return Path(output_dir) / store_id / f"{store_id}-demo-{period_start:%Y%m%d-%H%M}.pdf"


def demo_settings(out: Path, streams: dict[str, Path]) -> Settings:
    """The demo's configuration: the defaults of a real deployment, pointed at files under ``out``."""
    cameras = [{"id": cam["id"], "name": cam["name"], "source": streams[cam["id"]]} for cam in DEMO_CAMERAS]
    return stream_settings(out, cameras, store_of={str(cam["id"]): DEMO_STORES[str(cam["store"])]
                                                   for cam in DEMO_CAMERAS})


def _make_streams(out: Path, spec: DemoStreams) -> dict[str, Path]:
    from inference.synth import camera_scene_seed, write_stream

    streams: dict[str, Path] = {}
    for cam in DEMO_CAMERAS:
        path = out / "streams" / f"{cam['id']}.mp4"
        # Rendered every run (a few seconds), so a stream always matches the generator's current version.
        path.parent.mkdir(parents=True, exist_ok=True)
        say(f"  rendering synthetic camera {cam['id']} ({spec.duration_s:.0f} s, "
             f"{count(spec.incidents, 'concealment')}, {count(spec.normal_shoppers, 'normal shopper')})")
        write_stream(
            path, duration_s=spec.duration_s, seed=int(cam["seed"]), incidents=spec.incidents,
            normal_shoppers=spec.normal_shoppers, progress=False,
            scene_seed=camera_scene_seed(DEMO_STORE_SEED, int(cam["view"])),
        )
        streams[str(cam["id"])] = path
    return streams


def run_demo(out: Path, quick: bool = False) -> dict[str, Any]:
    """Run the embedded pipeline end to end and write ``out/summary.json``."""
    from inference.model import classifier_from_settings
    from reporting.pdf import render_store_report

    started = time.monotonic()
    out = prepare_output(out)

    say("[1/5] synthetic store cameras")
    streams = _make_streams(out, QUICK if quick else FULL)
    truths = load_truths(streams)
    settings = demo_settings(out, streams)

    say(f"[2/5] loading the model {settings.model.path.name}")
    classifier = classifier_from_settings(settings.model, settings.inference)
    say(f"  model {classifier.version}, threshold {classifier.threshold:.2f} "
         f"(trained on {classifier.metadata.trained_on.get('description', 'unknown data')})")

    say("[3/5] running cameras → clips → ConvLSTM → alerts (embedded: in-process bus + SQLite)")
    run_started = datetime.now(UTC)
    run = run_embedded(settings, classifier, started=started)
    db = run.db

    say("[4/5] manager reports")
    # The scheduled job covers whole past days; the demo's data is minutes old, so cover the run's hours.
    period_start = run_started.replace(minute=0, second=0, microsecond=0)
    period_end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    if period_end - period_start < timedelta(hours=2):
        period_start = period_end - timedelta(hours=2)
    report_pdfs = []
    for store in settings.stores:
        pdf_path = demo_report_path(settings.reporting.output_dir, store.id, period_start)
        report_pdfs.append(str(render_store_report(db, store, period_start, period_end, pdf_path,
                                                   generated_at=datetime.now(UTC))))
    write_desk_config(out, settings)

    say("[5/5] comparing with the ground truth")
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
        "alerts": len([a for a in run.alerts if a.kind == AlertKind.SUSPICIOUS_ACTIVITY]),
        # the run waited for pending videos (Pipeline.drain → finish_videos): each alert has its video by now
        "evidence_videos": count_evidence_videos(run.alerts),
        "camera_offline_alerts": len([a for a in run.alerts if a.kind == AlertKind.CAMERA_OFFLINE]),
        "health_events": len(run.health),
        "report_pdf": report_pdfs[0],
        "report_pdfs": report_pdfs,
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


def count_evidence_videos(alerts: list[Any]) -> int:
    """Suspicious-activity alerts whose evidence video is stored and on disk."""
    return sum(1 for a in alerts if a.kind == AlertKind.SUSPICIOUS_ACTIVITY and a.evidence_video_path
               and Path(a.evidence_video_path).is_file())


def _print_summary(summary: dict[str, Any]) -> None:
    print_incident_table(summary["incident_table"], [
        ("alert at (s)", 13, lambda r: "-" if r["alert_at_s"] is None else f"{r['alert_at_s']:.1f}"),
        ("p", 6, lambda r: "-" if r["probability"] is None else f"{r['probability']:.2f}"),
    ])
    print(f"clips {summary['clips']}  results {summary['results']}  suspicious clips {summary['suspicious_clips']}  "
          f"alerts {summary['alerts']}  evidence videos {summary['evidence_videos']}")
    print(f"incidents {summary['incidents']}  detected {summary['detected']}  false alarms {summary['false_alarms']}")
    for pdf in summary["report_pdfs"]:
        print(f"report: {pdf}")
    print(f"finished in {summary['seconds']} s — synthetic scenes: this shows the pipeline works end to end; "
          "it says nothing about accuracy in a real store.")


def write_desk_config(out: Path, settings: Settings) -> Path:
    """``out/desk.yaml``: the demo's stores, database and evidence, so ``aislewatch desk -c`` and
    ``aislewatch users ... -c`` work on the demo's data."""
    import yaml

    config = {
        "stores": [
            {"id": s.id, "name": s.name, "timezone": s.timezone,
             "cameras": [{"id": c.id, "name": c.name, "source": str(c.source)} for c in s.cameras]}
            for s in settings.stores
        ],
        "database": {"url": settings.database.url},
        "service": {"evidence_dir": str(settings.service.evidence_dir)},
        "reporting": {"output_dir": str(settings.reporting.output_dir)},
    }
    # Absolute paths: a relative one in the file would be read relative to the file's folder.
    config = resolve_relative_paths(config, Settings, Path.cwd())
    path = out / "desk.yaml"
    path.write_text("# The demo's data, for `aislewatch desk -c` and `aislewatch users ... -c` (written by the demo).\n"
                    + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def serve_demo_desk(out: Path, port: int) -> None:
    """Keep the security desk up on the demo's alerts until Ctrl-C, with a fresh password for the demo admin."""
    import secrets
    import signal
    import threading

    from alerts.desk.accounts import AccountError, Accounts
    from alerts.desk.app import create_app
    from alerts.desk.server import DeskServer
    from common.app.runtime import open_database
    from common.settings import load_settings

    config = out.resolve() / "desk.yaml"
    settings = load_settings(config, overrides={"desk": {"port": port}})
    db = open_database(settings)
    accounts = Accounts.from_settings(db, settings)
    password = secrets.token_urlsafe(12)
    try:
        accounts.add_user(DEMO_ADMIN, password, "admin", actor="demo")
    except AccountError:  # a previous demo made it: a new password, printed below
        accounts.enable_user(DEMO_ADMIN, actor="demo")
        accounts.set_password(DEMO_ADMIN, password, actor="demo")
    server = DeskServer(create_app(settings, db), settings.desk.host, settings.desk.port).start()
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    store = settings.stores[0].id
    say("")
    say(f"security desk: {server.url}")
    say(f"  sign in as {DEMO_ADMIN!r} with password {password!r} (admin: every store; a new password each time)")
    say(f"  a guard who sees only {store}:  .venv/bin/aislewatch users add -c {config} guard1 --role guard "
        f"--store {store}")
    say("  Ctrl-C stops the desk")
    try:
        stop.wait()
    finally:
        server.stop()
        db.close()
