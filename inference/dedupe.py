"""Near-duplicate videos across the train/val/test split, found by perceptual hashes of sampled frames.

A published "100% accuracy" on a small video dataset often means the same footage (re-encoded, trimmed,
or cut into several clips) sits in both train and test.  Each video gets a 64-bit difference hash
(dHash: grey 9x8, one bit per left<right neighbour comparison) of a few frames at fixed relative
positions; two videos are near-duplicates when the mean Hamming distance of corresponding frames is at
most ``max_hamming`` bits.  Works on the 64x64 clips already decoded for training, so nothing is re-read.

Caveat: fixed store cameras share a static background, and on small people dHash sees mostly the
background, so clips of the same camera can come out close; read the list as "check these", not a verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from inference.dataset import ClipSet

DEFAULT_FRAMES = 5
DEFAULT_MAX_HAMMING = 4.0
_BITS = (1 << np.arange(64, dtype=np.uint64)).astype(np.uint64)


@dataclass(frozen=True)
class DuplicatePair:
    """Two videos on different sides of the split that look the same."""

    train: str
    other: str
    other_split: str
    distance: float  # mean Hamming bits over the hashed frames

    def to_dict(self) -> dict:
        return {"train": self.train, "other": self.other, "other_split": self.other_split, "distance": self.distance}


def dhash(frame: np.ndarray) -> np.uint64:
    """64-bit difference hash of one BGR (or grey) frame."""
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    small = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return np.uint64(np.sum(_BITS[bits], dtype=np.uint64))


def hash_clip(clip: np.ndarray, n_frames: int = DEFAULT_FRAMES) -> np.ndarray:
    """dHashes (uint64, ``n_frames``) of frames at evenly spaced positions of a clip (T, H, W, 3)."""
    clip = np.asarray(clip)
    picks = np.rint(np.linspace(0, len(clip) - 1, n_frames)).astype(int)
    return np.array([dhash(clip[i]) for i in picks], dtype=np.uint64)


def hash_video(path: Path, n_frames: int = DEFAULT_FRAMES) -> np.ndarray:
    """dHashes of a video file (decoded as a training clip)."""
    from inference.dataset import decode_clip

    return hash_clip(decode_clip(Path(path)), n_frames)


def hamming_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean Hamming distance between every row of ``a`` (n, k) and of ``b`` (m, k) -> float (n, m)."""
    a = np.asarray(a, dtype=np.uint64)
    b = np.asarray(b, dtype=np.uint64)
    if a.size == 0 or b.size == 0:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    xor = a[:, None, :] ^ b[None, :, :]
    return np.bitwise_count(xor).mean(axis=2)


def clip_hashes(clips: ClipSet) -> dict[str, np.ndarray]:
    """{relative path: dHashes} for every clip of a set."""
    return {item.rel: hash_clip(clip) for item, clip in zip(clips.items, clips.clips, strict=True)}


def find_cross_split_duplicates(
    videos_by_split: Mapping[str, Mapping[str, np.ndarray]],
    max_hamming: float = DEFAULT_MAX_HAMMING,
    *,
    train_split: str = "train",
) -> list[DuplicatePair]:
    """Pairs (train video, val/test video) whose hashes are within ``max_hamming`` mean bits, closest first.

    ``videos_by_split`` maps split name -> {video name -> hashes from :func:`hash_clip`}.
    """
    train = videos_by_split.get(train_split, {})
    if not train:
        return []
    train_names = list(train)
    train_hashes = np.stack([np.asarray(train[n], dtype=np.uint64) for n in train_names])
    pairs: list[DuplicatePair] = []
    for split, videos in videos_by_split.items():
        if split == train_split or not videos:
            continue
        names = list(videos)
        hashes = np.stack([np.asarray(videos[n], dtype=np.uint64) for n in names])
        dist = hamming_matrix(train_hashes, hashes)
        for i, j in zip(*np.nonzero(dist <= max_hamming), strict=True):
            pairs.append(DuplicatePair(train_names[i], names[j], split, float(dist[i, j])))
    return sorted(pairs, key=lambda p: (p.distance, p.train, p.other))
