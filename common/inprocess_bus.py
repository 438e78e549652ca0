"""The in-process bus (embedded mode): a thread-safe log per topic with consumer groups, like Kafka's."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from common.bus import BusError, BusRecord, DeliveryCallback
from common.schemas import Topic, utc_now


@dataclass
class _Partition:
    records: list[BusRecord] = field(default_factory=list)
    base_offset: int = 0  # offset of records[0] after trimming


@dataclass
class _Group:
    committed: dict[Topic, int] = field(default_factory=dict)
    position: dict[Topic, int] = field(default_factory=dict)


class InProcessBus:
    """A thread-safe, single-partition-per-topic log with consumer groups, for embedded mode.

    Semantics mirror Kafka closely enough that workers behave the same: records are retained until
    every known group has committed them, a consumer that closes without committing hands its
    records back, and consumers of one group share the work.
    """

    def __init__(self, max_retained: int = 100_000) -> None:
        self._lock = threading.Condition()
        self._topics: dict[Topic, _Partition] = defaultdict(_Partition)
        self._groups: dict[str, _Group] = {}
        self._max_retained = max_retained
        self._closed = False

    # -- producing -------------------------------------------------------------------------------
    def _append(self, topic: Topic, key: str | None, value: bytes) -> None:
        with self._lock:
            if self._closed:
                raise BusError("in-process bus is closed")
            part = self._topics[topic]
            offset = part.base_offset + len(part.records)
            part.records.append(BusRecord(topic, key, value, 0, offset, utc_now()))
            self._lock.notify_all()

    def publisher(self) -> InProcessPublisher:
        return InProcessPublisher(self)

    # -- consuming -------------------------------------------------------------------------------
    def consumer(self, topics: Sequence[Topic], group_id: str) -> InProcessConsumer:
        with self._lock:
            group = self._groups.setdefault(group_id, _Group())
            for topic in topics:
                part = self._topics[topic]
                group.committed.setdefault(topic, part.base_offset)
                group.position.setdefault(topic, group.committed[topic])
        return InProcessConsumer(self, list(topics), group_id)

    def _poll(self, topics: list[Topic], group_id: str, timeout_s: float, max_records: int) -> list[BusRecord]:
        with self._lock:
            group = self._groups[group_id]

            def ready() -> list[BusRecord]:
                out: list[BusRecord] = []
                for topic in topics:
                    part = self._topics[topic]
                    start = group.position[topic] - part.base_offset
                    take = part.records[start : start + (max_records - len(out))]
                    if take:
                        group.position[topic] += len(take)
                        out.extend(take)
                    if len(out) >= max_records:
                        break
                return out

            records = ready()
            if not records and timeout_s > 0 and not self._closed:
                self._lock.wait(timeout_s)
                records = ready()
            return records

    def _commit(self, topics: list[Topic], group_id: str, positions: dict[Topic, int]) -> None:
        with self._lock:
            group = self._groups[group_id]
            for topic in topics:
                if topic in positions:
                    group.committed[topic] = max(group.committed[topic], positions[topic])
            self._trim()

    def _rewind(self, topics: list[Topic], group_id: str) -> None:
        with self._lock:
            group = self._groups[group_id]
            for topic in topics:
                group.position[topic] = group.committed[topic]
            self._lock.notify_all()

    def _trim(self) -> None:
        for topic, part in self._topics.items():
            committed = [g.committed[topic] for g in self._groups.values() if topic in g.committed]
            if not committed:
                if len(part.records) > self._max_retained:
                    drop = len(part.records) - self._max_retained
                    del part.records[:drop]
                    part.base_offset += drop
                continue
            drop = min(committed) - part.base_offset
            if drop > 0:
                del part.records[:drop]
                part.base_offset += drop

    def lag(self, group_id: str, topics: Iterable[Topic] | None = None) -> int:
        """Records of ``topics`` (default: every topic the group reads) not yet committed by ``group_id``."""
        with self._lock:
            group = self._groups.get(group_id)
            if group is None:
                return 0
            wanted = set(group.committed) if topics is None else set(topics) & set(group.committed)
            return sum(
                self._topics[t].base_offset + len(self._topics[t].records) - group.committed[t] for t in wanted
            )

    def end_offsets(self, topic: Topic) -> int:
        with self._lock:
            part = self._topics[topic]
            return part.base_offset + len(part.records)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()


class InProcessPublisher:
    def __init__(self, bus: InProcessBus) -> None:
        self._bus = bus

    def publish(
        self, topic: Topic, key: str | None, value: bytes, on_delivery: DeliveryCallback | None = None
    ) -> None:
        self._bus._append(topic, key, value)
        if on_delivery is not None:
            on_delivery(None)  # appended is durable for as long as the process lives

    def flush(self, timeout_s: float | None = None) -> None:
        """In-process appends are immediately visible; nothing to wait for."""

    def reset(self) -> None:
        """Nothing is ever pending here."""

    def close(self) -> None:
        pass


class InProcessConsumer:
    def __init__(self, bus: InProcessBus, topics: list[Topic], group_id: str) -> None:
        self._bus = bus
        self._topics = topics
        self._group_id = group_id
        self._positions: dict[Topic, int] = {}

    def poll(self, timeout_s: float, max_records: int = 500) -> list[BusRecord]:
        records = self._bus._poll(self._topics, self._group_id, timeout_s, max_records)
        for record in records:
            self._positions[record.topic] = record.offset + 1
        return records

    def commit(self, hold: Mapping[tuple[Topic, int], int] | None = None) -> None:
        positions = dict(self._positions)
        for (topic, _partition), offset in (hold or {}).items():  # one partition a topic
            if topic in positions:
                positions[topic] = min(positions[topic], offset)
        self._bus._commit(self._topics, self._group_id, positions)

    def close(self) -> None:
        self._bus._rewind(self._topics, self._group_id)
