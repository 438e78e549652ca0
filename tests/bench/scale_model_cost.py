"""What the real model costs per batch here, for the scale simulation's stand-in classifier.

Loads the bundled ConvLSTM on the worker's fast path (``ClipClassifier.load(fast=True)``, the fused path) and
times ``predict`` at every batch bucket (1, 2, 4, ... 32), median of ``REPEATS`` after a warm-up, on random
uint8 clips.  The machine is shared, so absolute times move with its load: the simulation keeps only the
*shape* (each bucket's time over the time of a full batch, measured in one run) and scales it to the
full-batch clips/s of ``build/bench.json`` → ``inference`` (or the README's figure).

Run in a child process by ``bench_scale`` (TensorFlow stays out of the bench's process) and cached in
``build/bench-scale/model_cost.json`` next to the model file's size and modification time.
``python -m tests.bench.scale_model_cost OUT.json`` writes ``{"bucket_s": {n: seconds}, ...}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "inference" / "bundled" / "convlstm.keras"
REPEATS = 7


def model_key(path: Path = BUNDLED) -> str:
    stat = path.stat()
    return f"{path.name}:{stat.st_size}:{int(stat.st_mtime)}"


def measure(path: Path = BUNDLED, max_batch: int = 32) -> dict:
    from inference.model import INPUT_SHAPE, ClipClassifier

    classifier = ClipClassifier.load(path, fast=True, max_batch_size=max_batch)
    rng = np.random.default_rng(7)
    clips = rng.integers(0, 256, size=(max_batch, *INPUT_SHAPE), dtype=np.uint8)
    bucket_s = {}
    load_before = [round(x, 2) for x in os.getloadavg()]
    n = 1
    while n <= max_batch:
        classifier.predict(clips[:n])
        times = []
        for _ in range(REPEATS):
            began = time.perf_counter()
            classifier.predict(clips[:n])
            times.append(time.perf_counter() - began)
        bucket_s[n] = float(np.median(times))
        n *= 2
    return {"bucket_s": bucket_s, "model": model_key(path), "fast_kind": getattr(classifier, "fast_kind", None),
            "load_average_before": load_before, "load_average_after": [round(x, 2) for x in os.getloadavg()]}


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(json.dumps(measure(), indent=2))
