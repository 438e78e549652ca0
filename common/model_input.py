"""The model's input, defined once: how decoded video frames become a clip for the ConvLSTM.

Ingest (live cameras), the training-set builder, ``evaluate``, ``classify`` and ``evaluate-streams`` all
go through these functions, so the model is never trained on one input and served another.  A clip is
``frames`` frames picked on the window's own time grid, each turned into a ``size x size`` BGR uint8 image
by :func:`model_frame`.  Frames are picked by their own times (:func:`sample_times`, with times from
``common.frame_time``), never by a nominal frame rate: for ``count`` instants ``start + i * span / count``
(``start`` the window's start on the global clip grid, ``span`` its length), the first frame at or after
each instant.  The instants of a window depend only on where the window starts, so a frame picked for an
instant is the same frame in every window that holds that instant: windows ``stride`` apart share
``count - stride / (span / count)`` of their frames (15 of 20 at a 4 s window on a 1 s stride), which lets
a clip's frames travel once (issue 15).  For a file with a constant rate this is :func:`sample_indices`.
Scaling to [0, 1] happens on the model side (``inference.model.preprocess``), so clips travel and are
cached as the same uint8 bytes everywhere.

Picking and converting commute (each frame is converted on its own), which lets a caller convert every
frame once on arrival to save memory (ingest), or pick the frames before decoding the rest (a long video
file): :func:`model_frame` leaves an image that is already a model frame as it is, and sampling ``n`` of
``n`` frames takes them all.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

CLIP_FRAMES = 20  # the ConvLSTM's time steps
CLIP_SIZE = 64  # frames are CLIP_SIZE x CLIP_SIZE pixels
RESIZE_INTERPOLATION = cv2.INTER_LINEAR  # cv2.resize's default, what the bundled model was trained on


CLIP_WINDOW_S = 4.0  # seconds a clip spans (``clip.window_s``'s default): a training video's window
TIME_TOLERANCE_S = 1e-6  # a frame this close before an instant counts as at it (float noise in the instants)


def sample_indices(available: int, count: int = CLIP_FRAMES) -> np.ndarray:
    """Which ``count`` of ``available`` consecutive frames at a constant rate make a clip: the grid picks of
    :func:`sample_times` for a window that those frames fill exactly (instant ``i`` at
    ``i * available / count`` frames, the first frame at or after it).  ``n`` of ``n`` takes them all; with
    fewer frames than ``count`` some repeat."""
    if available < 1:
        raise ValueError(f"a window needs at least one frame, got {available}")
    if count < 1:
        raise ValueError(f"a clip needs at least one frame, got {count}")
    positions = np.arange(count, dtype=np.float64) * (available / count)
    return np.minimum(np.ceil(positions - 1e-6), available - 1).astype(np.int64)


def sample_times(
    times: Sequence[float] | np.ndarray,
    count: int = CLIP_FRAMES,
    *,
    start: float | None = None,
    span: float = CLIP_WINDOW_S,
) -> np.ndarray:
    """Which ``count`` of the frames at ``times`` (seconds, non-decreasing) make a clip: for each instant
    ``start + i * span / count`` (``i`` from 0 to ``count - 1``; ``start`` defaults to the first frame's
    time), the first frame at or after it (a frame up to :data:`TIME_TOLERANCE_S` before it counts), or the
    last frame when none is.

    ``start`` is the window's start on the global clip grid (``k * stride``), not its first frame's time:
    the instants, and so the picks, are then the same in every window that holds them."""
    t = np.asarray(times, dtype=np.float64)
    if t.ndim != 1 or len(t) < 1:
        raise ValueError(f"a window needs at least one frame time, got shape {t.shape}")
    if count < 1:
        raise ValueError(f"a clip needs at least one frame, got {count}")
    if not span > 0:
        raise ValueError(f"a window must span some time, got {span}")
    if len(t) > 1 and np.any(np.diff(t) < 0):
        raise ValueError("frame times must not decrease")
    first = float(t[0]) if start is None else float(start)
    instants = first + np.arange(count, dtype=np.float64) * (span / count)
    picks = np.searchsorted(t, instants - TIME_TOLERANCE_S, side="left")
    return np.minimum(picks, len(t) - 1).astype(np.int64)


def model_frame(image: np.ndarray, size: int = CLIP_SIZE) -> np.ndarray:
    """One decoded frame as the model sees it: 3-channel BGR (grey and BGRA converted), ``size x size``
    by bilinear resize of the whole frame, uint8.  A frame that is already that is returned as it is."""
    if image.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 images, got {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    elif image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"frames must be (H, W), (H, W, 3) or (H, W, 4) images, got shape {image.shape}")
    if image.shape[:2] == (size, size):
        return image
    return cv2.resize(image, (size, size), interpolation=RESIZE_INTERPOLATION)


def model_clip(
    window: Sequence[np.ndarray],
    count: int = CLIP_FRAMES,
    size: int = CLIP_SIZE,
    times: Sequence[float] | np.ndarray | None = None,
    *,
    start: float | None = None,
    span: float = CLIP_WINDOW_S,
) -> np.ndarray:
    """The frames of one window, in time order, as model input: ``(count, size, size, 3)`` uint8 BGR.

    ``window`` holds every decoded frame of the window (any size and colour layout :func:`model_frame`
    takes) with their source ``times`` (picked by :func:`sample_times` on the grid of a window from ``start``
    spanning ``span``), or just the frames already picked
    (no ``times``: :func:`sample_indices`, which takes ``n`` of ``n`` frames as they are), or those already
    passed through :func:`model_frame`: the bytes come out the same.
    """
    if not len(window):
        raise ValueError("a clip needs at least one frame")
    if times is not None and len(times) != len(window):
        raise ValueError(f"{len(window)} frames but {len(times)} frame times")
    picked = (
        sample_indices(len(window), count) if times is None
        else sample_times(times, count, start=start, span=span)
    )
    return np.stack([model_frame(window[int(i)], size) for i in picked])


# -- precision --------------------------------------------------------------------------------------------
# A model's input may be coarser than 8 bits a channel (its sidecar's ``input_bits``, ingest's ``clip.bits``):
# each value is kept to its top ``bits`` bits and set to the centre of that bin, so the mean brightness
# stays.  What a model does not see need not travel: the bus carries a clip's frames as their levels
# (``to_levels``, ``bits`` bits a value), and ``from_levels`` gives back exactly ``quantize``'s bytes.
FULL_BITS = 8


def _shift(bits: int) -> int:
    if not 1 <= bits <= FULL_BITS:
        raise ValueError(f"bits must be 1 to {FULL_BITS}, got {bits}")
    return FULL_BITS - bits


def quantize(frames: np.ndarray, bits: int) -> np.ndarray:
    """``frames`` (uint8) kept to ``bits`` bits a value, each at its bin's centre; 8 bits: unchanged (the
    same array).  Idempotent: quantizing quantized frames to the same bits changes nothing (to other bits it does:
    bin centres differ, which is why a camera's ``clip.bits`` must be at least the model's ``input_bits``)."""
    shift = _shift(bits)
    if shift == 0:
        return frames
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    keep = np.uint8((0xFF << shift) & 0xFF)
    return (frames & keep) | np.uint8(1 << (shift - 1))


def to_levels(frames: np.ndarray, bits: int) -> np.ndarray:
    """Each value's bin number, 0 to ``2**bits - 1`` (uint8)."""
    return frames >> np.uint8(_shift(bits)) if bits < FULL_BITS else frames


def from_levels(levels: np.ndarray, bits: int) -> np.ndarray:
    """The frames whose bins are ``levels``: equal to ``quantize`` of any frames with those levels."""
    shift = _shift(bits)
    if shift == 0:
        return levels
    return (levels << np.uint8(shift)) | np.uint8(1 << (shift - 1))
