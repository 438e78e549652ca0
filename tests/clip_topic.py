"""Reading the clips topic in tests as the inference worker does: chained clips assembled into whole ones."""

from __future__ import annotations

from collections.abc import Iterable

from common.bus import BusRecord
from common.schemas import ChainedClip, ChainEnd, ClipMessage, read_clip_topic
from inference.clip_chains import ClipChains


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
