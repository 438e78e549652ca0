"""Whole-video classification: window planning, the sustained-run verdict, one read per file, charts, errors.

The model here is a deterministic stand-in, not a trained ConvLSTM: a real Keras model saved as .keras
(GlobalAveragePooling3D -> Dense with fixed weights) whose P(shoplifting) rises with the clip's mean
brightness.  That is deliberate: these tests check classify's windowing, batching, timeline and verdict
logic against a video with a known, visually distinctive (bright) incident, which a model trained for a
few seconds could not locate reliably.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

from common.app.cli import main
from common.model_input import sample_indices
from inference import classify as cl
from inference.classify import WindowScore, classify_videos, decide, format_verdicts, plan_windows
from inference.model import INPUT_SHAPE, ModelMetadata, save_model

FPS = 10


def brightness_model(path: Path, threshold: float = 0.5) -> Path:
    """Stand-in classifier: sigmoid(40 * mean brightness - 20), i.e. p > 0.5 when the clip is brighter than mid-grey."""
    inputs = keras.Input(shape=INPUT_SHAPE)
    x = keras.layers.GlobalAveragePooling3D()(inputs)
    out = keras.layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, out)
    model.layers[-1].set_weights([np.full((3, 1), 40.0 / 3.0, dtype=np.float32), np.array([-20.0], dtype=np.float32)])
    save_model(model, path, ModelMetadata(version="stand-in-brightness", threshold=threshold))
    return path


def make_video(path: Path, seconds: float, bright: tuple[float, float] | None = None) -> Path:
    """Dark (20) 64x64 video at 10 fps; frames in [bright[0], bright[1]) seconds are bright (250)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (64, 64))
    for i in range(round(seconds * FPS)):
        on = bright is not None and bright[0] <= i / FPS < bright[1]
        writer.write(np.full((64, 64, 3), 250 if on else 20, dtype=np.uint8))
    writer.release()
    return path


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return brightness_model(tmp_path_factory.mktemp("model") / "stand_in.keras")


@pytest.mark.parametrize(
    ("frames", "fps", "window_s", "stride_s", "starts"),
    [
        (120, 10, 4.0, 1.0, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]),
        (125, 10, 4.0, 1.0, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 8.5]),  # tail window flush with the end
        (30, 10, 4.0, 1.0, [0.0]),  # shorter than a window: one whole-video window
        (60, 15, 2.0, 2.0, [0.0, 2.0]),
    ],
)
def test_plan_windows(frames, fps, window_s, stride_s, starts) -> None:
    times = [i / fps for i in range(frames)]
    windows = plan_windows(times, frames / fps, window_s, stride_s)
    assert [w.start_s for w in windows] == starts
    for w in windows:
        assert len(w.indices) == 20 and list(w.indices) == sorted(w.indices)
        # the window's own grid: instants start + 0.2 j (a 4 s window), each the frame at it; past the
        # stream's end (the whole-video window of a short one) its last frame
        grid = sample_indices(round(window_s * fps), 20)
        assert list(w.indices) == [min(round(w.start_s * fps) + int(j), frames - 1) for j in grid]


def test_windows_follow_the_frames_times_not_their_count() -> None:
    # a variable rate: 10 fps for 4 s, then 30 fps for 4 s; each window still spans 4 s of time
    times = [i / 10 for i in range(40)] + [4.0 + i / 30 for i in range(120)]
    windows = plan_windows(times, 8.0 + 1 / 30, 4.0, 1.0)
    assert [w.start_s for w in windows][:5] == [0.0, 1.0, 2.0, 3.0, 4.0]
    for w in windows:
        picked = [times[i] for i in w.indices]
        assert w.start_s - 1e-6 <= picked[0] and picked[-1] < w.end_s
        steps = np.diff(picked)
        assert steps.max() < 0.4, f"window at {w.start_s}: frames not spread in time ({picked})"
    second_half = next(w for w in windows if w.start_s == 4.0)
    assert len(set(second_half.indices)) == 20 and second_half.indices[0] == 40


@pytest.mark.parametrize(
    ("probabilities", "verdict", "flagged_starts", "incidents"),
    [
        ([0.1, 0.9, 0.1, 0.9, 0.1], "normal", [], []),  # isolated spikes are not sustained
        ([0.1, 0.9, 0.95, 0.2, 0.1], "shoplifting", [1, 2], [(1, 6)]),
        ([0.6, 0.7, 0.2, 0.2, 0.2, 0.8, 0.9, 0.9], "shoplifting", [0, 1, 5, 6, 7], [(0, 5), (5, 11)]),
        ([0.6, 0.7, 0.2, 0.8, 0.9], "shoplifting", [0, 1, 3, 4], [(0, 8)]),  # overlapping runs merge
        ([0.9], "shoplifting", [0], [(0, 4)]),  # a one-window video needs just that window
        ([0.4], "normal", [], []),
    ],
)
def test_decide_needs_a_sustained_run(probabilities, verdict, flagged_starts, incidents) -> None:
    scores = [WindowScore(float(i), i + 4.0, p) for i, p in enumerate(probabilities)]
    label, flagged, found = decide(scores, threshold=0.5, min_consecutive=2)
    assert label == verdict
    assert [int(w.start_s) for w in flagged] == flagged_starts
    assert [(int(i.start_s), int(i.end_s)) for i in found] == incidents


def test_classify_finds_the_incident_in_one_read(tmp_path: Path, model_path: Path, monkeypatch) -> None:
    incident = make_video(tmp_path / "incident.mp4", 12.0, bright=(5.0, 9.0))
    quiet = make_video(tmp_path / "quiet.mp4", 12.0)
    counts = {"open": 0, "set": 0, "retrieve": 0}
    real = cv2.VideoCapture

    class Spy:
        def __init__(self, *args):
            counts["open"] += 1
            self._cap = real(*args)

        def set(self, *args):
            counts["set"] += 1
            return self._cap.set(*args)

        def retrieve(self, *args):
            counts["retrieve"] += 1
            return self._cap.retrieve(*args)

        def __getattr__(self, name):
            return getattr(self._cap, name)

    monkeypatch.setattr(cl.cv2, "VideoCapture", Spy)
    verdicts = classify_videos([incident, quiet], model_path, tmp_path / "out", as_json=True)
    monkeypatch.undo()

    # one sequential pass per file, every frame retrieved once (windows are planned on their timestamps)
    assert counts == {"open": 2, "set": 0, "retrieve": 2 * 120}

    hit, calm = verdicts
    assert hit.verdict == "shoplifting" and calm.verdict == "normal"
    assert len(hit.windows) == 9 and hit.threshold == 0.5 and hit.duration_s == pytest.approx(12.0)
    by_start = {w.start_s: w.probability for w in hit.windows}
    assert by_start[5.0] > 0.99  # the window exactly on the incident
    assert by_start[0.0] < 0.01 and by_start[8.0] < 0.01  # windows with <= 1 s of incident
    assert all(w.end_s > 5.0 and w.start_s < 9.0 for w in hit.flagged)  # only incident-overlapping windows
    assert len(hit.incidents) == 1
    assert hit.incidents[0].start_s <= 5.0 and hit.incidents[0].end_s >= 9.0
    assert max(w.probability for w in calm.windows) < 0.01 and calm.flagged == ()
    for v in verdicts:
        assert Path(v.chart).is_file() and Path(v.chart).stat().st_size > 1000
    doc = json.loads((tmp_path / "out" / "verdicts.json").read_text())
    assert [v["verdict"] for v in doc["videos"]] == ["shoplifting", "normal"]
    assert doc["videos"][0]["incidents"][0]["probability"] > 0.99
    text = format_verdicts(verdicts)
    assert f"incident {hit.incidents[0].start_s:.1f}-{hit.incidents[0].end_s:.1f} s" in text
    assert "SHOPLIFTING" in text and "NORMAL" in text


def test_unreadable_files_get_an_error_and_others_still_run(tmp_path: Path, model_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(1).bytes(4000))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    good = make_video(tmp_path / "good.mp4", 6.0, bright=(0.0, 6.0))
    folder = tmp_path / "recordings"
    folder.mkdir()
    verdicts = classify_videos([garbage, empty, tmp_path / "missing.mp4", folder, good], model_path, tmp_path / "out")
    assert [v.verdict for v in verdicts] == ["error", "error", "error", "error", "shoplifting"]
    assert "cannot open" in verdicts[0].error and "not found" in verdicts[2].error
    assert "is a directory, not a video file" in verdicts[3].error
    assert "ERROR" in format_verdicts(verdicts)
    assert json.loads(format_verdicts(verdicts, as_json=True))[0]["error"] == verdicts[0].error


def test_threshold_override(tmp_path: Path, model_path: Path) -> None:
    video = make_video(tmp_path / "all_dark.mp4", 6.0)
    (verdict,) = classify_videos([video], model_path, tmp_path / "out", threshold=0.0)
    assert verdict.threshold == 0.0 and verdict.verdict == "shoplifting"


def test_verdict_prints_as_text_and_json(tmp_path: Path, model_path: Path) -> None:
    (verdict,) = classify_videos([make_video(tmp_path / "v.mp4", 6.0, bright=(0.0, 6.0))], model_path, tmp_path)
    assert str(verdict).startswith(f"{verdict.path}: SHOPLIFTING")
    assert json.loads(verdict.to_json())["verdict"] == "shoplifting"


@pytest.fixture(scope="module")
def cut_avi(tmp_path_factory) -> tuple[Path, Path, int]:
    """12 s at 10 fps as MJPG AVI (intra-only, frame count in the header), bright from 2 s to 5 s:
    (whole file, its first half, how many frames of the half decode)."""
    folder = tmp_path_factory.mktemp("avi")
    whole, cut = folder / "whole.avi", folder / "cut.avi"
    rng = np.random.default_rng(4)
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (64, 64))
    for i in range(120):
        level = 230 if 2.0 <= i / FPS < 5.0 else 30
        writer.write(np.clip(level + rng.normal(0, 8, (64, 64, 3)), 0, 255).astype(np.uint8))
    writer.release()
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    capture, decodable = cv2.VideoCapture(str(cut)), 0
    while capture.read()[0]:
        decodable += 1
    capture.release()
    assert 30 < decodable < 100  # the first half decodes, then the data runs out
    return whole, cut, decodable


def test_a_truncated_file_fails_unless_partial_is_accepted(
    tmp_path: Path, model_path: Path, cut_avi, capsys: pytest.CaptureFixture[str]
) -> None:
    whole, cut, decodable = cut_avi
    numbers = f"decoded {decodable} frames ({decodable / FPS:.1f} s) of 120 declared (12.0 s)"
    base = ["classify", "--model", str(model_path), "--out", str(tmp_path / "out")]

    assert main([*base, str(whole)]) == 0  # control: the intact file
    assert "PARTIAL" not in capsys.readouterr().out

    assert main([*base, str(cut)]) == 1
    captured = capsys.readouterr()
    assert numbers in captured.err and "--accept-partial" in captured.err
    assert f"SHOPLIFTING PARTIAL ({numbers})" in captured.out  # the bright act decoded, so it is found

    assert main([*base, "--accept-partial", str(cut)]) == 0
    assert numbers in capsys.readouterr().out

    assert main([*base, "--json", str(cut)]) == 1
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["partial"] is True and verdict["frame_count"] == 120
    assert verdict["decoded_frames"] == decodable and verdict["decoded_s"] == pytest.approx(decodable / FPS)
    assert max(w["end_s"] for w in verdict["windows"]) <= decodable / FPS  # only decoded windows scored
    assert any(numbers in note for note in verdict["notes"])
    saved = json.loads((tmp_path / "out" / "verdicts.json").read_text())["videos"][0]
    assert saved["partial"] is True and saved["decoded_frames"] == decodable


@pytest.mark.parametrize(
    ("frames", "last_time_s", "declared", "fps", "overstated"),
    [
        (341, 13.6, 682, 50.0, True),  # vtest.avi: 50 fps declared, 25 fps held, the full 13.6 s of it
        (60, 5.9, 120, 10.0, False),  # half of the file's time is missing: truncated
        (60, None, 120, 10.0, False),  # no timestamps to tell: count it truncated
    ],
)
def test_a_wrong_frame_rate_header_is_not_a_truncated_file(
    frames: int, last_time_s: float | None, declared: int, fps: float, overstated: bool
) -> None:
    progress = cl.ReadProgress(frames=frames, ended=True, last_time_s=last_time_s)
    assert cl._header_overstates(progress, declared, fps) is overstated


def test_vtest_is_classified_on_its_real_time(tmp_path: Path, model_path: Path) -> None:
    # vtest.avi (real footage) declares 682 frames at 50 fps and holds 341 at 25 fps over 13.6 s
    from tests.videos import real_footage

    (verdict,) = classify_videos([real_footage("vtest.avi")], model_path, tmp_path / "out")
    assert verdict.verdict != "error" and not verdict.partial
    assert verdict.fps == pytest.approx(25.0) and verdict.frame_count == 341
    assert verdict.duration_s == pytest.approx(13.64) and verdict.declared_s == pytest.approx(13.64)
    starts = [w.start_s for w in verdict.windows]
    assert starts == [*range(10), 9.64]  # every second of real time, plus the tail flush with the end
    assert all(w.end_s - w.start_s == pytest.approx(4.0) for w in verdict.windows)
    assert not any(n.startswith("truncated") for n in verdict.notes)
    assert any("header is wrong" in n for n in verdict.notes)


def test_a_wrong_rate_header_gives_the_scores_of_a_correct_one(tmp_path: Path, model_path: Path) -> None:
    from tests.videos import write_timed_video

    times = [i / 10 for i in range(80)]  # 8 s at 10 fps, brightening with time
    right = write_timed_video(tmp_path / "right.avi", times, 10)
    wrong = write_timed_video(tmp_path / "wrong.avi", times, 30)
    good, bad = classify_videos([right, wrong], model_path, tmp_path / "out")
    assert [w.start_s for w in good.windows] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert bad.windows == good.windows and bad.duration_s == good.duration_s == pytest.approx(8.0)
    assert not bad.partial and bad.fps == pytest.approx(10.0)
