"""`pip install '.[gpu]'` resolves to TensorFlow's CUDA build and not the CPU one; '.[cpu]' to the CPU build only.

Asks PyPI (pip --dry-run, nothing installed), so it needs the network, which CI has (marker ``network``).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


# what pip prints when the index, not the resolution, failed: worth one more try
_TRANSIENT = ("ConnectionError", "ReadTimeout", "ConnectTimeout", "Read timed out", "Could not fetch URL",
              "HTTPError", "IncompleteRead", "Connection reset", "Temporary failure in name resolution")


def resolve(extra: str, tmp_path: Path) -> set[str]:
    report = tmp_path / f"{extra}.json"
    for attempt in (1, 2):
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
             "--disable-pip-version-check", "--report", str(report), f".[{extra}]"],
            cwd=ROOT, capture_output=True, text=True, timeout=600,
        )
        if proc.returncode == 0 or attempt == 2 or not any(s in proc.stderr for s in _TRANSIENT):
            break
    assert proc.returncode == 0, f"pip could not resolve '.[{extra}]':\n{proc.stderr[-3000:]}"
    return {item["metadata"]["name"].lower().replace("_", "-") for item in json.loads(report.read_text())["install"]}


@pytest.mark.network
@pytest.mark.slow
def test_the_gpu_extra_brings_tensorflow_with_cuda_instead_of_the_cpu_build(tmp_path: Path) -> None:
    linux_x86 = platform.system() == "Linux" and platform.machine() == "x86_64"  # CI's and the images' platform
    gpu = resolve("gpu", tmp_path)
    assert "tensorflow" in gpu and "tensorflow-cpu" not in gpu
    cuda = {name for name in gpu if name.startswith("nvidia-")}
    if linux_x86:
        assert {"nvidia-cudnn-cu12", "nvidia-cublas-cu12", "nvidia-cuda-runtime-cu12"} <= cuda, sorted(cuda)

    cpu = resolve("cpu", tmp_path)
    build = "tensorflow-cpu" if platform.machine() == "x86_64" else "tensorflow"
    assert build in cpu and ({"tensorflow", "tensorflow-cpu"} - {build}).isdisjoint(cpu)
    assert not {name for name in cpu if name.startswith("nvidia-") or name == "torch"}
