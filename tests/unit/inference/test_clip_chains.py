"""Chained clips: ingest's ChainEncoder and the worker's ClipChains give back every clip exactly, through
reordering, duplicates, restarts from the held offset and lost messages."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta

import numpy as np
import pytest

from common.bus import BusRecord
from common.schemas import (
    ChainedClip,
    ChainEnd,
    ClipHeader,
    ClipMessage,
    MessageError,
    Topic,
    read_clip_topic,
)
from inference.clip_chains import ClipChains
from ingest.clip_chain import KEYFRAME_EVERY
from tests.clip_topic import T0, Stream, chained_stream


def records(messages: list[bytes], order: list[int] | None = None, first_offset: int = 0) -> list[BusRecord]:
    order = list(range(len(messages))) if order is None else order
    return [BusRecord(Topic.CLIPS, "cam", messages[k], 0, first_offset + n, T0 + timedelta(seconds=n))
            for n, k in enumerate(order)]


def feed(chains: ClipChains, recs: list[BusRecord]) -> tuple[dict[str, np.ndarray], list[str]]:
    got: dict[str, np.ndarray] = {}
    dead: list[str] = []
    for record in recs:
        message = read_clip_topic(record.value)
        assert isinstance(message, ChainedClip | ChainEnd)
        ready, lost = chains.accept(record, message)
        for _, clip in ready:
            assert clip.header.clip_id not in got, "a clip assembled twice"
            got[clip.header.clip_id] = clip.frames
        dead += [d.reason for d in lost]
    return got, dead


def never_stored(ids) -> set[str]:
    return set()


@pytest.fixture(scope="module")
def stream() -> Stream:
    return chained_stream()


def test_every_clip_comes_back_exactly_in_a_tenth_of_the_bytes(stream: Stream) -> None:
    chains = ClipChains(never_stored)
    got, dead = feed(chains, records(stream.messages))
    assert not dead
    assert got.keys() == stream.expected.keys() and len(got) > 30
    for clip_id, frames in stream.expected.items():
        assert np.array_equal(got[clip_id], frames), clip_id
    whole = sum(len(ClipMessage(ClipHeader(clip_id=k, store_id="s1", camera_id="cam", captured_at=T0, start_at=T0,
                                           source_start_s=0, source_end_s=1, shape=f.shape), f).to_bytes())
                for k, f in stream.expected.items())
    assert sum(map(len, stream.messages)) < 0.15 * whole
    assert chains.holds() == {} and chains.kept_frames() == 0  # the chain ended: nothing kept, nothing held


def test_each_frame_travels_once(stream: Stream) -> None:
    carried = [i for m in stream.messages if isinstance(msg := read_clip_topic(m), ChainedClip)
               for i in msg.chain.new]
    assert len(carried) == len(set(carried))
    used = {i for m in stream.messages if isinstance(msg := read_clip_topic(m), ChainedClip) for i in msg.chain.ids}
    assert set(carried) == used


def test_a_keyframe_every_few_messages(stream: Stream) -> None:
    clips = [read_clip_topic(m) for m in stream.messages]
    chained = [c for c in clips if isinstance(c, ChainedClip)]
    keyframes = [c.chain.seq for c in chained if c.chain.reference is None]
    assert keyframes[0] == 0
    assert all(b - a <= KEYFRAME_EVERY for a, b in itertools.pairwise(keyframes))
    assert len(keyframes) < len(chained) / 2  # most messages are coded against the one before


def test_late_and_repeated_messages_change_nothing(stream: Stream) -> None:
    order = list(range(len(stream.messages)))
    for k in range(3, len(order) - 5, 9):  # a message the producer sent again lands after the next two
        order[k], order[k + 2] = order[k + 2], order[k]
    order[10:10] = [5, 6]  # copies of messages already applied
    chains = ClipChains(never_stored)
    got, dead = feed(chains, records(stream.messages, order))
    assert not dead
    assert got.keys() == stream.expected.keys()
    assert all(np.array_equal(got[k], f) for k, f in stream.expected.items())
    assert chains.stats.parked > 0 and chains.stats.duplicates == 2


@pytest.mark.parametrize("cut", [1, 2, 5, 9, 14, 23, 31, 40, 52])
def test_a_restart_from_the_held_offset_loses_and_doubles_nothing(stream: Stream, cut: int) -> None:
    """A worker scores messages [0, cut) and commits (its offset held); a new one reads from the hold."""
    recs = records(stream.messages)
    first = ClipChains(never_stored)
    scored, dead = feed(first, recs[:cut])
    assert not dead
    hold = first.holds().get((Topic.CLIPS, 0), cut)
    assert hold <= cut

    second = ClipChains(lambda ids: {i for i in ids if i in scored})
    again, dead = feed(second, recs[hold:])
    assert not dead, dead
    assert scored.keys() | again.keys() == stream.expected.keys()
    assert all(np.array_equal(again[k], stream.expected[k]) for k in again)
    redone = again.keys() & scored.keys()
    assert len(redone) <= KEYFRAME_EVERY + 4  # at most back to the keyframe before the oldest kept frame


def test_a_lost_message_costs_the_clips_up_to_the_next_keyframe_said_in_dead_letters(stream: Stream) -> None:
    lost_at = 12
    assert isinstance(read_clip_topic(stream.messages[lost_at]), ChainedClip)
    order = [k for k in range(len(stream.messages)) if k != lost_at]
    chains = ClipChains(never_stored)
    got, dead = feed(chains, records(stream.messages, order))
    missing = stream.expected.keys() - got.keys()
    assert 1 <= len(missing) <= KEYFRAME_EVERY + 4
    assert len(dead) == len(missing) - 1  # the lost message's own clip never arrived to be dead-lettered
    assert all("did not arrive" in reason or "never came" in reason for reason in dead)
    assert all(np.array_equal(got[k], stream.expected[k]) for k in got)


def test_the_motion_ending_releases_the_hold() -> None:
    # 24 s of frames, motion for 7, and the source goes on
    episode = chained_stream(moving=lambda t: 2 <= t < 9, limit=120, finish=False)
    kinds = [type(read_clip_topic(m)) for m in episode.messages]
    assert ChainEnd in kinds  # released once no later clip can use the frames sent
    chains = ClipChains(never_stored)
    upto = kinds.index(ChainEnd)
    feed(chains, records(episode.messages[:upto]))
    assert chains.holds()  # frames kept for clips that may follow
    feed(chains, records(episode.messages[upto : upto + 1], first_offset=upto))
    assert chains.holds() == {} and chains.kept_frames() == 0


def test_a_new_chain_of_the_camera_ends_the_old_one(stream: Stream) -> None:
    other = chained_stream(limit=40)
    chains = ClipChains(never_stored)
    feed(chains, records(stream.messages[:8]))
    # message 9 of the first chain never comes; message 10 waits for it
    feed(chains, records(stream.messages[9:10], first_offset=9))
    got, dead = feed(chains, records(other.messages, first_offset=20))
    assert got.keys() == other.expected.keys()
    assert len(dead) == 1 and "did not arrive" in dead[0]  # message 9, applied past the gap when its chain closed


def test_a_chain_with_no_news_for_ten_minutes_of_record_time_is_forgotten(stream: Stream) -> None:
    chains = ClipChains(never_stored, expire_after_s=600)
    feed(chains, records(stream.messages[:6]))
    assert chains.holds()
    late = BusRecord(Topic.CLIPS, "other", chained_stream(limit=30, camera="other").messages[0], 0, 100,
                     T0 + timedelta(minutes=11))
    chains.accept(late, read_clip_topic(late.value))
    assert chains.holds() == {(Topic.CLIPS, 0): 100}  # only the new camera's first message is held


def test_a_corrupt_body_is_a_dead_letter_not_a_crash(stream: Stream) -> None:
    message = read_clip_topic(stream.messages[0])
    assert isinstance(message, ChainedClip)
    broken = ChainedClip(message.header, message.body[:-40] + b"\0" * 40).to_bytes()
    chains = ClipChains(never_stored)
    got, dead = feed(chains, records([broken]))
    assert not got and len(dead) == 1
    assert "cannot be decompressed" in dead[0] or "hold" in dead[0]


def test_header_validation_names_the_problem(stream: Stream) -> None:
    message = read_clip_topic(stream.messages[3])
    assert isinstance(message, ChainedClip)
    data = message.header.model_dump(mode="json")
    data["chain"]["new"] = [10_000]
    head = json.dumps(data).encode()
    with pytest.raises(MessageError, match="not the clip's"):
        ChainedClip.from_bytes(ChainedClip.MAGIC + len(head).to_bytes(4, "big") + head + message.body)


def test_a_message_late_at_the_start_of_a_chain_is_never_dropped_silently(stream: Stream) -> None:
    order = [1, 0, *range(2, len(stream.messages))]  # the chain's first message, sent again, lands second
    chains = ClipChains(never_stored)
    got, dead = feed(chains, records(stream.messages, order))
    missing = stream.expected.keys() - got.keys()
    assert missing  # the chain started at message 1, so clip 0 (and those needing its frames) are lost ...
    assert len(dead) == len(missing)  # ... and every one of them is said in a dead letter


def test_a_straggler_of_a_closed_chain_does_not_close_the_new_one(stream: Stream) -> None:
    first = chained_stream(limit=40)
    second = chained_stream(limit=40)  # the same camera's next chain (a new ingest process)
    chains = ClipChains(never_stored)
    feed(chains, records(first.messages[:3]))
    got, dead = feed(chains, records(second.messages, first_offset=5))
    late, dead_late = feed(chains, records(first.messages[3:4], first_offset=50))
    assert got.keys() == second.expected.keys() and not dead
    assert not late and len(dead_late) == 1 and "chain had ended" in dead_late[0]
    assert chains.holds() == {}  # the new chain ended cleanly: not torn down by the old one's straggler


def test_a_stalled_camera_message_without_new_frames_is_no_restart_point() -> None:
    """A window made only of frames already sent (a stalled live stream) carries no frame: a restart from it
    could decode nothing, so the keyframe due passes to the next message that brings frames."""
    stalled = chained_stream(fps=5.0, limit=120, moving=lambda t: True)
    clips = [m for m in map(read_clip_topic, stalled.messages) if isinstance(m, ChainedClip)]
    assert all(c.chain.new or c.chain.reference is not None or c.chain.seq == 0 for c in clips[:1])
    keyframes = [c for c in clips if c.chain.reference is None]
    assert all(c.chain.new for c in keyframes)


def test_kept_frames_of_another_shape_are_a_dead_letter_not_a_crash(stream: Stream) -> None:
    chains = ClipChains(never_stored)
    feed(chains, records(stream.messages[:3]))
    message = read_clip_topic(stream.messages[3])
    assert isinstance(message, ChainedClip)
    data = message.header.model_dump(mode="json")
    data["shape"] = [20, 32, 32, 3]
    head = json.dumps(data).encode()
    odd = ChainedClip.MAGIC + len(head).to_bytes(4, "big") + head + message.body
    got, dead = feed(chains, records([odd], first_offset=3))
    assert not got and len(dead) == 1


def test_another_stores_clock_running_ahead_expires_no_chain(stream: Stream) -> None:
    chains = ClipChains(never_stored, expire_after_s=600)
    feed(chains, records(stream.messages[:6]))
    other = chained_stream(limit=30, camera="other").messages[0]
    message = read_clip_topic(other)
    assert isinstance(message, ChainedClip)
    data = message.header.model_dump(mode="json")
    data["store_id"] = "s2"  # another store's ingest host, its clock 11 minutes fast
    head = json.dumps(data).encode()
    skewed = BusRecord(Topic.CLIPS, "other", ChainedClip.MAGIC + len(head).to_bytes(4, "big") + head + message.body,
                       0, 100, T0 + timedelta(minutes=11))
    chains.accept(skewed, read_clip_topic(skewed.value))
    got, dead = feed(chains, records(stream.messages[6:], first_offset=6))
    assert not dead and set(got) == set(stream.expected) - set(list(stream.expected)[:6])
