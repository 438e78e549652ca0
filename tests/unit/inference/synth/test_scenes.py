"""Tests for the synthetic store-scene generator (inference.synth)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference import synth
from inference.synth import (
    CONCEAL_AFTER_S,
    CONCEAL_BEFORE_S,
    STILL_GAP_S,
    WINDOW_MARGIN_S,
    Event,
    GroundTruth,
    plan_episode,
    plan_stream,
    render_episode_window,
    render_stream,
    render_window,
    write_dataset,
    write_stream,
)

MOTION_THRESHOLD = 25  # the motion detector's default per-pixel sensitivity (grey levels)


def _grey_blur(frame: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), (5, 5), 0).astype(np.int16)


def _first_seed(
    pred, label: str = "normal", limit: int = 200, **kw
) -> tuple[int, np.ndarray, synth.WindowInfo]:
    for seed in range(limit):
        frames, info = render_window(label, seed, **kw)  # type: ignore[arg-type]
        if pred(info):
            return seed, frames, info
    raise AssertionError("no seed found")


@pytest.mark.parametrize(
    ("label", "width", "height", "fps", "duration_s", "frames"),
    [
        ("shoplifting", 320, 180, 15.0, 4.0, 60),
        ("normal", 320, 180, 15.0, 4.0, 60),
        ("shoplifting", 160, 90, 10.0, 3.0, 30),
        ("normal", 640, 360, 5.0, 4.0, 20),
    ],
)
def test_window_shape_and_dtype(
    label: str, width: int, height: int, fps: float, duration_s: float, frames: int
):
    clip = render_episode_window(label, 7, width=width, height=height, fps=fps, duration_s=duration_s)  # type: ignore[arg-type]
    assert clip.shape == (frames, height, width, 3)
    assert clip.dtype == np.uint8


@pytest.mark.parametrize("label", ["shoplifting", "normal"])
def test_window_is_deterministic_by_seed(label: str):
    a = render_episode_window(label, 11)  # type: ignore[arg-type]
    b = render_episode_window(label, 11)  # type: ignore[arg-type]
    c = render_episode_window(label, 12)  # type: ignore[arg-type]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.abs(a.astype(np.int16) - c.astype(np.int16)).mean() > 5  # a different scene, not just noise


def test_unknown_label_is_rejected():
    with pytest.raises(ValueError, match="label"):
        render_episode_window("stealing", 0)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(8))
def test_shoplifting_window_shows_the_carry_and_the_vanishing_with_context(seed: int):
    frames, info = render_window("shoplifting", seed)
    duration = len(frames) / 15.0
    assert info.episode_kind == "concealment"
    assert info.motion_start_s >= CONCEAL_BEFORE_S - 1e-6
    assert info.act_end_s <= duration - CONCEAL_AFTER_S + 1e-6


def test_shoplifting_windows_sit_at_many_offsets_like_stream_windows():
    # a stream is cut on a fixed stride, so the act lands anywhere in a window; training windows must too
    offsets = [render_window("shoplifting", s, width=64, height=36)[1].motion_start_s for s in range(24)]
    assert max(offsets) - min(offsets) > 1.0
    assert any(o < 0.8 for o in offsets) and any(o > 1.5 for o in offsets)


@pytest.mark.parametrize("seed", range(24))
def test_normal_window_never_overlaps_a_concealment(seed: int):
    frames, info = render_window("normal", seed)
    if info.episode_kind == "concealment":
        duration = len(frames) / 15.0
        assert info.act_end_s < 0 or info.act_start_s > duration
        assert all(info.item_visible) or not any(info.item_visible)  # never vanishes in view


def test_normal_windows_mix_modes():
    infos = [render_window("normal", s, width=160, height=90)[1] for s in range(30)]
    assert {"normal_pickup", "put_back", "concealment"} <= {i.episode_kind for i in infos}
    assert {"act", "episode"} <= {i.mode for i in infos}
    assert {"before_act", "after_act"} & {i.mode for i in infos}


def _frame_index(t: float, fps: float = 15.0) -> int:
    return math.ceil(t * fps - 1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_item_visible_when_carried_and_gone_at_act_end(seed: int):
    frames, info = render_window("shoplifting", seed)
    hidden, _ = render_window("shoplifting", seed, hide_item=True)
    start = _frame_index(info.motion_start_s)
    end = _frame_index(info.act_end_s)
    assert info.item_visible[start] and info.item_state[start] == "hand"
    assert not any(info.item_visible[end:])
    assert set(info.item_state[end:]) == {"hidden"}
    # the pixels agree with the debug flags: the item is drawn at the start and nowhere after the act
    diff = np.abs(frames.astype(np.int16) - hidden.astype(np.int16)).max(axis=-1)
    assert diff[start].max() > 60
    assert diff[end:].max() == 0


def test_item_stays_visible_in_the_basket_after_a_normal_pickup():
    seed, frames, info = _first_seed(lambda i: i.episode_kind == "normal_pickup" and i.mode == "act")
    hidden, _ = render_window("normal", seed, hide_item=True)
    end = _frame_index(info.act_end_s)
    assert all(info.item_visible)
    assert set(info.item_state[end:]) == {"basket"}
    diff = np.abs(frames.astype(np.int16) - hidden.astype(np.int16)).max(axis=-1)
    assert all(diff[i].max() > 60 for i in range(end, len(frames)))


@pytest.mark.parametrize("seed", range(6))
def test_item_cue_survives_the_64x64_squash(seed: int):
    frames, info = render_window("shoplifting", seed)
    hidden, _ = render_window("shoplifting", seed, hide_item=True)
    mid = _frame_index((info.motion_start_s + info.act_end_s) / 2)
    assert info.item_visible[mid]
    small = cv2.resize(frames[mid], (64, 64)).astype(np.int16)
    small_hidden = cv2.resize(hidden[mid], (64, 64)).astype(np.int16)
    contrast = np.abs(small - small_hidden).max(axis=-1)
    assert (contrast > 40).sum() >= 3  # the item is a few clearly different pixels at 64x64


def test_episode_plans_stay_within_the_brief():
    scene = synth.make_scene(3, 320, 180)
    for i in range(60):
        kind = synth.EVENT_KINDS[i % 3]
        ep = plan_episode(scene, kind, np.random.default_rng(i))
        assert 0.6 <= ep.actor.height / 180 <= 0.85
        assert 7.9 <= ep.duration <= 14.1
        assert 0 < ep.act_start < ep.act_end < ep.duration
        assert ep.act_end - ep.act_start <= 4.0 - 2 * WINDOW_MARGIN_S
        if kind == "concealment":  # a 4 s window at a 1 s stride catches the core at least twice, mostly
            core_lo, core_hi = synth.concealment_core(ep)
            assert core_hi - core_lo <= 2.1
            assert synth.window_shows_concealment(ep, core_lo, 4.0)
            assert not synth.window_shows_concealment(ep, core_lo + 0.1, 4.0)
        if kind == "normal_pickup":
            assert (
                ep.actor.basket is not None and ep.x_end < 0
            )  # leaves towards the checkout (canonical left)
        if kind == "concealment":
            assert ep.x_end > scene.width and ep.conceal_target in ("jacket", "pocket", "bag")


# ------------------------------------------------------------------ streams


def _check_truth(truth: GroundTruth, incidents: int, normals: int) -> None:
    assert len(truth.incidents) == incidents
    assert len(truth.normal_events) == normals
    assert all(e.kind == "concealment" for e in truth.incidents)
    assert all(e.kind in ("normal_pickup", "put_back") for e in truth.normal_events)
    events = truth.all_events
    assert events[0].person_enter_s >= STILL_GAP_S
    for e in events:
        assert 0 <= e.person_enter_s < e.start_s < e.end_s < e.person_exit_s <= truth.duration_s
    for a, b in itertools.pairwise(events):
        assert b.person_enter_s - a.person_exit_s >= STILL_GAP_S - 1e-9  # one person at a time, still gap


@pytest.mark.parametrize(
    ("seed", "incidents", "normals", "duration"), [(0, 2, 3, 90.0), (1, 0, 2, 40.0), (2, 3, 0, 60.0)]
)
def test_stream_ground_truth_is_consistent(seed: int, incidents: int, normals: int, duration: float):
    frames, truth = render_stream(seed, duration_s=duration, incidents=incidents, normal_shoppers=normals)
    _check_truth(truth, incidents, normals)
    assert (truth.fps, truth.width, truth.height, truth.duration_s, truth.seed) == (
        15.0,
        640,
        360,
        duration,
        seed,
    )
    first = next(frames)
    assert first.shape == (360, 640, 3) and first.dtype == np.uint8


def test_stream_is_deterministic_and_lazy():
    a, ta = render_stream(4, duration_s=30, incidents=1, normal_shoppers=0, width=160, height=90)
    b, tb = render_stream(4, duration_s=30, incidents=1, normal_shoppers=0, width=160, height=90)
    _, tc = render_stream(5, duration_s=30, incidents=1, normal_shoppers=0, width=160, height=90)
    assert ta == tb and ta != tc
    assert not isinstance(a, list | tuple)
    fa, fb = list(a), list(b)
    assert len(fa) == 30 * 15
    assert all(np.array_equal(x, y) for x, y in zip(fa, fb, strict=True))


def test_stream_that_cannot_fit_is_rejected():
    with pytest.raises(ValueError, match="need at least"):
        render_stream(0, duration_s=20, incidents=2, normal_shoppers=2)


def test_ground_truth_json_round_trip():
    _, truth = render_stream(9, duration_s=60, incidents=1, normal_shoppers=2)
    again = GroundTruth.from_json(truth.to_json())
    assert again == truth
    assert isinstance(again.incidents, tuple) and isinstance(again.incidents[0], Event)
    assert json.loads(truth.to_json())["incidents"][0]["kind"] == "concealment"


def test_event_rejects_bad_times():
    with pytest.raises(ValueError):
        Event("concealment", 5.0, 4.0, 1.0, 9.0)
    with pytest.raises(ValueError):
        Event("theft", 2.0, 4.0, 1.0, 9.0)


def _stream_seed_with_drift(want: bool) -> int:
    for seed in range(100):
        plan = plan_stream(seed, duration_s=40, incidents=1, normal_shoppers=1, width=320, height=180)
        if (plan.scene.lighting.drift_amp > 0) == want:
            return seed
    raise AssertionError


@pytest.mark.parametrize("drift", [False, True])
def test_still_periods_are_still_and_episodes_move(drift: bool):
    seed = _stream_seed_with_drift(drift)
    frames, truth = render_stream(seed, duration_s=40, incidents=1, normal_shoppers=1, width=320, height=180)
    busy = [(e.person_enter_s, e.person_exit_s) for e in truth.all_events]

    def inside(t: float) -> bool:
        return any(a <= t <= b for a, b in busy)

    still_max: list[int] = []
    still_mean: list[float] = []
    moving_max: list[int] = []
    prev = None
    for i, frame in enumerate(frames):
        cur = _grey_blur(frame)
        if prev is not None:
            diff = np.abs(cur - prev)
            t0, t1 = (i - 1) / truth.fps, i / truth.fps
            if not inside(t0) and not inside(t1):
                still_max.append(int(diff.max()))
                still_mean.append(float(diff.mean()))
            elif inside(t0) and inside(t1):
                moving_max.append(int(diff.max()))
        prev = cur
    assert len(still_max) > 6 * truth.fps
    assert max(still_max) < MOTION_THRESHOLD
    assert max(still_mean) < 2.0
    assert np.mean(np.array(moving_max) > MOTION_THRESHOLD) > 0.5


# ------------------------------------------------------------------ files


def _read_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    n = 0
    while True:
        ok, _ = cap.read()
        if not ok:
            break
        n += 1
    cap.release()
    return n


def test_write_dataset_layout_and_manifest(tmp_path: Path):
    out = tmp_path / "ds"
    manifest_path = write_dataset(
        out, per_class=2, seed=3, width=160, height=90, fps=10.0, duration_s=2.0, progress=False
    )
    assert manifest_path == out / "manifest.json"
    assert sorted(p.name for p in (out / "shoplifting").iterdir()) == ["sl_00000.mp4", "sl_00001.mp4"]
    assert sorted(p.name for p in (out / "normal").iterdir()) == ["nm_00000.mp4", "nm_00001.mp4"]
    manifest = json.loads(manifest_path.read_text())
    assert manifest["seed"] == 3 and manifest["frames_per_video"] == 20
    assert len(manifest["files"]) == 4
    for entry in manifest["files"]:
        path = out / entry["path"]
        assert entry["label"] == path.parent.name
        assert _read_frames(path) == 20
        cap = cv2.VideoCapture(str(path))
        assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (160, 90)
        cap.release()
    shoplifting = [e for e in manifest["files"] if e["label"] == "shoplifting"]
    assert all(e["episode_kind"] == "concealment" and e["mode"] == "act" for e in shoplifting)
    # the same seed writes the same manifest
    again = write_dataset(
        tmp_path / "ds2", per_class=2, seed=3, width=160, height=90, fps=10.0, duration_s=2.0, progress=False
    )
    assert json.loads(again.read_text())["files"] == manifest["files"]


def test_write_stream_writes_video_and_truth(tmp_path: Path):
    path = tmp_path / "cam1.mp4"
    truth = write_stream(path, duration_s=25, seed=2, incidents=1, normal_shoppers=0, width=160, height=90)
    sidecar = tmp_path / "cam1.truth.json"
    assert sidecar.exists()
    assert GroundTruth.from_json(sidecar.read_text()) == truth
    assert _read_frames(path) == 25 * 15


def test_dataset_from_fixed_camera_views_shares_backgrounds(tmp_path: Path) -> None:
    """With ``cameras``, videos are filmed by that many fixed views (a deployment's own cameras)."""
    from inference.synth import camera_scene_seed, plan_stream, render_window

    manifest = json.loads(write_dataset(tmp_path, 2, seed=5, cameras=2, store_seed=9, progress=False).read_text())
    assert manifest["cameras"] == 2 and manifest["store_seed"] == 9
    view = camera_scene_seed(9, 0)
    a, _ = render_window("normal", 1, scene_seed=view)
    b, _ = render_window("shoplifting", 2, scene_seed=view)
    c, _ = render_window("normal", 1, scene_seed=camera_scene_seed(9, 1))
    # The first frame is mostly background: the same view looks alike, another view does not.
    same = np.abs(a[0].astype(int) - b[0].astype(int)).mean()
    other = np.abs(a[0].astype(int) - c[0].astype(int)).mean()
    assert same < other / 2
    first = plan_stream(1, scene_seed=view, duration_s=30, incidents=1, normal_shoppers=0)
    second = plan_stream(2, scene_seed=view, duration_s=30, incidents=1, normal_shoppers=0)
    assert first.scene.seed == second.scene.seed == view


def test_camera_views_do_not_give_the_label_away(tmp_path: Path) -> None:
    """Each label must be filmed by every view, or a model learns the view instead of the act."""
    manifest = json.loads(write_dataset(tmp_path, 12, seed=1, cameras=3, store_seed=4, progress=False).read_text())
    views: dict[str, set[int]] = {"shoplifting": set(), "normal": set()}
    for entry in manifest["files"]:
        views[entry["label"]].add(entry["seed"] % 3)
    assert views["shoplifting"] == views["normal"] == {0, 1, 2}
