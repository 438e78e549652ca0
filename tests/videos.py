"""Small generated videos shared by tests that need real files with motion in every frame."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def write_moving_box_video(path: Path, frames: int, fps: float = 15.0) -> Path:
    """A textured 160x120 shelf with a box moving across it (motion in every frame), MPEG-4 Part 2."""
    rng = np.random.default_rng(5)
    background = cv2.GaussianBlur(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), (5, 5), 0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (160, 120))
    for i in range(frames):
        image = background.copy()
        x = 10 + (i * 2) % 120
        cv2.rectangle(image, (x, 30), (x + 28, 90), (30, 60 + i % 100, 220), -1)
        writer.write(image)
    writer.release()
    return path
