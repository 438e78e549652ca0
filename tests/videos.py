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


REAL_FOOTAGE = Path(__file__).resolve().parents[1] / ".." / "shared" / "real-footage"


def real_footage(name: str) -> Path:
    """A file of ``../shared/real-footage`` (beside the repository, as in CI); fails loudly when missing."""
    path = (REAL_FOOTAGE / name).resolve()
    if not path.is_file():
        raise FileNotFoundError(
            f"real footage {name} not found at {path}: these tests need ../shared/real-footage beside the repository"
        )
    return path


def decoded_frames(path: Path) -> list[np.ndarray]:
    """Every frame OpenCV decodes from ``path``, in order (BGR)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def level_of(t: float) -> int:
    """The grey level :func:`write_timed_video` paints a frame at ``t`` seconds (a clock in every frame)."""
    return min(255, round(t * 25))


def write_timed_video(path: Path, times: list[float], nominal_fps: int, *, width: int = 64, height: int = 48) -> Path:
    """A video whose frames lie at ``times`` (seconds) while its header declares ``nominal_fps``: AVI (MJPEG,
    time base 1/nominal_fps, so frames off the rate's grid leave gaps the header counts as frames, like
    ``vtest.avi``) or Matroska (millisecond timestamps, any variable rate) by the suffix.  Frame at ``t``
    is grey at :func:`level_of` ``(t)``, so a decoded frame tells which instant it shows."""
    from fractions import Fraction

    import av

    avi = path.suffix.lower() == ".avi"
    time_base = Fraction(1, nominal_fps) if avi else Fraction(1, 1000)
    with av.open(str(path), "w", format="avi" if avi else "matroska") as out:
        stream = out.add_stream("mjpeg", rate=nominal_fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuvj420p"
        stream.codec_context.time_base = time_base
        stream.time_base = time_base
        for t in times:
            image = np.full((height, width, 3), level_of(t), np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuvj420p")
            frame.pts, frame.time_base = round(t / time_base), time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
