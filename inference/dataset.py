"""Training data: class folders of videos -> uint8 clips (N, 20, 64, 64, 3) BGR, cached, split by video.

Each video becomes one clip of 20 frames picked evenly across the whole video's real time (the frames'
own timestamps, ``common.frame_time``, not the header's count or rate), read in ONE sequential
pass (``grab()`` past unwanted frames, ``retrieve()`` wanted ones; no seeking, which is slow and
inexact on compressed streams), and made model input by ``common.model_input`` exactly as ingest and
``classify`` make it.  Scaling to [0, 1] happens only at the model input (``inference.model.preprocess``),
so the cache and the live pipeline hold the same uint8 frames.  Videos that cannot be used are returned as :class:`SkippedVideo`
with a reason, never dropped silently.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from common.frame_time import FrameTimer
from common.model_input import (
    CLIP_FRAMES,
    CLIP_SIZE,
    CLIP_WINDOW_S,
    FULL_BITS,
    model_clip,
    model_frame,
    quantize,
    sample_indices,
    sample_times,
)
from inference.labels import LABELS_FILE
from inference.model import CLASS_NAMES, INPUT_SHAPE

log = logging.getLogger(__name__)

VIDEO_SUFFIXES: frozenset[str] = frozenset({".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg", ".m4v", ".webm"})
READER_VERSION = "seq-grab-time-grid-v3"  # bump when the sampling/decoding changes so old cache entries miss

# Folder name (lower case, '_'/'-' read as spaces) -> our class name.
CLASS_DIR_ALIASES: dict[str, str] = {
    "shoplifting": "shoplifting",
    "shop lifters": "shoplifting",
    "shoplifters": "shoplifting",
    "normal": "normal",
    "non shop lifters": "normal",
    "non shoplifters": "normal",
}
SPLIT_NAMES: tuple[str, str, str] = ("train", "val", "test")
GROUP_SEPARATOR = "__"  # an exported video is named <camera>__<example>.mp4
SPLIT_BY: tuple[str, str] = ("video", "camera")


class DatasetLayoutError(ValueError):
    """The dataset folder does not have one recognised subfolder per class."""


class VideoReadError(Exception):
    """A video cannot be turned into a clip (cannot open, no frames, too short, decode failure)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


@dataclass(frozen=True)
class VideoItem:
    """One labelled video: ``rel`` is its path relative to the dataset folder (used in split files)."""

    path: Path
    rel: str
    label: int  # index into CLASS_NAMES

    @property
    def class_name(self) -> str:
        return CLASS_NAMES[self.label]


@dataclass(frozen=True)
class SkippedVideo:
    """A video left out of the dataset and why."""

    rel: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.rel, "reason": self.reason}


@dataclass(frozen=True)
class ClipSet:
    """Decoded clips with labels; ``items[i]`` is the video of ``clips[i]``."""

    clips: np.ndarray  # uint8 (N, 20, 64, 64, 3) BGR
    labels: np.ndarray  # int64 (N,)
    items: tuple[VideoItem, ...]
    skipped: tuple[SkippedVideo, ...]
    cache_hits: int
    decoded: int

    def __post_init__(self) -> None:
        if self.clips.shape[1:] != INPUT_SHAPE or self.clips.dtype != np.uint8:
            raise ValueError(f"clips must be uint8 (N, {INPUT_SHAPE}), got {self.clips.dtype} {self.clips.shape}")
        if not (len(self.clips) == len(self.labels) == len(self.items)):
            raise ValueError("clips, labels and items must have the same length")

    def subset(self, rels: Iterable[str]) -> ClipSet:
        """The clips of the given videos (in that order); unknown names are ignored."""
        index = {item.rel: i for i, item in enumerate(self.items)}
        picks = [index[r] for r in rels if r in index]
        return ClipSet(
            clips=self.clips[picks],
            labels=self.labels[picks],
            items=tuple(self.items[i] for i in picks),
            skipped=(),
            cache_hits=0,
            decoded=0,
        )


# ---------------------------------------------------------------------------------------------- layout


def _normalise_dir_name(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


def discover_videos(dataset_dir: Path) -> list[VideoItem]:
    """List the videos of a dataset folder with one subfolder per class, sorted by relative path.

    Accepts ``shoplifting/`` + ``normal/`` and the public dataset's ``shop lifters/`` + ``non shop lifters/``.
    Raises DatasetLayoutError naming the folders found when the layout is anything else.
    """
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise DatasetLayoutError(f"dataset folder not found: {dataset_dir}")
    found = sorted(p.name for p in dataset_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    by_class: dict[str, list[Path]] = {}
    unknown = []
    for name in found:
        cls = CLASS_DIR_ALIASES.get(_normalise_dir_name(name))
        if cls is None:
            unknown.append(name)
            continue
        if cls in by_class:
            raise DatasetLayoutError(
                f"{dataset_dir}: two folders map to class {cls!r} (found folders: {found})"
            )
        by_class[cls] = [dataset_dir / name]
    missing = [c for c in CLASS_NAMES if c not in by_class]
    if missing:
        raise DatasetLayoutError(
            f"{dataset_dir}: expected one folder per class — 'shoplifting/' and 'normal/' or the public "
            f"dataset's 'shop lifters/' and 'non shop lifters/'; missing {missing}; "
            f"found folders: {found or 'none'}"
        )
    if unknown:
        log.warning("%s: ignoring folders that are not classes: %s", dataset_dir, unknown)
    items: list[VideoItem] = []
    for label, cls in enumerate(CLASS_NAMES):
        folder = by_class[cls][0]
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
                items.append(VideoItem(path=path, rel=path.relative_to(dataset_dir).as_posix(), label=label))
    for cls in CLASS_NAMES:
        if not any(i.class_name == cls for i in items):
            raise DatasetLayoutError(f"{by_class[cls][0]}: no video files ({sorted(VIDEO_SUFFIXES)})")
    return sorted(items, key=lambda i: i.rel)


def dataset_fingerprint(items: Sequence[VideoItem]) -> str:
    """sha256 over the sorted relative paths and sizes: names the exact file set a model was trained on."""
    digest = hashlib.sha256()
    for item in sorted(items, key=lambda i: i.rel):
        digest.update(f"{item.rel}\t{item.path.stat().st_size}\n".encode())
    return digest.hexdigest()


def is_generator_dataset(dataset_dir: Path) -> bool:
    """True when the folder carries the ``manifest.json`` our synthetic scene generator writes."""
    return (Path(dataset_dir) / "manifest.json").is_file()


def context_only_videos(dataset_dir: Path) -> frozenset[str]:
    """The videos a generator manifest marks ``"context_only": true``: scenes that appear in one class only
    (e.g. crowds crossing an open hall, shown only as normal footage), which teach the model what is not
    theft there but cannot validate it there.  Training uses them; the model's input description
    (``inference.ood``) leaves them out, so a camera that looks like them is still flagged."""
    path = Path(dataset_dir) / "manifest.json"
    if not path.is_file():
        return frozenset()
    try:
        files = json.loads(path.read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return frozenset()
    return frozenset(str(f["path"]) for f in files if isinstance(f, dict) and f.get("context_only"))


# ---------------------------------------------------------------------------------------------- decoding


def _frame_count(capture: cv2.VideoCapture) -> int:
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    return int(count) if count and np.isfinite(count) and count > 0 else 0


@dataclass
class ReadProgress:
    """How far a sequential read got: frames decoded from the start, and whether the stream ended first."""

    frames: int = 0
    ended: bool = False
    last_time_s: float | None = None  # the last frame's own time (common.frame_time), when it has one
    end_s: float | None = None  # where the last frame's interval ends: the real duration read
    nominal_fps: float | None = None  # the rate the header declares


def _timed_pass(
    cap: cv2.VideoCapture, wanted: Iterable[int], size: int, nominal_fps: float, path: Path
) -> tuple[dict[int, np.ndarray], list[float]]:
    """One sequential pass over the whole stream: every frame's own time (``common.frame_time``) and the
    wanted frames as model frames."""
    want = {int(i) for i in wanted}
    timer = FrameTimer(nominal_fps)
    frames: dict[int, np.ndarray] = {}
    times: list[float] = []
    while cap.grab():
        index = len(times)
        times.append(timer.place(cap.get(cv2.CAP_PROP_POS_MSEC)))
        if index in want:
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                raise VideoReadError(path, f"cannot decode frame {index}")
            frames[index] = model_frame(frame, size)
    return frames, times


def decode_clip(
    path: Path, n_frames: int = CLIP_FRAMES, size: int = CLIP_SIZE, window_s: float = CLIP_WINDOW_S
) -> np.ndarray:
    """One clip from a whole video: ``n_frames`` frames picked by the frames' own timestamps on the grid of a
    window from its first frame (``common.model_input.sample_times``), as ingest and ``classify`` pick a
    window's: the window spans ``window_s`` (a stream's window, so a 4 s training video at 15 fps gives the
    frames ingest gives), or the video's real length when that is longer, as model input (``model_clip``).

    One sequential pass reads every frame's timestamp and keeps the frames the header's count would pick;
    when the timestamps pick others (a header that lies about the count or rate, a variable frame rate),
    a second pass fetches those.  Raises VideoReadError.
    """
    path = Path(path)
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoReadError(path, "cannot open (not a video, or an unsupported codec)")
        declared = _frame_count(cap)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        guess: list[int] = []
        if declared:  # the picks if the header is right: a constant rate over a window of at least window_s
            span_frames = max(declared, round(window_s * fps)) if 0 < fps <= 1000 else declared
            guess = np.minimum(sample_indices(span_frames, n_frames), declared - 1).tolist()
        frames, times = _timed_pass(cap, guess, size, fps, path)
        if not times:
            raise VideoReadError(path, "no frames")
        if len(times) < n_frames:
            raise VideoReadError(path, f"too short: {len(times)} frames, need {n_frames}")
        step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
        span = max(window_s, times[-1] - times[0] + step)  # a longer video: its whole length, as before
        indices = sample_times(times, n_frames, start=times[0], span=span).tolist()
        if not set(indices) <= set(frames):
            log.debug("%s: header says %d frames, stream has %d (by time); re-reading", path, declared, len(times))
            cap.release()
            cap = cv2.VideoCapture(str(path))
            frames, again = _timed_pass(cap, indices, size, fps, path)
            if len(again) != len(times) or not set(indices) <= set(frames):
                raise VideoReadError(path, "frame count changed between reads")
        return model_clip([frames[i] for i in indices], n_frames, size)
    finally:
        cap.release()


# ---------------------------------------------------------------------------------------------- cache


def cache_key(path: Path, n_frames: int = CLIP_FRAMES, size: int = CLIP_SIZE) -> str:
    """Hash of the file's absolute path, size, mtime and the sampling parameters."""
    stat = Path(path).stat()
    spec = {
        "path": str(Path(path).resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "n_frames": n_frames,
        "frame_size": [size, size],
        "interpolation": "cv2.INTER_LINEAR",
        "reader": READER_VERSION,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as handle:
        write(handle)
    os.replace(tmp, path)


def _load_cached(cache_dir: Path, key: str) -> np.ndarray | str | None:
    """The cached clip, the cached failure reason, or None on a miss (or an unreadable entry)."""
    base = cache_dir / key[:2] / key
    clip_file, err_file = base.with_suffix(".npy"), base.with_suffix(".err.json")
    try:
        if clip_file.is_file():
            clip = np.load(clip_file, allow_pickle=False)
            if clip.dtype == np.uint8 and clip.shape == INPUT_SHAPE:
                return clip
        if err_file.is_file():
            return str(json.loads(err_file.read_text(encoding="utf-8"))["reason"])
    except (OSError, ValueError, KeyError):
        log.warning("ignoring unreadable cache entry %s", base)
    return None


def _store_cached(cache_dir: Path, key: str, value: np.ndarray | str) -> None:
    base = cache_dir / key[:2] / key
    try:
        if isinstance(value, str):
            payload = json.dumps({"reason": value}).encode()
            _atomic_write(base.with_suffix(".err.json"), lambda h: h.write(payload))
        else:
            _atomic_write(base.with_suffix(".npy"), lambda h: np.save(h, value, allow_pickle=False))
    except OSError as exc:
        log.warning("cannot write cache entry %s: %s", base, exc)


def load_clips(
    items: Sequence[VideoItem],
    *,
    cache_dir: Path | None,
    progress: bool = True,
    bits: int = FULL_BITS,
) -> ClipSet:
    """Decode (or fetch from the cache) one clip per video; unusable videos are logged and listed.  The clips
    are kept to ``bits`` bits a value (``common.model_input.quantize``: the input of the model they are for;
    the cache holds the 8-bit clips, so one cache serves models of any precision).

    The cache holds one ``.npy`` per video (or an ``.err.json`` with the reason it failed), named by
    :func:`cache_key`, so a changed file misses and an unchanged one is never decoded twice.
    """
    clips: list[np.ndarray] = []
    kept: list[VideoItem] = []
    skipped: list[SkippedVideo] = []
    hits = decoded = 0
    for item in tqdm(items, desc="decoding videos", unit="video", disable=not progress):
        key = None
        cached: np.ndarray | str | None = None
        try:
            key = cache_key(item.path)
        except OSError as exc:
            skipped.append(SkippedVideo(item.rel, f"cannot stat: {exc}"))
            log.warning("skipping %s: cannot stat: %s", item.rel, exc)
            continue
        if cache_dir is not None:
            cached = _load_cached(Path(cache_dir), key)
        if cached is None:
            decoded += 1
            try:
                cached = decode_clip(item.path)
            except VideoReadError as exc:
                cached = exc.reason
            except cv2.error as exc:
                cached = f"decoder error: {exc}".splitlines()[0]
            if cache_dir is not None:
                _store_cached(Path(cache_dir), key, cached)
        else:
            hits += 1
        if isinstance(cached, str):
            skipped.append(SkippedVideo(item.rel, cached))
            log.warning("skipping %s: %s", item.rel, cached)
            continue
        clips.append(cached)
        kept.append(item)
    array = np.stack(clips) if clips else np.zeros((0, *INPUT_SHAPE), dtype=np.uint8)
    return ClipSet(
        clips=quantize(array, bits),
        labels=np.array([i.label for i in kept], dtype=np.int64),
        items=tuple(kept),
        skipped=tuple(skipped),
        cache_hits=hits,
        decoded=decoded,
    )


# ---------------------------------------------------------------------------------------------- split


def stratified_split(
    items: Sequence[VideoItem],
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.70, 0.15, 0.15),
) -> dict[str, list[VideoItem]]:
    """Split videos into train/val/test per class with the given fractions, reproducibly for a seed.

    Each class is shuffled (from its sorted order, so file-system order does not matter) and cut on its
    own, which keeps the class ratio in every split.  Classes need >= 3 videos so that val and test
    each get at least one.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    rng = random.Random(seed)
    out: dict[str, list[VideoItem]] = {name: [] for name in SPLIT_NAMES}
    for label, cls in enumerate(CLASS_NAMES):
        members = sorted((i for i in items if i.label == label), key=lambda i: i.rel)
        n = len(members)
        if n < 3:
            raise ValueError(f"class {cls!r} has {n} usable videos; need at least 3 to split train/val/test")
        rng.shuffle(members)
        n_val = max(1, round(n * fractions[1])) if fractions[1] > 0 else 0
        n_test = max(1, round(n * fractions[2])) if fractions[2] > 0 else 0
        n_val = min(n_val, n - 1 - n_test)
        out["val"] += members[:n_val]
        out["test"] += members[n_val : n_val + n_test]
        out["train"] += members[n_val + n_test :]
    return {name: sorted(v, key=lambda i: i.rel) for name, v in out.items()}


def assign_groups(
    sizes: Mapping[str, int], *, seed: int = 0, fractions: tuple[float, float, float] = (0.70, 0.15, 0.15),
    fixed: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Give every group (a camera) one split, so that near-identical videos of one camera are never on both
    sides.  Deterministic: groups are taken in the order of a seeded hash of their name (not of the data), the
    first goes to test and the second to val, and each further one to the split furthest below its share of
    the videos (``sizes`` counts them per group).  With fewer than 3 groups some splits stay empty.

    ``fixed`` maps groups already given a split (by an earlier export into the same folder) to it: they keep
    it, their videos count towards its share, and only the other groups are assigned (test first while it is
    empty, then val, then by share), so a group once held out is never moved into training."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    fixed = dict(fixed or {})
    wrong = sorted(f"{g}={s}" for g, s in fixed.items() if s not in SPLIT_NAMES)
    if wrong:
        raise ValueError(f"unknown split(s) {wrong}: a split is one of {SPLIT_NAMES}")
    groups = set(sizes) | set(fixed)
    order = sorted(set(sizes) - set(fixed), key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
    total = max(1, sum(sizes.get(g, 0) for g in groups))
    target = dict(zip(SPLIT_NAMES, fractions, strict=True))
    filled = dict.fromkeys(SPLIT_NAMES, 0)
    used = dict.fromkeys(SPLIT_NAMES, 0)
    out: dict[str, str] = {}
    for group, name in fixed.items():
        out[group] = name
        filled[name] += sizes.get(group, 0)
        used[name] += 1
    for group in order:
        if not used["test"] and len(groups) >= 2:
            name = "test"
        elif not used["val"] and len(groups) >= 3:
            name = "val"
        else:
            name = max(SPLIT_NAMES, key=lambda n: (target[n] - filled[n] / total) / max(target[n], 1e-9))
        out[group] = name
        filled[name] += sizes[group]
        used[name] += 1
    return out


def group_of(rel: str) -> str:
    """The camera of an exported video from its name (``<camera>__<example>.mp4``); the stem when unprefixed."""
    stem = Path(rel).stem
    return stem.split(GROUP_SEPARATOR, 1)[0] if GROUP_SEPARATOR in stem else stem


def read_labels(dataset_dir: Path) -> dict[str, dict[str, str]]:
    """The rows of the dataset's ``labels.csv`` by video path (relative to the dataset); {} when there is none."""
    path = Path(dataset_dir) / LABELS_FILE
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["path"]: row for row in csv.DictReader(handle) if row.get("path")}


def camera_split(
    items: Sequence[VideoItem], dataset_dir: Path, *, seed: int = 0,
    fractions: tuple[float, float, float] = (0.70, 0.15, 0.15),
) -> dict[str, list[VideoItem]]:
    """Split by camera, never by video: the ``split`` column of ``labels.csv`` when every video has one (the
    export decided it), else :func:`assign_groups` over the cameras (``camera`` column, else the file-name
    prefix).  Raises ValueError when a camera would be on two sides or a split would be empty."""
    labels = read_labels(dataset_dir)
    camera = {i.rel: (labels.get(i.rel, {}).get("camera") or group_of(i.rel)) for i in items}
    given = {i.rel: labels.get(i.rel, {}).get("split", "") for i in items}
    if items and all(given[i.rel] in SPLIT_NAMES for i in items):
        chosen = given
    else:
        sizes: dict[str, int] = {}
        for item in items:
            sizes[camera[item.rel]] = sizes.get(camera[item.rel], 0) + 1
        by_group = assign_groups(sizes, seed=seed, fractions=fractions)
        chosen = {i.rel: by_group[camera[i.rel]] for i in items}
    sides: dict[str, set[str]] = {}
    for item in items:
        sides.setdefault(camera[item.rel], set()).add(chosen[item.rel])
    crossing = sorted(g for g, s in sides.items() if len(s) > 1)
    if crossing:
        raise ValueError(f"{dataset_dir}: cameras {crossing} are in more than one split in {LABELS_FILE}")
    out: dict[str, list[VideoItem]] = {name: [] for name in SPLIT_NAMES}
    for item in items:
        out[chosen[item.rel]].append(item)
    empty = [name for name in SPLIT_NAMES if not out[name]]
    if empty:
        raise ValueError(
            f"{dataset_dir}: splitting by camera leaves {empty} empty ({len(sides)} cameras); a split by camera "
            "needs videos of at least 3 cameras"
        )
    return {name: sorted(v, key=lambda i: i.rel) for name, v in out.items()}


def write_split(path: Path, splits: dict[str, list[VideoItem]], *, seed: int, dataset_dir: Path,
                split_by: str = "video") -> None:
    """Write the split as JSON: for each split, the files (relative to the dataset) and their classes."""
    doc = {
        "seed": seed,
        "split_by": split_by,
        "dataset_dir": str(Path(dataset_dir).resolve()),
        "class_names": list(CLASS_NAMES),
        "counts": {name: {c: sum(1 for i in v if i.class_name == c) for c in CLASS_NAMES} for name, v in splits.items()},
        **{name: [{"path": i.rel, "label": i.class_name} for i in v] for name, v in splits.items()},
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def read_split(path: Path) -> dict[str, list[str]]:
    """Read a split file back: {split name: [relative paths]}."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    missing = [name for name in SPLIT_NAMES if name not in doc]
    if missing:
        raise ValueError(f"{path}: split file lacks {missing}")
    return {name: [str(e["path"]) for e in doc[name]] for name in SPLIT_NAMES}


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Balanced class weights ``n / (n_classes * n_c)`` for Keras' ``class_weight``."""
    labels = np.asarray(labels)
    n = len(labels)
    return {
        c: (float(n) / (len(CLASS_NAMES) * int((labels == c).sum()))) if (labels == c).any() else 1.0
        for c in range(len(CLASS_NAMES))
    }
