"""The Kafka implementation of the Bus (scaled mode), on kafka-python.

Topics are ``prefix + Topic.value`` and are created when missing.  Producers are idempotent with
``acks=all``; ``flush`` raises BusError when the broker does not acknowledge in time, and the caller keeps
its data and publishes again (at-least-once: consumers are idempotent).  Consumers never auto-commit:
``commit`` commits exactly the offsets that ``poll`` has returned, after the caller made its output
durable, and ``close`` leaves the group without committing, so unfinished records go to another worker.
While the broker is down, ``poll`` returns no records and kafka-python reconnects in the background.

Clients are created lazily, so a worker can start before the broker is up.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from common.bus import BusError, BusRecord, CommitFailedError, DeliveryCallback
from common.redaction import redact
from common.schemas import Topic
from common.settings import BusSettings

log = logging.getLogger(__name__)

_TOPIC_HEADROOM_BYTES = 64 * 1024  # record batch overhead on top of the largest message
_PRUNE_EVERY = 1024  # unflushed futures kept before resolved successes are forgotten


class MessageTooLargeError(BusError):
    """The message exceeds ``max_message_bytes``; not retryable (publishing it again fails again)."""

    retryable = False


@dataclass(frozen=True, slots=True)
class KafkaTuning:
    """Client timings.  Defaults favour quick failover (a dead worker's partitions move in ~10 s)."""

    request_timeout_s: float = 10.0
    delivery_timeout_s: float = 30.0
    max_block_s: float = 1.0  # a send waits at most this for metadata: capture must not stall long
    linger_ms: int = 5
    session_timeout_s: float = 8.0
    heartbeat_interval_s: float = 2.0
    max_poll_interval_s: float = 300.0
    reconnect_backoff_max_s: float = 2.0
    bootstrap_timeout_s: float = 5.0
    topic_ready_timeout_s: float = 15.0


class _Throttled:
    """Logs a warning at most once per ``every_s`` seconds (outages would otherwise flood the log)."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._last = 0.0

    def warning(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            log.warning(redact(message % args if args else message))


def open_admin_client(**config: Any) -> Any:
    """A ``kafka.admin.KafkaAdminClient``, without the thread a failed start leaves behind.

    kafka-python 3.0 starts a client's IO thread before its bootstrap, and when the bootstrap fails (the
    broker is down) the constructor raises with the thread still running: it reconnects and logs for the life
    of the process, and ``close`` on such a client does nothing.  A worker that retries through a broker
    outage would gather one such thread per attempt.  Here the thread, the client and its metrics are stopped
    before the error goes on (``tests/unit/common/test_kafka_admin_client.py`` counts the threads)."""
    from kafka.admin import KafkaAdminClient

    return _stopped_on_failed_start(KafkaAdminClient)(**config)


def open_consumer(*topics: str, **config: Any) -> Any:
    """A ``kafka.KafkaConsumer``, without the thread a failed start leaves behind (see ``open_admin_client``)."""
    from kafka import KafkaConsumer

    return _stopped_on_failed_start(KafkaConsumer)(*topics, **config)


_GUARDED: dict[type, type] = {}


def _stopped_on_failed_start(base: type) -> Any:
    guarded = _GUARDED.get(base)
    if guarded is None:

        class Guarded(base):  # type: ignore[valid-type, misc]
            def __init__(self, *args: Any, **configs: Any) -> None:
                try:
                    super().__init__(*args, **configs)
                except BaseException:
                    # what the constructor had started when it failed (each step guarded: a later
                    # kafka-python may name them differently, and then there is nothing of ours to stop)
                    for name, stop in (("_net", "stop"), ("_client", "close"), ("_metrics", "close")):
                        part = self.__dict__.get(name)
                        if part is not None:
                            try:
                                getattr(part, stop)()
                            except Exception:  # cleaning up must not hide the bootstrap's error
                                log.debug("stopping a failed Kafka client's %s failed", name, exc_info=True)
                    raise

        Guarded.__name__ = Guarded.__qualname__ = base.__name__
        guarded = _GUARDED[base] = Guarded
    return guarded


def _describe(exc: BaseException) -> str:
    return redact(f"{type(exc).__name__}: {exc}")


# Failures that sending the same bytes again cannot cure; every other failure (a delivery timeout, a
# producer reset, a sequence error after one) is retryable: the caller sends the message again.
_BAD_MESSAGE_ERRORS = ("MessageSizeTooLargeError", "RecordListTooLargeError", "InvalidRecordError",
                       "CorruptRecordError")


def _close_quietly(producer: Any) -> None:
    """Close a replaced producer for good.  kafka-python 3.0's ``close`` flushes first and raises when that
    times out, before it would force-close the sender: then the sender thread lives on and what it holds
    never fails to its callbacks.  So when ``close`` raises, force-close the sender ourselves."""
    try:
        producer.close(timeout=5)
        return
    except Exception:
        log.debug("closing a replaced Kafka producer failed; forcing it", exc_info=True)
    sender = getattr(producer, "_sender", None)
    try:
        if sender is not None and sender.is_alive():
            sender.force_close()  # fails the incomplete batches to their callbacks and stops the thread
            sender.join(5)
    except Exception:  # it was failing already; closing it must not raise anywhere
        log.debug("force-closing a replaced Kafka producer failed", exc_info=True)


def _delivery_error(exc: BaseException) -> BusError:
    """A failed send as a BusError; not retryable only when the message itself is at fault."""
    error = BusError(f"not delivered: {_describe(exc)}")
    error.retryable = type(exc).__name__ not in _BAD_MESSAGE_ERRORS
    return error


class KafkaBus:
    """Bus over Apache Kafka: ``publisher()`` and ``consumer(topics, group_id)`` as in ``common.bus``."""

    def __init__(
        self,
        bootstrap_servers: Sequence[str],
        topic_prefix: str = "aislewatch.",
        partitions: int = 12,
        replication_factor: int = 1,
        max_message_bytes: int = 1_000_000,
        client_id: str = "aislewatch",
        tuning: KafkaTuning | None = None,
    ) -> None:
        if not bootstrap_servers:
            raise ValueError("KafkaBus needs at least one bootstrap server")
        self.bootstrap_servers = list(bootstrap_servers)
        self.topic_prefix = topic_prefix
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.max_message_bytes = max_message_bytes
        self.client_id = client_id
        self.tuning = tuning or KafkaTuning()
        self._by_name = {self.topic_name(t): t for t in Topic}
        self._known_topics: set[str] = set()
        self._admin: Any = None
        self._admin_retry_at = 0.0  # after a failed bootstrap, when the next one may be tried
        self._clients: weakref.WeakSet[KafkaPublisher | KafkaBusConsumer] = weakref.WeakSet()
        self._lock = threading.RLock()
        self._closed = False

    @classmethod
    def from_settings(cls, settings: BusSettings, tuning: KafkaTuning | None = None) -> KafkaBus:
        """Build the bus from the ``bus`` settings section."""
        return cls(
            bootstrap_servers=settings.bootstrap_servers,
            topic_prefix=settings.topic_prefix,
            partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            max_message_bytes=settings.max_message_bytes,
            tuning=tuning or KafkaTuning(delivery_timeout_s=settings.delivery_timeout_s),
        )

    # -- names -----------------------------------------------------------------------------------
    def topic_name(self, topic: Topic) -> str:
        return f"{self.topic_prefix}{topic.value}"

    def topic_of(self, name: str) -> Topic:
        """The Topic a Kafka topic name belongs to (KeyError for foreign topics)."""
        return self._by_name[name]

    # -- admin -----------------------------------------------------------------------------------
    def _common_config(self) -> dict[str, Any]:
        t = self.tuning
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "request_timeout_ms": int(t.request_timeout_s * 1000),
            "reconnect_backoff_ms": 100,
            "reconnect_backoff_max_ms": int(t.reconnect_backoff_max_s * 1000),
            "retry_backoff_ms": 200,
            "bootstrap_timeout_ms": int(t.bootstrap_timeout_s * 1000),
        }

    def _admin_client(self) -> Any:
        with self._lock:
            if self._closed:
                raise BusError("kafka bus is closed")
            if self._admin is not None:
                return self._admin
            if time.monotonic() < self._admin_retry_at:
                # every camera shares this bus: one failed bootstrap answers them all for a moment
                raise BusError(f"cannot reach Kafka at {self._servers()} (retrying shortly)")
        try:  # outside the lock: a bootstrap can take seconds while the broker is away
            admin = open_admin_client(client_id=f"{self.client_id}-admin", **self._common_config())
        except Exception as exc:
            with self._lock:
                self._admin_retry_at = time.monotonic() + self.tuning.reconnect_backoff_max_s
            raise BusError(f"cannot reach Kafka at {self._servers()}: {_describe(exc)}") from exc
        with self._lock:
            if self._admin is None:
                self._admin = admin
                return admin
        admin.close()  # another thread made one meanwhile
        return self._admin

    def _reset_admin(self) -> None:
        with self._lock:
            admin, self._admin = self._admin, None
        if admin is not None:
            try:
                admin.close()
            except Exception:  # closing a broken client must not hide the original error
                log.debug("closing the Kafka admin client failed", exc_info=True)

    def _servers(self) -> str:
        return redact(",".join(self.bootstrap_servers))

    def ensure_topics(self, topics: Iterable[Topic] | None = None) -> None:
        """Create the missing topics (all of them by default) and wait until they have leaders."""
        from kafka.errors import TopicAlreadyExistsError

        wanted = [self.topic_name(t) for t in (Topic if topics is None else topics)]
        missing = [name for name in wanted if name not in self._known_topics]
        if not missing:
            return
        admin = self._admin_client()
        try:
            existing = set(admin.list_topics())
            for name in missing:
                if name in existing:
                    continue
                spec = {
                    "num_partitions": self.partitions,
                    "replication_factor": self.replication_factor,
                    "configs": {"max.message.bytes": str(self.max_message_bytes + _TOPIC_HEADROOM_BYTES)},
                }
                try:
                    admin.create_topics({name: spec}, timeout_ms=int(self.tuning.request_timeout_s * 1000))
                    log.info("created Kafka topic %s with %d partitions", name, self.partitions)
                except TopicAlreadyExistsError:
                    pass  # another worker created it first
            admin.wait_for_topics(missing, timeout_ms=int(self.tuning.topic_ready_timeout_s * 1000))
        except BusError:
            raise
        except Exception as exc:
            self._reset_admin()
            raise BusError(f"cannot create Kafka topics {missing}: {_describe(exc)}") from exc
        with self._lock:
            self._known_topics.update(missing)

    def delete_topics(self, topics: Iterable[Topic] | None = None) -> None:
        """Delete this bus's topics (all by default) if they exist; for tests and teardown."""
        from kafka.errors import UnknownTopicOrPartitionError

        names = [self.topic_name(t) for t in (Topic if topics is None else topics)]
        admin = self._admin_client()
        try:
            existing = set(admin.list_topics())
            doomed = [n for n in names if n in existing]
            if doomed:
                admin.delete_topics(doomed, timeout_ms=int(self.tuning.request_timeout_s * 1000))
        except UnknownTopicOrPartitionError:
            pass
        except Exception as exc:
            self._reset_admin()
            raise BusError(f"cannot delete Kafka topics: {_describe(exc)}") from exc
        with self._lock:
            self._known_topics.difference_update(names)

    def lag(self, group_id: str, topics: Iterable[Topic] | None = None) -> int:
        """Records of ``topics`` (default: all) not yet committed by ``group_id``."""
        from kafka import OffsetSpec, TopicPartition

        names = [self.topic_name(t) for t in (Topic if topics is None else topics)]
        admin = self._admin_client()
        try:
            described = admin.describe_topics(names)
            partitions = [
                TopicPartition(t["name"], p["partition_index"])
                for t in described
                if t.get("error_code", 0) == 0
                for p in t.get("partitions") or []
            ]
            if not partitions:
                return 0
            committed = admin.list_group_offsets({group_id: partitions}).get(group_id, {})
            latest = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in partitions})
            uncommitted = [tp for tp in partitions if committed.get(tp) is None or committed[tp].offset < 0]
            earliest = (
                admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in uncommitted})
                if uncommitted
                else {}
            )
        except Exception as exc:
            self._reset_admin()
            raise BusError(f"cannot read the lag of group {group_id}: {_describe(exc)}") from exc
        total = 0
        for tp in partitions:
            start = earliest[tp].offset if tp in earliest else committed[tp].offset
            total += max(0, latest[tp].offset - start)
        return total

    # -- clients ---------------------------------------------------------------------------------
    def publisher(self) -> KafkaPublisher:
        publisher = KafkaPublisher(self)
        self._clients.add(publisher)
        return publisher

    def consumer(self, topics: Sequence[Topic], group_id: str) -> KafkaBusConsumer:
        """A group member of ``group_id`` subscribed to ``topics``; it joins on its first ``poll``."""
        consumer = KafkaBusConsumer(self, list(topics), group_id)
        self._clients.add(consumer)
        return consumer

    def close(self) -> None:
        """Close every publisher and consumer made by this bus (consumers leave without committing)."""
        with self._lock:
            self._closed = True
            clients = list(self._clients)
        for client in clients:
            client.close()
        self._reset_admin()


class KafkaPublisher:
    """Idempotent producer with acks=all; ``flush`` reports every failure since the last flush."""

    def __init__(self, bus: KafkaBus) -> None:
        self._bus = bus
        self._producer: Any = None
        self._unflushed: list[Any] = []  # futures of messages published without a callback
        self._stale = False  # a delivery failed: the next publish starts a new producer
        self._generation = 0  # which producer a callback belongs to
        self._lock = threading.Lock()
        self._warn = _Throttled()

    def _failed(self, exc: BaseException, on_delivery: DeliveryCallback, generation: int) -> None:
        """A message expired or failed: tell the caller, and start the next send on a fresh producer.
        kafka-python's idempotent producer can stay stuck after batches expired during a broker outage
        (nothing is sent once the broker is back), so a publisher whose deliveries failed recreates it;
        failures of a producer already replaced do not condemn its successor."""
        if generation == self._generation:
            self._stale = True
        on_delivery(_delivery_error(exc))

    def reset(self) -> None:
        """Start the next send on a fresh producer (the caller gave up waiting on this one)."""
        self._stale = True
        self._generation += 1  # answers still to come from the old producer condemn nothing

    def _get_producer(self) -> Any:
        from kafka import KafkaProducer

        if self._stale and self._producer is not None:
            stale, self._producer, self._stale = self._producer, None, False
            self._generation += 1
            log.info("recreating the Kafka producer after failed deliveries")
            # Closed off the caller's thread: kafka-python's close() flushes first and may block.  What the
            # old producer still holds fails to its callbacks and is sent again on the new one.
            threading.Thread(target=_close_quietly, args=(stale,), name="kafka-producer-close", daemon=True).start()
        if self._producer is None:
            bus, t = self._bus, self._bus.tuning
            try:
                self._producer = KafkaProducer(
                    client_id=f"{bus.client_id}-producer",
                    acks="all",
                    enable_idempotence=True,
                    linger_ms=t.linger_ms,
                    max_request_size=bus.max_message_bytes,
                    delivery_timeout_ms=int(t.delivery_timeout_s * 1000),
                    max_block_ms=int(t.max_block_s * 1000),
                    **bus._common_config(),
                )
            except Exception as exc:
                raise BusError(f"cannot reach Kafka at {bus._servers()}: {_describe(exc)}") from exc
        return self._producer

    def publish(
        self, topic: Topic, key: str | None, value: bytes, on_delivery: DeliveryCallback | None = None
    ) -> None:
        """Queue ``value`` for ``topic``, partitioned by ``key``; raise BusError if it cannot be queued.

        With ``on_delivery`` the outcome goes to the callback (on kafka-python's sender thread) and
        nothing is kept here; without it ``flush`` reports the outcome.  Either way nothing accumulates:
        futures already resolved are forgotten as new messages are queued.
        """
        from kafka.errors import MessageSizeTooLargeError

        if len(value) > self._bus.max_message_bytes:
            raise MessageTooLargeError(
                f"{topic.value} message of {len(value)} bytes exceeds max_message_bytes={self._bus.max_message_bytes}"
            )
        self._bus.ensure_topics([topic])
        with self._lock:
            producer = self._get_producer()
            try:
                future = producer.send(
                    self._bus.topic_name(topic),
                    value=value,
                    key=key.encode("utf-8") if key is not None else None,
                )
            except MessageSizeTooLargeError as exc:
                raise MessageTooLargeError(_describe(exc)) from exc
            except Exception as exc:
                self._warn.warning("Kafka publish to %s failed: %s", topic.value, _describe(exc))
                raise BusError(f"cannot publish to {topic.value}: {_describe(exc)}") from exc
            if on_delivery is not None:
                future.add_callback(lambda _metadata: on_delivery(None))
                generation = self._generation
                future.add_errback(lambda exc: self._failed(exc, on_delivery, generation))
                return
            self._unflushed.append(future)
            if len(self._unflushed) >= _PRUNE_EVERY:
                # keep only what flush still has to report: failures and messages in flight
                self._unflushed = [f for f in self._unflushed if not f.is_done or f.failed()]

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every queued message is acknowledged; raise BusError if any was not.

        After a BusError the caller publishes its messages again (some may then arrive twice).
        """
        from kafka.errors import KafkaTimeoutError

        t = self._bus.tuning
        timeout = timeout_s if timeout_s is not None else t.delivery_timeout_s + t.request_timeout_s
        with self._lock:
            pending, self._unflushed = self._unflushed, []
            if self._producer is None:
                return
            try:
                self._producer.flush(timeout=timeout)
            except KafkaTimeoutError as exc:
                self._stale = True
                self._warn.warning(
                    "Kafka did not acknowledge %d messages within %.0f s", len(pending), timeout
                )
                raise BusError(
                    f"Kafka did not acknowledge {len(pending)} messages within {timeout:.0f} s"
                ) from exc
            except Exception as exc:
                raise BusError(f"Kafka flush failed: {_describe(exc)}") from exc
        failed = [f.exception for f in pending if f.is_done and f.failed()]
        unfinished = sum(1 for f in pending if not f.is_done)
        if failed or unfinished:
            self._stale = True  # as for callbacks: the caller publishes again, on a fresh producer
            first = failed[0] if failed else None
            detail = _describe(first) if first is not None else "not completed"
            self._warn.warning(
                "Kafka rejected %d of %d messages: %s", len(failed) + unfinished, len(pending), detail
            )
            raise BusError(
                f"{len(failed) + unfinished} of {len(pending)} messages were not delivered: {detail}"
            )

    def close(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
            self._unflushed = []
        if producer is not None:
            try:
                producer.close(timeout=5)
            except Exception:
                log.debug("closing the Kafka producer failed", exc_info=True)


class KafkaBusConsumer:
    """A consumer-group member that commits only what it was told to (see module docstring)."""

    def __init__(self, bus: KafkaBus, topics: list[Topic], group_id: str) -> None:
        if not topics:
            raise ValueError("a consumer needs at least one topic")
        self._bus = bus
        self._topics = topics
        self.group_id = group_id
        self._consumer: Any = None
        self._pending: dict[Any, int] = {}  # TopicPartition -> next offset to commit
        self.failing_since: float | None = None  # monotonic time of the first failed poll in a row
        # rebalances so far: after each, every assigned partition is read again from its committed offset
        self.assignments = 0
        self._rewind = False
        self._closed = False
        self._warn = _Throttled()

    def _get_consumer(self) -> Any:
        from kafka import ConsumerRebalanceListener

        if self._consumer is not None:
            return self._consumer
        bus, t = self._bus, self._bus.tuning
        bus.ensure_topics(self._topics)
        outer = self

        class _Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                # Records of revoked partitions that were polled but not committed go to the new owner.
                for tp in revoked:
                    outer._pending.pop(tp, None)

            def on_partitions_assigned(self, assigned: Any) -> None:
                outer.assignments += 1
                outer._rewind = True
                log.debug("group %s assigned %d partitions", outer.group_id, len(assigned))

        fetch_bytes = max(1_048_576, bus.max_message_bytes + _TOPIC_HEADROOM_BYTES)
        try:
            consumer = open_consumer(
                group_id=self.group_id,
                client_id=f"{bus.client_id}-{self.group_id}",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=int(t.session_timeout_s * 1000),
                heartbeat_interval_ms=int(t.heartbeat_interval_s * 1000),
                max_poll_interval_ms=int(t.max_poll_interval_s * 1000),
                max_partition_fetch_bytes=fetch_bytes,
                fetch_max_bytes=max(52_428_800, fetch_bytes),
                **bus._common_config(),
            )
            names = [bus.topic_name(topic) for topic in self._topics]
            # Join only once this client's metadata lists the topics' partitions.  Topics created moments
            # ago may be missing from it: the first assignment is then empty, and the rejoin that follows
            # the metadata update can be lost by kafka-python 3.0 (its join completes while need_rejoin()
            # already says False), leaving the member idle with no partitions.
            deadline = time.monotonic() + t.topic_ready_timeout_s
            while not all(consumer.partitions_for_topic(name) for name in names):
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.1)
            consumer.subscribe(names, listener=_Listener())
        except Exception as exc:
            raise BusError(f"cannot reach Kafka at {bus._servers()}: {_describe(exc)}") from exc
        self._consumer = consumer
        return consumer

    def poll(self, timeout_s: float, max_records: int = 500) -> list[BusRecord]:
        """Up to ``max_records`` records, in partition order; [] on timeout or while the broker is away."""
        if self._closed:
            raise BusError("consumer is closed")
        started = time.monotonic()
        try:
            consumer = self._get_consumer()
            batches = consumer.poll(timeout_ms=max(0, int(timeout_s * 1000)), max_records=max_records)
        except Exception as exc:
            self._warn.warning("Kafka poll for group %s failed (retrying): %s", self.group_id, _describe(exc))
            if self.failing_since is None:
                self.failing_since = time.monotonic()
            time.sleep(max(0.0, timeout_s - (time.monotonic() - started)))
            return []
        self.failing_since = None
        if self._rewind:
            self._rewind_to_committed(consumer)
            batches = {}
        out: list[BusRecord] = []
        for tp, records in batches.items():
            topic = self._bus.topic_of(tp.topic)
            for r in records:
                out.append(
                    BusRecord(
                        topic=topic,
                        key=r.key.decode("utf-8", errors="replace") if r.key is not None else None,
                        value=r.value if r.value is not None else b"",
                        partition=tp.partition,
                        offset=r.offset,
                        timestamp=datetime.fromtimestamp(r.timestamp / 1000.0, UTC),
                    )
                )
            if records:
                self._pending[tp] = max(self._pending.get(tp, 0), records[-1].offset + 1)
        if not out:
            # kafka-python returns at once, not after the timeout, while the member holds no partitions (a
            # hot spare, or a member the group dropped): never let the caller's loop spin on it
            time.sleep(max(0.0, timeout_s - (time.monotonic() - started)))
        return out

    def _rewind_to_committed(self, consumer: Any) -> None:
        """After a rebalance, read every assigned partition again from its committed offset.

        kafka-python keeps the position of a partition a member owned before and after a rebalance, so the
        records it returned since the last commit (a batch the caller dropped after a refused commit, or
        chained clips whose frames the caller forgets at a rebalance) would never come again; the
        ``Consumer`` contract is that uncommitted records are delivered again.  What this poll fetched is
        dropped: it comes again from the committed offsets."""
        try:
            for tp in consumer.assignment():
                committed = consumer.committed(tp)
                if committed is None:
                    consumer.seek_to_beginning(tp)  # nothing committed: from the start, as auto_offset_reset
                else:
                    consumer.seek(tp, committed)
                self._pending.pop(tp, None)
        except Exception as exc:  # the next poll tries again
            self._warn.warning("Kafka rewind for group %s failed (retrying): %s", self.group_id, _describe(exc))
            return
        self._rewind = False

    def commit(self, hold: Mapping[tuple[Topic, int], int] | None = None) -> None:
        """Commit every record returned by ``poll`` so far (of partitions this consumer still owns), the
        partitions in ``hold`` no further than its offsets (``common.bus.Consumer.commit``).

        Raises BusError when the commit fails: a timeout keeps the offsets for the next ``commit``; a
        rebalance drops them and raises CommitFailedError (those records are redelivered to the partitions'
        new owners).
        """
        from kafka import OffsetAndMetadata
        from kafka.errors import CommitFailedError as KafkaCommitFailedError
        from kafka.errors import RebalanceInProgressError

        if self._consumer is None or not self._pending:
            return
        owned = self._consumer.assignment()
        held = {(self._bus.topic_name(topic), partition): offset for (topic, partition), offset in (hold or {}).items()}
        offsets = {
            tp: OffsetAndMetadata(min(off, held.get((tp.topic, tp.partition), off)), "", -1)
            for tp, off in self._pending.items() if tp in owned
        }
        if not offsets:
            self._pending.clear()
            return
        try:
            self._consumer.commit(offsets, timeout_ms=int(self._bus.tuning.request_timeout_s * 1000))
        except (KafkaCommitFailedError, RebalanceInProgressError) as exc:
            self._pending.clear()
            raise CommitFailedError(
                f"commit failed after a rebalance; records will be redelivered: {_describe(exc)}"
            ) from exc
        except Exception as exc:
            self._warn.warning("Kafka commit for group %s failed: %s", self.group_id, _describe(exc))
            raise BusError(f"commit failed: {_describe(exc)}") from exc
        for tp, done in offsets.items():
            if self._pending.get(tp) == done.offset:
                del self._pending[tp]

    def close(self) -> None:
        """Leave the group without committing; uncommitted records go to the remaining members."""
        if self._closed:
            return
        self._closed = True
        consumer, self._consumer = self._consumer, None
        self._pending.clear()
        if consumer is not None:
            try:
                consumer.close(autocommit=False, timeout_ms=5000)
            except Exception:
                log.debug("closing the Kafka consumer failed", exc_info=True)
