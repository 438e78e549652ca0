"""Writing rendered frames to video files (cv2 fourcc 'mp4v'; H.264 is not available in opencv-python)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np


def open_writer(path: Path, fps: float, width: int, height: int) -> cv2.VideoWriter:
    """An open mp4v writer for ``path`` (its folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), float(fps), (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot open a mp4v video writer for {path}")
    return writer


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float, width: int, height: int) -> None:
    """Write BGR ``frames`` of ``width`` x ``height`` to ``path``."""
    writer = open_writer(path, fps, width, height)
    try:
        for f in frames:
            writer.write(f)
    finally:
        writer.release()
