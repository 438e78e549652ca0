"""MotionGate: examines about gate_fps frames a second, hands every frame on in order with a verdict, and
finds where motion starts and stops frame by frame, as the full-rate detector does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from common.settings import CameraSettings, ClipSettings, MotionSettings
from ingest.capture import Frame
from ingest.clips import ClipCutter
from ingest.motion import MotionDetector, MotionGate, gate_fps_for

from .conftest import FPS, H, W, noisy, scene, still_background

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def frames_of(images: list[np.ndarray], fps: float = FPS) -> list[Frame]:
    return [Frame(i, image, i / fps, START + timedelta(seconds=i / fps)) for i, image in enumerate(images)]


def gated(frames: list[Frame], gate_fps: float, settings: MotionSettings | None = None) -> tuple[list, MotionGate]:
    gate: MotionGate[Frame] = MotionGate(settings or MotionSettings(), W, H, gate_fps)
    out = []
    for frame in frames:
        out += gate.push(frame)
    out += gate.flush()
    return out, gate


def full_rate(frames: list[Frame], settings: MotionSettings | None = None) -> list[bool]:
    detector = MotionDetector(settings or MotionSettings(), W, H)
    return [detector.update(f.image).moving for f in frames]


def test_every_frame_leaves_the_gate_once_in_order_with_a_verdict() -> None:
    frames = frames_of(scene(150, moving=lambda i: 40 <= i < 100))
    out, gate = gated(frames, 5.0)
    assert [f.index for f, _ in out] == list(range(150))
    assert gate.held == 0


def test_a_lower_rate_examines_fewer_frames_and_finds_the_same_motion() -> None:
    # still 40 frames, a rectangle moving 60, still 50: onset and end fall between examined frames
    frames = frames_of(scene(150, moving=lambda i: 43 <= i < 101))
    want = full_rate(frames)
    assert 40 < sum(want) < 70
    out, gate = gated(frames, 5.0)
    assert [r.moving for _, r in out] == want
    # 10 warm-up frames, 1 in 3 while the view is empty, every frame while the rectangle is in view
    assert gate.frames_examined < 0.75 * len(frames)
    assert gate.rewinds >= 1  # where the motion started, between two examined frames


def test_gate_fps_zero_is_the_full_rate_detector() -> None:
    frames = frames_of(scene(80, moving=lambda i: i >= 30))
    detector = MotionDetector(MotionSettings(), W, H)
    want = [detector.update(f.image) for f in frames]
    out, gate = gated(frames, 0.0)
    assert [r for _, r in out] == want
    assert gate.frames_examined == 80


def test_mog2_and_motion_crops_examine_every_frame() -> None:
    frames = frames_of(scene(30, moving=lambda i: i >= 15))
    _, gate = gated(frames, 5.0, MotionSettings(method="mog2"))
    assert gate.every_frame and gate.frames_examined == 30
    crop = CameraSettings(id="c", source="x.mp4", clip=ClipSettings(crop="motion"))
    assert gate_fps_for(crop) == 0.0
    assert gate_fps_for(CameraSettings(id="c", source="x.mp4")) == 5.0


def _still_shopper(moved_at: int, n: int = 120) -> list[np.ndarray]:
    """A shopper (a rectangle) standing still from frame 20 who moves 6 px for the one frame ``moved_at``."""
    background, rng = still_background(), np.random.default_rng(3)
    images = []
    for i in range(n):
        image = noisy(background, rng)
        if i >= 20:
            x = 60 + (6 if i == moved_at else 0)
            image[30:66, x : x + 24] = (20, 20, 160)
        images.append(image)
    return images


def _cut(decided: list) -> list[tuple[int, bytes]]:
    cutter = ClipCutter(ClipSettings(), MotionSettings(), FPS)
    clips = []
    for frame, result in decided:
        clips += cutter.push(frame, result)
    clips += cutter.flush()
    return [(clip.window_index, clip.frames.tobytes()) for clip in clips]


@pytest.mark.parametrize("downscale_width", [160, 0])  # 0: motion on the model frame
@pytest.mark.parametrize("moved_at", range(57, 63))  # every phase of the 1-in-3 gate interval, twice
def test_a_still_shopper_moving_for_one_frame_is_seen_at_every_phase(moved_at: int, downscale_width: int) -> None:
    """Review C1: a quick movement of someone already in view, between two examined frames, must not be
    skipped (it is the gesture the product exists to catch): verdicts and clips match the full-rate gate."""
    frames = frames_of(_still_shopper(moved_at))
    settings = MotionSettings(downscale_width=downscale_width)
    detector = MotionDetector(settings, W, H)
    want = [(f, detector.update(f.image)) for f in frames]
    assert any(r.moving for f, r in want if f.index >= moved_at)  # the movement is motion at full rate
    out, _ = gated(frames, 5.0, settings)
    assert [r.moving for _, r in out] == [r.moving for _, r in want]
    assert _cut(out) == _cut(want)


def test_an_empty_view_is_still_examined_at_the_gate_rate() -> None:
    """Examining every frame while something is in view keeps the saving where the view is empty."""
    frames = frames_of(scene(150, moving=lambda i: False))
    out, gate = gated(frames, 5.0)
    assert not any(r.moving for _, r in out)
    assert gate.frames_examined < 0.45 * len(frames)


@pytest.mark.parametrize("fps", [15.0, 60.0])
def test_a_view_with_someone_standing_in_it_is_examined_at_the_gate_rate_too(fps: float) -> None:
    """Held frames while something is in view are followed (their frame-to-frame change recorded), not
    examined: a still shopper costs about the gate rate, and the verdicts are the full-rate ones.  At 60 fps
    a gate interval (12 frames) is longer than the recent change lasts (8), so holds stop at MAX_HELD_IN_VIEW."""
    frames = frames_of(_still_shopper(moved_at=-1, n=240), fps)
    want = full_rate(frames)
    assert any(want)  # the shopper walking in
    out, gate = gated(frames, 5.0)
    assert [r.moving for _, r in out] == want
    held_in_view = len(frames) - 30  # the shopper stands there from frame 20 (and 10 warm-up frames)
    assert gate.frames_examined < 30 + held_in_view * (0.4 if fps == 15.0 else 0.2)


@pytest.mark.parametrize("moved_at", range(100, 108))  # every phase of a 7-frame hold
def test_a_still_shopper_moving_for_one_frame_is_seen_at_60_fps(moved_at: int) -> None:
    frames = frames_of(_still_shopper(moved_at, n=160), 60.0)
    detector = MotionDetector(MotionSettings(), W, H)
    want = [(f, detector.update(f.image)) for f in frames]
    assert any(r.moving for f, r in want if f.index >= moved_at)
    out, _ = gated(frames, 5.0)
    assert [r.moving for _, r in out] == [r.moving for _, r in want]


def _shopper_and_flash(flash_at: int, flash_len: int, n: int) -> list[np.ndarray]:
    """A shopper standing still from frame 20 and, for ``flash_len`` frames from ``flash_at``, something else
    darting into the picture away from them (another hand, an item)."""
    background, rng = still_background(), np.random.default_rng(3)
    images = []
    for i in range(n):
        image = noisy(background, rng)
        if i >= 20:
            image[30:66, 20:44] = (20, 20, 160)
        if flash_at <= i < flash_at + flash_len:
            image[20:50, 110:130] = (200, 220, 30)
        images.append(image)
    return images


@pytest.mark.parametrize(
    ("fps", "downscale_width", "flash_len"),
    [(15.0, 160, 1), (15.0, 160, 2), (15.0, 0, 1), (15.0, 0, 2), (60.0, 160, 1), (60.0, 160, 3), (60.0, 160, 5)],
)
def test_a_brief_movement_away_from_a_still_shopper_is_seen_at_every_phase(
    fps: float, downscale_width: int, flash_len: int
) -> None:
    """Review of the holds in view: frames followed beside a still shopper that change elsewhere are each
    examined (the next examined frame may no longer show what moved), so verdicts and clips are the full rate's."""
    settings = MotionSettings(downscale_width=downscale_width)
    for flash_at in range(100, 107):  # every phase of a hold (3 frames at 15 fps, 7 at 60)
        frames = frames_of(_shopper_and_flash(flash_at, flash_len, n=160), fps)
        detector = MotionDetector(settings, W, H)
        want = [(f, detector.update(f.image)) for f in frames]
        assert any(r.moving for f, r in want if f.index >= flash_at)  # the flash is motion at full rate
        out, _ = gated(frames, 5.0, settings)
        assert [r.moving for _, r in out] == [r.moving for _, r in want], flash_at
        assert _cut(out) == _cut(want), flash_at
