"""The inference worker: clips from the bus → batches → model → result rows → result messages → commit.

Offsets are committed only after the batch's results are durably in the database and published, so
a crash anywhere before the commit redelivers the clips (at-least-once) and the idempotent result
insert (unique clip id) turns that into exactly one row per clip.

Nothing a message holds can stop the worker: a clip that cannot be decoded, or whose shape does not fit
the model, goes to the dead-letter topic with the reason and is committed with the batch.  A commit the
group refuses after a rebalance (``CommitFailedError``) is logged and the worker polls on: the records it
held go to whoever owns their partitions now, and their results are idempotent by clip id.

Shadow mode: a second, candidate classifier (``model.shadow_path``) scores every batch after the active
one, and its score is stored beside the active one's (``shadow_probability``, ``shadow_model_version``).
It raises nothing (results carry the active probability and threshold, which is all the alert rules
read), and a candidate that fails never stops the active one: its batch is stored with NULL shadow
scores, the failure logged and counted (``aislewatch_errors_total{stage="infer",kind="shadow"}``).  Nor does a
slow one hold it up: the candidate runs on its own thread and the batch waits for its scores at most
``model.shadow_budget_ms`` (or twice the active model's time on the batch, if longer); past that the batch is
stored with NULL shadow scores (``kind="shadow_timeout"``), and while the candidate is still busy with it, later
batches are not given to it (``kind="shadow_skipped"``): the candidate never queues up work or memory.

Out of distribution: when the model's sidecar describes its training inputs (``inference.ood``), every clip
of a batch is scored against that description (image statistics of the clip, about 2 ms a clip) and each
camera's last ``model.ood_window_clips`` clips decide whether it is flagged.  A camera's first decision and
every change after it go out as a camera health event (``out_of_distribution`` / ``in_distribution``) and
set ``aislewatch_camera_out_of_distribution``; while a camera is flagged its results carry
``out_of_distribution=True``, which the alert rules act on (``model.out_of_distribution``).  A model without
a description works as before: nothing is checked (results carry None) and the log says so once.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np

from common.bus import Bus, BusError, BusRecord, CommitFailedError, Consumer, Publisher
from common.clock import Clock, SystemClock
from common.db import Database, DatabaseUnavailable
from common.metrics import (
    BATCH_SECONDS,
    BATCH_SIZE,
    CAMERA_OOD_BEYOND,
    CAMERA_OUT_OF_DISTRIBUTION,
    CLIPS_INFERRED,
    DEAD_LETTERS,
    ERRORS,
    RESULTS_WRITTEN,
)
from common.model_input import FULL_BITS, quantize
from common.schemas import (
    OUT_OF_DISTRIBUTION_NOTE,
    CameraHealthMessage,
    CameraState,
    ChainedClip,
    ChainEnd,
    ClipMessage,
    DeadLetter,
    MessageError,
    ResultMessage,
    Topic,
    read_clip_topic,
)
from common.settings import Settings
from common.worker import Worker
from inference.batcher import Batcher
from inference.clip_chains import ClipChains
from inference.metadata import INPUT_SHAPE
from inference.ood import CameraFamiliarity, FamiliarityChange, InputDescription, read_description
from inference.reruns import RerunWatch


class Classifier(Protocol):
    """What the worker needs of a model (inference.model.ClipClassifier provides it).

    A classifier may also say which clip shape it takes (``input_shape``, as ClipClassifier does); one
    that does not takes the pipeline's ``INPUT_SHAPE``.
    """

    @property
    def threshold(self) -> float: ...

    @property
    def version(self) -> str: ...

    def predict(self, clips: np.ndarray) -> np.ndarray: ...


@dataclass
class InferenceStats:
    clips: int = 0
    batches: int = 0
    results_written: int = 0
    dead_letters: int = 0
    last_batch_size: int = 0
    commits_refused: int = 0
    shadow_batches: int = 0
    shadow_failures: int = 0  # batches the candidate model failed on (stored with NULL shadow scores)
    shadow_timeouts: int = 0  # batches the candidate did not score within its budget (NULL shadow scores)
    shadow_skipped: int = 0  # batches not given to the candidate: it was still busy with an earlier one
    ood_checked: int = 0  # clips scored against the model's input description
    ood_changes: int = 0  # camera health events about the model's fit published


class InferenceWorker(Worker):
    name = "infer"
    topics: tuple[Topic, ...] = (Topic.CLIPS,)

    def __init__(
        self,
        classifier: Classifier,
        bus: Bus,
        db: Database,
        *,
        max_batch_size: int = 32,
        max_wait_s: float = 0.2,
        threshold: float | None = None,
        group_id: str = "aislewatch-inference",
        clock: Clock | None = None,
        stop: threading.Event | None = None,
        poll_timeout_s: float = 0.2,
        name: str | None = None,
        input_shape: tuple[int, ...] | None = None,
        shadow: Classifier | None = None,
        shadow_budget_s: float = 0.5,
        description: InputDescription | None = None,
        familiarity: CameraFamiliarity | None = None,
        ood_margin: float = 2.0,
        chains: ClipChains | None = None,
    ) -> None:
        """``shadow_budget_s``: how long a batch's results wait for the candidate's scores at least (twice the
        active model's time on the batch when that is longer).  ``description``: the model's input description
        (None: no camera is checked); ``ood_margin``: how many times its threshold a clip's distance must pass."""
        if name:
            self.name = name
        super().__init__(stop)
        self.classifier = classifier
        self.bus = bus
        self.db = db
        self.threshold = classifier.threshold if threshold is None else threshold
        self.input_shape = tuple(input_shape or getattr(classifier, "input_shape", None) or INPUT_SHAPE)
        self.shadow = shadow
        if shadow is not None:
            shadow_shape = tuple(getattr(shadow, "input_shape", None) or INPUT_SHAPE)
            if shadow_shape != self.input_shape:
                raise ValueError(
                    f"the shadow model {shadow.version} takes clips of shape {shadow_shape}, the active model "
                    f"{classifier.version} {self.input_shape}: a candidate must take the same clips (model.shadow_path)"
                )
        self.shadow_budget_s = shadow_budget_s
        self._shadow_pool: ThreadPoolExecutor | None = None
        self._shadow_busy: Future[np.ndarray] | None = None  # a batch the candidate is still scoring
        self.group_id = group_id
        self.clock = clock or SystemClock()
        self.batcher: Batcher[tuple[BusRecord, ClipMessage]] = Batcher(max_batch_size, max_wait_s, self.clock)
        self.poll_timeout_s = poll_timeout_s
        self.stats = InferenceStats()
        self._consumer: Consumer | None = None
        self._publisher: Publisher | None = None
        self._dead: list[DeadLetter] = []
        self.description = description
        self.familiarity = familiarity or CameraFamiliarity()
        self.ood_margin = ood_margin
        self._health: list[CameraHealthMessage] = []
        self.reruns = RerunWatch(db, self.log)  # clips stored by an earlier run of a recording are said so
        # chained clips' frames, assembled into whole clips; shared by the threads of one process on the
        # in-process bus (``chains``), whose one partition they split between them
        self.chains = chains if chains is not None else ClipChains.for_database(db, self.stop_event)
        self._shared_chains = chains is not None
        self._assignments = 0  # the consumer's rebalances seen (each one re-reads from the committed offsets)
        self._uncommitted = False  # records polled since the last commit

    @classmethod
    def from_settings(
        cls, settings: Settings, classifier: Classifier, bus: Bus, db: Database, threshold: float,
        stop: threading.Event | None = None, name: str | None = None, shadow: Classifier | None = None,
        chains: ClipChains | None = None,
    ) -> InferenceWorker:
        """``threshold`` is the resolved one (``Settings.alert_threshold``) that marks a result suspicious;
        ``shadow`` the loaded candidate of ``model.shadow_path``, if any.  The batch size and wait are those of
        the classifier's device (``device``: "cpu" or "gpu"; CPU for a classifier that does not say)."""
        batching = settings.inference.batching(getattr(classifier, "device", "cpu"))
        return cls(
            classifier,
            bus,
            db,
            max_batch_size=batching.max_batch_size,
            max_wait_s=batching.max_wait_ms / 1000.0,
            threshold=threshold,
            group_id=settings.inference.group_id,
            stop=stop,
            name=name,
            shadow=shadow,
            shadow_budget_s=settings.model.shadow_budget_ms / 1000.0,
            description=_description_of(settings),
            familiarity=CameraFamiliarity(window=settings.model.ood_window_clips,
                                          min_clips=max(1, settings.model.ood_window_clips // 2)),
            ood_margin=settings.model.ood_margin,
            chains=chains,
        )

    def setup(self) -> None:
        self._consumer = self.bus.consumer(list(self.topics), self.group_id)
        self._publisher = self.bus.publisher()
        if self.description is None:
            self.log.warning(
                "model %s carries no description of its training inputs: cameras whose scenes are unlike them "
                "cannot be flagged out of distribution (`aislewatch model describe MODEL DATASET` adds one)",
                self.classifier.version,
            )

    def step(self) -> bool:
        assert self._consumer is not None
        wait = self.batcher.time_until_due()
        timeout = self.poll_timeout_s if wait is None else min(self.poll_timeout_s, wait)
        # threads sharing chains (the in-process bus) poll and apply in turn, so messages apply in offset order
        with self.chains.lock if self._shared_chains else contextlib.nullcontext():
            records = self._consumer.poll(timeout, max_records=self.batcher.room())
            self._uncommitted = self._uncommitted or bool(records)
            assignments = getattr(self._consumer, "assignments", 0)
            if assignments != self._assignments:
                # a rebalance: every partition is read again from its committed offset, so chains start afresh
                self._assignments = assignments
                self.chains.reset()
            for record in records:
                self._accept(record)
        if len(self.batcher) or self._dead or getattr(self._consumer, "failing_since", None) is not None:
            self.input_waiting()  # a batch is held, or the bus cannot be read
        else:
            self.progressed()  # idle
        if self.batcher.due() or (self._dead and not len(self.batcher)):
            batch = self.batcher.take()
            try:
                self._process(batch)
            except DatabaseUnavailable as exc:
                # only raised once stop is set: the batch stays uncommitted and is consumed again
                self.log.warning("stopping with %d clips unwritten: %s", len(batch), exc)
                return False
            self.progressed(idle=not len(self.batcher))
        elif self._uncommitted and not len(self.batcher):
            # records that made no clip to score (chain ends, chained clips waiting for an earlier message):
            # committed as far as the chains' holds allow, or the group's lag would never reach 0
            self._commit()
        return True

    def _accept(self, record: BusRecord) -> None:
        try:
            message = read_clip_topic(record.value)
        except MessageError as exc:
            self.log.warning("clip at %s offset %d (key %s) rejected: %s", record.topic, record.offset, record.key, exc)
            self._dead.append(DeadLetter.for_payload(record.topic.value, record.key, record.value, str(exc)))
            return
        if isinstance(message, ChainedClip | ChainEnd):
            ready, dead = self.chains.accept(record, message)
            self._dead.extend(dead)
        else:
            ready = [(record, message)]
        for clip_record, clip in ready:
            if self._fits(clip_record, clip):
                self.batcher.add((clip_record, clip))

    def _fits(self, record: BusRecord, clip: ClipMessage) -> bool:
        """Whether the clip's shape is the model's input; a dead letter saying how to fix it if not."""
        shape = tuple(clip.frames.shape)
        if shape != self.input_shape:
            h = clip.header
            reason = (
                f"clip shape {shape} does not fit the model's input {self.input_shape}: clip {h.clip_id} of "
                f"camera {h.camera_id} (set that camera's clip.frames and clip.size to match the model)"
            )
            self.log.warning("clip at %s offset %d rejected: %s", record.topic, record.offset, reason)
            self._dead.append(DeadLetter.for_payload(record.topic.value, record.key, record.value, reason))
            return False
        return True

    def _process(self, batch: list[tuple[BusRecord, ClipMessage]]) -> None:
        """Classify, store, publish, then commit; retries (never drops) while the database or bus is down."""
        results: list[ResultMessage] = []
        if batch:
            frames = np.stack([clip.frames for _, clip in batch])
            started = time.perf_counter()
            probabilities = self.classifier.predict(frames)
            active_s = time.perf_counter() - started
            BATCH_SECONDS.observe(active_s)
            BATCH_SIZE.observe(len(batch))
            shadow_scores = self._shadow_scores(frames, batch, max(self.shadow_budget_s, 2 * active_s))
            now = self.clock.now()
            flags = self._check_fit(frames, batch, now)
            for (_, clip), probability, shadow_p, flag in zip(batch, probabilities, shadow_scores, flags, strict=True):
                h = clip.header
                results.append(
                    ResultMessage(
                        clip_id=h.clip_id,
                        store_id=h.store_id,
                        camera_id=h.camera_id,
                        captured_at=h.captured_at,
                        start_at=h.start_at,
                        source_start_s=h.source_start_s,
                        source_end_s=h.source_end_s,
                        probability=float(np.clip(probability, 0.0, 1.0)),
                        threshold=self.threshold,
                        model_version=self.classifier.version,
                        snapshot_path=h.snapshot_path,
                        inferred_at=now,
                        shadow_probability=shadow_p,
                        shadow_model_version=None if shadow_p is None else self.shadow_version,
                        out_of_distribution=flag,
                    )
                )
            written = self.db.retrying(lambda: self.db.write_results(results), self.stop_event, "result write")
            self.stats.results_written += written
            if written < len(results):
                try:
                    self.reruns.observe(results, written)
                except Exception as exc:  # only the notice is lost: the results are stored, offsets go on
                    self.log.warning("could not tell re-run clips from redeliveries: %s", exc)
            RESULTS_WRITTEN.inc(written)
            CLIPS_INFERRED.inc(len(batch))
            self.stats.clips += len(batch)
            self.stats.batches += 1
            self.stats.last_batch_size = len(batch)
        self._publish_and_commit(results)

    def _check_fit(self, frames: np.ndarray, batch: list[tuple[BusRecord, ClipMessage]], now: datetime) -> list[bool | None]:
        """Each clip's camera flag after this clip (None without a description); a health event per change."""
        if self.description is None:
            return [None] * len(batch)
        # scored as the model sees them: a camera may send more bits than the model takes (clip.bits)
        seen = quantize(frames, int(getattr(self.classifier, "input_bits", FULL_BITS)))
        scores = self.description.score(seen) / self.ood_margin
        flags: list[bool | None] = []
        for (_, clip), score in zip(batch, scores, strict=True):
            h = clip.header
            change = self.familiarity.observe(h.camera_id, h.store_id, float(score))
            if change is not None:
                self._fit_changed(change, now)
            fraction = self.familiarity.beyond_fraction(h.camera_id)
            if fraction is not None:
                CAMERA_OOD_BEYOND.labels(h.camera_id).set(fraction)
            flags.append(self.familiarity.flagged(h.camera_id))
        self.stats.ood_checked += len(batch)
        return flags

    def _fit_changed(self, change: FamiliarityChange, now: datetime) -> None:
        CAMERA_OUT_OF_DISTRIBUTION.labels(change.camera_id).set(1.0 if change.out_of_distribution else 0.0)
        self.stats.ood_changes += 1
        summary = (f"{change.beyond_fraction:.0%} of its last {change.clips} clips are beyond the model's input "
                   f"description (median {change.median_score:.2f} of the limit)")
        if change.out_of_distribution:
            detail = f"{OUT_OF_DISTRIBUTION_NOTE}: {summary}"
            self.log.warning("camera %s (store %s): %s", change.camera_id, change.store_id, detail)
        else:
            detail = f"scenes like the model's training inputs: {summary}"
            self.log.info("camera %s (store %s): %s", change.camera_id, change.store_id, detail)
        self._health.append(CameraHealthMessage(
            event_id=uuid.uuid4().hex, store_id=change.store_id, camera_id=change.camera_id,
            state=CameraState.OUT_OF_DISTRIBUTION if change.out_of_distribution else CameraState.IN_DISTRIBUTION,
            at=now, detail=detail,
        ))

    @property
    def shadow_version(self) -> str | None:
        """The candidate model's version, None without one."""
        return None if self.shadow is None else self.shadow.version

    def _shadow_scores(
        self, frames: np.ndarray, batch: list[tuple[BusRecord, ClipMessage]], budget_s: float
    ) -> list[float | None]:
        """The candidate's probability for each clip of the batch; all None without a candidate, when it fails
        (an exception, or not one finite score per clip), when it takes longer than ``budget_s``, or while it is
        still busy with an earlier batch: logged and counted, never raised."""
        none: list[float | None] = [None] * len(batch)
        if self.shadow is None:
            return none
        if self._shadow_busy is not None and not self._shadow_busy.done():
            self.stats.shadow_skipped += 1
            ERRORS.labels("infer", "shadow_skipped").inc()
            return none
        self._shadow_busy = None
        if self._shadow_pool is None:
            self._shadow_pool = ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-shadow")
        future = self._shadow_pool.submit(self.shadow.predict, frames)
        try:
            try:
                raw = future.result(timeout=budget_s)
            except FutureTimeout:
                self._shadow_busy = future  # still running: later batches skip the candidate until it is done
                self.stats.shadow_timeouts += 1
                ERRORS.labels("infer", "shadow_timeout").inc()
                timeouts = self.stats.shadow_timeouts
                if timeouts <= 10 or timeouts % 100 == 0:
                    self.log.warning(
                        "shadow model %s took longer than %.0f ms on a batch of %d clips; their shadow scores are "
                        "stored empty, the active results go on (%d batches timed out so far; model.shadow_budget_ms)",
                        self.shadow.version, budget_s * 1000, len(batch), timeouts,
                    )
                return none
            scores = np.asarray(raw, dtype=np.float64).reshape(-1)
            if scores.shape != (len(batch),) or not np.all(np.isfinite(scores)):
                raise ValueError(f"expected {len(batch)} finite scores, got shape {scores.shape}")
        except Exception as exc:
            self.stats.shadow_failures += 1
            ERRORS.labels("infer", "shadow").inc()
            failures = self.stats.shadow_failures
            if failures > 10 and failures % 100:
                return [None] * len(batch)  # a broken candidate logs its first ten failures, then every 100th
            first = batch[0][1].header
            self.log.warning(
                "shadow model %s failed on a batch of %d clips (first %s of camera %s): %s; their shadow scores "
                "are stored empty, the active results are unaffected (%d failed batches so far)",
                self.shadow.version, len(batch), first.clip_id, first.camera_id, exc, failures, exc_info=failures == 1,
            )
            return [None] * len(batch)
        self.stats.shadow_batches += 1
        return [float(p) for p in np.clip(scores, 0.0, 1.0)]

    def _publish_and_commit(self, results: list[ResultMessage]) -> None:
        assert self._publisher is not None and self._consumer is not None
        delay = 0.2
        while True:
            try:
                for result in results:
                    self._publisher.publish(Topic.RESULTS, result.camera_id, result.to_bytes())
                for dead in self._dead:
                    self._publisher.publish(Topic.DEAD_LETTER, dead.key, dead.to_bytes())
                for health in self._health:
                    self._publisher.publish(Topic.CAMERA_HEALTH, health.camera_id, health.to_bytes())
                self._publisher.flush(timeout_s=30)
                break
            except BusError as exc:
                ERRORS.labels("infer", "bus").inc()
                self.log.warning("publishing results failed (%s); retrying in %.1fs", exc, delay)
                if self.stop_event.wait(delay):
                    return  # not committed: the clips will be redelivered
                delay = min(delay * 2, 30.0)
        for dead in self._dead:
            DEAD_LETTERS.labels(dead.source_topic).inc()
        self.stats.dead_letters += len(self._dead)
        self._dead.clear()
        self._health.clear()
        self._commit()

    def _commit(self) -> None:
        """Commit what was polled so far; a refused commit never stops the worker (see the module docstring)."""
        assert self._consumer is not None
        try:
            self._consumer.commit(self.chains.holds())
            self._uncommitted = False
        except CommitFailedError as exc:
            ERRORS.labels("infer", "bus").inc()
            self.stats.commits_refused += 1
            dropped = len(self.batcher.take())
            self.chains.reset()  # what they kept came from records that will be delivered again
            self.log.warning(
                "commit refused after a consumer-group rebalance (%s); dropped %d clips in flight, the "
                "partitions' owners get the uncommitted clips again; polling on", exc, dropped,
            )
        except BusError as exc:
            ERRORS.labels("infer", "bus").inc()
            self.log.warning("commit failed (%s); its offsets go with the next commit", exc)

    def shutdown(self) -> None:
        """Finish the pending batch (so its offsets can be committed), then leave the group."""
        try:
            if len(self.batcher) or self._dead:
                self._process(self.batcher.take())
        except Exception:
            self.log.exception("could not finish the last batch; it will be redelivered")
        finally:
            self.reruns.report()
            if self._shadow_pool is not None:  # a candidate still busy finishes on its own; nothing waits for it
                self._shadow_pool.shutdown(wait=False, cancel_futures=True)
            if self._consumer is not None:
                self._consumer.close()
            if self._publisher is not None:
                self._publisher.close()


def _description_of(settings: Settings) -> InputDescription | None:
    """The active model's input description; None (the model works as before) when it has none or it
    cannot be read."""
    try:
        return read_description(settings.model.path)
    except (ValueError, KeyError, TypeError) as exc:
        import logging

        logging.getLogger(__name__).warning("model %s: input description unreadable (%s); not used",
                                            settings.model.path, exc)
        return None
