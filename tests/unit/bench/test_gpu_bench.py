"""The GPU benchmark's measurement runs (here on the CPU, with a tiny model), so the day a GPU is there it
measures rather than crashes; without a GPU its section says it measured nothing."""

from __future__ import annotations

from pathlib import Path

from tests.bench.bench_gpu import measure
from tests.tiny_models import save_tiny_model


def test_the_gpu_measurement_reports_every_bucket_thread_count_and_memory(tmp_path: Path) -> None:
    model = save_tiny_model(tmp_path / "tiny.keras", weight=2.0, bias=-3.0, version="tiny")
    result = measure("cpu", 4, 2, model_path=model)
    assert result["device"] == "cpu" and result["reason"].startswith("model.device is cpu")
    assert [b["batch"] for b in result["buckets"]] == [1, 2, 4]
    assert all(b["clips_per_s"] > 0 and b["latency_p99_ms"] >= b["latency_p50_ms"] > 0 for b in result["buckets"])
    assert [t["threads"] for t in result["threads"]] == [1, 2, 4]
    assert set(result["device_memory"]) == {"in_use_mib", "peak_mib"}
    assert result["best_clips_per_s"] == max(b["clips_per_s"] for b in result["buckets"])
