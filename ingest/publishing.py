"""At-least-once publishing for one camera: a message counts as published only once the bus acknowledged it.

Messages go out in the order they were made.  Each is sent with a delivery callback; until it is
acknowledged it stays *in flight* (at most ``max_in_flight``).  One that fails (the broker was down past
its delivery timeout, or refused it) is sent again after a capped backoff, once everything in flight has
settled and before anything newer; a message acknowledged while an older one failed stays where it is,
so after a failure the broker may hold a camera's clips slightly out of order (consumers order by capture
time and are idempotent by clip id).
Messages the bus cannot take yet wait in memory (at most ``max_waiting``); beyond that the oldest go to
the camera's :class:`~ingest.spool.Spool` on disk, and only past the spool's budget are clips dropped:
counted, logged, never silently.  Nothing here blocks capture for longer than one ``publish`` call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from common.bus import BusError, Publisher
from common.clock import Clock
from common.redaction import redact
from common.schemas import Topic
from common.settings import BusSettings
from ingest.capture import Backoff
from ingest.spool import Spool, SpooledMessage

log = logging.getLogger(__name__)

_UNSET: object = object()


@dataclass(slots=True, eq=False)
class Outgoing:
    """One message on its way to the bus."""

    seq: int
    topic: Topic
    value: bytes
    is_clip: bool
    spooled: SpooledMessage | None = None  # taken from the spool: its file goes once acknowledged
    outcome: object = field(default=_UNSET)  # None once acknowledged, the error when it failed
    attempt: int = 0  # which send the outcome belongs to (a late answer to an abandoned send is ignored)
    sent_at: float = 0.0  # monotonic time of the current send

    @property
    def done(self) -> bool:
        return self.outcome is not _UNSET


@dataclass(frozen=True, slots=True)
class PublishCounters:
    clips_published: int  # acknowledged by the bus
    clips_dropped: int  # past the spool's budget, or refused for good (too large)
    publish_retries: int  # messages sent again after a failure
    in_flight: int
    waiting: int  # in memory, not yet sent
    spooled: int  # on disk, not yet sent
    spool_bytes: int


def ack_timeout_for(bus: BusSettings) -> float:
    """How long a send may go unanswered before it counts as failed: the bus answers every send within
    its delivery timeout (delivered or expired), so waiting well past it means the producer is stuck."""
    return bus.delivery_timeout_s + 20.0


class PublishQueue:
    """Ordered, acknowledged, bounded publishing of one camera's messages (all keyed by ``key``)."""

    def __init__(
        self,
        publisher: Publisher,
        key: str,
        clock: Clock,
        *,
        spool: Spool | None = None,
        max_in_flight: int = 32,
        max_waiting: int = 32,
        backoff: Backoff | None = None,
        ack_timeout_s: float = 60.0,
    ) -> None:
        self.publisher = publisher
        self.key = key
        self.clock = clock
        self.spool = spool
        self.max_in_flight = max(1, max_in_flight)
        self.max_waiting = max(1, max_waiting)
        self.backoff = backoff or Backoff(initial_s=0.5, max_s=10.0)
        # An answer the bus owes for longer than this is not coming: a producer can stay stuck after an
        # outage with its messages neither delivered nor failed.  Set above the bus's delivery timeout.
        self.ack_timeout_s = ack_timeout_s
        self._lock = threading.Lock()  # delivery callbacks run on the bus's thread
        self._in_flight: deque[Outgoing] = deque()
        self._retry: deque[Outgoing] = deque()
        self._waiting: deque[Outgoing] = deque()
        self._local_seq = 0
        self._attempt = 0
        self._resume_at = 0.0
        self._clips_published = 0
        self._clips_dropped = 0
        self._retries = 0

    # -- input -------------------------------------------------------------------------------------
    def submit(self, topic: Topic, value: bytes, *, is_clip: bool) -> None:
        """Queue a message behind everything before it and send what the bus will take now."""
        self._waiting.append(Outgoing(self._next_seq(), topic, value, is_clip))
        self.pump()
        self._spill_excess()

    def _spill_excess(self) -> None:
        """Keep at most ``max_waiting`` unsent messages in memory: the oldest go to the spool."""
        while len(self._retry) + len(self._waiting) > self.max_waiting:
            older = self._retry and (not self._waiting or self._retry[0].seq < self._waiting[0].seq)
            self._spill((self._retry if older else self._waiting).popleft())

    def _next_seq(self) -> int:
        if self.spool is not None:
            return self.spool.next_seq()
        self._local_seq += 1
        return self._local_seq

    def _spill(self, item: Outgoing) -> None:
        if self.spool is None:
            self._drop(item, "no spool configured and the in-memory queue is full")
            return
        if item.spooled is not None and self.spool.put_back(item.spooled):
            return  # its file was still on disk: back in line, not a second copy
        try:
            dropped_by_budget = self.spool.add(item.seq, item.topic, item.value, item.is_clip)
        except OSError as exc:  # a full or failing disk must not stop the camera
            self._drop(item, f"cannot write to the spool: {exc}")
            return
        for dropped in dropped_by_budget:
            self._count_dropped(dropped.is_clip)
            log.warning("camera %s: spool over its %d MB budget, dropped the oldest clip (%s)", self.key,
                        self.spool.max_bytes // 1_000_000, dropped.topic.value)

    def _drop(self, item: Outgoing, why: str) -> None:
        self._count_dropped(item.is_clip)
        log.warning("camera %s: dropped a %s message: %s", self.key, item.topic.value, why)

    def _count_dropped(self, is_clip: bool) -> None:
        with self._lock:
            self._clips_dropped += int(is_clip)

    # -- output ------------------------------------------------------------------------------------
    def pump(self) -> None:
        """Settle acknowledged messages, then send the oldest unsent ones while the bus takes them."""
        self._settle()
        if self.clock.monotonic() < self._resume_at:
            return
        if self._retry and self._in_flight:
            return  # a send failed: let the rest settle first, so what failed goes again before anything new
        while len(self._in_flight) < self.max_in_flight:
            item = self._oldest_unsent()
            if item is None:
                break
            if not self._send(item):
                return
        self._settle()  # an in-process bus acknowledges at once
        if not self._retry and not self._in_flight:
            self._attempt = 0

    def _settle(self) -> None:
        """Count the acknowledged messages at the front, in order; failed ones wait to be sent again."""
        failure: object = None
        dropped: list[tuple[Outgoing, object]] = []
        self._abandon_overdue()
        with self._lock:
            while self._in_flight and self._in_flight[0].done:
                item = self._in_flight.popleft()
                if item.outcome is None:
                    self._clips_published += int(item.is_clip)
                    if item.spooled is not None:
                        Spool.delivered(item.spooled)
                    continue
                error, item.outcome = item.outcome, _UNSET
                if isinstance(error, BusError) and not error.retryable:
                    dropped.append((item, error))
                    continue
                failure = error
                self._retry.append(item)
        for item, error in dropped:
            self._drop(item, redact(str(error)))
            if item.spooled is not None:
                Spool.delivered(item.spooled)
        if failure is not None:
            self._back_off(redact(str(failure)))

    def _abandon_overdue(self) -> None:
        """When the oldest message in flight has waited past ``ack_timeout_s``, give up on every send in
        flight: they count as failed (a late answer is ignored) and the publisher starts afresh."""
        with self._lock:
            if not self._in_flight or self._in_flight[0].done:
                return
            waited = self.clock.monotonic() - self._in_flight[0].sent_at
            if waited < self.ack_timeout_s:
                return
            overdue = [item for item in self._in_flight if not item.done]
            for item in overdue:
                item.attempt += 1  # what the abandoned send may still answer goes nowhere
                item.outcome = BusError(f"not acknowledged within {self.ack_timeout_s:.0f} s")
        log.warning("camera %s: %d messages unanswered for %.0f s; sending them again on a fresh connection",
                    self.key, len(overdue), waited)
        self.publisher.reset()

    def _oldest_unsent(self) -> Outgoing | None:
        """The unsent message with the lowest sequence number: a failed one, a spooled one or a new one."""
        candidates = [q[0].seq for q in (self._retry, self._waiting) if q]
        spooled = self.spool.oldest_seq if self.spool is not None else None
        if spooled is not None:
            candidates.append(spooled)
        if not candidates:
            return None
        oldest = min(candidates)
        if self._retry and self._retry[0].seq == oldest:
            self._retries += 1
            return self._retry.popleft()
        if self._waiting and self._waiting[0].seq == oldest:
            return self._waiting.popleft()
        assert self.spool is not None
        message = self.spool.take()
        assert message is not None
        return Outgoing(message.seq, message.topic, message.value, message.is_clip, spooled=message)

    def _send(self, item: Outgoing) -> bool:
        """Hand one message to the bus; False (and the message back at the front) when it refused."""

        item.attempt += 1
        item.sent_at = self.clock.monotonic()
        attempt = item.attempt

        def on_delivery(error: BaseException | None) -> None:
            with self._lock:
                if item.attempt == attempt:
                    item.outcome = error

        try:
            self.publisher.publish(item.topic, self.key, item.value, on_delivery=on_delivery)
        except BusError as exc:
            if not exc.retryable:
                self._drop(item, redact(str(exc)))
                if item.spooled is not None:
                    Spool.delivered(item.spooled)
                return True
            self._retry.appendleft(item)
            self._back_off(redact(str(exc)))
            return False
        with self._lock:
            self._in_flight.append(item)
        return True

    def _back_off(self, why: str) -> None:
        delay = self.backoff.delay(self._attempt)
        self._attempt += 1
        self._resume_at = self.clock.monotonic() + delay
        if self._attempt == 1:
            log.warning("camera %s: the bus refused a message (%s); retrying with backoff", self.key, why)

    # -- shutdown ----------------------------------------------------------------------------------
    def close(self, timeout_s: float = 5.0) -> None:
        """Send what the bus will take within ``timeout_s``; whatever is still unacknowledged is spooled
        for the next process (or, without a spool, dropped and counted)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._resume_at = 0.0
            self.pump()
            if not self._in_flight and not self._retry and not self._waiting:
                break
            try:
                self.publisher.flush(max(0.1, deadline - time.monotonic()))
            except BusError:
                pass
            self._settle()
            if self._retry and self.spool is not None:
                break  # the bus is failing: keep the rest for the next process
        with self._lock:
            left = [*self._in_flight, *self._retry, *self._waiting]
            self._in_flight.clear()
            self._retry.clear()
            self._waiting.clear()
        for item in sorted(left, key=lambda i: i.seq):
            if item.spooled is not None:
                continue  # its file is still on disk (".sending"): the next process sends it again
            self._spill(item)

    # -- counters ----------------------------------------------------------------------------------
    def counters(self) -> PublishCounters:
        with self._lock:
            return PublishCounters(
                clips_published=self._clips_published,
                clips_dropped=self._clips_dropped,
                publish_retries=self._retries,
                in_flight=len(self._in_flight),
                waiting=len(self._waiting) + len(self._retry),
                spooled=len(self.spool) if self.spool is not None else 0,
                spool_bytes=self.spool.bytes if self.spool is not None else 0,
            )

    @property
    def unacknowledged(self) -> int:
        """Messages not yet acknowledged by the bus, in memory or on disk."""
        c = self.counters()
        return c.in_flight + c.waiting + c.spooled
