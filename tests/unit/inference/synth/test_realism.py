"""The realism added to training scenes: a camera's look (inference.synth.realism) and passers-by (crowd)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from common.model_input import model_clip
from inference.ood import FEATURE_NAMES, clip_features
from inference.synth import camera_scene_seed, make_scene, render_window, write_dataset
from inference.synth.crowd import hall_background, plan_walker
from inference.synth.realism import REALISM_VERSION, CameraLook, render_realistic_window
from inference.synth.render import SceneRenderer

VIEW = camera_scene_seed(7, 0)


def _feature(frames: np.ndarray, name: str) -> float:
    return float(clip_features(model_clip(list(frames))[None])[0, FEATURE_NAMES.index(name)])


def _fine_detail(frames: np.ndarray) -> float:
    """Mean absolute Laplacian of the frames at their own resolution: high-frequency energy."""
    return float(np.mean([np.abs(cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), cv2.CV_32F)).mean()
                          for f in frames]))


def _blockiness(frames: np.ndarray) -> float:
    """Mean step across 8-pixel block borders over the mean step inside blocks (1: no blocks)."""
    steps = np.abs(np.diff(frames.astype(np.float32).mean(axis=3), axis=2)).mean(axis=(0, 1))  # per column
    border = steps[7::8]
    inside = np.delete(steps, np.arange(7, len(steps), 8))
    return float(border.mean() / inside.mean())


def test_a_realistic_window_is_reproducible_from_its_seed() -> None:
    a, info_a, extra_a = render_realistic_window("shoplifting", 41, scene_seed=VIEW)
    b, info_b, extra_b = render_realistic_window("shoplifting", 41, scene_seed=VIEW)
    c, _, _ = render_realistic_window("shoplifting", 42, scene_seed=VIEW)
    assert np.array_equal(a, b) and info_a == info_b and extra_a == extra_b
    assert not np.array_equal(a, c)


def test_the_identity_look_changes_nothing_and_a_camera_look_changes_the_picture() -> None:
    frames, _ = render_window("normal", 3, scene_seed=VIEW)
    assert np.array_equal(CameraLook.identity().apply(frames), frames)
    noisy = CameraLook(None, None, 1.0, 0.0, 1.0, noise_sigma=8.0, jpeg_quality=0, seed=1).apply(frames)
    assert _fine_detail(noisy) > 1.3 * _fine_detail(frames)  # sensor grain
    jpeg = CameraLook(None, None, 1.0, 0.0, 1.0, noise_sigma=0.0, jpeg_quality=15, seed=1).apply(frames)
    assert _blockiness(jpeg) > 1.5 * _blockiness(frames)  # 8x8 compression blocks
    blurred = CameraLook(None, None, 1.0, blur_sigma=1.5, downscale=1.0, noise_sigma=0.0, jpeg_quality=0,
                         seed=1).apply(frames)
    assert _fine_detail(blurred) < 0.7 * _fine_detail(frames)
    assert _feature(blurred, "log_edge_density") < _feature(frames, "log_edge_density")
    dark = CameraLook.draw(np.random.default_rng(0), 320, 180)
    out = CameraLook(None, np.full((256, 1, 3), 40, np.uint8), 1.0, 0.0, 1.0, 0.0, 0, dark.seed).apply(frames)
    assert np.all(out == 40)  # the exposure LUT is applied


def test_a_walker_moves_across_the_frame_at_its_speed() -> None:
    scene = make_scene(VIEW, 320, 180)
    rng = np.random.default_rng(5)
    walker = plan_walker(scene, rng, height=50.0, mid=(100.0, 150.0), heading=0.0, speed=40.0, at_s=0.0)
    renderer = SceneRenderer(scene, noise_seed=1)
    renderer.set_background(hall_background(scene, rng))
    empty, _ = renderer.frame(0.0)

    def centre_x(t: float) -> float:
        img, _ = renderer.frame(0.0, passers=[walker.at(t)])
        _ys, xs = np.nonzero(np.abs(img.astype(int) - empty.astype(int)).sum(axis=2) > 40)
        assert len(xs) > 50, "the walker is drawn"
        return float(np.median(xs))

    def seen_x(x: float, y: float) -> float:  # canonical -> output pixels (the view may be mirrored, zoomed)
        return float(cv2.perspectiveTransform(np.array([[[x, y]]], np.float32), scene.homography)[0, 0, 0])

    assert centre_x(0.0) == pytest.approx(seen_x(100.0, 150.0), abs=6.0)
    assert centre_x(2.0) - centre_x(0.0) == pytest.approx(seen_x(180.0, 150.0) - seen_x(100.0, 150.0), abs=8.0)


def test_a_realism_dataset_has_crowds_among_normal_videos_and_looks_for_both_labels(tmp_path: Path) -> None:
    manifest = json.loads(write_dataset(tmp_path / "ds", 24, seed=3, cameras=2, store_seed=7, realism=True,
                                        progress=False).read_text())
    assert manifest["realism"] == REALISM_VERSION
    by_label: dict[str, list[dict]] = {"shoplifting": [], "normal": []}
    for f in manifest["files"]:
        by_label[f["label"]].append(f["realism"])
        # hall crowds exist only as normal videos: trained on, left out of the input description
        assert bool(f.get("context_only")) == (f["realism"]["crowd"] == "hall"), f
        assert (tmp_path / "ds" / f["path"]).stat().st_size > 0
    crowds = [r for r in by_label["normal"] if r["crowd"]]
    assert crowds and all(r["passers"] >= 2 for r in crowds)
    assert not any(r["crowd"] for r in by_label["shoplifting"])
    for label, looks in by_label.items():  # both labels get camera looks: the look is no class cue
        assert sum(bool(r["camera"]["jpeg_quality"]) or r["camera"]["noise_sigma"] > 0 for r in looks) >= 8, label
