"""Run clips through the inference worker's batched path on whichever Keras backend this process has.

``python -m tests.unit.inference.backend_run MODEL CLIPS.npy WORKDIR`` loads MODEL as the worker does
(``classifier_from_settings``: device, buckets, fast path), publishes each clip of CLIPS.npy (uint8, N x 20 x 64 x 64 x 3)
on an in-process bus, runs an :class:`InferenceWorker` until every result is out, and prints one JSON line:
the backend, the fast path's kind and the probability of each clip id.  The backend is fixed when Keras is
first imported, so a test runs this in a subprocess with ``KERAS_BACKEND`` set.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def main(model: str, clips_path: str, workdir: str) -> int:
    import keras

    from common.db import Database
    from common.inprocess_bus import InProcessBus
    from common.schemas import ClipHeader, ClipMessage, ResultMessage, Topic
    from common.settings import load_settings
    from inference.model import classifier_from_settings
    from inference.worker import InferenceWorker

    clips = np.load(clips_path)
    settings = load_settings(None, overrides={"model": {"path": model, "device": "cpu"},
                                              "inference": {"max_batch_size": 4, "max_wait_ms": 0}})
    classifier = classifier_from_settings(settings.model, settings.inference)
    db = Database.from_url(f"sqlite:///{Path(workdir) / 'results.db'}")
    db.upgrade()
    bus = InProcessBus()
    publisher = bus.publisher()
    for index, frames in enumerate(clips):
        header = ClipHeader(clip_id=f"clip-{index}", store_id="s", camera_id="cam", captured_at=T0 + timedelta(seconds=4),
                            start_at=T0, source_start_s=0, source_end_s=4, shape=frames.shape)
        publisher.publish(Topic.CLIPS, "cam", ClipMessage(header, frames).to_bytes())
    worker = InferenceWorker.from_settings(settings, classifier, bus, db, threshold=0.5)
    worker.setup()
    for _ in range(10 * len(clips) + 20):
        worker.step()
        if worker.stats.results_written >= len(clips):
            break
    worker.shutdown()
    results = [ResultMessage.from_bytes(r.value) for r in bus.consumer([Topic.RESULTS], "check").poll(1.0, max_records=1000)]
    from common.model_input import quantize

    # the model's input precision on this backend: predict quantizes (so pre-quantized clips score the same),
    # and it matters (the backend's predictor fed the 8-bit clips directly scores otherwise)
    direct = classifier.predict(clips)
    prequantized = classifier.predict(quantize(clips, classifier.input_bits))
    unquantized = classifier._fast(clips) if classifier._fast is not None else direct
    print(json.dumps({
        "backend": keras.backend.backend(),
        "fast_kind": getattr(classifier, "fast_kind", "none"),
        "batches": worker.stats.batches,
        "probabilities": {r.clip_id: r.probability for r in results},
        "input_bits": classifier.input_bits,
        "prequantized_diff": float(np.abs(direct - prequantized).max()),
        "unquantized_diff": float(np.abs(direct - unquantized).max()),
    }))
    db.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:4]))
