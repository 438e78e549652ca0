"""The scale simulation's child processes: camera publishers and inference workers with a stand-in model.

``publisher_main``: one process simulating many cameras.  For each step the parent sends the cameras (id,
store, template, motion schedule) and the step's start; the process replays each camera's template sequence
(``scale_messages.Rewriter``) through the real ``common.kafka_bus.KafkaBus`` publisher, one message per
stride while the camera has motion, and answers with one record per clip: when it was due, when it was
published, when Kafka acknowledged it, and its size.

``infer_main``: the real ``inference.worker.InferenceWorker`` (consumer group, batching, decoding, result
rows in PostgreSQL, result messages, commits) with ``StandInClassifier`` in place of the ConvLSTM: it
sleeps what the real fused path takes on a batch here and answers from the template's ground truth.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tests.bench.scale_messages import NORMAL_PROBABILITY, Rewriter, Template, frames_digest

# -- the motion schedule -----------------------------------------------------------------------------------


def motion_bursts(
    rng: np.random.Generator, duration_s: float, burst_s: tuple[float, float], duty: float = 0.5
) -> list[tuple[float, float]]:
    """(start, end) intervals with motion within [0, duration_s): bursts and still gaps of lengths drawn
    uniformly from ``burst_s`` (gaps scaled so motion fills ``duty`` of the time on average); the camera
    starts in motion with probability ``duty``, at a random point of its first interval."""
    low, high = burst_s
    gap_scale = (1.0 - duty) / duty
    moving = bool(rng.random() < duty)
    t = -float(rng.uniform(0.0, 2.0 * high * max(1.0, gap_scale)))  # started earlier: in a random phase at 0
    bursts = []
    while t < duration_s:
        length = float(rng.uniform(low, high)) * (1.0 if moving else gap_scale)
        if moving and t + length > 0:
            bursts.append((max(0.0, t), min(duration_s, t + length)))
        t += length
        moving = not moving
    return bursts


@dataclass(frozen=True)
class SimCamera:
    camera_id: str
    store_id: str
    template: str  # name of the template sequence it replays
    bursts: tuple[tuple[float, float], ...]
    phase_s: float  # where on the stride grid its clips fall

    def due_times(self, stride_s: float) -> list[float]:
        """Offsets (from the step's start) at which it publishes: one clip per stride during motion."""
        out = []
        for start, end in self.bursts:
            k = math.ceil((start - self.phase_s) / stride_s)
            while (t := self.phase_s + k * stride_s) < end:
                out.append(t)
                k += 1
        return out


# -- publishers --------------------------------------------------------------------------------------------


def publisher_main(conn: Any, bus_settings: dict[str, Any], templates: dict[str, str], stride_s: float) -> None:
    """Serve steps until the parent sends ``None`` (see the module docstring)."""
    from common.kafka_bus import KafkaBus
    from common.schemas import Topic
    from common.settings import BusSettings

    logging.basicConfig(level=logging.WARNING)
    loaded = {name: Template.load(Path(path)) for name, path in templates.items()}
    bus = KafkaBus.from_settings(BusSettings(**bus_settings))
    publisher = bus.publisher()
    conn.send(("ready", os.getpid()))
    try:
        while (request := conn.recv()) is not None:
            cameras: Sequence[SimCamera] = request["cameras"]
            records = _publish_step(publisher, Topic.CLIPS, cameras, loaded, stride_s, request["start_at"])
            conn.send(("done", records))
    finally:
        publisher.close()
        bus.close()


def _publish_step(
    publisher: Any, topic: Any, cameras: Sequence[SimCamera], templates: dict[str, Template],
    stride_s: float, start_at: float,
) -> list[dict[str, Any]]:
    """Publish every camera's clips at their due times (late ones as soon as possible); one record each."""
    queue: list[tuple[float, int, int]] = []  # (due wall time, camera index, message index)
    for index, camera in enumerate(cameras):
        dues = camera.due_times(stride_s)
        if len(dues) > len(templates[camera.template].messages):
            raise ValueError(
                f"camera {camera.camera_id} publishes {len(dues)} clips this step but template "
                f"{camera.template} holds {len(templates[camera.template].messages)}: render a longer stream"
            )
        queue.extend((start_at + due, index, k) for k, due in enumerate(dues))
    heapq.heapify(queue)
    rewriters = [Rewriter(c.camera_id, c.store_id) for c in cameras]
    records: list[dict[str, Any]] = []
    lock = threading.Lock()
    errors: list[str] = []

    def acknowledged(record: dict[str, Any]) -> Any:
        def callback(error: BaseException | None) -> None:
            with lock:
                if error is None:
                    record["acked"] = time.time()
                else:
                    errors.append(str(error))
        return callback

    while queue:
        due, index, k = heapq.heappop(queue)
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        camera = cameras[index]
        now = time.time()
        value, clip_id = rewriters[index].rewrite(
            templates[camera.template].messages[k], datetime.fromtimestamp(now, UTC))
        record = {"clip_id": clip_id, "camera_id": camera.camera_id, "due": due, "published": now,
                  "acked": None, "bytes": len(value), "index": k}
        records.append(record)
        publisher.publish(topic, camera.camera_id, value, on_delivery=acknowledged(record))
    try:
        publisher.flush(timeout_s=60)
    except Exception as exc:  # recorded: the parent counts what was not acknowledged
        errors.append(str(exc))
    if errors:
        records.append({"errors": errors[:5], "error_count": len(errors)})
    return records


# -- inference workers with a stand-in model ---------------------------------------------------------------


class StandInClassifier:
    """Stands in for the ConvLSTM: costs what the real fused path costs here, answers from the template.

    ``predict`` sleeps ``bucket_cost_s[bucket]`` for the power-of-two bucket the fused path pads the batch to
    (``bench_scale.bucket_costs``), less the time it spent recognising the clips, and gives each clip the
    probability the template's ground truth assigns it (``scale_messages.standin_scores``)."""

    def __init__(self, scores: dict[str, float], bucket_cost_s: dict[int, float], threshold: float,
                 name: str = "") -> None:
        self.scores = scores
        self.name = name
        self.bucket_cost_s = dict(sorted(bucket_cost_s.items()))
        self._threshold = threshold
        self.unknown = 0
        self.slept_s = 0.0

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def version(self) -> str:
        return f"stand-in:{self.name}" if self.name else "stand-in"  # rows tell which worker stored them

    def cost_s(self, n: int) -> float:
        for bucket, cost in self.bucket_cost_s.items():
            if bucket >= n:
                return cost
        largest, cost = max(self.bucket_cost_s.items())
        return cost * n / largest

    def predict(self, clips: np.ndarray) -> np.ndarray:
        began = time.perf_counter()
        out = []
        for clip in clips:
            score = self.scores.get(frames_digest(clip))
            if score is None:
                self.unknown += 1
                score = NORMAL_PROBABILITY
            out.append(score)
        rest = self.cost_s(len(clips)) - (time.perf_counter() - began)
        if rest > 0:
            time.sleep(rest)
        self.slept_s += max(0.0, rest)
        return np.asarray(out, dtype=np.float32)


def infer_main(config: str, env: dict[str, str], scores_path: str, bucket_cost_s: dict[int, float], name: str,
               stop: Any) -> None:
    """One inference worker process; runs until ``stop`` (a multiprocessing event) is set."""
    import pickle

    os.environ.update(env)
    from common.db import Database
    from common.kafka_bus import KafkaBus
    from common.settings import load_settings
    from inference.worker import InferenceWorker

    logging.basicConfig(level=logging.WARNING, format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s")
    settings = load_settings(Path(config))
    scores = pickle.loads(Path(scores_path).read_bytes())
    threshold = settings.alert_threshold(0.5)
    classifier = StandInClassifier(scores, bucket_cost_s, threshold, name=name)
    bus = KafkaBus.from_settings(settings.bus)
    db = Database.from_settings(settings)
    halt = threading.Event()
    threading.Thread(target=lambda: (stop.wait(), halt.set()), daemon=True).start()
    worker = InferenceWorker.from_settings(settings, classifier, bus, db, threshold, stop=halt, name=name)
    try:
        worker.run()
    finally:
        logging.getLogger(name).warning(
            "%s: %d clips in %d batches, %d results written, %d dead letters, %d clips unknown to the stand-in, "
            "%.1f s slept", name, worker.stats.clips, worker.stats.batches, worker.stats.results_written,
            worker.stats.dead_letters, classifier.unknown, classifier.slept_s)
        bus.close()
        db.close()
