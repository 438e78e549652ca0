"""``aislewatch evaluate-streams``: the real pipeline over recorded streams, scored against their truth, and
over recordings without truth (no incident in them: every alert a false alarm), real footage among them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.app.cli import main
from common.app.stream_eval import evaluate_streams, find_streams, load_recordings
from inference.synth import camera_scene_seed, write_stream
from tests.tiny_models import save_tiny_model
from tests.videos import write_moving_box_video

pytestmark = pytest.mark.slow

# The shared real recordings (people walking, no theft), beside the repository as in CI.
REAL_FOOTAGE = Path(__file__).resolve().parents[2] / ".." / "shared" / "real-footage"


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("streams")
    write_stream(folder / "cam-a.mp4", duration_s=40.0, seed=11, incidents=1, normal_shoppers=1,
                 scene_seed=camera_scene_seed(7, 2))
    return folder


def test_every_video_is_a_stream_and_one_without_truth_holds_no_incident(streams: Path, tmp_path: Path) -> None:
    write_moving_box_video(tmp_path / "hall.avi", frames=45, fps=15.0)
    (tmp_path / "notes.txt").write_text("not a video")
    cam_a = streams / "cam-a.mp4"
    (tmp_path / "cam-a.mp4").write_bytes(cam_a.read_bytes())
    (tmp_path / "cam-a.truth.json").write_text(cam_a.with_suffix(".truth.json").read_text())
    recordings = load_recordings(find_streams(tmp_path))
    assert list(recordings) == ["cam-a", "hall"]
    assert recordings["cam-a"].labelled and recordings["cam-a"].duration_s == pytest.approx(40.0)
    hall = recordings["hall"]
    assert not hall.labelled and hall.truth.incidents == ()
    assert hall.timing is not None and hall.timing.frames == 45 and hall.timing.header_agrees
    assert hall.duration_s == pytest.approx(3.0, abs=0.01)


@pytest.mark.parametrize(("files", "error", "message"), [
    ((), FileNotFoundError, "no video"),
    (("a.mp4", "a.avi"), ValueError, "both be camera 'a'"),
    (("broken.mp4",), ValueError, "broken.mp4"),
])
def test_a_folder_that_cannot_be_evaluated_is_refused_with_the_reason(
    tmp_path: Path, files: tuple[str, ...], error: type[Exception], message: str
) -> None:
    for name in files:
        (tmp_path / name).write_bytes(b"not a video")
    with pytest.raises(error, match=message):
        load_recordings(find_streams(tmp_path))


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


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic stream with its truth and a 30 s recording with none, motion in every frame."""
    folder = tmp_path_factory.mktemp("mixed")
    write_stream(folder / "cam-a.mp4", duration_s=20.0, seed=12, incidents=1, normal_shoppers=0,
                 scene_seed=camera_scene_seed(7, 1))
    write_moving_box_video(folder / "hall.avi", frames=450, fps=15.0)
    return folder


def test_every_alert_on_a_recording_without_truth_is_a_false_alarm(
    mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a stand-in model that calls every clip shoplifting: the rule must alert on the hall, and all of it is false
    model = save_tiny_model(tmp_path / "always.keras", weight=0.0, bias=30.0, version="always-1", threshold=0.5)
    code = main(["evaluate-streams", str(mixed), "--model", str(model), "--out", str(tmp_path / "e"), "--json",
                 "--plots", str(tmp_path / "plots")])
    captured = capsys.readouterr()
    report = json.loads(captured.out)  # --json: the report alone on stdout, the table on stderr
    assert code == 0 and "per cam-h" in captured.err
    assert report == {**json.loads((tmp_path / "e" / "stream-eval.json").read_text()), "plots": report["plots"]}
    cams = {c["camera"]: c for c in report["cameras"]}
    hall = cams["hall"]
    assert not hall["labelled"] and hall["incidents"] == 0
    assert hall["duration_s"] == pytest.approx(30.0, abs=0.01) and hall["hours"] == pytest.approx(30.0 / 3600, rel=1e-3)
    assert hall["alerts"] >= 1 and hall["false_alarms"] == hall["alerts"]
    assert hall["false_alarms_per_camera_hour"] == pytest.approx(hall["alerts"] / (30.0 / 3600), rel=1e-3)
    scores = hall["scores"]
    assert scores["clips"] == hall["clips"] > 0
    assert scores["min"] == scores["median"] == scores["p99"] == scores["max"] == 1.0
    assert scores["at_or_over_threshold"] == 1.0 and scores["histogram"]["counts"] == [0] * 9 + [hall["clips"]]
    assert cams["cam-a"]["labelled"] and report["incidents"] == 1 and report["unlabelled_streams"] == 1
    assert report["hours"] == pytest.approx(50.0 / 3600, rel=1e-3)
    assert report["false_alarms"] == sum(c["false_alarms"] for c in cams.values())
    assert report["false_alarms_per_camera_hour"] == pytest.approx(report["false_alarms"] / report["hours"], rel=1e-2)
    assert report["scores"]["clips"] == report["results"] == sum(c["clips"] for c in cams.values())
    assert report["plots"] == [str(tmp_path / "plots" / "scores.png")]
    assert (tmp_path / "plots" / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_real_recording_is_timed_by_its_frames_not_its_header(tmp_path: Path) -> None:
    if not (REAL_FOOTAGE / "vtest.avi").is_file():
        pytest.fail(f"the shared real footage is missing: expected {REAL_FOOTAGE / 'vtest.avi'} beside the repository")
    folder = tmp_path / "real"
    folder.mkdir()
    (folder / "vtest.avi").symlink_to(REAL_FOOTAGE / "vtest.avi")  # the footage itself is read-only
    report = evaluate_streams(folder, tmp_path / "e")
    (cam,) = report["cameras"]
    # the header says 682 frames at 50 fps; the 341 frames' own timestamps step by 40 ms: 13.6 s, not 27 s
    assert cam["timing"]["declared_frames"] == 682 and cam["timing"]["declared_fps"] == 50.0
    assert cam["timing"]["frames"] == 341 and cam["timing"]["fps"] == pytest.approx(25.0)
    assert not cam["timing"]["header_agrees"]
    assert cam["duration_s"] == pytest.approx(13.6, abs=0.1)
    assert report["hours"] == pytest.approx(cam["duration_s"] / 3600, rel=1e-3)
    # people walking, no theft: whatever the model makes of them, an alert is a false alarm
    assert not cam["labelled"] and report["incidents"] == 0 and report["recall"] is None
    assert cam["clips"] > 0 and cam["scores"]["clips"] == cam["clips"]
    assert cam["false_alarms"] == cam["alerts"] == report["false_alarms"]
    assert report["false_alarms_per_camera_hour"] == pytest.approx(cam["false_alarms"] / report["hours"], rel=1e-2)
