"""MotionDetector: noise is not motion, movement is, masks and min_area gate it, warm-up never counts."""

from __future__ import annotations

import pytest

from common.settings import MotionSettings
from ingest.motion import MotionDetector, mask_image, small_size

from .conftest import H, W, scene

METHODS = ["diff", "mog2"]


def moving_count(settings: MotionSettings, frames) -> tuple[int, list]:
    detector = MotionDetector(settings, W, H)
    results = [detector.update(f) for f in frames]
    return sum(r.moving for r in results), results


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("sigma", [0.0, 2.0, 4.0])
def test_sensor_noise_in_a_still_scene_is_not_motion(method: str, sigma: float) -> None:
    count, _ = moving_count(MotionSettings(method=method), scene(60, sigma=sigma))
    assert count == 0


@pytest.mark.parametrize("method", METHODS)
def test_moving_rectangle_is_motion_with_a_bbox_around_it(method: str) -> None:
    frames = scene(40, moving=lambda i: i >= 20)
    count, results = moving_count(MotionSettings(method=method), frames)
    assert count >= 15
    assert not any(r.moving for r in results[:20])
    last = results[-1]
    x, y, w, h = last.bbox
    rect_x = (39 * 4) % (W - 24)
    # the bbox covers the rectangle (y 30..66) in full-resolution pixels
    assert y <= 32 and y + h >= 64
    assert x <= rect_x + 6 and x + w >= rect_x + 20
    assert 0.02 < last.area_fraction < 0.3


@pytest.mark.parametrize(
    ("name", "settings", "expect_motion"),
    [
        ("default", MotionSettings(method="diff"), True),
        (
            "masked band",
            MotionSettings(method="diff", masks=[[(0, 0.2), (1, 0.2), (1, 0.85), (0, 0.85)]]),
            False,
        ),
        ("mask elsewhere", MotionSettings(method="diff", masks=[[(0, 0.9), (1, 0.9), (1, 1), (0, 1)]]), True),
        ("min_area above object", MotionSettings(method="diff", min_area=0.2), False),
        (
            "mog2 masked",
            MotionSettings(method="mog2", masks=[[(0, 0.2), (1, 0.2), (1, 0.85), (0, 0.85)]]),
            False,
        ),
    ],
)
def test_masks_and_min_area_gate_motion(name: str, settings: MotionSettings, expect_motion: bool) -> None:
    count, _ = moving_count(settings, scene(40, moving=lambda i: i >= 15))
    assert (count > 0) is expect_motion, name


def test_warmup_frames_never_count_even_when_moving() -> None:
    settings = MotionSettings(method="diff", warmup_frames=12)
    detector = MotionDetector(settings, W, H)
    results = [detector.update(f) for f in scene(20, moving=lambda i: True)]
    assert not any(r.moving for r in results[:12])


def test_small_size_keeps_aspect_and_never_upscales() -> None:
    assert small_size(640, 360, 160) == (160, 90)
    assert small_size(100, 50, 160) == (100, 50)


def test_mask_image_zeroes_polygon() -> None:
    image = mask_image([[(0, 0), (0.5, 0), (0.5, 1), (0, 1)]], 100, 50)
    assert image[25, 10] == 0 and image[25, 90] == 255
    assert mask_image([], 10, 10) is None


def test_the_model_frame_setting_reads_the_model_frame_or_the_frame() -> None:
    import cv2

    frames = scene(30, moving=lambda i: i >= 15)
    by_frame = MotionDetector(MotionSettings(downscale_width=0), W, H)
    by_model_frame = MotionDetector(MotionSettings(downscale_width=0), W, H)
    for image in frames:
        small = cv2.resize(image, (64, 64), interpolation=cv2.INTER_LINEAR)  # what ClipCutter.prepare makes
        assert by_frame.update(image) == by_model_frame.update(small)
    assert by_frame.size == (64, 64)
    with pytest.raises(ValueError, match="or its 64x64 model frame"):
        by_frame.update(scene(1, width=80, height=60)[0])


@pytest.mark.parametrize("width", [1, 31])
def test_downscale_width_is_zero_or_at_least_32(width: int) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="0 \\(the model frame\\) or at least 32"):
        MotionSettings(downscale_width=width)


def test_wrong_frame_size_is_rejected() -> None:
    detector = MotionDetector(MotionSettings(), W, H)
    with pytest.raises(ValueError, match="detector was built for"):
        detector.update(scene(1, width=80, height=60)[0])


def _shopper(n_still: int, *, leave: bool, seed: int = 3) -> list:
    """A dark figure walks in (10 frames), stands at one spot for ``n_still`` frames moving only a small
    'hand', then (``leave``) is gone; the noisy background stays."""
    import cv2
    import numpy as np

    from .conftest import noisy, still_background

    rng = np.random.default_rng(seed)
    background = still_background()
    frames = [noisy(background, rng) for _ in range(15)]
    for i in range(10):
        frame = noisy(background, rng)
        cv2.rectangle(frame, (10 + 6 * i, 25), (34 + 6 * i, 75), (30, 30, 200), -1)
        frames.append(frame)
    for i in range(n_still):
        frame = noisy(background, rng)
        cv2.rectangle(frame, (70, 25), (94, 75), (30, 30, 200), -1)
        hand_y = 40 + (i % 10)
        cv2.rectangle(frame, (95, hand_y), (100, hand_y + 4), (200, 200, 240), -1)
        frames.append(frame)
    if leave:
        frames += [noisy(background, rng) for _ in range(60)]
    return frames


@pytest.mark.parametrize("downscale_width", [160, 0])  # 0: the model frame, whose change threshold this pins
def test_a_shopper_who_walks_away_leaves_no_ghost_motion(downscale_width: int) -> None:
    # 5 s at the shelf: a background that learnt the figure would keep reporting where it stood
    frames = _shopper(75, leave=True)
    _, results = moving_count(MotionSettings(method="diff", downscale_width=downscale_width), frames)
    gone = len(frames) - 60
    assert all(r.moving for r in results[25:gone])  # standing still at the shelf is still someone there
    assert not any(r.moving for r in results[gone + 3 :])  # and a moment after they leave, nothing


@pytest.mark.parametrize("downscale_width", [160, 0])
def test_something_left_standing_fades_into_the_background(downscale_width: int) -> None:
    frames = _shopper(600, leave=False)  # 40 s, a figure that only twitches a small patch
    _, results = moving_count(MotionSettings(method="diff", min_area=0.05, downscale_width=downscale_width), frames)
    assert results[40].moving
    assert not results[-1].moving  # absorbed at the slow rate: not gated open forever
