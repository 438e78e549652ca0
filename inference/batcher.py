"""Collects items into batches bounded by size and by how long the first item may wait."""

from __future__ import annotations

from typing import Generic, TypeVar

from common.clock import Clock, SystemClock

T = TypeVar("T")


class Batcher(Generic[T]):
    """A batch is due when it is full, or when its oldest item has waited ``max_wait_s``.

    The worker polls the bus for at most ``room()`` items, so a batch never exceeds its size and
    everything pending is processed before offsets are committed.
    """

    def __init__(self, max_batch_size: int, max_wait_s: float, clock: Clock | None = None) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.clock = clock or SystemClock()
        self._items: list[T] = []
        self._first_at: float | None = None

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: T) -> None:
        if len(self._items) >= self.max_batch_size:
            raise OverflowError("batch is full; take() it first")
        if not self._items:
            self._first_at = self.clock.monotonic()
        self._items.append(item)

    def room(self) -> int:
        return self.max_batch_size - len(self._items)

    def time_until_due(self) -> float | None:
        """Seconds until the pending batch is due (0 when due now), None when empty."""
        if not self._items or self._first_at is None:
            return None
        if len(self._items) >= self.max_batch_size:
            return 0.0
        return max(0.0, self._first_at + self.max_wait_s - self.clock.monotonic())

    def due(self) -> bool:
        remaining = self.time_until_due()
        return remaining is not None and remaining <= 0.0

    def take(self) -> list[T]:
        items, self._items, self._first_at = self._items, [], None
        return items
