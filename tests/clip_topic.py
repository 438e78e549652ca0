"""Reading the clips topic in tests as the inference worker does: chained clips assembled into whole ones."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np

from common.bus import BusRecord
from common.model_input import quantize
from common.schemas import ChainedClip, ChainEnd, ClipHeader, ClipMessage, read_clip_topic
from common.settings import ClipSettings, MotionSettings
from inference.clip_chains import ClipChains
from ingest.capture import Frame
from ingest.clip_chain import ChainEncoder
from ingest.clips import ClipCutter, CutClip
from ingest.motion import MotionResult
from tests.videos import real_footage

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BITS = 6


def whole_clips(records: Iterable[BusRecord]) -> list[ClipMessage]:
    """Every clip of ``records`` (whole ones, and chained ones put together), in order; fails on a clip that
    cannot be put together."""
    chains = ClipChains(lambda ids: set())
    out: list[ClipMessage] = []
    for record in records:
        message = read_clip_topic(record.value)
        if isinstance(message, ClipMessage):
            out.append(message)
            continue
        ready, dead = chains.accept(record, message)
        assert not dead, [d.reason for d in dead]
        out.extend(clip for _, clip in ready)
    return out


def clip_id_of(value: bytes) -> str | None:
    """The clip id of a clips-topic message; None for a chain end."""
    message = read_clip_topic(value)
    if isinstance(message, ChainEnd):
        return None
    assert isinstance(message, ClipMessage | ChainedClip)
    return message.header.clip_id


def clip_ids(records: Iterable[BusRecord]) -> list[str]:
    """The clip ids of ``records``, in order (chain ends left out)."""
    return [i for r in records if (i := clip_id_of(r.value)) is not None]


@dataclass
class Stream:
    messages: list[bytes]
    expected: dict[str, np.ndarray]  # clip id -> the frames the model must get


def _header(clip: CutClip, camera: str = "cam") -> ClipHeader:
    return ClipHeader(clip_id=f"{camera}-w{clip.window_index}", store_id="s1", camera_id=camera,
                      captured_at=clip.captured_at, start_at=clip.start_at, source_start_s=clip.source_start_s,
                      source_end_s=clip.source_end_s, shape=tuple(clip.frames.shape))


def chained_stream(
    moving: Callable[[float], bool] = lambda t: True, fps: float = 5.0, limit: int | None = None,
    camera: str = "cam", finish: bool = True,
) -> Stream:
    """What ingest sends for vtest.avi's frames timed at ``fps`` (a clip's frames shared with the next ones),
    made as the camera worker makes it, with the clips the model must get."""
    cutter = ClipCutter(ClipSettings(bits=BITS), MotionSettings(), fps)
    encoder = ChainEncoder("s1", camera, BITS)
    capture = cv2.VideoCapture(str(real_footage("vtest.avi")))
    messages: list[bytes] = []
    expected: dict[str, np.ndarray] = {}

    def emit(clips: list[CutClip]) -> None:
        for clip in clips:
            header = _header(clip, camera)
            messages.append(encoder.encode(header, clip))
            expected[header.clip_id] = quantize(clip.frames, BITS)

    index = 0
    while limit is None or index < limit:
        ok, image = capture.read()
        if not ok:
            break
        t = index / fps
        frame = Frame(index, image, t, T0 + timedelta(seconds=t))
        mv = moving(t)
        emit(cutter.push(frame, MotionResult(mv, 0.2 if mv else 0.0, None)))
        if encoder.holding:
            end = encoder.release_below(cutter.reusable_from_id, frame.captured_at)
            if end is not None:
                messages.append(end)
        index += 1
    if finish:  # the source ends
        emit(cutter.flush())
        end = encoder.end(T0)
        if end is not None:
            messages.append(end)
    return Stream(messages, expected)


