"""How a clip's new frames travel (``FrameRefs.codec`` "delta-lzma2"): their levels (``common.model_input.to_levels``), each frame coded as its
difference from the frame before it, planes apart, compressed with LZMA2.  Lossless: the decoder gives back
exactly the levels it was given, so the model scores the same bytes at the far end.

Chosen by measurement on the demo's streams and ``vtest.avi`` (``make bench`` → ``bus``): every frame is one
the model needs (clips are sampled at 5 frames a second), so the bytes go to what changes between them.  Of
what was tried on 5-frame groups of 64x64 frames (zlib, zstd, bzip2, PNG, WebP and JPEG XL lossless,
FFV1, x264 lossless, mean and median predictors), a temporal difference coded with LZMA2 came within 2 % of
the best (JPEG XL of the differences, a 10 MB native dependency) at a fifth of the time; the LZMA2 settings
below (normal mode, hash-chain match finder, ``nice_len`` 24) keep most of preset 6's gain over the fast
presets at a third of its time, about 5 ms a message.  Lossy codecs at the sizes that would matter moved the
model's probabilities by more than 1e-3 and were not smaller than this.
"""

from __future__ import annotations

import lzma
from typing import Final

import numpy as np

_FILTERS: Final = [
    {"id": lzma.FILTER_LZMA2, "preset": 6, "mode": lzma.MODE_NORMAL, "mf": lzma.MF_HC4, "nice_len": 24,
     "dict_size": 1 << 16, "depth": 0}
]


class FrameCodecError(ValueError):
    """Coded frames that cannot be decoded (corrupt, truncated, or of another shape)."""


def encode_frames(levels: np.ndarray, reference: np.ndarray | None, bits: int) -> bytes:
    """Code ``levels`` (N, H, W, C) uint8, each value below ``2**bits``; the first frame is coded against
    ``reference`` (H, W, C), a frame the decoder already holds, or on its own when None."""
    if levels.dtype != np.uint8 or levels.ndim != 4:
        raise ValueError(f"levels must be (N, H, W, C) uint8, got {levels.shape} {levels.dtype}")
    if reference is not None and reference.shape != levels.shape[1:]:
        raise ValueError(f"reference frame has shape {reference.shape}, frames {levels.shape[1:]}")
    previous = np.empty_like(levels)
    previous[0] = 0 if reference is None else reference
    previous[1:] = levels[:-1]
    # uint8 subtraction wraps modulo 256; masking keeps it modulo 2**bits, the alphabet the coder sees
    residual = (levels - previous) & np.uint8((1 << bits) - 1)
    return lzma.compress(np.moveaxis(residual, -1, 1).tobytes(), format=lzma.FORMAT_RAW, filters=_FILTERS)


def decode_frames(
    data: bytes, count: int, frame_shape: tuple[int, int, int], reference: np.ndarray | None, bits: int
) -> np.ndarray:
    """The ``count`` frames of levels :func:`encode_frames` coded into ``data``."""
    height, width, channels = frame_shape
    if reference is not None and reference.shape != tuple(frame_shape):
        raise FrameCodecError(f"the reference frame has shape {reference.shape}, the frames {tuple(frame_shape)}")
    try:
        raw = lzma.decompress(data, format=lzma.FORMAT_RAW, filters=_FILTERS)
    except lzma.LZMAError as exc:
        raise FrameCodecError(f"coded frames cannot be decompressed: {exc}") from None
    expected = count * height * width * channels
    if len(raw) != expected:
        raise FrameCodecError(f"coded frames hold {len(raw)} bytes, {count} frames of {frame_shape} need {expected}")
    residual = np.moveaxis(np.frombuffer(raw, np.uint8).reshape(count, channels, height, width), 1, -1)
    mask = np.uint8((1 << bits) - 1)
    if np.any(residual > mask):
        raise FrameCodecError(f"coded frames hold values beyond {bits} bits")
    out = np.empty((count, height, width, channels), np.uint8)
    previous = np.zeros(frame_shape, np.uint8) if reference is None else reference
    for i in range(count):
        previous = out[i] = (previous + residual[i]) & mask
    return out
