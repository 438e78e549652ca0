"""The same model file on Keras's torch backend scores clips as on TensorFlow, through the worker's batched path.

Each backend runs in its own process (Keras fixes its backend at import), both through
``tests.unit.inference.backend_run``: the model loaded by ``classifier_from_settings``, clips from a bus,
batched by the worker, results read back from the bus.  PyTorch comes from the ``[torch]`` extra, which CI
installs (``.ci/install.sh``): where it is missing the test fails and says so; it never skips.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.settings import DEFAULT_MODEL_PATH

ROOT = Path(__file__).resolve().parents[3]
PARITY = 1e-4  # largest |p_torch - p_tensorflow| per clip


def parity_clips() -> np.ndarray:
    """Eight clips unlike each other: noise, black, white, a moving bar, a slow fade, a half-lit scene."""
    rng = np.random.default_rng(14)
    clips = [rng.integers(0, 256, (20, 64, 64, 3), dtype=np.uint8) for _ in range(3)]
    clips.append(np.zeros((20, 64, 64, 3), np.uint8))
    clips.append(np.full((20, 64, 64, 3), 255, np.uint8))
    bar = np.zeros((20, 64, 64, 3), np.uint8)
    for t in range(20):
        bar[t, :, 3 * t : 3 * t + 8] = (40, 180, 250)
    clips.append(bar)
    clips.append((np.linspace(0, 255, 20)[:, None, None, None] * np.ones((1, 64, 64, 3))).astype(np.uint8))
    half = np.full((20, 64, 64, 3), 30, np.uint8)
    half[:, :, 32:] = rng.integers(100, 200, (20, 64, 32, 3), dtype=np.uint8)
    clips.append(half)
    return np.stack(clips)


def run_backend(backend: str, clips_path: Path, workdir: Path) -> dict:
    workdir.mkdir()
    env = {**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.unit.inference.backend_run", str(DEFAULT_MODEL_PATH), str(clips_path),
         str(workdir)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    if proc.returncode != 0:
        missing = "No module named 'torch'" in proc.stderr
        hint = " (PyTorch is missing: pip install '.[torch]'; CI installs it in .ci/install.sh)" if missing else ""
        pytest.fail(f"the {backend} backend run failed{hint}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.torch
@pytest.mark.slow
def test_torch_and_tensorflow_give_the_same_probabilities_through_the_worker(tmp_path: Path) -> None:
    clips = parity_clips()
    clips_path = tmp_path / "clips.npy"
    np.save(clips_path, clips)

    tf_run = run_backend("tensorflow", clips_path, tmp_path / "tf")
    torch_run = run_backend("torch", clips_path, tmp_path / "torch")

    assert tf_run["backend"] == "tensorflow" and tf_run["fast_kind"].startswith("tf-")
    assert torch_run["backend"] == "torch" and torch_run["fast_kind"] == "torch-cpu"
    assert torch_run["batches"] >= 2  # 8 clips, batches of at most 4: the worker batched them
    ids = [f"clip-{i}" for i in range(len(clips))]
    assert sorted(tf_run["probabilities"]) == sorted(torch_run["probabilities"]) == sorted(ids)
    tf_p = np.array([tf_run["probabilities"][i] for i in ids])
    torch_p = np.array([torch_run["probabilities"][i] for i in ids])
    assert np.ptp(tf_p) > 0.05, f"the clips should not all score alike: {tf_p}"
    diff = np.abs(tf_p - torch_p)
    assert diff.max() <= PARITY, f"torch differs from TensorFlow by {diff.max():.2e} (> {PARITY}): {tf_p} vs {torch_p}"
    for run in (tf_run, torch_run):  # both quantize to the bundled model's 5 bits in predict, before dispatch
        assert run["input_bits"] == 5
        assert run["prequantized_diff"] == 0.0 and run["unquantized_diff"] > 1e-5, run


@pytest.mark.torch
def test_reduced_precision_is_never_used_on_a_cpu(tmp_path: Path) -> None:
    """inference.gpu_precision float16 asked on a CPU: the model runs float32 (reduced precision is GPU only)."""
    code = (
        "import numpy as np\n"
        "from inference.model import ClipClassifier\n"
        f"c = ClipClassifier.load({str(DEFAULT_MODEL_PATH)!r}, fast=True, max_batch_size=2, precision='float16')\n"
        "x = np.random.default_rng(0).integers(0, 256, (2, 20, 64, 64, 3), dtype=np.uint8)\n"
        "print(c.fast_kind, float(np.max(np.abs(c.predict(x) - ClipClassifier.load("
        f"{str(DEFAULT_MODEL_PATH)!r}, fast=False).predict(x)))))\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "torch", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    kind, diff = proc.stdout.split()
    assert kind == "torch-cpu" and float(diff) <= 1e-6
