"""The scale bench (``python -m tests.bench scale``) for one tiny step against the real servers, so it cannot
rot unnoticed: every clip the simulated cameras published has exactly one result row, an alert is raised,
and every figure of the step's table is there and positive."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.bench_scale import STAGES, ScaleSpec, Simulation
from tests.integration.servers import KafkaServer, PostgresServer

pytestmark = pytest.mark.slow


def test_a_tiny_step_stores_one_row_per_published_clip_and_reports_every_figure(
    kafka_server: KafkaServer, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    spec = ScaleSpec(steps=(3,), step_s=12.0, publishers=1, infer_workers=2, partitions=4, drain_timeout_s=45.0,
                     out_dir=tmp_path / "scale")
    report = Simulation(spec, kafka=kafka_server, postgres=postgres_server).run()

    (step,) = report["steps"]
    assert step["cameras"] == 3 and step["incident_cameras"] == 1
    assert step["clips_offered"] > 0 and step["drained"], step
    # every published clip: acknowledged by Kafka, one result row each, none missing, none twice
    assert step["clips_acknowledged"] == step["clips_offered"] == step["result_rows"]
    assert step["rows_missing"] == 0 and step["rows_duplicated"] == 0 and step["publish_errors"] == 0
    # the concealment replayed by the incident camera raised an alert
    assert step["alerts"] >= 1 and step["p95_alert_s"] > 0
    for key in ("offered_clips_per_s", "published_clips_per_s", "inferred_clips_per_s", "db_rows_per_s",
                "bus_mb_per_s", "mean_clip_bytes", "p50_result_s", "p95_result_s", "p95_inferred_s",
                "clips_lag_peak", "cpu_total_percent"):
        assert step[key] > 0, key
    assert step["clips_lag_end"] is not None and step["results_lag_peak"] is not None
    assert sum(step["rows_by_worker"].values()) == step["result_rows"] and set(step["rows_by_worker"]) == {"infer-1", "infer-2"}
    names = set(step["processes"])
    assert {"publisher-1", "infer-1", "infer-2", "alerts", "kafka", "postgres", "bench"} <= names
    assert all(p["rss_mb"] > 0 for p in step["processes"].values()), step["processes"]
    assert step["processes"]["kafka"]["cpu_percent"] > 0 and step["processes"]["infer-1"]["cpu_percent"] > 0
    assert len(step["load_average_after"]) == 3
    assert set(step["saturated"]) <= set(STAGES) and 0 < step["machine_cpu_busy"] <= 1
    assert report["model"]["kind"] == "stand-in" and report["model"]["bucket_cost_ms"][32] > 0
    assert report["templates"]["incident"]["incident_clips"] > 0 and report["table"][1].startswith("3 |")
