"""Inference throughput: naive per-clip ``model.predict`` vs the worker's fast path (batches of 32).

Same model (the bundled one when present, else a freshly built ConvLSTM) and the same random uint8 clips, kept to
the model's input bits as ingest sends them,
through both, alternating a batch's worth at a time.  ``achieved_gflop_per_s`` counts the ConvLSTM
convolutions and the dense layer; ``peak_gflop_per_s`` is this CPU's fp32 peak (``tests/bench/cpu_peak.py``,
derivation in ``peak_basis``) and ``fraction_of_peak`` the ratio; the load averages at start and end say
how busy the shared machine was.  Runs on whichever Keras backend is active (``KERAS_BACKEND=torch`` on the GPU machine).
Usage: ``python3 -m tests.bench.bench_inference [--quick]``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from common.model_input import quantize
from inference.model import INPUT_SHAPE, ClipClassifier, ModelMetadata, build_convlstm, preprocess, save_model
from tests.bench.cpu_peak import this_cpu_peak

BUNDLED = Path(__file__).resolve().parents[2] / "inference" / "bundled" / "convlstm.keras"
BATCH = 32


def convlstm_flops_per_clip(model: keras.Model) -> float:
    """Multiply-adds * 2 of the ConvLSTM input and recurrent convolutions (the dominant cost), plus dense."""
    flops = 0.0
    for layer in model.layers:
        if isinstance(layer, keras.layers.ConvLSTM2D):
            t, c_in = layer.input.shape[1], layer.input.shape[-1]
            out = layer.output.shape
            h_out, w_out = (out[2], out[3]) if layer.return_sequences else (out[1], out[2])
            kh, kw = layer.cell.kernel_size
            f = layer.filters
            input_conv = 2 * t * h_out * w_out * kh * kw * c_in * 4 * f
            recurrent_conv = 2 * (t - 1) * h_out * w_out * kh * kw * f * 4 * f  # h0 = 0 at step 0
            flops += input_conv + recurrent_conv
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
    return flops


def run(quick: bool = False) -> dict:
    """Measure naive and fast clips/s, batch latency, GFLOP/s and the max difference between the paths."""
    n_clips = 64 if quick else 256
    clips = np.random.default_rng(2024).integers(0, 256, size=(n_clips, *INPUT_SHAPE), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        if BUNDLED.is_file():
            path, source = BUNDLED, "bundled"
        else:
            keras.utils.set_random_seed(0)
            path, source = Path(tmp) / "convlstm.keras", "build_convlstm"
            save_model(build_convlstm(), path, ModelMetadata(version="bench"))
        started = time.perf_counter()
        classifier = ClipClassifier.load(path, fast=True, max_batch_size=BATCH)
        load_s = time.perf_counter() - started
    model = classifier.model
    # Clips as ingest sends them, at the model's input bits: the worker path quantizes what it is given, so
    # with 8-bit clips max_abs_diff would measure the quantization (0.009 at 5 bits), not the fast path.
    clips = quantize(clips, classifier.input_bits)

    # warm-up: one naive call and one batch through the worker path
    model.predict(preprocess(clips[:1]), verbose=0)
    classifier.predict(clips[:BATCH])
    load_start = os.getloadavg()
    # (a) naive: one clip at a time through model.predict; (b) the worker path: ClipClassifier.predict on
    # batches of 32.  They alternate, a batch's worth of clips each, so a change in the machine's load
    # (2 cores shared with other work) falls on both sides of the ratio alike.
    naive = np.empty((n_clips,), dtype=np.float32)
    latencies, fast = [], []
    naive_s = fast_s = 0.0
    for start in range(0, n_clips, BATCH):
        t0 = time.perf_counter()
        for i in range(start, min(start + BATCH, n_clips)):
            out = np.asarray(keras.ops.convert_to_numpy(model.predict(preprocess(clips[i][None]), verbose=0)))
            naive[i] = out[0, -1]  # sigmoid (1,) or softmax column 1
        naive_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        fast.append(classifier.predict(clips[start : start + BATCH]))
        latencies.append(time.perf_counter() - t0)
        fast_s += latencies[-1]
    load_end = os.getloadavg()
    fast_all = np.concatenate(fast)

    flops = convlstm_flops_per_clip(model)
    naive_rate, fast_rate = n_clips / naive_s, n_clips / fast_s
    achieved = flops * fast_rate / 1e9
    peak = this_cpu_peak()
    return {
        "backend": keras.backend.backend(),
        "fast_kind": classifier.fast_kind,
        "model": source,
        "clips": n_clips,
        "batch_size": BATCH,
        "cpu_count": os.cpu_count(),
        "load_and_warmup_s": round(load_s, 2),
        "naive_clips_per_s": round(naive_rate, 2),
        "batched_clips_per_s": round(fast_rate, 2),
        "speedup": round(fast_rate / naive_rate, 2),
        "batch_latency_p50_ms": round(float(np.percentile(latencies, 50)) * 1e3, 1),
        "batch_latency_p99_ms": round(float(np.percentile(latencies, 99)) * 1e3, 1),
        "gflops_per_clip": round(flops / 1e9, 4),
        "achieved_gflop_per_s": round(achieved, 2),
        "peak_gflop_per_s": peak.gflop_per_s if peak else None,
        "fraction_of_peak": round(achieved / peak.gflop_per_s, 3) if peak else None,
        "peak_basis": peak.basis if peak else "no /proc/cpuinfo",
        "max_abs_diff": float(np.max(np.abs(fast_all - naive))),
        "load_avg_start": [round(x, 2) for x in load_start],
        "load_avg_end": [round(x, 2) for x in load_end],
    }


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=2))
