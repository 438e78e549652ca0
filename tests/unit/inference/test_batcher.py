"""Batching: full batches go at once, a partial batch is flushed after the wait."""

from __future__ import annotations

import pytest

from common.clock import FakeClock
from inference.batcher import Batcher


def test_full_batch_is_due_immediately() -> None:
    batcher: Batcher[int] = Batcher(3, 10.0, FakeClock())
    for i in range(3):
        batcher.add(i)
    assert batcher.due()
    assert batcher.take() == [0, 1, 2]
    assert len(batcher) == 0 and batcher.time_until_due() is None


def test_partial_batch_is_flushed_after_the_wait() -> None:
    clock = FakeClock()
    batcher: Batcher[str] = Batcher(32, 0.2, clock)
    batcher.add("a")
    clock.advance(0.1)
    batcher.add("b")
    assert not batcher.due()
    assert batcher.time_until_due() == pytest.approx(0.1)
    clock.advance(0.1)
    assert batcher.due()
    assert batcher.take() == ["a", "b"]


def test_wait_counts_from_the_oldest_item() -> None:
    clock = FakeClock()
    batcher: Batcher[int] = Batcher(8, 1.0, clock)
    batcher.add(1)
    clock.advance(0.9)
    batcher.add(2)
    clock.advance(0.1)
    assert batcher.due()


def test_room_and_overflow() -> None:
    batcher: Batcher[int] = Batcher(2, 1.0, FakeClock())
    assert batcher.room() == 2
    batcher.add(1)
    batcher.add(2)
    assert batcher.room() == 0
    with pytest.raises(OverflowError):
        batcher.add(3)


@pytest.mark.parametrize(("size", "wait"), [(0, 1.0), (4, -1.0)])
def test_bad_limits_are_refused(size: int, wait: float) -> None:
    with pytest.raises(ValueError):
        Batcher(size, wait)
