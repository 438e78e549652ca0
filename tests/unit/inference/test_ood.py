"""The input description and the rolling per-camera check (inference.ood), and what the alert rules do
with results of a camera flagged out of distribution."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from alerts.rules import RuleEngine
from common.clock import FakeClock
from common.schemas import CameraHealthMessage, CameraState, ResultMessage
from common.settings import AlertRuleSettings
from inference.metadata import ModelMetadata
from inference.ood import (
    FEATURE_NAMES,
    CameraFamiliarity,
    InputDescription,
    clip_features,
    describe,
    read_description,
    write_description,
)
from tests.unit.alerts.conftest import T0, result


def flat_scenes(n: int, seed: int, noise: float = 0.0, base: float = 90.0) -> np.ndarray:
    """Drawn-looking clips: flat coloured backgrounds with a square 'person'; ``noise`` adds sensor grain."""
    rng = np.random.default_rng(seed)
    clips = np.empty((n, 20, 64, 64, 3), np.float32)
    for i in range(n):
        colour = base + rng.normal(0, 8, 3)
        clips[i] = colour
        x, y = rng.integers(5, 40, 2)
        clips[i, :, y : y + 16, x : x + 10] = colour[::-1] * 0.5
    clips += rng.normal(0, noise, clips.shape) if noise else 0
    return np.clip(clips, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def description() -> InputDescription:
    return describe(clip_features(flat_scenes(200, seed=1)), source="flat scenes")


def test_features_have_one_named_column_each_and_refuse_other_shapes() -> None:
    assert clip_features(flat_scenes(3, seed=0)).shape == (3, len(FEATURE_NAMES))
    with pytest.raises(ValueError, match=r"\(N, T, H, W, 3\)"):
        clip_features(np.zeros((20, 64, 64, 3), np.uint8))


def test_training_like_clips_are_within_and_grainy_grey_ones_beyond(description: InputDescription) -> None:
    alike = description.score(flat_scenes(50, seed=2))
    assert np.mean(alike > 1.0) < 0.05  # new clips of the same kind: within the 99.5th percentile, nearly all
    foreign = description.score(flat_scenes(20, seed=3, noise=25.0, base=180.0))
    assert np.all(foreign > 2.0), foreign  # texture and brightness the description never saw


def test_threshold_is_the_training_percentile(description: InputDescription) -> None:
    assert description.threshold == pytest.approx(description.distance_quantiles["99.5"])
    assert description.distance_quantiles["50"] < description.threshold <= description.distance_quantiles["max"]
    assert description.clips == 200


def test_too_few_clips_cannot_be_described() -> None:
    with pytest.raises(ValueError, match="at least"):
        describe(clip_features(flat_scenes(5, seed=0)))


def test_description_round_trips_through_the_sidecar(tmp_path: Path, description: InputDescription) -> None:
    model = tmp_path / "m.keras"
    model.write_bytes(b"not read")
    ModelMetadata(version="m-1", threshold=0.4).sidecar_path(model).write_text(ModelMetadata(version="m-1").to_json())
    assert read_description(model) is None  # an old sidecar: not described
    write_description(model, description)
    back = read_description(model)
    assert back is not None and back == description
    assert ModelMetadata.read(model).version == "m-1"  # the rest of the sidecar kept


@pytest.mark.parametrize("change", [{"version": 99}, {"feature_names": ["other"]}, {}])
def test_a_description_of_another_kind_is_not_used(description: InputDescription, change: dict) -> None:
    raw = {**description.to_dict(), **change} if change else {}
    assert InputDescription.from_dict(json.loads(json.dumps(raw))) is None


@pytest.mark.parametrize(
    ("scores", "decisions"),
    [
        ([0.5] * 4, [(3, False)]),  # decided once min_clips are in: not flagged
        ([2.0] * 4, [(3, True)]),
        ([2.0] * 4 + [0.5] * 6, [(3, True), (7, False)]),  # cleared under a quarter of the window
        ([2.0, 0.5] * 6, [(3, True)]),  # half beyond: stays flagged (clear only under a quarter)
        ([0.5, 0.5, 0.5, 2.0, 0.5, 2.0, 2.0], [(3, False), (5, True)]),  # half of the last four beyond
    ],
)
def test_camera_is_flagged_by_its_recent_clips_with_hysteresis(
    scores: list[float], decisions: list[tuple[int, bool]]
) -> None:
    familiarity = CameraFamiliarity(window=4, min_clips=4)
    seen = []
    for i, score in enumerate(scores):
        change = familiarity.observe("cam", "store", score)
        if change is not None:
            seen.append((i, change.out_of_distribution))
    assert seen == decisions


def flagged(index: int, probability: float, ood: bool | None) -> ResultMessage:
    return result(index, probability).model_copy(update={"out_of_distribution": ood})


@pytest.mark.parametrize(
    ("policy", "ood", "raised", "marked"),
    [
        ("mark", True, True, True),
        ("mark", False, True, False),
        ("mark", None, True, False),  # a model without a description: as before
        ("hold", True, False, False),
        ("hold", None, True, False),
        ("ignore", True, True, False),
    ],
)
def test_alerts_of_a_flagged_camera_follow_the_setting(policy: str, ood: bool | None, raised: bool, marked: bool) -> None:
    rules = RuleEngine(AlertRuleSettings(n_of_m=(2, 3)), 0.5, FakeClock(), out_of_distribution=policy)
    alerts = rules.on_result(flagged(0, 0.9, ood)) + rules.on_result(flagged(1, 0.9, ood))
    assert len(alerts) == int(raised)
    if raised:
        assert alerts[0].message.startswith("Unvalidated model: this model was not trained") is marked
    assert rules.held == int(policy == "hold" and ood is True)
    assert rules.on_result(flagged(2, 0.9, ood)) == []  # a held burst is consumed once, as a raised one is


def test_model_fit_health_events_are_not_outages() -> None:
    clock = FakeClock()
    rules = RuleEngine(AlertRuleSettings(offline_alert_after_s=1), 0.5, clock)

    def health(i: int, state: CameraState) -> CameraHealthMessage:
        return CameraHealthMessage(event_id=f"e{i}", store_id="s", camera_id="cam", state=state,
                                   at=T0.replace(second=i))

    rules.on_health(health(0, CameraState.OFFLINE))
    rules.on_health(health(1, CameraState.IN_DISTRIBUTION))  # inference's word on the model: not "back online"
    clock.advance(5)
    assert [a.alert_kind.value for a in rules.tick()] == ["camera_offline"]


def test_unset_fit_flag_keeps_the_old_wire_format() -> None:
    plain = result(0, 0.5)
    assert b"out_of_distribution" not in plain.to_bytes()
    assert ResultMessage.from_bytes(flagged(0, 0.5, True).to_bytes()).out_of_distribution is True
