"""The batched path on Keras's torch backend (``KERAS_BACKEND=torch``): GPU hosts often have PyTorch only.

The same ``.keras`` file is loaded by Keras on torch; a batch goes to the device as uint8 (a quarter of the
bytes of float32; through pinned memory on CUDA) and is scaled to [0, 1] there, then runs through the model
under ``torch.inference_mode``.  Keras places the weights (on CUDA when torch sees a GPU, unless
``model.device: cpu`` hid it), and the batch follows the weights.

Reduced precision (``inference.gpu_precision``: float16 or bfloat16) runs the model under CUDA autocast, on
a GPU only: at build time the reduced run is compared with float32 on probe clips and used only when every
probability is within ``PRECISION_TOLERANCE``; otherwise float32 is used and the log says why.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

log = logging.getLogger(__name__)

PRECISION_TOLERANCE = 1e-2  # largest |p_reduced - p_float32| accepted on the probe clips, per clip


def _probability(out: Any) -> Any:
    return out[:, 1] if out.shape[-1] == 2 else out[:, 0]


def model_device(model: keras.Model) -> Any:
    """The torch device the model's weights live on (CPU for a model without weights)."""
    import torch

    return next((v.value.device for v in model.weights), torch.device("cpu"))


def _runner(model: keras.Model, device: Any, dtype: Any | None) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    def forward(x: Any) -> Any:
        return _probability(model(x, training=False))

    if os.environ.get("AISLEWATCH_TORCH_COMPILE") == "1":
        forward = torch.compile(forward)
    cuda = device.type == "cuda"

    def run_bucket(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            host = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.uint8))
            if cuda:
                host = host.pin_memory()
            x = host.to(device, non_blocking=cuda).float() * (1.0 / 255.0)  # scaled on the device
            if dtype is None:
                out = forward(x)
            else:
                with torch.autocast(device_type="cuda", dtype=dtype):
                    out = forward(x)
            return out.float().cpu().numpy()

    return run_bucket


def torch_run_bucket(model: keras.Model, precision: str = "float32",
                     probe: np.ndarray | None = None) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """A function running one uint8 batch through ``model`` on torch, and its kind (e.g. ``torch-cuda-float16``).

    ``precision`` other than float32 applies on CUDA only and only within PRECISION_TOLERANCE of float32 on
    ``probe`` (uint8 clips; default: 8 random ones)."""
    import torch

    device = model_device(model)
    exact = _runner(model, device, None)
    kind = f"torch-{device.type}"
    if precision == "float32":
        return exact, kind
    if device.type != "cuda":
        log.info("inference.gpu_precision %s applies on a GPU only; float32 on %s", precision, device.type)
        return exact, kind
    dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16}[precision]
    reduced = _runner(model, device, dtype)
    if probe is None:
        shape = tuple(int(d) for d in model.inputs[0].shape[1:])
        probe = np.random.default_rng(0).integers(0, 256, size=(8, *shape), dtype=np.uint8)
    diff = float(np.max(np.abs(reduced(probe) - exact(probe))))
    if diff > PRECISION_TOLERANCE:
        log.warning("%s moved probabilities by %.2e (> %.0e) on probe clips; float32 used", precision, diff,
                    PRECISION_TOLERANCE)
        return exact, kind
    log.info("%s on %s: max difference from float32 %.2e on probe clips (tolerance %.0e)", precision, device,
             diff, PRECISION_TOLERANCE)
    return reduced, f"{kind}-{precision}"
