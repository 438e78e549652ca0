"""The one definition of model input: frame picking, colour order, resize, dtype."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from common.model_input import CLIP_FRAMES, CLIP_SIZE, model_clip, model_frame, sample_indices


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (20, list(range(20))),
        (39, list(range(0, 39, 2))),
        (58, list(range(0, 58, 3))),
        (1, [0] * 20),
        (60, [0, 3, 6, 9, 12, 16, 19, 22, 25, 28, 31, 34, 37, 40, 43, 47, 50, 53, 56, 59]),
    ],
)
def test_sample_indices_spread_evenly_first_to_last(count: int, expected: list[int]) -> None:
    assert sample_indices(count, 20).tolist() == expected


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
    assert np.array_equal(whole[1], model_frame(window[2]))  # 45 frames: the second pick is frame 2


def test_model_clip_of_no_frames_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        model_clip([])
