"""The message bus interface; ``inprocess_bus`` (embedded mode) and ``kafka_bus`` (scaled mode) implement it.

Workers only see ``Bus``: they publish bytes keyed by camera id and consume records in a consumer
group, committing after their output is durable.  Delivery is at-least-once; consumers make their
effects idempotent (results and alerts are keyed by clip id / alert id).

A message counts as published only once the bus acknowledged it: either ``flush`` returned, or the
``on_delivery`` callback given to ``publish`` was called with ``None``.  The callback may run on another
thread (Kafka's sender) and must only record the outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from common.schemas import Topic


@dataclass(frozen=True, slots=True)
class BusRecord:
    """One consumed message with where it came from."""

    topic: Topic
    key: str | None
    value: bytes
    partition: int
    offset: int
    timestamp: datetime


class BusError(Exception):
    """The bus cannot be reached or refused a message; retryable unless ``retryable`` says otherwise."""

    retryable = True


# Called once per message with None when the bus acknowledged it, or the error that made it fail.
DeliveryCallback = Callable[[BaseException | None], None]


class CommitFailedError(BusError):
    """The consumer group rebalanced before the commit: it was refused, and the records polled since the
    last commit will be delivered again to whichever member owns their partitions now.  The caller drops
    the work in flight and polls on."""


class Publisher(Protocol):
    def publish(
        self, topic: Topic, key: str | None, value: bytes, on_delivery: DeliveryCallback | None = None
    ) -> None:
        """Queue a message; ``flush`` makes it durable, and ``on_delivery`` (when given) hears the outcome.
        Raises BusError when the message cannot even be queued."""

    def flush(self, timeout_s: float | None = None) -> None:
        """Block until every queued message is acknowledged, or raise BusError."""

    def reset(self) -> None:
        """Give up on what was sent so far and start afresh (a new connection); the caller sends again."""

    def close(self) -> None: ...


class Consumer(Protocol):
    def poll(self, timeout_s: float, max_records: int = 500) -> list[BusRecord]:
        """Return the next records (possibly none) of the subscribed topics."""

    def commit(self, hold: Mapping[tuple[Topic, int], int] | None = None) -> None:
        """Mark every record returned by ``poll`` so far as done for this consumer group, except that the
        committed offset of a (topic, partition) in ``hold`` goes no further than the offset given there: its
        records from there on are delivered again after a restart or rebalance (a consumer that keeps state
        built from earlier records, like chained clips' frames, holds it at the oldest record it needs).

        Raises CommitFailedError after a rebalance, BusError when the bus cannot be reached."""

    def close(self) -> None:
        """Leave the group; records polled but not committed go to another consumer."""


class Bus(Protocol):
    def publisher(self) -> Publisher: ...

    def consumer(self, topics: Sequence[Topic], group_id: str) -> Consumer: ...

    def close(self) -> None: ...
