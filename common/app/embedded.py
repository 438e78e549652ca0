"""Every role in one process over recorded camera files, until they have ended and everything they made
has been classified and ruled on: the engine of ``aislewatch demo`` and ``aislewatch evaluate-streams``.

Not a separate code path: the same ingest supervisor, inference worker and alert worker as a deployment,
over the in-process bus and SQLite, with the settings of a real deployment except for where state is kept.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.app.runtime import Pipeline
from common.db import Database
from common.settings import Settings, load_settings

log = logging.getLogger(__name__)

# The store recorded cameras belong to when the caller names none.
RECORDED_STORE: dict[str, Any] = {"id": "recorded", "name": "Recorded cameras", "timezone": "UTC"}


def say(message: str) -> None:
    """A progress line for a person watching (not a log record)."""
    print(message, flush=True)


def stream_settings(
    out: Path,
    cameras: list[dict[str, Any]],
    *,
    store: dict[str, Any] | None = None,
    store_of: dict[str, dict[str, Any]] | None = None,
    model_path: Path | None = None,
    threshold: float | None = None,
    n_of_m: tuple[int, int] | None = None,
    overlap: float | None = None,
    cooldown_s: float = 20.0,
) -> Settings:
    """Embedded settings for recorded camera files (``cameras``: id, name, source), with state under ``out``:
    the defaults of a real deployment (the clip grid and alert rule among them, unless given) except for
    where things are kept.  Every camera is in ``store`` unless ``store_of`` (camera id → store) says otherwise."""
    camera_settings = [
        {
            "id": cam["id"],
            "name": cam.get("name", cam["id"]),
            "source": str(cam["source"]),
            "fps": 15,
            "realtime": False,
            "clip": {} if overlap is None else {"overlap": overlap},
        }
        for cam in cameras
    ]
    model: dict[str, Any] = {"threshold": threshold}
    if model_path is not None:
        model["path"] = str(model_path)
    stores: dict[str, dict[str, Any]] = {}
    for cam, camera in zip(cameras, camera_settings, strict=True):
        home = (store_of or {}).get(cam["id"], store or RECORDED_STORE)
        stores.setdefault(home["id"], {**home, "cameras": []})["cameras"].append(camera)
    return load_settings(
        None,
        overrides={
            "stores": list(stores.values()),
            "database": {"url": f"sqlite:///{out / 'aislewatch.db'}"},
            "bus": {"kind": "inprocess"},
            "model": model,
            "alerts": {"cooldown_s": cooldown_s, **({} if n_of_m is None else {"n_of_m": list(n_of_m)})},
            "reporting": {"output_dir": str(out / "reports")},
            "service": {"evidence_dir": str(out / "evidence"), "metrics_port": 0},
            "ingest": {"spool_dir": str(out / "spool")},
        },
    )


@dataclass
class EmbeddedRun:
    """What one embedded run over recorded cameras left in its database."""

    db: Database  # open: the caller closes it
    results: list[Any]
    alerts: list[Any]
    health: list[Any]
    frames: int
    clips: int


def prepare_output(out: Path) -> Path:
    """``out`` resolved and emptied of a previous run's database, evidence, spool and reports."""
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if (out / "aislewatch.db").exists():  # say so: a desk user added to the last run's database goes with it
        log.warning("starting afresh in %s: the previous run's database, evidence, spool and reports are removed",
                    out)
    for stale in ("aislewatch.db", "aislewatch.db-wal", "aislewatch.db-shm"):
        (out / stale).unlink(missing_ok=True)
    shutil.rmtree(out / "evidence", ignore_errors=True)
    shutil.rmtree(out / "spool", ignore_errors=True)
    shutil.rmtree(out / "reports", ignore_errors=True)
    return out


def run_embedded(settings: Settings, classifier: Any, *, started: float | None = None,
                 timeout_s: float = 240.0) -> EmbeddedRun:
    """Every stage (ingest, inference, alerts) in this process until the recorded cameras have ended and
    everything they produced has been classified and ruled on, with a progress line every 5 s."""
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
        say(f"  frames {frames:6d}  clips {clips:4d}  classified {inferred:4d}  elapsed {now - started:5.0f} s")

    try:
        drained = pipeline.drain(timeout_s=timeout_s, progress=progress)
    finally:
        pipeline.close()
    ingest_counters = [w.counters() for w in pipeline.ingest.workers.values()]
    failed = pipeline.failed_worker()
    if failed is not None:
        raise RuntimeError(f"{failed.name} failed: {failed.error}")
    if not drained:
        say("  warning: the pipeline did not drain completely before the time limit")
    db = Database.from_settings(settings)
    return EmbeddedRun(
        db=db,
        results=db.results(),
        alerts=db.alerts(),
        health=db.health_events(),
        frames=sum(c.frames_read for c in ingest_counters),
        clips=sum(c.clips_published for c in ingest_counters),
    )
