"""Splitting by camera, never by clip: near-identical clips of one camera are never on both sides."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.dataset import (
    SPLIT_NAMES,
    assign_groups,
    camera_split,
    discover_videos,
    group_of,
    load_clips,
    stratified_split,
)
from inference.dedupe import DEFAULT_MAX_HAMMING, clip_hashes, find_cross_split_duplicates

CAMERAS = [f"cam-{i}" for i in range(6)]


def _video(path: Path, scene: np.ndarray, seed: int) -> None:
    """21 frames of one camera's fixed scene with a little sensor noise: near-identical to its siblings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    for i in range(21):
        writer.write(np.clip(scene.astype(int) + rng.integers(-2, 3, scene.shape) + i, 0, 255).astype(np.uint8))
    writer.release()


@pytest.fixture
def near_duplicates(tmp_path: Path) -> Path:
    """Per camera, 3 clips of each class, all of the camera's one scene (as a fixed store camera films)."""
    data = tmp_path / "data"
    seed = 0
    for c, camera in enumerate(CAMERAS):
        scene = cv2.resize(np.random.default_rng(c).integers(0, 255, (8, 8, 3)).astype(np.uint8), (64, 64),
                           interpolation=cv2.INTER_NEAREST)
        for label in ("shoplifting", "normal"):
            for k in range(3):
                seed += 1
                _video(data / label / f"{camera}__{label}-{k}.mp4", scene, seed)
    return data


def test_a_split_by_video_mixes_a_cameras_clips_and_a_split_by_camera_never_does(near_duplicates: Path) -> None:
    items = discover_videos(near_duplicates)
    clips = load_clips(items, cache_dir=None, progress=False)
    assert len(clips.items) == 36

    def crossing(splits: dict) -> int:
        hashes = {name: clip_hashes(clips.subset(i.rel for i in splits[name])) for name in SPLIT_NAMES}
        return len(find_cross_split_duplicates(hashes, DEFAULT_MAX_HAMMING))

    by_video = stratified_split(clips.items, seed=0)
    assert crossing(by_video) > 0  # the trap: one camera's near-identical clips on both sides

    by_camera = camera_split(clips.items, near_duplicates, seed=0)  # no labels.csv: the file-name prefix
    assert crossing(by_camera) == 0
    sides = {name: {group_of(i.rel) for i in v} for name, v in by_camera.items()}
    assert all(sides[a].isdisjoint(sides[b]) for a in SPLIT_NAMES for b in SPLIT_NAMES if a < b)
    assert set().union(*sides.values()) == set(CAMERAS)


def test_the_split_column_of_labels_csv_is_used_as_it_is_and_checked(near_duplicates: Path) -> None:
    items = discover_videos(near_duplicates)
    chosen = {"cam-0": "test", "cam-1": "val"}

    def write(split_of: dict[str, str]) -> None:
        with (near_duplicates / "labels.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["id", "path", "camera", "split"])
            writer.writeheader()
            for i in items:
                camera = group_of(i.rel)
                writer.writerow({"id": i.rel, "path": i.rel, "camera": camera,
                                 "split": split_of.get(i.rel, chosen.get(camera, "train"))})

    write({})
    split = camera_split(items, near_duplicates)
    assert {group_of(i.rel) for i in split["test"]} == {"cam-0"}
    assert {group_of(i.rel) for i in split["val"]} == {"cam-1"}
    write({items[-1].rel: "test"})  # a hand edit putting one clip of a training camera in test
    with pytest.raises(ValueError, match=r"cameras \['cam-5'\] are in more than one split"):
        camera_split(items, near_duplicates)


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ({"a": 5}, {"a": "train"}),
        ({"a": 5, "b": 5}, {"train", "test"}),
        ({c: 4 for c in "abcdefghij"}, {"train", "val", "test"}),
    ],
)
def test_assign_groups_is_deterministic_and_gives_each_group_one_split(sizes: dict, expected: object) -> None:
    first = assign_groups(sizes, seed=3)
    assert first == assign_groups(dict(reversed(list(sizes.items()))), seed=3)  # not the order given
    assert set(first) == set(sizes)
    if isinstance(expected, dict):
        assert first == expected
    else:
        assert set(first.values()) == expected
    if len(sizes) == 10:
        share = {n: sum(sizes[g] for g, s in first.items() if s == n) / 40 for n in SPLIT_NAMES}
        assert share["train"] >= 0.6 and share["val"] <= 0.2 and share["test"] <= 0.2


def test_fewer_than_three_cameras_cannot_be_split_by_camera(near_duplicates: Path) -> None:
    items = [i for i in discover_videos(near_duplicates) if group_of(i.rel) in ("cam-0", "cam-1")]
    with pytest.raises(ValueError, match="at least 3 cameras"):
        camera_split(items, near_duplicates)
