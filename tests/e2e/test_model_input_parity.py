"""One video through every path that feeds the model gives byte-identical model input for the same frames.

Live ingest (through the embedded pipeline's inference worker, as ``evaluate-streams`` runs it), the
training-set builder (``train`` and ``evaluate`` read clips through it) and ``classify`` each pick frames
and resize them; they all must call ``common.model_input`` so the model is never trained on one input and
served another.  The model here records what it is given instead of scoring it, after keeping it to its
``input_bits`` as ``ClipClassifier.predict`` does (ingest's clips arrive at ``clip.bits`` 5 already).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.app.embedded import prepare_output, run_embedded, stream_settings
from common.model_input import CLIP_FRAMES, model_clip, quantize
from inference.classify import score_video
from inference.dataset import VideoItem, decode_clip, load_clips
from tests.videos import decoded_frames, write_moving_box_video

FPS = 15
WINDOW_FRAMES = 4 * FPS  # the default 4 s window


class RecordingModel:
    """Stands in for the ConvLSTM: keeps every clip it is given and scores clip i as (i + 1) / 1000, so a
    stored result tells which clip it was."""

    threshold = 0.99
    version = "recorder"
    input_bits = 5

    def __init__(self) -> None:
        self.clips: list[np.ndarray] = []

    def predict(self, clips: np.ndarray) -> np.ndarray:
        clips = np.asarray(clips)
        clips = clips[None] if clips.ndim == 4 else clips
        first = len(self.clips)
        self.clips.extend(c.copy() for c in quantize(clips, self.input_bits))
        return (np.arange(first, first + len(clips), dtype=np.float32) + 1) / 1000

    def clip_scored(self, probability: float) -> np.ndarray:
        return self.clips[round(probability * 1000) - 1]


def write_video(path: Path, frames: int) -> Path:
    return write_moving_box_video(path, frames, FPS)


def ingest_clips(path: Path, out: Path) -> dict[float, np.ndarray]:
    """What the live pipeline sent to the model, by each clip's start time in the video."""
    model = RecordingModel()
    settings = stream_settings(prepare_output(out), [{"id": "parity-cam", "source": path}])
    run = run_embedded(settings, model, timeout_s=120.0)
    try:
        return {round(r.source_start_s, 3): model.clip_scored(r.probability) for r in run.results}
    finally:
        run.db.close()


@pytest.fixture(scope="module")
def one_window(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Exactly one 4 s window long: the dataset's whole-video clip covers the same frames as the others."""
    return write_video(tmp_path_factory.mktemp("parity") / "one-window.mp4", WINDOW_FRAMES)


def test_ingest_training_and_classify_give_the_model_the_same_bytes(one_window: Path, tmp_path: Path) -> None:
    reference = quantize(model_clip(decoded_frames(one_window)[:WINDOW_FRAMES], CLIP_FRAMES), 5)

    training = load_clips([VideoItem(one_window, "normal/one-window.mp4", 0)], cache_dir=tmp_path / "cache",
                          progress=False, bits=5)  # as `train` loads clips for a 5-bit model
    assert training.skipped == () and np.array_equal(training.clips[0], reference)
    assert np.array_equal(quantize(decode_clip(one_window), 5), reference)

    model = RecordingModel()
    scores, _, fps, _ = score_video(model, one_window)
    assert fps == FPS and len(scores) == 1
    assert np.array_equal(model.clips[0], reference)

    live = ingest_clips(one_window, tmp_path / "embedded")
    assert 0.0 in live, f"ingest cut no clip at 0 s (clips at {sorted(live)})"
    assert np.array_equal(live[0.0], reference)


def test_every_window_of_a_longer_video_matches_between_ingest_and_classify(tmp_path: Path) -> None:
    video = write_video(tmp_path / "six-seconds.mp4", 6 * FPS)
    frames = decoded_frames(video)
    model = RecordingModel()
    scores, _, _, _ = score_video(model, video, window_s=4.0, stride_s=1.0)
    assert [s.start_s for s in scores] == [0.0, 1.0, 2.0]
    live = ingest_clips(video, tmp_path / "embedded")
    for k, score in enumerate(scores):
        reference = quantize(model_clip(frames[k * FPS : k * FPS + WINDOW_FRAMES], CLIP_FRAMES), 5)
        assert np.array_equal(model.clips[k], reference), f"classify window at {score.start_s} s"
        assert np.array_equal(live[float(k)], reference), f"ingest clip at {k} s"


def test_a_file_whose_header_lies_gets_the_same_windows_from_ingest_and_classify(tmp_path: Path) -> None:
    # vtest.avi (real footage) declares 50 fps and holds 25: both paths place its frames by their timestamps
    from tests.videos import real_footage

    video = real_footage("vtest.avi")
    model = RecordingModel()
    scores, _, fps, _ = score_video(model, video, window_s=4.0, stride_s=1.0)
    assert fps == pytest.approx(25.0)
    live = ingest_clips(video, tmp_path / "embedded")
    assert live, "ingest cut no clip of vtest.avi"
    for start, clip in live.items():
        k = next(i for i, s in enumerate(scores) if s.start_s == pytest.approx(round(start)))
        assert np.array_equal(clip, model.clips[k]), f"window at {start} s"
