"""Small synthetic test videos for the ingest tests (written with cv2.VideoWriter, mp4v)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np
import pytest

W, H, FPS = 160, 90, 15.0


def still_background(width: int = W, height: int = H, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(40, 200, (height, width, 3), dtype=np.uint8), (9, 9), 0)


def noisy(image: np.ndarray, rng: np.random.Generator, sigma: float = 4.0) -> np.ndarray:
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


def scene(
    n: int,
    moving: Callable[[int], bool] = lambda i: False,
    rect_size: tuple[int, int] = (24, 36),
    y: int = 30,
    width: int = W,
    height: int = H,
    sigma: float = 4.0,
    seed: int = 2,
) -> list[np.ndarray]:
    """``n`` frames of a noisy still background; a dark red rectangle sweeps left to right while ``moving(i)``."""
    rng = np.random.default_rng(seed)
    background = still_background(width, height)
    frames = []
    rw, rh = rect_size
    for i in range(n):
        frame = noisy(background, rng, sigma)
        if moving(i):
            x = int((i * 4) % max(1, width - rw))
            cv2.rectangle(frame, (x, y), (x + rw, y + rh), (30, 30, 220), -1)
        frames.append(frame)
    return frames


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float = FPS) -> Path:
    frames = list(frames)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="session")
def motion_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 s: still for 3 s, a rectangle moving for 3 s, still again."""
    path = tmp_path_factory.mktemp("videos") / "motion.mp4"
    return write_video(path, scene(120, moving=lambda i: 45 <= i < 90))


@pytest.fixture(scope="session")
def still_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("videos") / "still.mp4"
    return write_video(path, scene(90))


@pytest.fixture(scope="session")
def corrupt_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("videos") / "corrupt.mp4"
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    return path


@pytest.fixture(scope="session")
def truncated_video(tmp_path_factory: pytest.TempPathFactory, motion_video: Path) -> Path:
    data = motion_video.read_bytes()
    path = tmp_path_factory.mktemp("videos") / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture(scope="module")
def cut_avi(motion_video: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The motion video as MJPG AVI (intra-only, frame count in the header): (whole file, first half)."""
    cap = cv2.VideoCapture(str(motion_video))
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    folder = tmp_path_factory.mktemp("avi")
    whole, cut = folder / "whole.avi", folder / "cut.avi"
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (width, height))
    assert writer.isOpened()
    for image in frames:
        writer.write(image)
    writer.release()
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    return whole, cut
