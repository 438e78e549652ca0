"""Shadow mode: a candidate model scores every clip beside the active one, through the real inference worker
on the in-process bus, with two real (tiny) Keras models; it raises nothing, and a failing one stops nothing."""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from common.db import Database
from common.inprocess_bus import InProcessBus
from common.metrics import ERRORS
from common.schemas import ClipHeader, ClipMessage, ResultMessage, Topic
from common.settings import load_settings
from inference.metadata import clip_settings_problems
from inference.model import ClipClassifier, load_classifier
from inference.worker import InferenceWorker
from tests.tiny_models import save_tiny_model

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {
        "active": save_tiny_model(folder / "active.keras", weight=2.0, bias=-3.0, version="active-v1"),
        "candidate": save_tiny_model(folder / "candidate.keras", weight=-2.0, bias=3.0, version="cand-v2"),
    }


@pytest.fixture(scope="module")
def active(models: dict[str, Path]) -> ClipClassifier:
    return load_classifier(models["active"])


@pytest.fixture(scope="module")
def candidate(models: dict[str, Path]) -> ClipClassifier:
    return load_classifier(models["candidate"])


class FailingShadow:
    """A candidate whose predict raises, as a model with a broken custom layer would."""

    version = "broken-v3"
    threshold = 0.5
    input_shape = (20, 64, 64, 3)

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, clips: np.ndarray) -> np.ndarray:
        self.calls += 1
        raise RuntimeError("candidate exploded")


def publish_clips(bus: InProcessBus, brightness: dict[str, int]) -> None:
    publisher = bus.publisher()
    for index, (clip_id, level) in enumerate(brightness.items()):
        frames = np.full((20, 64, 64, 3), level, dtype=np.uint8)
        start = T0 + timedelta(seconds=index)
        header = ClipHeader(clip_id=clip_id, store_id="s", camera_id="cam", captured_at=start + timedelta(seconds=4),
                            start_at=start, source_start_s=index, source_end_s=index + 4, shape=frames.shape)
        publisher.publish(Topic.CLIPS, "cam", ClipMessage(header, frames).to_bytes())


def run_worker(worker: InferenceWorker, db: Database, expected: int) -> None:
    worker.setup()
    for _ in range(300):
        worker.step()
        if len(db.results()) >= expected and worker.bus.lag(worker.group_id) == 0:  # type: ignore[attr-defined]
            break
    worker.shutdown()


BRIGHTNESS = {"dark-0": 0, "dark-1": 10, "bright-0": 255, "bright-1": 240, "mid-0": 128}


def expected_p(weight: float, bias: float, level: int) -> float:
    return sigmoid(weight * 3 * level / 255.0 + bias)


def test_shadow_scores_are_stored_beside_the_active_ones_and_raise_nothing(
    db: Database, active: ClipClassifier, candidate: ClipClassifier
) -> None:
    bus = InProcessBus()
    publish_clips(bus, BRIGHTNESS)
    worker = InferenceWorker(active, bus, db, max_batch_size=4, max_wait_s=0.0, poll_timeout_s=0.01,
                             shadow=candidate, shadow_budget_s=120)  # a loaded CI machine's first call is slow
    run_worker(worker, db, len(BRIGHTNESS))
    rows = {r.clip_id: r for r in db.results()}
    assert set(rows) == set(BRIGHTNESS)
    for clip_id, level in BRIGHTNESS.items():
        row = rows[clip_id]
        assert row.probability == pytest.approx(expected_p(2.0, -3.0, level), abs=1e-3)
        assert row.shadow_probability == pytest.approx(expected_p(-2.0, 3.0, level), abs=1e-3)
        assert row.model_version == "active-v1" and row.shadow_model_version == "cand-v2"
        # suspicious (what the alert rules read) follows the active model only
        assert row.suspicious == (row.probability >= row.threshold)
    assert rows["bright-0"].suspicious and not rows["dark-0"].suspicious
    assert rows["dark-0"].shadow_probability > 0.9  # the candidate disagrees, and that raises nothing
    assert worker.stats.shadow_batches == worker.stats.batches >= 2 and worker.stats.shadow_failures == 0
    published = [ResultMessage.from_bytes(r.value) for r in bus.consumer([Topic.RESULTS], "check").poll(0.1)]
    assert {m.clip_id: m.shadow_model_version for m in published} == dict.fromkeys(BRIGHTNESS, "cand-v2")


def test_a_failing_shadow_model_leaves_the_active_results_intact(db: Database, active: ClipClassifier) -> None:
    bus = InProcessBus()
    publish_clips(bus, BRIGHTNESS)
    shadow = FailingShadow()
    errors = ERRORS.labels("infer", "shadow")
    before = errors._value.get()
    worker = InferenceWorker(active, bus, db, max_batch_size=4, max_wait_s=0.0, poll_timeout_s=0.01, shadow=shadow)
    run_worker(worker, db, len(BRIGHTNESS))
    rows = {r.clip_id: r for r in db.results()}
    assert set(rows) == set(BRIGHTNESS)
    assert all(r.shadow_probability is None and r.shadow_model_version is None for r in rows.values())
    assert rows["bright-0"].probability == pytest.approx(expected_p(2.0, -3.0, 255), abs=1e-3)
    assert worker.stats.shadow_failures == shadow.calls == worker.stats.batches >= 2
    assert errors._value.get() - before == shadow.calls
    assert bus.lag("aislewatch-inference") == 0  # every clip committed: nothing waits on the candidate


def test_results_without_a_candidate_are_the_bytes_they_were_before_shadow_mode() -> None:
    result = ResultMessage(clip_id="c", store_id="s", camera_id="cam", captured_at=T0, start_at=T0,
                           source_start_s=0, source_end_s=4, probability=0.3, threshold=0.5, model_version="v",
                           inferred_at=T0)
    assert b"shadow" not in result.to_bytes()
    shadowed = result.model_copy(update={"shadow_probability": 0.7, "shadow_model_version": "w"})
    assert ResultMessage.from_bytes(shadowed.to_bytes()).shadow_probability == 0.7


def test_a_candidate_of_another_clip_shape_is_refused(tmp_path: Path, active: ClipClassifier) -> None:
    other = save_tiny_model(tmp_path / "short.keras", weight=1.0, bias=0.0, version="short",
                            input_shape=(10, 64, 64, 3))
    settings = load_settings(None, overrides={"model": {"shadow_path": str(other)}})
    problems = clip_settings_problems(settings)
    assert len(problems) == 1
    assert "model.shadow_path" in problems[0] and "(10, 64, 64, 3)" in problems[0] and "(20, 64, 64, 3)" in problems[0]
    missing = load_settings(None, overrides={"model": {"shadow_path": str(tmp_path / "nope.keras")}})
    assert clip_settings_problems(missing) == [f"model.shadow_path ({tmp_path / 'nope.keras'}): no such model file"]

    class ShortShadow(FailingShadow):
        input_shape = (10, 64, 64, 3)

    with pytest.raises(ValueError, match="same clips"):
        InferenceWorker(active, InProcessBus(), None, shadow=ShortShadow())  # type: ignore[arg-type]


class StuckShadow(FailingShadow):
    """A candidate far slower than its budget: its predict blocks until the test lets it go."""

    version = "slow-v4"

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def predict(self, clips: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.release.wait(60)
        return np.full(len(clips), 0.5)


def test_a_slow_shadow_model_never_holds_up_the_active_results(db: Database, active: ClipClassifier) -> None:
    """The candidate is still busy with the first batch when every clip is stored and committed: the first
    batch waited only its budget, the later ones did not go to the candidate at all, and none waits on it."""
    bus = InProcessBus()
    publish_clips(bus, BRIGHTNESS)
    shadow = StuckShadow()
    timeouts, skipped = ERRORS.labels("infer", "shadow_timeout"), ERRORS.labels("infer", "shadow_skipped")
    before = timeouts._value.get(), skipped._value.get()
    worker = InferenceWorker(active, bus, db, max_batch_size=2, max_wait_s=0.0, poll_timeout_s=0.01, shadow=shadow,
                             shadow_budget_s=0.05)
    try:
        run_worker(worker, db, len(BRIGHTNESS))
        assert not shadow.release.is_set()  # (the candidate is still stuck on its first batch)
        rows = {r.clip_id: r for r in db.results()}
        assert set(rows) == set(BRIGHTNESS) and bus.lag("aislewatch-inference") == 0  # stored and committed
        assert all(r.shadow_probability is None and r.shadow_model_version is None for r in rows.values())
        assert rows["bright-0"].probability == pytest.approx(expected_p(2.0, -3.0, 255), abs=1e-3)
        assert shadow.calls == 1 and worker.stats.batches == 3  # batches of 2, 2 and 1 clips
        assert (worker.stats.shadow_timeouts, worker.stats.shadow_skipped) == (1, 2)
        assert (timeouts._value.get() - before[0], skipped._value.get() - before[1]) == (1, 2)
    finally:
        shadow.release.set()
