"""GPU inference (the ``inference.gpu`` figures): clips/s at each GPU bucket, p99 batch latency, device memory.

Where no GPU is visible the section says so (``measured: false`` and why) and measures nothing.  Where one
is, the measurement runs in a subprocess on the Keras backend that can use it: TensorFlow when it is
installed and sees the GPU, else torch (GPU hosts often have PyTorch only; Keras fixes its backend at
import, hence the subprocess).  Through the worker's batched path (``ClipClassifier`` on the bundled model,
loaded as ``classifier_from_settings`` does for ``model.device: gpu``):

- every bucket of ``device_buckets("gpu", inference.gpu_max_batch_size)``: clips/s, p50/p99 batch latency;
- 1, 2 and 4 threads feeding the one model with full batches (``inference.gpu_consumers``): clips/s;
- the device memory in use and at its peak;
- float16 and bfloat16 against float32 on the same clips: max |difference| and decisions flipped at the
  model's threshold (``inference.gpu_precision``; torch backend only).

``python -m tests.bench gpu`` (or ``make bench``); ``python -m tests.bench.bench_gpu --on-cpu`` runs the same
measurement on the CPU with small buckets, to check the code on a machine without a GPU (figures not GPU).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "inference" / "bundled" / "convlstm.keras"
THREADS = (1, 2, 4)


def _probe(backend: str) -> dict[str, Any]:
    """Ask ``backend`` in a fresh process whether it sees a GPU (never raises)."""
    code = (f"import json; from inference.devices import PROBES; p = PROBES[{backend!r}](); "
            "print(json.dumps({'backend': p.backend, 'cuda_build': p.cuda_build, 'gpus': list(p.gpus)}))")
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)
    except subprocess.TimeoutExpired:
        return {"backend": backend, "error": "probe timed out"}
    if proc.returncode != 0:
        return {"backend": backend, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def gpu_backend() -> tuple[str | None, list[dict[str, Any]]]:
    """The backend to measure on (TensorFlow first), or None when neither sees a GPU; and what each said."""
    probes = []
    for backend, module in (("tensorflow", "tensorflow"), ("torch", "torch")):
        if importlib.util.find_spec(module) is None:
            probes.append({"backend": backend, "error": f"{module} is not installed"})
            continue
        probe = _probe(backend)
        probes.append(probe)
        if probe.get("gpus"):
            return backend, probes
    return None, probes


def _device_memory() -> dict[str, float | None]:
    import keras

    if keras.backend.backend() == "torch":
        import torch

        if torch.cuda.is_available():
            return {"in_use_mib": round(torch.cuda.memory_allocated() / 2**20, 1),
                    "peak_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1)}
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if tf.config.list_logical_devices("GPU"):
            info = tf.config.experimental.get_memory_info("GPU:0")
            return {"in_use_mib": round(info["current"] / 2**20, 1), "peak_mib": round(info["peak"] / 2**20, 1)}
    return {"in_use_mib": None, "peak_mib": None}


def measure(device: str, max_batch_size: int, repeats: int, model_path: Path = BUNDLED,
            precisions: tuple[str, ...] = ("float16", "bfloat16")) -> dict[str, Any]:
    """The measurement itself, in this process, on this process's Keras backend and ``device``."""
    import keras

    from inference.devices import device_buckets, keras_backend, resolve_device
    from inference.model import load_classifier

    choice = resolve_device(device)
    started = time.perf_counter()
    classifier = load_classifier(model_path, fast=True, max_batch_size=max_batch_size, device=choice)
    load_s = time.perf_counter() - started
    buckets = device_buckets(choice.device, max_batch_size)
    rng = np.random.default_rng(14)
    clips = rng.integers(0, 256, size=(max_batch_size, 20, 64, 64, 3), dtype=np.uint8)
    per_bucket = []
    for size in buckets:
        batch = clips[:size]
        classifier.predict(batch)
        latencies = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            classifier.predict(batch)
            latencies.append(time.perf_counter() - t0)
        total = sum(latencies)
        per_bucket.append({
            "batch": size, "clips_per_s": round(size * repeats / total, 1),
            "latency_p50_ms": round(float(np.percentile(latencies, 50)) * 1e3, 2),
            "latency_p99_ms": round(float(np.percentile(latencies, 99)) * 1e3, 2),
        })
    threads = []
    for count in THREADS:
        done = [0] * count

        def feed(index: int, done: list[int] = done) -> None:
            for _ in range(repeats):
                classifier.predict(clips)
                done[index] += len(clips)

        workers = [threading.Thread(target=feed, args=(i,)) for i in range(count)]
        t0 = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        threads.append({"threads": count, "clips_per_s": round(sum(done) / (time.perf_counter() - t0), 1)})
    memory = _device_memory()
    reference = classifier.predict(clips)
    reduced = {}
    if keras_backend() == "torch" and choice.device == "gpu":
        for precision in precisions:
            other = load_classifier(model_path, fast=True, max_batch_size=max_batch_size, device=choice,
                                    precision=precision)
            scores = other.predict(clips)
            threshold = classifier.threshold
            reduced[precision] = {
                "kind": other.fast_kind,
                "max_abs_diff_vs_float32": float(np.max(np.abs(scores - reference))),
                "decisions_flipped": int(np.sum((scores >= threshold) != (reference >= threshold))),
                "clips": len(clips),
            }
    return {
        "device": choice.device, "reason": choice.reason, "backend": keras.backend.backend(),
        "fast_kind": classifier.fast_kind, "load_and_warmup_s": round(load_s, 1), "buckets": per_bucket,
        "best_clips_per_s": max(b["clips_per_s"] for b in per_bucket), "threads": threads,
        "device_memory": memory, "reduced_precision": reduced or "not measured (torch backend on a GPU only)",
    }


def run(quick: bool = False) -> dict[str, Any]:
    backend, probes = gpu_backend()
    if backend is None:
        return {"measured": False, "why": "no GPU visible to TensorFlow or torch on this machine",
                "probes": probes, "load": os.getloadavg()}
    max_batch = 64 if quick else 256
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}
    args = [sys.executable, "-m", "tests.bench.bench_gpu", "--measure", "gpu", str(max_batch), "5" if quick else "20"]
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"GPU measurement on {backend} failed:\n{proc.stderr[-4000:]}")
    return {"measured": True, "probes": probes, **json.loads(proc.stdout.strip().splitlines()[-1])}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        device, max_batch, repeats = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        print(json.dumps(measure(device, max_batch, repeats)))
    elif "--on-cpu" in sys.argv[1:]:
        print(json.dumps({"measured": False, "why": "--on-cpu: the GPU measurement's code on the CPU",
                          **measure("cpu", 8, 2), "load": os.getloadavg()}, indent=2))
    else:
        print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=2))
