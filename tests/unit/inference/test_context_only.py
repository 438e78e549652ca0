"""Context-only training videos (scenes shown in one class only) are trained on but not described."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from inference.dataset import ClipSet, VideoItem, context_only_videos
from inference.ood import FEATURE_NAMES, InputDescription, clip_features
from inference.train import _input_description


def _clips(n: int, level: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(level + rng.integers(0, 40, size=(n, 20, 64, 64, 3)), 0, 255).astype(np.uint8)


def test_context_only_videos_are_read_from_the_manifest(tmp_path: Path) -> None:
    assert context_only_videos(tmp_path) == frozenset()  # no manifest: nothing is context-only
    (tmp_path / "manifest.json").write_text(json.dumps({"files": [
        {"path": "normal/a.mp4", "context_only": True}, {"path": "normal/b.mp4"},
        {"path": "shoplifting/c.mp4", "context_only": False}]}))
    assert context_only_videos(tmp_path) == frozenset({"normal/a.mp4"})
    (tmp_path / "manifest.json").write_text("not json")
    assert context_only_videos(tmp_path) == frozenset()


def test_the_input_description_leaves_context_only_videos_out(tmp_path: Path) -> None:
    ordinary, hall = _clips(30, 60, 1), _clips(10, 200, 2)  # the hall scenes are much brighter
    clips = np.concatenate([ordinary, hall])
    items = tuple(VideoItem(tmp_path / f"normal/v{i}.mp4", f"normal/v{i}.mp4", 0) for i in range(40))
    clip_set = ClipSet(clips, np.zeros(40, np.int64), items, (), 0, 0)
    (tmp_path / "manifest.json").write_text(json.dumps({"files": [
        {"path": f"normal/v{i}.mp4", **({"context_only": True} if i >= 30 else {})} for i in range(40)]}))

    described = InputDescription.from_dict(_input_description(clip_set, tmp_path))
    assert described is not None and described.clips == 30 and "10 context-only videos left out" in described.source
    mean_b = FEATURE_NAMES.index("mean_b")
    assert np.isclose(described.mean[mean_b], clip_features(ordinary)[:, mean_b].mean())
    assert np.all(described.score(hall[:3]) > 2)  # a camera like the hall scenes is still beyond the description

    (tmp_path / "manifest.json").unlink()  # without the marks every training clip is described
    everything = InputDescription.from_dict(_input_description(clip_set, tmp_path))
    assert everything is not None and everything.clips == 40
