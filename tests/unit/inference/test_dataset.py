"""Dataset building: layout, one-pass even frame sampling, unreadable videos, the clip cache, the split."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference import dataset as ds
from inference.dataset import (
    DatasetLayoutError,
    VideoItem,
    decode_clip,
    discover_videos,
    load_clips,
    read_split,
    stratified_split,
    write_split,
)


def make_video(path: Path, values: list[int], fps: float = 10.0, size: int = 64) -> Path:
    """An mp4v video whose frame i is a flat grey of brightness values[i] (with a small mark to keep codecs honest)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    assert writer.isOpened()
    for v in values:
        frame = np.full((size, size, 3), v, dtype=np.uint8)
        writer.write(frame)
    writer.release()
    return path


def make_index_video(path: Path, count: int, fps: float = 10.0) -> Path:
    """A video whose frame i shows i in binary as 8 black/white vertical bars (robust to lossy coding)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 64))
    for i in range(count):
        frame = np.zeros((64, 64, 3), dtype=np.uint8)
        for bit in range(8):
            if i >> bit & 1:
                frame[:, bit * 8 : bit * 8 + 8] = 255
        writer.write(frame)
    writer.release()
    return path


def frame_index(frame: np.ndarray) -> int:
    """Read back the index written by make_index_video."""
    return sum(1 << bit for bit in range(8) if frame[8:56, bit * 8 + 2 : bit * 8 + 6].mean() > 128)


def make_dataset(root: Path, per_class: int, names: tuple[str, str] = ("shoplifting", "normal"), frames: int = 22) -> Path:
    for k, name in enumerate(names):
        for i in range(per_class):
            make_video(root / name / f"v{i:02d}.mp4", [40 + 150 * (k == 0) + i] * frames)
    return root


def test_decode_clip_samples_even_frames_in_one_sequential_pass(tmp_path: Path, monkeypatch) -> None:
    # Frame i shows i in binary, so each decoded frame tells which frame was sampled.
    video = make_index_video(tmp_path / "index.mp4", 58)
    calls = {"open": 0, "set": 0, "retrieve": 0}
    real = cv2.VideoCapture

    class Spy:
        def __init__(self, *args):
            calls["open"] += 1
            self._cap = real(*args)

        def set(self, *args):
            calls["set"] += 1
            return self._cap.set(*args)

        def retrieve(self, *args):
            calls["retrieve"] += 1
            return self._cap.retrieve(*args)

        def __getattr__(self, name):
            return getattr(self._cap, name)

    monkeypatch.setattr(ds.cv2, "VideoCapture", Spy)
    clip = decode_clip(video)
    assert clip.shape == (20, 64, 64, 3) and clip.dtype == np.uint8
    sampled = [frame_index(f) for f in clip]
    # 5.8 s of video, longer than a 4 s window: the grid spans the whole video, instants 0.29 s apart, each
    # the first frame at or after it (ceil(2.9 j))
    assert sampled == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 29, 32, 35, 38, 41, 44, 47, 50, 53, 56]
    assert calls == {"open": 1, "set": 0, "retrieve": 20}  # one open, no seeking, only wanted frames decoded


def test_a_short_training_video_gives_the_frames_a_stream_window_gives(tmp_path: Path) -> None:
    """A 4 s training video at 10 fps is picked like a 4 s stream window: every second frame from the first,
    the frames ingest and ``classify`` pick in a window of a camera at that rate."""
    clip = decode_clip(make_index_video(tmp_path / "four.mp4", 40))
    assert [frame_index(f) for f in clip] == list(range(0, 40, 2))
    short = decode_clip(make_index_video(tmp_path / "short.mp4", 30))  # 3 s: the last instants hold its last frame
    assert [frame_index(f) for f in short] == [*range(0, 30, 2), 29, 29, 29, 29, 29]


def test_decode_clip_resizes_to_64x64(tmp_path: Path) -> None:
    video = tmp_path / "wide.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 90))
    for i in range(25):
        writer.write(np.full((90, 160, 3), (10 * i, 0, 0), dtype=np.uint8))
    writer.release()
    clip = decode_clip(video)
    assert clip.shape == (20, 64, 64, 3)
    assert clip[..., 0].mean() > clip[..., 2].mean()  # BGR order kept (blue channel carries the ramp)


@pytest.mark.parametrize(
    ("names", "ok"),
    [
        (("shoplifting", "normal"), True),
        (("shop lifters", "non shop lifters"), True),
        (("Shop Lifters", "Non_Shop_Lifters"), True),
        (("thieves", "normal"), False),
        (("shoplifting",), False),
    ],
)
def test_layouts(tmp_path: Path, names: tuple[str, ...], ok: bool) -> None:
    for name in names:
        make_video(tmp_path / name / "a.mp4", [100] * 20)
    if ok:
        items = discover_videos(tmp_path)
        by_class = {i.class_name: i.rel for i in items}
        assert set(by_class) == {"shoplifting", "normal"}
        assert by_class["shoplifting"].startswith(names[0] + "/")
    else:
        with pytest.raises(DatasetLayoutError) as err:
            discover_videos(tmp_path)
        for name in names:
            assert name in str(err.value)  # the message lists what was found


def test_unreadable_videos_are_listed_and_skipped(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", per_class=2)
    (root / "shoplifting" / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    (root / "normal" / "empty.mp4").write_bytes(b"")
    make_video(root / "normal" / "short.mp4", [90] * 5)
    clips = load_clips(discover_videos(root), cache_dir=None, progress=False)
    skipped = {s.rel: s.reason for s in clips.skipped}
    assert set(skipped) == {"shoplifting/garbage.mp4", "normal/empty.mp4", "normal/short.mp4"}
    assert "too short" in skipped["normal/short.mp4"]
    assert "cannot open" in skipped["normal/empty.mp4"]
    assert len(clips.items) == 4 and clips.clips.shape == (4, 20, 64, 64, 3)
    assert not {i.rel for i in clips.items} & set(skipped)


def test_cache_is_used_on_second_run_and_invalidated_by_a_changed_file(tmp_path: Path, monkeypatch) -> None:
    root = make_dataset(tmp_path / "data", per_class=2)
    (root / "normal" / "garbage.mp4").write_bytes(b"not a video")
    cache = tmp_path / "cache"
    items = discover_videos(root)
    first = load_clips(items, cache_dir=cache, progress=False)
    assert first.decoded == 5 and first.cache_hits == 0

    def no_decoding(*_a, **_k):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(ds, "decode_clip", no_decoding)
    second = load_clips(items, cache_dir=cache, progress=False)
    assert second.decoded == 0 and second.cache_hits == 5
    np.testing.assert_array_equal(first.clips, second.clips)
    assert [s.rel for s in second.skipped] == ["normal/garbage.mp4"]  # failures are cached and still listed

    monkeypatch.undo()
    make_video(root / "normal" / "v00.mp4", [200] * 30)  # changed file -> new key -> decoded again
    third = load_clips(items, cache_dir=cache, progress=False)
    assert third.decoded == 1 and third.cache_hits == 4


def _items(n_pos: int, n_neg: int) -> list[VideoItem]:
    return [VideoItem(Path(f"s{i}.mp4"), f"shoplifting/s{i:03d}.mp4", 1) for i in range(n_pos)] + [
        VideoItem(Path(f"n{i}.mp4"), f"normal/n{i:03d}.mp4", 0) for i in range(n_neg)
    ]


def test_split_is_by_video_stratified_and_reproducible(tmp_path: Path) -> None:
    items = _items(40, 100)
    a = stratified_split(items, seed=7)
    b = stratified_split(list(reversed(items)), seed=7)  # input order does not matter
    assert {k: [i.rel for i in v] for k, v in a.items()} == {k: [i.rel for i in v] for k, v in b.items()}
    names = {k: {i.rel for i in v} for k, v in a.items()}
    assert not names["train"] & names["val"] and not names["train"] & names["test"] and not names["val"] & names["test"]
    assert names["train"] | names["val"] | names["test"] == {i.rel for i in items}
    for split, n_pos, n_neg in (("train", 28, 70), ("val", 6, 15), ("test", 6, 15)):
        assert sum(i.label for i in a[split]) == n_pos
        assert sum(1 - i.label for i in a[split]) == n_neg
    other = stratified_split(items, seed=8)
    assert {i.rel for i in other["test"]} != names["test"]

    write_split(tmp_path / "split.json", a, seed=7, dataset_dir=tmp_path)
    assert read_split(tmp_path / "split.json") == {k: [i.rel for i in v] for k, v in a.items()}
    assert json.loads((tmp_path / "split.json").read_text())["counts"]["test"] == {"normal": 15, "shoplifting": 6}


def test_split_refuses_a_class_with_too_few_videos() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        stratified_split(_items(2, 10))


def test_decode_clip_spreads_the_clip_over_real_time_whatever_the_header_says(tmp_path: Path) -> None:
    from tests.videos import level_of, write_timed_video

    times = [i / 10 for i in range(60)]
    right = decode_clip(write_timed_video(tmp_path / "right.avi", times, 10))
    wrong = decode_clip(write_timed_video(tmp_path / "wrong.avi", times, 30))  # declares 30 fps, ~178 frames
    assert np.array_equal(right, wrong)
    vfr_times = [i / 10 for i in range(30)] + [3.0 + i / 30 for i in range(90)]  # 10 fps, then 30 fps
    clip = decode_clip(write_timed_video(tmp_path / "vfr.mkv", vfr_times, 10))
    # 6 s (longer than a window): instants 0.3 s apart over the whole video, each the frame at it
    expected = [level_of(0.3 * j) for j in range(20)]
    shown = [round(float(f.mean())) for f in clip]
    assert np.abs(np.subtract(shown, expected)).max() <= 3, (shown, expected)
