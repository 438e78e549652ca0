"""Ingest benchmark: how close capture + motion + clip cutting gets to plain OpenCV decoding, on one core.

Makes a 640x360 H.264 stream (a moving rectangle over a noisy, textured background, with still periods),
pins the process to one core with one OpenCV thread, and measures in the same run, interleaved and
best-of-N (robust to other load on a shared machine):

- ``decode_fps``    a bare ``cv2.VideoCapture.read`` loop, every frame decoded and converted to BGR;
- ``pipeline_fps``  ``VideoSource`` + ``MotionGate`` (at ``motion.gate_fps``) + ``ClipCutter``: ``ratio`` is
                    it over ``decode_fps`` (what the target is about);
- ``pipeline_every_frame_fps`` the same with the gate examining every frame (``gate_fps: 0``):
                    ``ratio_every_frame``, what the reduced gate rate saves;
- ``pipeline_model_frame_fps`` the same (gate at ``gate_fps``) with motion on the 64x64 model frame
                    (``downscale_width: 0``) instead of its own 160-wide grey copy: ``ratio_model_frame``;
- ``ratio_cpu``     the same ratio in frames per CPU-second (``time.process_time``) rather than per wall
                    second: on a machine busy with other work, wall time also counts the waits for the core;``
- ``worker_fps``    a whole ``CameraWorker`` over ``InProcessBus`` (adds JPEG snapshots and clip encoding);
- ``stage_us``      where a frame's time goes in the pipeline, CPU microseconds per frame (instrumented
                    runs each way, each stage's minimum over the repeats): ``decode``
                    (``cv2.VideoCapture.read`` inside ``VideoSource``), ``gate``, ``resize`` (each frame to
                    the model's 64x64, in the cutter) and ``other`` (timestamps, ``Frame``, the clip grid,
                    picking and stacking clips, the loop);
- per-step costs of the detector alone in microseconds per frame (``step_us``);
- 4 cameras as 4 threads in one process vs 4 processes (aggregate frames/s, all cores);
- the load average before and after (``load_avg``): other work on the machine.

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

import ingest.clips  # noqa: E402
from common.inprocess_bus import InProcessBus  # noqa: E402
from common.settings import CameraSettings, ClipSettings, MotionSettings  # noqa: E402
from ingest.capture import SourceEnded, VideoSource  # noqa: E402
from ingest.clips import ClipCutter  # noqa: E402
from ingest.motion import Arrived, MotionDetector, MotionGate  # noqa: E402
from ingest.worker import CameraWorker  # noqa: E402

WIDTH, HEIGHT, FPS = 640, 360, 15.0
REAL_FOOTAGE = (ROOT / ".." / "shared" / "real-footage" / "vtest.avi").resolve()  # as tests.videos finds it


def make_stream(path: Path, seconds: float, seed: int = 0, scale: int = 1) -> Path:
    """Write a 640x360 H.264 MP4 (``scale`` times that on each side): textured noisy background, a rectangle
    moving half of the time."""
    rng = np.random.default_rng(seed)
    width, height = WIDTH * scale, HEIGHT * scale
    background = cv2.GaussianBlur(rng.integers(30, 220, (HEIGHT, WIDTH, 3), dtype=np.uint8), (15, 15), 0)
    background = cv2.resize(background, (width, height), interpolation=cv2.INTER_LINEAR)
    raw = path.with_suffix(".mp4v.mp4")
    writer = cv2.VideoWriter(str(raw), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (width, height))
    period = int(FPS * 5)
    for i in range(int(seconds * FPS)):
        noise = rng.normal(0, 4, (height, width, 3))
        frame = np.clip(background + noise, 0, 255).astype(np.uint8)
        if (i // period) % 2 == 1:
            x = int((i % period) / period * (WIDTH - 90)) * scale
            top = HEIGHT // 3 * scale
            cv2.rectangle(frame, (x, top), (x + 70 * scale, top + 140 * scale), (40, 60, 200), -1)
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


_CPU_FPS: list[float] = []  # frames per CPU-second of the last _decode_fps / _pipeline_fps call


def _decode_fps(path: Path) -> float:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    n = 0
    cpu = time.process_time()
    start = time.perf_counter()
    while True:
        ok, _ = cap.read()
        if not ok:
            break
        n += 1
    elapsed = time.perf_counter() - start
    _CPU_FPS[:] = [n / (time.process_time() - cpu)]
    cap.release()
    return n / elapsed


def _pipeline_fps(
    path: Path, motion: MotionSettings, clip: ClipSettings, gate_fps: float | None = None
) -> tuple[float, int]:
    """Frames/s of ``VideoSource`` + ``MotionGate`` + ``ClipCutter`` (as ``CameraWorker`` composes them).  The
    source is opened before the clock starts, as ``_decode_fps`` opens its capture."""
    source = VideoSource(str(path))
    source.open()
    gate: MotionGate | None = None
    cutter = ClipCutter(clip, motion, FPS)
    rate = motion.gate_fps if gate_fps is None else gate_fps
    n = clips = 0
    cpu = time.process_time()
    start = time.perf_counter()
    try:
        while True:
            frame = source.read()
            if gate is None:
                gate = MotionGate(motion, frame.image.shape[1], frame.image.shape[0], rate)
            for decided, result in gate.push(Arrived(frame, cutter.prepare(frame))):
                clips += len(cutter.push(decided.frame, result, decided.small))
            n += 1
    except SourceEnded:
        assert gate is not None
        for decided, result in gate.flush():
            clips += len(cutter.push(decided.frame, result, decided.small))
        clips += len(cutter.flush())
    elapsed = time.perf_counter() - start
    _CPU_FPS[:] = [n / (time.process_time() - cpu)]
    return n / elapsed, clips


_clock = time.process_time


class _TimedCapture:
    """A ``cv2.VideoCapture`` whose ``read`` calls are timed (``VideoSource`` opens it through ``opener``)."""

    def __init__(self, source: str, params: list[int]) -> None:
        self._cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)
        self.seconds = 0.0

    def read(self) -> tuple[bool, np.ndarray | None]:
        start = _clock()
        try:
            return self._cap.read()
        finally:
            self.seconds += _clock() - start

    def __getattr__(self, name: str) -> object:
        return getattr(self._cap, name)


def _stages(path: Path, motion: MotionSettings, clip: ClipSettings, gate_fps: float) -> dict[str, float]:
    """CPU microseconds per frame of decode, gate, resize and the rest, in one instrumented pipeline run (CPU
    time, so that waits for the core on a busy machine count nowhere; each timing costs about 0.5 us, in
    ``other``)."""
    captures: list[_TimedCapture] = []

    def opener(source: str, params: list[int]) -> _TimedCapture:
        captures.append(_TimedCapture(source, params))
        return captures[-1]

    resize_s = 0.0
    model_frame = ingest.clips.model_frame

    def timed_model_frame(image: np.ndarray, size: int = 64) -> np.ndarray:
        nonlocal resize_s
        start = _clock()
        try:
            return model_frame(image, size)
        finally:
            resize_s += _clock() - start

    resize = ingest.clips._resize

    def timed_resize(image: np.ndarray, dsize: tuple[int, int], interpolation: int) -> np.ndarray:
        nonlocal resize_s
        start = _clock()
        try:
            return resize(image, dsize, interpolation=interpolation)
        finally:
            resize_s += _clock() - start

    source = VideoSource(str(path), opener=opener)
    source.open()
    gate: MotionGate | None = None
    cutter = ClipCutter(clip, motion, FPS)
    gate_s = 0.0
    n = 0
    ingest.clips.model_frame = timed_model_frame  # type: ignore[assignment]
    ingest.clips._resize = timed_resize  # type: ignore[assignment]
    start = _clock()
    try:
        while True:
            try:
                frame = source.read()
            except SourceEnded:
                break
            arrived = Arrived(frame, cutter.prepare(frame))
            t0 = _clock()
            if gate is None:
                gate = MotionGate(motion, frame.image.shape[1], frame.image.shape[0], gate_fps)
            decided = gate.push(arrived)
            gate_s += _clock() - t0
            for f, result in decided:
                cutter.push(f.frame, result, f.small)
            n += 1
        assert gate is not None
        t0 = _clock()
        decided = gate.flush()
        gate_s += _clock() - t0
        for f, result in decided:
            cutter.push(f.frame, result, f.small)
        cutter.flush()
    finally:
        ingest.clips.model_frame = model_frame  # type: ignore[assignment]
        ingest.clips._resize = resize
    total = _clock() - start
    decode = sum(c.seconds for c in captures)
    us = 1e6 / n
    return {
        "decode": round(decode * us, 1),
        "gate": round(gate_s * us, 1),
        "resize": round(resize_s * us, 1),
        "other": round((total - decode - gate_s - resize_s) * us, 1),
        "total": round(total * us, 1),
        "examined_fraction": round(gate.frames_examined / n, 3),
    }


def _ratios_on(path: Path, repeats: int) -> dict[str, object]:
    """Decode and pipeline interleaved on another stream: its ratio (best over best, wall and CPU)."""
    decode, pipeline, decode_cpu, pipeline_cpu = [], [], [], []
    motion = MotionSettings(method="diff")
    clips = 0
    for _ in range(repeats):
        decode.append(_decode_fps(path))
        decode_cpu.append(_CPU_FPS[0])
        fps, clips = _pipeline_fps(path, motion, ClipSettings())
        pipeline.append(fps)
        pipeline_cpu.append(_CPU_FPS[0])
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    size = f"{int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))}"
    cap.release()
    return {
        "stream": f"{path.name} {size}",
        "decode_fps": round(max(decode), 1),
        "pipeline_fps": round(max(pipeline), 1),
        "ratio": round(max(pipeline) / max(decode), 3),
        "ratio_cpu": round(max(pipeline_cpu) / max(decode_cpu), 3),
        "clips": clips,
    }


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
    load_before = [round(x, 2) for x in os.getloadavg()]
    try:
        path = make_stream(workdir / "stream.mp4", seconds=10 if quick else 40)
        repeats = 2 if quick else 5
        os.sched_setaffinity(0, {min(affinity)})
        threads_before = cv2.getNumThreads()
        cv2.setNumThreads(1)
        diff_motion = MotionSettings(method="diff")
        try:
            decode, gated, every, mog2, crop, worker = [], [], [], [], [], []
            decode_cpu, gated_cpu, every_cpu, model, model_cpu = [], [], [], [], []
            model_motion = MotionSettings(method="diff", downscale_width=0)
            clips = every_clips = model_clips = 0
            for _ in range(repeats):
                decode.append(_decode_fps(path))
                decode_cpu.append(_CPU_FPS[0])
                fps, clips = _pipeline_fps(path, diff_motion, ClipSettings())
                gated.append(fps)
                gated_cpu.append(_CPU_FPS[0])
                fps, every_clips = _pipeline_fps(path, diff_motion, ClipSettings(), gate_fps=0.0)
                every.append(fps)
                every_cpu.append(_CPU_FPS[0])
                fps, model_clips = _pipeline_fps(path, model_motion, ClipSettings())
                model.append(fps)
                model_cpu.append(_CPU_FPS[0])
                mog2.append(_pipeline_fps(path, MotionSettings(method="mog2"), ClipSettings())[0])
                crop.append(_pipeline_fps(path, diff_motion, ClipSettings(crop="motion"))[0])
                evidence = workdir / "evidence"
                worker_fps, worker_clips = _worker_fps(path, evidence)
                worker.append(worker_fps)
                shutil.rmtree(evidence, ignore_errors=True)
            # each stage's least disturbed figure over the repeats (interleaved, like the rest)
            runs: dict[str, list[dict[str, float]]] = {"gated": [], "every_frame": [], "model_frame": []}
            for _ in range(repeats):
                runs["gated"].append(_stages(path, diff_motion, ClipSettings(), diff_motion.gate_fps))
                runs["every_frame"].append(_stages(path, diff_motion, ClipSettings(), 0.0))
                runs["model_frame"].append(_stages(path, model_motion, ClipSettings(), diff_motion.gate_fps))
            stages = {name: {key: min(r[key] for r in rs) for key in rs[0]} for name, rs in runs.items()}
            steps = _step_costs(path)
            # the same scene at 1280x720 (store cameras are 720p-1080p: decoding costs more, the gate no more)
            # and the real footage (people walking: motion the gate sees as motion)
            others = {"720p": _ratios_on(make_stream(workdir / "stream-720p.mp4", seconds=10 if quick else 20,
                                                     scale=2), repeats)}
            if REAL_FOOTAGE.is_file():
                others["real_footage"] = _ratios_on(REAL_FOOTAGE, repeats)
        finally:
            os.sched_setaffinity(0, affinity)
            cv2.setNumThreads(threads_before)
        scaling = _scaling(path) if len(affinity) > 1 else {"skipped": "one core only"}
        decode_fps = max(decode)
        pipeline_fps = max(gated)
        return {
            "stream": f"{WIDTH}x{HEIGHT} H.264 {FPS:g} fps, {int(cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT))} frames",
            "repeats": repeats,
            "gate_fps": diff_motion.gate_fps,
            "decode_fps": round(decode_fps, 1),
            "pipeline_fps": round(pipeline_fps, 1),
            "ratio": round(pipeline_fps / decode_fps, 3),
            "target_ratio": 0.9,
            "ratios_per_repeat": [round(g / d, 3) for g, d in zip(gated, decode, strict=True)],
            "pipeline_every_frame_fps": round(max(every), 1),
            "ratio_every_frame": round(max(every) / decode_fps, 3),
            "pipeline_model_frame_fps": round(max(model), 1),
            "ratio_model_frame": round(max(model) / decode_fps, 3),
            "ratios_model_frame_per_repeat": [round(c / d, 3) for c, d in zip(model, decode, strict=True)],
            # frames per CPU-second of the one core (best of N): what the work costs, whatever else runs
            "decode_cpu_fps": round(max(decode_cpu), 1),
            "ratio_cpu": round(max(gated_cpu) / max(decode_cpu), 3),
            "ratio_cpu_every_frame": round(max(every_cpu) / max(decode_cpu), 3),
            "ratio_cpu_model_frame": round(max(model_cpu) / max(decode_cpu), 3),
            "cameras_per_core": round(pipeline_fps / 15.0, 1),
            "pipeline_mog2_fps": round(max(mog2), 1),
            "ratio_mog2": round(max(mog2) / decode_fps, 3),
            "pipeline_crop_fps": round(max(crop), 1),
            "worker_fps": round(max(worker), 1),
            "ratio_worker": round(max(worker) / decode_fps, 3),
            "clips": clips,
            "clips_every_frame": every_clips,
            "clips_model_frame": model_clips,
            "worker_clips": worker_clips,
            "stage_us": stages,
            "step_us": steps,
            "other_streams": others,
            "scaling_4_cameras": scaling,
            "load_avg": {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]},
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
