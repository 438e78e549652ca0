"""The one definition of model input: frame picking, colour order, resize, dtype."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from common.model_input import CLIP_FRAMES, CLIP_SIZE, model_clip, model_frame, sample_indices, sample_times


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (20, list(range(20))),
        (39, list(range(0, 39, 2))),
        (58, [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 29, 32, 35, 38, 41, 44, 47, 50, 53, 56]),  # ceil(i * 2.9)
        (1, [0] * 20),
        (60, list(range(0, 60, 3))),  # a 4 s window at 15 fps: every third frame, from the window's start
        (100, list(range(0, 100, 5))),  # at 25 fps: every fifth
        (10, [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 9]),  # fewer frames than picks
    ],
)
def test_sample_indices_are_the_grid_picks_of_a_window_the_frames_fill(count: int, expected: list[int]) -> None:
    assert sample_indices(count, 20).tolist() == expected


@pytest.mark.parametrize("fps", [5.0, 12.5, 15.0, 25.0, 29.97, 30.0, 50.0])
@pytest.mark.parametrize("k", [0, 1, 7, 1234])
def test_constant_rate_time_picks_are_index_picks(fps: float, k: int) -> None:
    """A window of a constant-rate file that starts on a frame picks by time what it picks by index."""
    first = round(k * fps)  # window k on a 1 s grid starts at frame k * fps (when that is a whole frame)
    times = [(first + i) / fps for i in range(int(4.0 * fps))]
    if abs(first / fps - k) > 1e-9:
        return
    assert sample_times(times, 20, start=float(k), span=4.0).tolist() == sample_indices(len(times), 20).tolist()


def test_time_picks_are_the_first_frame_at_or_after_each_instant_of_the_windows_grid() -> None:
    times = [0.95, 1.02, 1.19, 1.21, 1.4 - 5e-7, 1.65, 1.8, 2.3]
    # window from 1.0 over 1 s, 5 instants: 1.0, 1.2, 1.4, 1.6, 1.8
    assert sample_times(times, 5, start=1.0, span=1.0).tolist() == [1, 3, 4, 5, 6]
    # no frame at or after an instant: the last frame
    assert sample_times(times[:4], 5, start=1.0, span=1.0).tolist() == [1, 3, 3, 3, 3]
    # without a start the grid starts at the first frame
    assert sample_times(times, 2, span=1.0).tolist() == [0, 5]  # 0.95 and 1.45
    with pytest.raises(ValueError, match="decrease"):
        sample_times([1.0, 0.5], 2)
    with pytest.raises(ValueError, match="span"):
        sample_times([1.0], 2, span=0.0)


@pytest.mark.parametrize(("available", "count"), [(0, 20), (5, 0), (-1, 3)])
def test_sample_indices_refuses_empty_windows(available: int, count: int) -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        sample_indices(available, count)


def _image(h: int = 90, w: int = 160, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_model_frame_is_a_bilinear_resize_of_the_whole_bgr_frame() -> None:
    image = _image()
    frame = model_frame(image)
    assert frame.shape == (CLIP_SIZE, CLIP_SIZE, 3) and frame.dtype == np.uint8
    assert np.array_equal(frame, cv2.resize(image, (CLIP_SIZE, CLIP_SIZE), interpolation=cv2.INTER_LINEAR))
    assert not np.array_equal(frame, cv2.resize(image, (CLIP_SIZE, CLIP_SIZE), interpolation=cv2.INTER_AREA))


def test_model_frame_converts_grey_and_bgra_to_bgr() -> None:
    grey = _image()[:, :, 0].copy()
    assert np.array_equal(model_frame(grey), model_frame(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)))
    assert np.array_equal(model_frame(grey[:, :, None]), model_frame(grey))
    bgr = _image(seed=1)
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    bgra[:, :, 3] = 7  # alpha is dropped, not blended
    assert np.array_equal(model_frame(bgra), model_frame(bgr))


@pytest.mark.parametrize(
    ("image", "error"),
    [
        (np.zeros((10, 10, 3), dtype=np.float32), "uint8"),
        (np.zeros((10, 10, 2), dtype=np.uint8), "shape"),
        (np.zeros((2, 10, 10, 3), dtype=np.uint8), "shape"),
    ],
)
def test_model_frame_refuses_what_is_not_an_image(image: np.ndarray, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        model_frame(image)


def test_a_model_frame_passes_through_unchanged() -> None:
    frame = model_frame(_image())
    assert model_frame(frame) is frame


def test_picking_first_or_converting_first_gives_the_same_bytes() -> None:
    window = [_image(seed=s) for s in range(45)]
    whole = model_clip(window)
    assert whole.shape == (CLIP_FRAMES, CLIP_SIZE, CLIP_SIZE, 3) and whole.dtype == np.uint8
    picked = [window[i] for i in sample_indices(len(window), CLIP_FRAMES)]
    converted = [model_frame(f) for f in window]
    assert np.array_equal(model_clip(picked), whole)  # picked before decoding the rest (a long file)
    assert np.array_equal(model_clip(converted), whole)  # converted on arrival (ingest)
    assert np.array_equal(whole[1], model_frame(window[3]))  # 45 frames: the second pick is ceil(2.25)


def test_model_clip_of_no_frames_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        model_clip([])
