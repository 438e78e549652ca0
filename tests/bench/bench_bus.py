"""Bytes on the bus: what a camera puts on the clips topic, before (every clip whole, 8 bits) and after
(chained clips: each frame once, at the model's input precision), on the demo's streams and the real footage.

Each video is read by the real ingest worker (``ingest.worker.CameraWorker``, in-process bus) twice: with
``bus.clip_format: full`` at 8 bits (what the previous release sent) and with the defaults.  Per camera-second
of motion means per second of source time inside some cut clip's window (the same seconds both ways).

Parity: the bundled model scores the clips of both runs (the whole ones as they were, the chained ones
assembled by the inference worker's ``inference.clip_chains``).  Recorded beside the bytes: the largest
probability difference and the clips whose decision (probability at or above the model's threshold) differ.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from common.inprocess_bus import InProcessBus
from common.schemas import Topic
from common.settings import CameraSettings, ClipSettings
from ingest.worker import CameraWorker
from tests.clip_topic import whole_clips
from tests.videos import REAL_FOOTAGE


def _demo_streams(folder: Path, quick: bool) -> dict[str, Path]:
    """The demo's cameras as ``make demo`` renders them (its quick form with ``quick``)."""
    from common.app.demo import DEMO_CAMERAS, DEMO_STORE_SEED, FULL, QUICK
    from inference.synth import camera_scene_seed, write_stream

    spec = QUICK if quick else FULL
    out: dict[str, Path] = {}
    for cam in DEMO_CAMERAS:
        path = folder / f"{cam['id']}.mp4"
        write_stream(path, duration_s=spec.duration_s, seed=int(cam["seed"]), incidents=spec.incidents,
                     normal_shoppers=spec.normal_shoppers, progress=False,
                     scene_seed=camera_scene_seed(DEMO_STORE_SEED, int(cam["view"])))
        out[f"demo/{cam['id']}"] = path
    return out


def _read(
    video: Path, clip: ClipSettings, chained: bool, evidence: Path
) -> tuple[list[bytes], list[Any], float, float]:
    """The clips-topic messages of ``video``, its clips (whole), the seconds of motion they cover, and the
    ingest worker's CPU seconds (decoding, gating, cutting, snapshots and encoding: the encoding is the
    difference between the two runs)."""
    bus = InProcessBus()
    camera = CameraSettings(id="cam", source=str(video), clip=clip)
    worker = CameraWorker("store", camera, bus.publisher(), evidence, chained=chained)
    cpu = time.process_time()
    worker.setup()
    while worker.step():
        pass
    worker.shutdown()
    cpu = time.process_time() - cpu
    records = bus.consumer([Topic.CLIPS], "bench").poll(0, 1_000_000)
    clips = whole_clips(records)
    spans = sorted((c.header.source_start_s, c.header.source_end_s + clip.window_s / clip.frames) for c in clips)
    seconds, end = 0.0, -1.0
    for start, stop in spans:
        if stop > end:
            seconds += stop - max(start, end)
            end = stop
    return [r.value for r in records], clips, seconds, cpu


def _parity(before: list[Any], after: list[Any]) -> dict[str, Any]:
    from common.settings import Settings
    from inference.model import classifier_from_settings

    settings = Settings()
    classifier = classifier_from_settings(settings.model, settings.inference)
    by_id = {c.header.clip_id: c for c in after}
    pairs = [(b, by_id[b.header.clip_id]) for b in before if b.header.clip_id in by_id]
    if not pairs:
        return {"clips": 0}
    p_before = np.asarray(classifier.predict(np.stack([b.frames for b, _ in pairs])), dtype=np.float64)
    p_after = np.asarray(classifier.predict(np.stack([a.frames for _, a in pairs])), dtype=np.float64)
    threshold = classifier.threshold
    return {
        "model": classifier.version,
        "input_bits": int(getattr(classifier, "input_bits", 8)),
        "clips": len(pairs),
        "clips_only_before": len(before) - len(pairs),
        "clips_only_after": len(after) - len(pairs),
        "max_abs_probability_diff": float(np.max(np.abs(p_before - p_after))),
        "decisions_changed": int(np.sum((p_before >= threshold) != (p_after >= threshold))),
        "threshold": threshold,
    }


def run(quick: bool = False) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-bus-") as tmp:
        folder = Path(tmp)
        videos = _demo_streams(folder, quick)
        for path in sorted(REAL_FOOTAGE.glob("*")):
            if path.suffix.lower() in {".avi", ".mp4", ".mkv", ".mov"}:
                videos[f"real/{path.name}"] = path
        defaults = ClipSettings()
        rows: dict[str, Any] = {}
        totals = {"before_bytes": 0, "after_bytes": 0, "motion_s": 0.0, "clips": 0}
        for name, video in videos.items():
            print(f"  {name}", flush=True)
            before_msgs, before_clips, motion_s, before_cpu = _read(
                video, defaults.model_copy(update={"bits": 8}), False, folder / "ev-before")
            after_msgs, after_clips, _, after_cpu = _read(video, defaults, True, folder / "ev-after")
            b, a = sum(map(len, before_msgs)), sum(map(len, after_msgs))
            clips = len(before_clips)
            rows[name] = {
                "clips": clips,
                "motion_s": round(motion_s, 1),
                "before_bytes_per_clip": round(b / max(1, clips)),
                "after_bytes_per_clip": round(a / max(1, len(after_clips))),
                "before_bytes_per_motion_s": round(b / max(motion_s, 1e-9)),
                "after_bytes_per_motion_s": round(a / max(motion_s, 1e-9)),
                "after_over_before": round(a / max(1, b), 4),
                "after_messages": len(after_msgs),
                "ingest_cpu_ms_per_clip_before": round(1000 * before_cpu / max(1, clips), 2),
                "ingest_cpu_ms_per_clip_after": round(1000 * after_cpu / max(1, len(after_clips)), 2),
                "parity": _parity(before_clips, after_clips),
            }
            for key, value in (("before_bytes", b), ("after_bytes", a), ("motion_s", motion_s), ("clips", clips)):
                totals[key] += value
    worst = max(r["after_over_before"] for r in rows.values())
    return {
        "streams": rows,
        "after_over_before": round(totals["after_bytes"] / max(1, totals["before_bytes"]), 4),
        "worst_stream_after_over_before": worst,
        "target": "after_over_before <= 0.1 on every stream (bytes per camera-second of motion)",
        "meets_target": worst <= 0.1,
        "before": "bus.clip_format full, clip.bits 8 (every clip whole, zlib level 1)",
        "after": f"bus.clip_format chained, clip.bits {defaults.bits} (each frame once, delta-lzma2)",
        "clip": {"frames": defaults.frames, "size": defaults.size, "window_s": defaults.window_s,
                 "overlap": defaults.overlap},
        "wall_s": round(time.monotonic() - started, 1),
        "load_avg_before": round(load_before, 2),
        "load_avg_after": round(os.getloadavg()[0], 2),
    }
