"""Evidence video: what recording motion costs a camera in CPU and disk, at the default ``evidence`` settings.

The frames are the synthetic store scene (``inference.synth.render_stream``: a shelf aisle, shoppers walking in,
browsing, putting back and concealing, with sensor noise), rendered on the fly at a camera resolution of
1280x720 and of 640x480, 15 fps, and fed to one ``EvidenceRecorder`` (``ingest/evidence_video.py``) with the
default ``EvidenceSettings`` (640 wide, at most 15 fps, x264 ``veryfast`` CRF 28, 4 s segments, zerolatency).

- **recording**: every frame pushed as moving, so every frame is scaled, converted and encoded: the cost of one
  camera-second of motion (recorded video, margins included).  CPU is the process's CPU time
  (``time.process_time``: all threads, x264's too) spent inside ``push``/``close`` only, so rendering the scene
  is not counted; wall time beside it.  Bytes are the segments on disk, per camera-hour of motion.
  ``cameras_per_core`` = 1 / (CPU seconds per camera-second): how many cameras' motion one core keeps up with.
- **idle**: the same frames pushed as still: the pre-roll's upkeep (scale + I420 per kept frame, no encoding),
  what every camera pays while nothing moves.

The load average is recorded before and after (a busy machine inflates the wall times, less the CPU times).
``run(quick=False) -> dict``; ``python -m tests.bench evidence [--quick]`` merges it into build/bench.json.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common.evidence import segments_overlapping  # noqa: E402
from common.settings import EvidenceSettings  # noqa: E402
from inference.synth.streams import render_stream  # noqa: E402
from ingest.capture import Frame  # noqa: E402
from ingest.evidence_video import EvidenceRecorder, video_size  # noqa: E402

FPS = 15.0
RESOLUTIONS = ((1280, 720), (640, 480))
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
LOOKBACK_S, HOLD_S = 4.0, 1.0  # the clip window and motion hold defaults


def _stream(width: int, height: int, quick: bool) -> tuple[Any, float]:
    if quick:
        frames, truth = render_stream(11, duration_s=36, incidents=1, normal_shoppers=1, width=width, height=height)
    else:
        frames, truth = render_stream(11, duration_s=150, incidents=3, normal_shoppers=5, width=width, height=height)
    return frames, truth.duration_s


def _feed(width: int, height: int, quick: bool, moving: bool, directory: Path) -> dict[str, Any]:
    settings = EvidenceSettings()
    recorder = EvidenceRecorder(settings, directory, "bench", lookback_s=LOOKBACK_S, hold_s=HOLD_S)
    images, _ = _stream(width, height, quick)
    cpu = wall = 0.0
    n = 0
    for i, image in enumerate(images):
        frame = Frame(i, image, i / FPS, T0 + timedelta(seconds=i / FPS))
        c0, w0 = time.process_time(), time.perf_counter()
        recorder.push(frame, moving)
        cpu += time.process_time() - c0
        wall += time.perf_counter() - w0
        n += 1
    c0, w0 = time.process_time(), time.perf_counter()
    recorder.close("bench")
    cpu += time.process_time() - c0
    wall += time.perf_counter() - w0
    camera_s = n / FPS
    counters = recorder.counters()
    segments = segments_overlapping(directory, "bench", T0, T0 + timedelta(hours=1))
    size = sum(s.bytes for s in segments)
    return {
        "camera_seconds": round(camera_s, 1),
        "frames": n,
        "frames_encoded": counters.frames_encoded,
        "segments": len(segments),
        "bytes": size,
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
        "cpu_s_per_camera_s": round(cpu / camera_s, 4),
        "wall_s_per_camera_s": round(wall / camera_s, 4),
        "errors": counters.errors,
    }


def _resolution(width: int, height: int, quick: bool, work: Path) -> dict[str, Any]:
    settings = EvidenceSettings()
    recording = _feed(width, height, quick, True, work / f"rec-{width}x{height}")
    idle = _feed(width, height, quick, False, work / f"idle-{width}x{height}")
    if recording["errors"] or recording["frames_encoded"] != recording["frames"]:
        raise RuntimeError(f"evidence recording at {width}x{height} lost frames: {recording}")
    per_s = recording["cpu_s_per_camera_s"]
    bytes_per_s = recording["bytes"] / recording["camera_seconds"]
    vw, vh = video_size(width, height, settings.video_width)
    return {
        "camera": f"{width}x{height}",
        "video": f"{vw}x{vh}",
        "encode_cpu_s_per_camera_s": per_s,
        "encode_wall_s_per_camera_s": recording["wall_s_per_camera_s"],
        "bytes_per_camera_hour": round(bytes_per_s * 3600),
        "mb_per_camera_hour": round(bytes_per_s * 3600 / 1e6, 1),
        "kbit_per_s": round(bytes_per_s * 8 / 1000, 1),
        "cameras_per_core": round(1.0 / per_s, 1) if per_s > 0 else None,
        "idle_cpu_s_per_camera_s": idle["cpu_s_per_camera_s"],
        "recording": recording,
        "idle": {k: idle[k] for k in ("camera_seconds", "frames", "cpu_s", "cpu_s_per_camera_s", "bytes")},
    }


def run(quick: bool = False) -> dict[str, Any]:
    settings = EvidenceSettings()
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-evidence-"))
    try:
        results = {f"{w}x{h}": _resolution(w, h, quick, work) for w, h in RESOLUTIONS}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    headline = results["1280x720"]
    return {
        "settings": {
            "video_width": settings.video_width, "video_fps": settings.video_fps, "crf": settings.crf,
            "preset": settings.preset, "segment_s": settings.segment_s, "camera_fps": FPS,
        },
        "scene": "inference.synth.render_stream (store aisle, shoppers), every frame counted as motion",
        "encode_cpu_s_per_camera_s": headline["encode_cpu_s_per_camera_s"],
        "bytes_per_camera_hour": headline["bytes_per_camera_hour"],
        "cameras_per_core": headline["cameras_per_core"],
        "resolutions": results,
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
    }


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
