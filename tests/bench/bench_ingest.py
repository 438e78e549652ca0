"""Ingest benchmark: how close capture + motion + clip cutting gets to plain OpenCV decoding, on one core.

Makes a 640x360 H.264 stream (a moving rectangle over a noisy, textured background, with still periods),
pins the process to one core with one OpenCV thread, and measures in the same run, interleaved and
best-of-N (robust to other load on a shared machine):

- ``decode_fps``    a bare ``cv2.VideoCapture.read`` loop;
- ``pipeline_fps``  ``VideoSource`` + ``MotionDetector`` + ``ClipCutter`` (what the target is about);
- ``worker_fps``    a whole ``CameraWorker`` over ``InProcessBus`` (adds JPEG snapshots and clip encoding);
- per-step costs in microseconds per frame;
- 4 cameras as 4 threads in one process vs 4 processes (aggregate frames/s, all cores).

``run(quick=False) -> dict``; ``python3 tests/bench/bench_ingest.py [--quick]`` prints it as JSON.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common.inprocess_bus import InProcessBus  # noqa: E402
from common.settings import CameraSettings, ClipSettings, MotionSettings  # noqa: E402
from ingest.capture import SourceEnded, VideoSource  # noqa: E402
from ingest.clips import ClipCutter  # noqa: E402
from ingest.motion import MotionDetector  # noqa: E402
from ingest.worker import CameraWorker  # noqa: E402

WIDTH, HEIGHT, FPS = 640, 360, 15.0


def make_stream(path: Path, seconds: float, seed: int = 0) -> Path:
    """Write a 640x360 H.264 MP4: textured noisy background, a rectangle moving half of the time."""
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(rng.integers(30, 220, (HEIGHT, WIDTH, 3), dtype=np.uint8), (15, 15), 0)
    raw = path.with_suffix(".mp4v.mp4")
    writer = cv2.VideoWriter(str(raw), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    period = int(FPS * 5)
    for i in range(int(seconds * FPS)):
        noise = rng.normal(0, 4, (HEIGHT, WIDTH, 3))
        frame = np.clip(background + noise, 0, 255).astype(np.uint8)
        if (i // period) % 2 == 1:
            x = int((i % period) / period * (WIDTH - 90))
            cv2.rectangle(frame, (x, HEIGHT // 3), (x + 70, HEIGHT // 3 + 140), (40, 60, 200), -1)
        writer.write(frame)
    writer.release()
    subprocess.run(
        [
            "ffmpeg",
            "-y",
            "-loglevel",
            "error",
            "-i",
            str(raw),
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "30",
            str(path),
        ],
        check=True,
    )
    raw.unlink()
    return path


def _decode_fps(path: Path) -> float:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    n = 0
    start = time.perf_counter()
    while True:
        ok, _ = cap.read()
        if not ok:
            break
        n += 1
    elapsed = time.perf_counter() - start
    cap.release()
    return n / elapsed


def _pipeline_fps(path: Path, motion: MotionSettings, clip: ClipSettings) -> tuple[float, int]:
    source = VideoSource(str(path))
    detector: MotionDetector | None = None
    cutter = ClipCutter(clip, motion, FPS)
    n = clips = 0
    start = time.perf_counter()
    try:
        while True:
            frame = source.read()
            if detector is None:
                detector = MotionDetector(motion, frame.image.shape[1], frame.image.shape[0])
            clips += len(cutter.push(frame, detector.update(frame.image)))
            n += 1
    except SourceEnded:
        clips += len(cutter.flush())
    return n / (time.perf_counter() - start), clips


def _worker_fps(path: Path, evidence: Path, method: str = "diff") -> tuple[float, int]:
    bus = InProcessBus()
    camera = CameraSettings(id="bench", source=str(path), motion=MotionSettings(method=method))
    worker = CameraWorker("s1", camera, bus.publisher(), evidence)
    start = time.perf_counter()
    worker.run()
    elapsed = time.perf_counter() - start
    counters = worker.counters()
    return counters.frames_read / elapsed, counters.clips_published


def _step_costs(path: Path, frames: int = 150) -> dict[str, float]:
    """Microseconds per frame of each step, measured right after decoding each frame (cache-warm)."""
    motion = MotionSettings(method="diff")
    costs: dict[str, list[float]] = {
        "read": [],
        "motion_diff": [],
        "motion_mog2": [],
        "cutter_full": [],
        "cutter_motion": [],
    }
    source = VideoSource(str(path))
    diff = mog2 = None
    full = ClipCutter(ClipSettings(), motion, FPS)
    crop = ClipCutter(ClipSettings(crop="motion"), motion, FPS)
    for _ in range(frames):
        t0 = time.perf_counter()
        try:
            frame = source.read()
        except SourceEnded:
            break
        t1 = time.perf_counter()
        if diff is None:
            diff = MotionDetector(motion, WIDTH, HEIGHT)
            mog2 = MotionDetector(MotionSettings(method="mog2"), WIDTH, HEIGHT)
        result = diff.update(frame.image)
        t2 = time.perf_counter()
        mog2.update(frame.image)  # type: ignore[union-attr]
        t3 = time.perf_counter()
        full.push(frame, result)
        t4 = time.perf_counter()
        crop.push(frame, result)
        t5 = time.perf_counter()
        for key, value in zip(costs, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            value_us = value * 1e6
            costs[key].append(value_us)
    return {f"{k}_us": round(float(np.median(v)), 1) for k, v in costs.items() if v}


def _camera_loop(path: str, count: list[int] | None = None) -> int:
    cv2.setNumThreads(1)
    fps, _ = _pipeline_fps(Path(path), MotionSettings(method="diff"), ClipSettings())
    return 0 if fps <= 0 else 1


def _scaling(path: Path, cameras: int = 4) -> dict[str, float]:
    """Aggregate frames/s of ``cameras`` pipelines as threads in one process and as separate processes."""
    frames_per_camera = int(cv2.VideoCapture(str(path), cv2.CAP_FFMPEG).get(cv2.CAP_PROP_FRAME_COUNT))
    threads = [threading.Thread(target=_camera_loop, args=(str(path),)) for _ in range(cameras)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    thread_fps = cameras * frames_per_camera / (time.perf_counter() - start)
    ctx = mp.get_context("fork")
    start = time.perf_counter()
    with ctx.Pool(cameras) as pool:
        pool.map(_camera_loop, [str(path)] * cameras)
    process_fps = cameras * frames_per_camera / (time.perf_counter() - start)
    single_start = time.perf_counter()
    _camera_loop(str(path))
    single_fps = frames_per_camera / (time.perf_counter() - single_start)
    return {
        "cores": len(os.sched_getaffinity(0)),
        "cameras": cameras,
        "single_fps": round(single_fps, 1),
        "threads_fps": round(thread_fps, 1),
        "processes_fps": round(process_fps, 1),
        "threads_speedup": round(thread_fps / single_fps, 2),
        "processes_speedup": round(process_fps / single_fps, 2),
    }


def run(quick: bool = False) -> dict:
    """Run the ingest benchmark; returns the numbers (see the module docstring)."""
    workdir = Path(tempfile.mkdtemp(prefix="aw-bench-ingest-"))
    affinity = os.sched_getaffinity(0)
    try:
        path = make_stream(workdir / "stream.mp4", seconds=10 if quick else 40)
        repeats = 2 if quick else 5
        os.sched_setaffinity(0, {min(affinity)})
        threads_before = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            decode, diff, mog2, crop, worker = [], [], [], [], []
            clips = 0
            for _ in range(repeats):
                decode.append(_decode_fps(path))
                fps, clips = _pipeline_fps(path, MotionSettings(method="diff"), ClipSettings())
                diff.append(fps)
                mog2.append(_pipeline_fps(path, MotionSettings(method="mog2"), ClipSettings())[0])
                crop.append(
                    _pipeline_fps(path, MotionSettings(method="diff"), ClipSettings(crop="motion"))[0]
                )
                evidence = workdir / "evidence"
                worker_fps, worker_clips = _worker_fps(path, evidence)
                worker.append(worker_fps)
                shutil.rmtree(evidence, ignore_errors=True)
            steps = _step_costs(path)
        finally:
            os.sched_setaffinity(0, affinity)
            cv2.setNumThreads(threads_before)
        scaling = _scaling(path) if len(affinity) > 1 else {"skipped": "one core only"}
        decode_fps = max(decode)
        pipeline_fps = max(diff)
        return {
            "stream": f"{WIDTH}x{HEIGHT} H.264 {FPS:g} fps, {int(cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT))} frames",
            "repeats": repeats,
            "decode_fps": round(decode_fps, 1),
            "pipeline_fps": round(pipeline_fps, 1),
            "ratio": round(pipeline_fps / decode_fps, 3),
            "target_ratio": 0.8,
            "cameras_per_core": round(pipeline_fps / 15.0, 1),
            "pipeline_mog2_fps": round(max(mog2), 1),
            "ratio_mog2": round(max(mog2) / decode_fps, 3),
            "pipeline_crop_fps": round(max(crop), 1),
            "worker_fps": round(max(worker), 1),
            "ratio_worker": round(max(worker) / decode_fps, 3),
            "clips": clips,
            "worker_clips": worker_clips,
            "step_us": steps,
            "scaling_4_cameras": scaling,
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
