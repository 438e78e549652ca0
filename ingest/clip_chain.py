"""One camera's clips as chained clips: each frame goes on the bus once.

A camera's clips overlap (a 4 s clip a second at the defaults), and frames are picked on the window's own
grid (``common.model_input.sample_times``), so a frame picked for one clip is the same frame in the next
three.  :class:`ChainEncoder` remembers which frames it has sent that later clips may still use, and each
clip's message (:class:`~common.schemas.ChainedClip`) carries only the others, as levels of the camera's
``clip.bits`` (``common.frame_codec``).  The inference worker, which reads a camera's messages in order,
assembles each clip from its own message and the earlier ones (``inference.clip_chains``).

A *chain* is the run of clips one cutter makes (it starts afresh with each capture session, and its frame
ids with it); each chain has a new random id, so an ingest restarted on the same recording starts a new
chain rather than repeating an old one's numbers.  Its messages are numbered (``FrameRefs.seq``), so the
consumer notices one missing or arriving late.  Each message's first frame is coded against the last frame of the message before it, except every
``KEYFRAME_EVERY``-th, which is coded on its own: a consumer that starts in the middle of a chain (after a
restart, from its committed offset) decodes from the last such message, and a message lost for good (a spool
over its disk budget) costs at most the clips up to the next one.  When no later clip can use a sent frame
(the camera's motion ended) or the chain ends, a :class:`~common.schemas.ChainEnd` lets the consumer
forget the camera's frames and stop holding its committed offset back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from common.frame_codec import encode_frames
from common.model_input import to_levels
from common.schemas import (
    CHAINED_CLIP_SCHEMA_VERSION,
    ChainedClip,
    ChainEnd,
    ClipHeader,
    ClipMessage,
    FrameRefs,
)
from ingest.clips import CutClip

KEYFRAME_EVERY = 8  # messages; the cost: one frame a keyframe coded alone, about 2 % more bytes at 8


@dataclass(slots=True)
class _Chain:
    chain_id: str
    sent: dict[int, np.ndarray] = field(default_factory=dict)  # id -> levels, of frames later clips may use
    seq: int = 0  # the next message's number
    last_id: int = -1  # the newest frame sent (the next message's reference)
    keyframe_due: bool = True


class ChainEncoder:
    """The clips-topic messages of one camera's clips (see the module docstring)."""

    def __init__(self, store_id: str, camera_id: str, bits: int, *, keyframe_every: int = KEYFRAME_EVERY) -> None:
        self.store_id = store_id
        self.camera_id = camera_id
        self.bits = bits
        self.keyframe_every = max(1, keyframe_every)
        self._chain: _Chain | None = None

    @property
    def holding(self) -> bool:
        """Whether sent frames may still be used by later clips (a chain end would free them)."""
        return self._chain is not None and bool(self._chain.sent)

    def encode(self, header: ClipHeader, clip: CutClip) -> bytes:
        """The message of ``clip``, the next of the current chain (a new chain when none is open).  A clip
        whose frames have no ids (cut for itself alone) goes as a whole clip."""
        if not clip.frame_ids:
            return ClipMessage(header, clip.frames).to_bytes()
        current = self._chain
        if current is None:
            current = self._chain = _Chain(uuid.uuid4().hex[:16])
        levels = to_levels(clip.frames, self.bits)
        first_at: dict[int, int] = {}
        for position, frame_id in enumerate(clip.frame_ids):
            first_at.setdefault(frame_id, position)
        new = sorted(i for i in first_at if i not in current.sent)
        # a keyframe is due every ``keyframe_every`` messages; one with no new frame passes it on to the next
        current.keyframe_due = current.keyframe_due or current.seq % self.keyframe_every == 0
        keyframe = current.keyframe_due and bool(new)
        # the reference must be a frame the consumer holds and this clip reuses
        usable = not keyframe and new and current.last_id in current.sent and current.last_id in first_at
        reference = current.last_id if usable else None
        body = b""
        if new:
            body = encode_frames(levels[[first_at[i] for i in new]],
                                 None if reference is None else current.sent[reference], self.bits)
        refs = FrameRefs(
            chain_id=current.chain_id, seq=current.seq, ids=clip.frame_ids, new=tuple(new), reference=reference,
            keep_from=clip.keep_from_id, bits=self.bits,
        )
        chained = ClipHeader.model_validate(
            {**header.model_dump(exclude={"chain", "schema_version"}),
             "schema_version": CHAINED_CLIP_SCHEMA_VERSION, "chain": refs}
        )
        message = ChainedClip(chained, body).to_bytes()
        current.seq += 1
        if keyframe:
            current.keyframe_due = False
        for i in new:
            current.sent[i] = levels[first_at[i]]
        if new:
            current.last_id = new[-1]
        for i in [i for i in current.sent if i < clip.keep_from_id]:
            del current.sent[i]
        return message

    def release_below(self, reusable_from_id: int, at: datetime) -> bytes | None:
        """A chain end when no later clip can use any frame sent (the oldest frame a clip can still use is
        ``reusable_from_id``, newer than all of them); None otherwise."""
        current = self._chain
        # the newest frame sent is ``last_id`` whenever any is kept (they are pruned oldest first)
        if current is None or not current.sent or current.last_id >= reusable_from_id:
            return None
        return self._end(current, reusable_from_id, at)

    def end(self, at: datetime) -> bytes | None:
        """End the chain (its cutter starts afresh: the source ended or was lost); a chain end when frames are
        still held.  The next clip starts a new chain."""
        current = self._chain
        if current is None:
            return None
        self._chain = None
        if not current.sent:
            return None
        return self._end(current, current.last_id + 1, at)

    def _end(self, current: _Chain, keep_from: int, at: datetime) -> bytes:
        current.sent.clear()
        message = ChainEnd(store_id=self.store_id, camera_id=self.camera_id, chain_id=current.chain_id,
                           seq=current.seq, keep_from=max(0, keep_from), at=at)
        current.seq += 1
        return message.to_bytes()
