"""``aislewatch evaluate-streams``: the real pipeline over recorded streams, scored against their truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.app.cli import main
from common.app.stream_eval import evaluate_streams, find_streams
from inference.synth import camera_scene_seed, write_stream

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("streams")
    write_stream(folder / "cam-a.mp4", duration_s=40.0, seed=11, incidents=1, normal_shoppers=1,
                 scene_seed=camera_scene_seed(7, 2))
    (folder / "unlabelled.mp4").write_bytes(b"")  # no truth beside it: not a stream to score
    return folder


def test_find_streams_needs_a_truth_file(streams: Path, tmp_path: Path) -> None:
    assert list(find_streams(streams)) == ["cam-a"]
    with pytest.raises(FileNotFoundError, match="truth"):
        find_streams(tmp_path)


def test_the_report_scores_every_incident_from_the_pipeline_results(streams: Path, tmp_path: Path) -> None:
    report = evaluate_streams(streams, tmp_path / "eval")
    saved = json.loads((tmp_path / "eval" / "stream-eval.json").read_text())
    assert saved["incidents"] == report["incidents"] == 1
    assert report["results"] == report["clips"] > 0
    row = report["incident_table"][0]
    # the clip grid puts several windows over a 2.5 s act, and whether they scored high is reported
    assert row["clips_overlapping"] >= 3 and 0.0 <= row["peak_p"] <= 1.0
    assert row["detected"] == (row["alert_id"] is not None)
    assert report["detected"] == int(row["detected"])
    assert report["hours"] == pytest.approx(40.0 / 3600, rel=1e-3)
    assert report["false_alarms_per_camera_hour"] == pytest.approx(report["false_alarms"] / report["hours"], rel=1e-2)


def test_strict_cli_fails_when_the_threshold_cannot_be_reached(streams: Path, tmp_path: Path) -> None:
    # four clips in a row scoring a saturated 1.0 do not happen, so nothing is caught and --strict must say so
    code = main(["evaluate-streams", str(streams), "--out", str(tmp_path / "e"), "--threshold", "1.0",
                 "--n-of-m", "4/4", "--strict"])
    assert code == 1
    assert json.loads((tmp_path / "e" / "stream-eval.json").read_text())["detected"] == 0


def test_a_malformed_rule_is_refused_with_the_reason(streams: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate-streams", str(streams), "--n-of-m", "2of4"])
    assert exit_info.value.code == 2
    assert "expected N/M such as 2/4, got '2of4'" in capsys.readouterr().err
