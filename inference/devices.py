"""Which device inference runs on, and why; the batch buckets that suit it.

``model.device`` asks for ``auto`` (a GPU when the backend sees one), ``cpu`` or ``gpu``.  The backend is
Keras's (``KERAS_BACKEND``: TensorFlow by default, or torch), and each is asked in its own terms: TensorFlow
for its physical GPUs (and whether this build has CUDA at all: ``tensorflow-cpu`` has not), torch for CUDA.
:func:`resolve_device` returns the choice with a one-line reason that the worker logs at start; a ``gpu``
that cannot be had raises :class:`DeviceUnavailable` with one line saying why and what to install or set.

This module imports no backend at import time, so the command line can name its error class cheaply.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Device = Literal["cpu", "gpu"]
GPU_SMALLEST_BUCKET = 16  # on a GPU a batch of 16 costs what a batch of 1 does: fewer graphs to compile


class DeviceUnavailable(RuntimeError):
    """``model.device`` asks for a device this machine or this install cannot give (one line, with the fix)."""


@dataclass(frozen=True)
class DeviceProbe:
    """What a backend can see: its name and version, whether the build has CUDA, and the GPUs it found."""

    backend: str
    version: str
    cuda_build: bool
    gpus: tuple[str, ...]
    note: str = ""  # anything wrong with the install worth saying beside the choice


@dataclass(frozen=True)
class DeviceChoice:
    device: Device
    backend: str
    reason: str

    def describe(self) -> str:
        """The one line the worker logs at start."""
        return f"inference on {self.device} ({self.backend}): {self.reason}"


def keras_backend() -> str:
    """Keras's backend as Keras will pick it (``KERAS_BACKEND``, else TensorFlow), without importing Keras."""
    return os.environ.get("KERAS_BACKEND", "").strip().lower() or "tensorflow"


def _installed(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def probe_tensorflow() -> DeviceProbe:
    import tensorflow as tf

    gpus = tuple(d.name for d in tf.config.list_physical_devices("GPU"))
    builds = [name for name in ("tensorflow", "tensorflow-cpu") if _installed(name)]
    note = ""
    if len(builds) > 1:
        note = ("both tensorflow and tensorflow-cpu are installed (one overwrote the other): "
                "pip uninstall -y tensorflow tensorflow-cpu, then pip install '.[gpu]' or '.[cpu]'")
    build = builds[0] if len(builds) == 1 else "tensorflow"
    return DeviceProbe(f"{build} {tf.__version__}", tf.__version__, bool(tf.test.is_built_with_cuda()), gpus, note)


def probe_torch() -> DeviceProbe:
    import torch

    cuda = torch.version.cuda is not None
    gpus = tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) if cuda else ()
    if cuda and not torch.cuda.is_available():
        gpus = ()
    return DeviceProbe(f"torch {torch.__version__}", str(torch.__version__), cuda, gpus)


PROBES: dict[str, Callable[[], DeviceProbe]] = {"tensorflow": probe_tensorflow, "torch": probe_torch}


def _why_no_gpu(probe: DeviceProbe) -> str:
    if not probe.cuda_build:
        install = "pip install '.[gpu]'" if probe.backend.startswith("tensorflow") else "a CUDA build of torch"
        return f"{probe.backend} is a CPU-only build ({install} for the CUDA one)"
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None and not hidden.strip(" ,"):
        return f"{probe.backend} has CUDA but CUDA_VISIBLE_DEVICES={hidden!r} hides every GPU"
    return f"{probe.backend} has CUDA but finds no GPU (no NVIDIA driver or device in this machine or container)"


def choose(requested: str, probe: DeviceProbe) -> DeviceChoice:
    """The device for ``model.device`` = ``requested`` given what the backend sees (pure: tests feed probes)."""
    if requested not in ("auto", "cpu", "gpu"):
        raise DeviceUnavailable(f"model.device: {requested!r} is not one of auto, cpu, gpu")
    note = f"; note: {probe.note}" if probe.note else ""
    found = f"{len(probe.gpus)} GPU{'s' if len(probe.gpus) != 1 else ''} ({', '.join(probe.gpus)})"
    if requested == "cpu":
        seen = f", {found} left unused" if probe.gpus else ""
        return DeviceChoice("cpu", probe.backend, f"model.device is cpu{seen}{note}")
    if probe.gpus:
        return DeviceChoice("gpu", probe.backend, f"model.device is {requested} and {probe.backend} sees {found}{note}")
    why = _why_no_gpu(probe)
    if requested == "gpu":
        raise DeviceUnavailable(f"model.device is 'gpu' but there is no GPU to use: {why}; "
                                f"set model.device to auto or cpu to run on the CPU{note}")
    return DeviceChoice("cpu", probe.backend, f"model.device is auto and there is no GPU: {why}{note}")


def resolve_device(requested: str, backend: str | None = None) -> DeviceChoice:
    """Probe the backend, choose, and pin TensorFlow to the CPU when the choice is ``cpu`` with GPUs present."""
    backend = backend or keras_backend()
    probe_of = PROBES.get(backend)
    if probe_of is None:
        if requested == "gpu":
            raise DeviceUnavailable(f"model.device is 'gpu' but KERAS_BACKEND={backend} is neither tensorflow "
                                    "nor torch, the backends AisleWatch runs on a GPU")
        return DeviceChoice("cpu", backend, f"KERAS_BACKEND={backend}: AisleWatch knows no GPU for it")
    try:
        probe = probe_of()
    except ImportError as exc:
        extra = "'.[cpu]' or '.[gpu]'" if backend == "tensorflow" else "'.[torch]'"
        raise DeviceUnavailable(f"Keras's backend {backend} is not installed ({exc}): pip install {extra}") from exc
    choice = choose(requested, probe)
    if choice.device == "cpu" and probe.gpus:
        pin_cpu(backend)
    return choice


def pin_cpu(backend: str) -> None:
    """Hide the GPUs from TensorFlow (torch places tensors where the model's weights are, see torch_path)."""
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")


def device_buckets(device: str, max_batch_size: int) -> tuple[int, ...]:
    """Batch sizes compiled ahead on ``device``: on a CPU powers of two from 1 (padding costs compute
    there), on a GPU powers of two from 16 (padding 3 clips up to 16 costs nothing measurable), plus the
    maximum itself."""
    if max_batch_size < 1:
        raise ValueError("max_batch_size must be >= 1")
    size = min(GPU_SMALLEST_BUCKET, max_batch_size) if device == "gpu" else 1
    sizes = []
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    sizes.append(max_batch_size)
    return tuple(sizes)
