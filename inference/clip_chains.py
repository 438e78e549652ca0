"""Chained clips back into whole clips: the inference worker's side of ``ingest.clip_chain``.

A camera's messages arrive in order from one partition.  For each chain (a run of a camera's clips cut by one
ingest process from one capture session) the worker
keeps the decoded frames that later clips may still use (at most a window's worth, pruned to each message's
``keep_from``), applies messages in their ``seq`` order, and puts each clip together from its own new frames
and the kept ones.  What it keeps decides how far back a restarted worker must read, so the committed
offset of a partition is *held* at the oldest message it would need again (:meth:`ClipChains.holds`): the
last keyframe (a message coded on its own) at or before the oldest kept frame's message, or an
out-of-order message waiting for the one before it.  Re-reading from there rebuilds the same frames, and
result rows stay one per clip (the insert is idempotent by clip id).

Faults, and what happens:

- *Late or early* (a message the producer sent again after a failure lands after newer ones): newer ones
  wait, parked, until the gap is filled; a copy of one already applied is ignored.
- *Joined mid-chain* (a restart or rebalance reads from the held offset): messages before the first one
  that can be decoded, and clips whose earlier frames were before the held offset, were already scored
  before the commit; that is checked in the database, and such clips are skipped.
- *Lost* (a message that never comes: dropped past a spool's disk budget, counted there): after
  ``MAX_PARKED`` messages wait on it, or the chain ends or expires, the clips that cannot be put together
  go to the dead-letter topic with the reason, unless their results are stored.
- *Forgotten*: a chain whose camera has sent nothing for ``expire_after_s`` of the partition's record time
  (producer time, so a stalled worker or a lagging group expires nothing) is dropped with what it kept.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from common.bus import BusRecord
from common.db import Database
from common.frame_codec import FrameCodecError, decode_frames
from common.metrics import CHAINED_CLIPS
from common.model_input import from_levels
from common.schemas import ChainedClip, ChainEnd, ClipMessage, DeadLetter, MessageError, Topic

log = logging.getLogger(__name__)

MAX_PARKED = 16  # messages waiting on a missing one before it counts as lost (a camera's 16 s at the defaults)
EXPIRE_AFTER_S = 600.0
_EXPIRY_CHECK = timedelta(seconds=10)  # of record time between looks for chains to expire
_PARK_LIMIT = timedelta(seconds=30)  # of record time a message waits for a missing one at most

StoredCheck = Callable[[Sequence[str]], set[str]]  # which of these clip ids have a stored result


@dataclass(slots=True)
class _Applied:
    offset: int
    keyframe: bool  # decodable on its own (coded alone, or a chain end)


@dataclass(slots=True)
class _Chain:
    store_id: str
    camera_id: str
    chain_id: str
    partition: int
    next_seq: int
    last_seen: datetime
    first_seq: int = 0  # the first message this worker saw of the chain (it may have joined midway)
    skipped: set[int] = field(default_factory=set)  # messages given up on (a late one is then lost, not a copy)
    frames: dict[int, np.ndarray] = field(default_factory=dict)  # id -> levels
    origin: dict[int, int] = field(default_factory=dict)  # id -> seq of the message that carried it
    applied: dict[int, _Applied] = field(default_factory=dict)  # seq -> where it was, while it may be needed
    parked: dict[int, tuple[BusRecord, ChainedClip | ChainEnd]] = field(default_factory=dict)

    def hold(self) -> int | None:
        """The offset a re-read must start from to rebuild what this chain keeps; None: nothing kept."""
        offsets = [record.offset for record, _ in self.parked.values()]
        if not self.origin:
            self.applied.clear()  # nothing kept: no message needs reading again
        else:
            oldest = min(self.origin.values())
            starts = [seq for seq, a in self.applied.items() if a.keyframe and seq <= oldest]
            start = max(starts) if starts else min(self.applied)
            # messages after the start may lie at lower offsets (sent again after a failure, they came late)
            offsets.append(min(a.offset for seq, a in self.applied.items() if seq >= start))
            for seq in [s for s in self.applied if s < start]:
                del self.applied[seq]
        return min(offsets) if offsets else None


@dataclass
class ChainStats:
    assembled: int = 0
    duplicates: int = 0  # copies of messages already applied
    parked: int = 0  # messages that arrived before one they follow
    already_stored: int = 0  # clips skipped on joining a chain: scored before the last commit
    lost: int = 0  # clips that could not be put together (dead-lettered)


class ClipChains:
    """The chains of every camera a worker reads (see the module docstring)."""

    def __init__(self, stored: StoredCheck, *, expire_after_s: float = EXPIRE_AFTER_S, topic: Topic = Topic.CLIPS) -> None:
        self.stored = stored
        self.expire_after = timedelta(seconds=expire_after_s)
        self.topic = topic
        self.stats = ChainStats()
        self._chains: dict[tuple[str, str], _Chain] = {}
        # (partition, store) -> newest record time seen: producer time, so only a store's own clock is compared
        # with its cameras' chains (another host's skew must not expire them)
        self._newest: dict[tuple[int, str], datetime] = {}
        self._closed: dict[tuple[str, str], list[str]] = {}  # the last chain ids closed, per camera
        self._last_expiry: datetime | None = None
        # the in-process bus has one partition, so the inference threads of one process share one ClipChains
        self._lock = threading.RLock()

    @classmethod
    def for_database(cls, db: Database, stop: threading.Event | None = None) -> ClipChains:
        """Chains whose stored check asks ``db`` (retrying while it is down, until ``stop``)."""
        return cls(lambda ids: set(db.retrying(lambda: db.stored_capture_times(list(ids)), stop,
                                               "stored-clip check")))

    def __len__(self) -> int:
        return len(self._chains)

    def __bool__(self) -> bool:
        return True  # an empty set of chains is still one (``__len__`` would make it falsy)

    @property
    def lock(self) -> threading.RLock:
        """Held by a thread across its poll and the accepts of what it polled when threads share these
        chains (the in-process bus), so messages are applied in offset order."""
        return self._lock

    def reset(self) -> None:
        """Forget every chain (the records applied since the last commit will be delivered again)."""
        with self._lock:
            self._chains.clear()
            self._newest.clear()
            self._closed.clear()
            self._last_expiry = None

    def kept_frames(self) -> int:
        return sum(len(c.frames) for c in self._chains.values())

    # -- input -------------------------------------------------------------------------------------
    def accept(
        self, record: BusRecord, message: ChainedClip | ChainEnd
    ) -> tuple[list[tuple[BusRecord, ClipMessage]], list[DeadLetter]]:
        """The whole clips this message completes (its own, and parked ones it unblocked), and the dead
        letters of clips found lost."""
        with self._lock:
            return self._accept(record, message)

    def _accept(
        self, record: BusRecord, message: ChainedClip | ChainEnd
    ) -> tuple[list[tuple[BusRecord, ClipMessage]], list[DeadLetter]]:
        ready: list[tuple[BusRecord, ClipMessage]] = []
        dead: list[DeadLetter] = []
        if isinstance(message, ChainEnd):
            store_id, camera_id, chain_id, seq = message.store_id, message.camera_id, message.chain_id, message.seq
        else:
            h = message.header
            assert h.chain is not None
            store_id, camera_id, chain_id, seq = h.store_id, h.camera_id, h.chain.chain_id, h.chain.seq
        where = (record.partition, store_id)
        newest = self._newest.get(where)
        if newest is None or record.timestamp > newest:
            self._newest[where] = record.timestamp
        if self._last_expiry is None or record.timestamp - self._last_expiry >= _EXPIRY_CHECK:
            self._last_expiry = record.timestamp
            self._expire(ready, dead)
        key = (store_id, camera_id)
        chain = self._chains.get(key)
        if chain_id in self._closed.get(key, ()):
            # a straggler of a chain already closed (a resend from an older process's spool)
            self._lose_message(record, message, "its chain had ended", dead)
            return ready, dead
        if chain is not None and chain.chain_id != chain_id:
            self._close(chain, ready, dead, "the camera started a new chain")
            chain = None
        if chain is None:
            chain = self._chains[key] = _Chain(store_id, camera_id, chain_id, record.partition, next_seq=seq,
                                               last_seen=record.timestamp, first_seq=seq)
        chain.partition = record.partition
        chain.last_seen = max(chain.last_seen, record.timestamp)
        if seq < chain.next_seq:
            if seq < chain.first_seq or seq in chain.skipped:
                # never applied: it came after the worker had gone on without it
                chain.skipped.discard(seq)
                self._lose_message(record, message, "it came after later messages of its chain were used", dead)
            else:
                self.stats.duplicates += 1  # a copy of one applied (sent again after an unanswered send)
            return ready, dead
        if seq > chain.next_seq:
            if seq not in chain.parked:
                chain.parked[seq] = (record, message)
                self.stats.parked += 1
            oldest = min(r.timestamp for r, _ in chain.parked.values())
            if len(chain.parked) <= MAX_PARKED and record.timestamp - oldest <= _PARK_LIMIT:
                return ready, dead
            log.warning("camera %s: message %d of its chain never came (%d later ones waited); going on without it",
                        camera_id, chain.next_seq, len(chain.parked))
            chain.skipped.update(range(chain.next_seq, min(chain.parked)))
            chain.next_seq = min(chain.parked)
        else:
            chain.parked[seq] = (record, message)
        while chain.next_seq in chain.parked:
            rec, msg = chain.parked.pop(chain.next_seq)
            self._apply(chain, rec, msg, ready, dead)
            chain.next_seq += 1
        return ready, dead

    # -- commit ------------------------------------------------------------------------------------
    def holds(self) -> dict[tuple[Topic, int], int]:
        """Per partition, the lowest offset a re-read needs (only partitions where something is kept)."""
        out: dict[tuple[Topic, int], int] = {}
        with self._lock:
            for chain in self._chains.values():
                hold = chain.hold()
                if hold is not None:
                    tp = (self.topic, chain.partition)
                    out[tp] = min(out.get(tp, hold), hold)
        return out

    # -- internals ---------------------------------------------------------------------------------
    def _apply(
        self, chain: _Chain, record: BusRecord, message: ChainedClip | ChainEnd,
        ready: list[tuple[BusRecord, ClipMessage]], dead: list[DeadLetter],
    ) -> None:
        if isinstance(message, ChainEnd):
            chain.applied[message.seq] = _Applied(record.offset, keyframe=True)
            self._prune(chain, message.keep_from)
            return
        refs = message.chain
        h = message.header
        frame_shape = (h.shape[1], h.shape[2], h.shape[3])
        decodable = refs.reference is None or refs.reference in chain.frames
        if refs.new and decodable:
            reference = None if refs.reference is None else chain.frames[refs.reference]
            try:
                levels = decode_frames(message.body, len(refs.new), frame_shape, reference, refs.bits)
            except (FrameCodecError, ValueError) as exc:
                self._lose(record, h.clip_id, f"clip {h.clip_id} of camera {h.camera_id}: {exc}", dead, check=False)
                return
            for frame_id, frame in zip(refs.new, levels, strict=True):
                chain.frames[frame_id] = frame
                chain.origin[frame_id] = refs.seq
        # a restart point only if it brings frames of its own (a message with none decodes nothing new)
        chain.applied[refs.seq] = _Applied(record.offset, keyframe=refs.reference is None and bool(refs.new))
        missing = [i for i in refs.ids if i not in chain.frames]
        if missing:
            why = (f"clip {h.clip_id} of camera {h.camera_id}: {len(set(missing))} of its frames came with earlier "
                   "messages that did not arrive (chain message "
                   f"{refs.seq} of chain {refs.chain_id})")
            self._lose(record, h.clip_id, why, dead, check=True)
        else:
            try:
                frames = from_levels(np.stack([chain.frames[i] for i in refs.ids]), refs.bits)
                clip = ClipMessage(h, frames)
            except (ValueError, MessageError) as exc:  # kept frames of another shape than the header says
                self._lose(record, h.clip_id, f"clip {h.clip_id} of camera {h.camera_id}: {exc}", dead, check=False)
                self._prune(chain, refs.keep_from)
                return
            ready.append((record, clip))
            self.stats.assembled += 1
            CHAINED_CLIPS.labels("assembled").inc()
        self._prune(chain, refs.keep_from)

    @staticmethod
    def _prune(chain: _Chain, keep_from: int) -> None:
        for frame_id in [i for i in chain.frames if i < keep_from]:
            del chain.frames[frame_id]
            del chain.origin[frame_id]

    def _lose(self, record: BusRecord, clip_id: str, why: str, dead: list[DeadLetter], *, check: bool) -> None:
        if check and clip_id in self.stored([clip_id]):
            self.stats.already_stored += 1
            CHAINED_CLIPS.labels("already_stored").inc()
            return
        self.stats.lost += 1
        CHAINED_CLIPS.labels("lost").inc()
        log.warning("%s; sent to the dead-letter topic", why)
        dead.append(DeadLetter.for_payload(record.topic.value, record.key, record.value, why))

    def _lose_message(self, record: BusRecord, message: ChainedClip | ChainEnd, why: str,
                      dead: list[DeadLetter]) -> None:
        if isinstance(message, ChainedClip):
            h = message.header
            self._lose(record, h.clip_id, f"clip {h.clip_id} of camera {h.camera_id}: {why}", dead, check=True)

    def _close(self, chain: _Chain, ready: list[tuple[BusRecord, ClipMessage]], dead: list[DeadLetter],
               why: str) -> None:
        """Drop a chain.  Messages still waiting on a missing one are applied in order, past the gaps: the
        clips that can be put together are scored, the others lost (unless already scored)."""
        if chain.parked:
            log.warning("camera %s: its chain closed (%s) with %d messages waiting on a missing one",
                        chain.camera_id, why, len(chain.parked))
        for seq in sorted(chain.parked):
            record, message = chain.parked.pop(seq)
            self._apply(chain, record, message, ready, dead)
        key = (chain.store_id, chain.camera_id)
        del self._chains[key]
        closed = self._closed.setdefault(key, [])
        closed.append(chain.chain_id)
        del closed[:-4]

    def _expire(self, ready: list[tuple[BusRecord, ClipMessage]], dead: list[DeadLetter]) -> None:
        for chain in list(self._chains.values()):
            newest = self._newest.get((chain.partition, chain.store_id))
            if newest is not None and newest - chain.last_seen > self.expire_after:
                self._close(chain, ready, dead,
                            f"nothing from the camera for {self.expire_after.total_seconds():.0f} s")
