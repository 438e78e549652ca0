"""Which device inference runs on and why, the clear failure of model.device gpu without one, and batching per device."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.app.runtime import Pipeline
from common.inprocess_bus import InProcessBus
from common.settings import load_settings
from inference.devices import DeviceProbe, DeviceUnavailable, choose, device_buckets, resolve_device
from inference.worker import InferenceWorker
from tests.tiny_models import save_tiny_model

ROOT = Path(__file__).resolve().parents[3]

CPU_BUILD = DeviceProbe("tensorflow-cpu 2.21.0", "2.21.0", cuda_build=False, gpus=())
CUDA_NO_GPU = DeviceProbe("tensorflow 2.21.0", "2.21.0", cuda_build=True, gpus=())
ONE_GPU = DeviceProbe("tensorflow 2.21.0", "2.21.0", cuda_build=True, gpus=("/physical_device:GPU:0",))
TORCH_TWO = DeviceProbe("torch 2.15.0", "2.15.0", cuda_build=True, gpus=("NVIDIA H200", "NVIDIA H200"))


@pytest.mark.parametrize(("requested", "probe", "device", "words"), [
    ("auto", CPU_BUILD, "cpu", ["auto", "no GPU", "CPU-only build", "'.[gpu]'"]),
    ("auto", CUDA_NO_GPU, "cpu", ["has CUDA but finds no GPU", "driver"]),
    ("auto", ONE_GPU, "gpu", ["auto", "sees 1 GPU (/physical_device:GPU:0)"]),
    ("gpu", TORCH_TWO, "gpu", ["model.device is gpu", "torch 2.15.0 sees 2 GPUs (NVIDIA H200, NVIDIA H200)"]),
    ("cpu", ONE_GPU, "cpu", ["model.device is cpu", "1 GPU (/physical_device:GPU:0) left unused"]),
    ("cpu", CPU_BUILD, "cpu", ["model.device is cpu"]),
])
def test_the_choice_and_its_reason(requested: str, probe: DeviceProbe, device: str, words: list[str]) -> None:
    choice = choose(requested, probe)
    line = choice.describe()
    assert choice.device == device and line.startswith(f"inference on {device} ({probe.backend}): ")
    assert "\n" not in line
    for word in words:
        assert word in line


@pytest.mark.parametrize(("probe", "why"), [
    (CPU_BUILD, "tensorflow-cpu 2.21.0 is a CPU-only build (pip install '.[gpu]' for the CUDA one)"),
    (CUDA_NO_GPU, "has CUDA but finds no GPU"),
])
def test_gpu_without_one_fails_with_one_line_saying_why(probe: DeviceProbe, why: str) -> None:
    with pytest.raises(DeviceUnavailable) as raised:
        choose("gpu", probe)
    message = str(raised.value)
    assert message.startswith("model.device is 'gpu' but there is no GPU to use: ")
    assert why in message and "set model.device to auto or cpu" in message and "\n" not in message


def test_hidden_gpus_are_named_as_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert "CUDA_VISIBLE_DEVICES='' hides every GPU" in choose("auto", CUDA_NO_GPU).reason


def test_this_machine_the_real_tensorflow_probe() -> None:
    """This machine has no GPU: auto picks the CPU and says why; gpu raises."""
    choice = resolve_device("auto", "tensorflow")
    assert choice.device == "cpu" and "no GPU" in choice.reason and choice.backend.startswith("tensorflow")
    with pytest.raises(DeviceUnavailable, match=r"model\.device is 'gpu' but there is no GPU"):
        resolve_device("gpu", "tensorflow")


def test_the_worker_logs_its_device_and_why_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from inference.model import classifier_from_settings

    settings = load_settings(None, overrides={"model": {"path": str(save_tiny_model(
        tmp_path / "tiny.keras", weight=2.0, bias=-3.0, version="tiny"))}})
    with caplog.at_level(logging.INFO, logger="inference.model"):
        classifier = classifier_from_settings(settings.model, settings.inference)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("inference on ")]
    assert len(lines) == 1 and lines[0].startswith("inference on cpu (tensorflow") and "no GPU" in lines[0]
    assert classifier.device == "cpu" and classifier.max_batch_size == 32


def test_aislewatch_infer_with_device_gpu_and_no_gpu_fails_at_start_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "AISLEWATCH__MODEL__DEVICE": "gpu", "AISLEWATCH__DATABASE__URL": f"sqlite:///{tmp_path / 'a.db'}",
           "AISLEWATCH__SERVICE__METRICS_PORT": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("AISLEWATCH_CONFIG", None)
    proc = subprocess.run([sys.executable, "-m", "common.app.cli", "infer"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    ours = [line for line in proc.stderr.splitlines() if line.startswith("aislewatch:")]
    assert len(ours) == 1, proc.stderr[-2000:]
    assert ours[0].startswith("aislewatch: model.device is 'gpu' but there is no GPU to use: ")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("device", "max_batch", "expected"), [
    ("cpu", 32, (1, 2, 4, 8, 16, 32)),
    ("gpu", 256, (16, 32, 64, 128, 256)),
    ("gpu", 100, (16, 32, 64, 100)),
    ("gpu", 8, (8,)),
    ("cpu", 1, (1,)),
])
def test_buckets_per_device(device: str, max_batch: int, expected: tuple[int, ...]) -> None:
    assert device_buckets(device, max_batch) == expected


def test_batching_defaults_and_overrides_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = load_settings(None).inference
    assert (defaults.batching("cpu").max_batch_size, defaults.batching("cpu").consumers) == (32, 1)
    gpu = defaults.batching("gpu")
    assert (gpu.max_batch_size, gpu.max_wait_ms, gpu.consumers, gpu.precision) == (256, 100, 2, "float32")
    monkeypatch.setenv("AISLEWATCH__INFERENCE__GPU_MAX_BATCH_SIZE", "512")
    monkeypatch.setenv("AISLEWATCH__INFERENCE__GPU_PRECISION", "float16")
    gpu = load_settings(None).inference.batching("gpu")
    assert gpu.max_batch_size == 512 and gpu.precision == "float16"
    assert load_settings(None).inference.batching("cpu").precision == "float32"  # reduced: GPU only


class OnDevice:
    """A stand-in classifier that says which device it runs on."""

    threshold = 0.5
    version = "on-device"

    def __init__(self, device: str) -> None:
        self.device = device

    def predict(self, clips: np.ndarray) -> np.ndarray:
        return np.zeros(len(clips), np.float32)


@pytest.mark.parametrize(("device", "batch", "wait_s", "threads"), [("cpu", 32, 0.2, 1), ("gpu", 256, 0.1, 2)])
def test_workers_batch_for_their_classifiers_device(tmp_path: Path, device: str, batch: int, wait_s: float,
                                                     threads: int) -> None:
    settings = load_settings(None, overrides={"database": {"url": f"sqlite:///{tmp_path / 'a.db'}"},
                                              "service": {"metrics_port": 0}})
    pipeline = Pipeline.build(settings, {"infer"}, bus=InProcessBus(), classifier=OnDevice(device))
    try:
        workers = [w for w in pipeline.workers if isinstance(w, InferenceWorker)]
        assert len(workers) == threads
        assert {w.classifier for w in workers} == {pipeline.workers[0].classifier}  # one model, N threads
        assert all(w.batcher.max_batch_size == batch and w.batcher.max_wait_s == wait_s for w in workers)
    finally:
        pipeline.close()
