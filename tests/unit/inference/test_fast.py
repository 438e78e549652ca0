"""The fast inference path equals Keras: fused and decomposed ConvLSTM graphs, buckets/padding, fallbacks, XLA."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from common.model_input import quantize
from inference import fast
from inference.fast import MATCH_TOLERANCE, bucket_for, bucket_sizes, build_fast_predictor, linear_layers
from inference.model import INPUT_SHAPE, ClipClassifier, build_convlstm, preprocess, probability_of_positive

BUNDLED = Path(__file__).resolve().parents[3] / "inference" / "bundled" / "convlstm.keras"


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(5)
    return build_convlstm()


def random_clips(n: int, shape: tuple[int, ...] = INPUT_SHAPE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def keras_probability(model: keras.Model, clips: np.ndarray) -> np.ndarray:
    return probability_of_positive(model.predict(preprocess(clips), verbose=0))


@pytest.mark.parametrize(
    ("max_batch", "buckets"),
    [(1, (1,)), (2, (1, 2)), (5, (1, 2, 4, 5)), (32, (1, 2, 4, 8, 16, 32))],
)
def test_bucket_sizes(max_batch: int, buckets: tuple[int, ...]) -> None:
    assert bucket_sizes(max_batch) == buckets


@pytest.mark.parametrize(("n", "bucket"), [(1, 1), (3, 4), (5, 8), (8, 8), (9, 16), (32, 32)])
def test_bucket_for_pads_to_next_bucket(n: int, bucket: int) -> None:
    assert bucket_for(n, bucket_sizes(32)) == bucket


def test_bucket_for_refuses_oversize() -> None:
    with pytest.raises(ValueError):
        bucket_for(33, bucket_sizes(32))


def assert_matches_keras_at_batch_sizes(predictor: fast.FastPredictor, model: keras.Model) -> None:
    clips = random_clips(9, seed=1)
    expected = keras_probability(model, clips)
    for n in (1, 3, 4, 9):  # 3 pads to bucket 4; 9 is 4 + 4 + 1
        got = predictor(clips[:n])
        assert got.shape == (n,) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected[:n], atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("lanes", [1, 2])
def test_fused_graph_matches_keras_for_several_batch_sizes(
    model: keras.Model, lanes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fast, "default_lanes", lambda: lanes)
    predictor = build_fast_predictor(model, max_batch_size=4, jit_compile=False)
    assert predictor.kind == "tf-fused"
    assert_matches_keras_at_batch_sizes(predictor, model)


@pytest.mark.slow
def test_decomposed_graph_matches_keras_for_several_batch_sizes(model: keras.Model) -> None:
    predictor = build_fast_predictor(model, max_batch_size=4, jit_compile=False, fuse=False)
    assert predictor.kind == "tf-decomposed"
    assert_matches_keras_at_batch_sizes(predictor, model)


def small_convlstm(padding: str, return_sequences_last: bool, activation: str) -> keras.Model:
    """Another linear ConvLSTM stack: 'same' padding, last layer returning only its final state."""
    keras.utils.set_random_seed(9)
    inputs = keras.Input(shape=INPUT_SHAPE)
    x = keras.layers.ConvLSTM2D(3, (3, 3), padding=padding, activation=activation, return_sequences=True)(inputs)
    x = keras.layers.MaxPooling3D((1, 4, 4), padding="same")(x)
    x = keras.layers.ConvLSTM2D(5, (3, 3), padding=padding, return_sequences=return_sequences_last)(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))


@pytest.mark.parametrize(
    ("padding", "return_sequences_last", "activation"),
    [("same", False, "tanh"), ("valid", True, "relu"), ("same", True, "tanh")],
)
def test_decomposition_handles_padding_and_return_sequences(
    padding: str, return_sequences_last: bool, activation: str
) -> None:
    m = small_convlstm(padding, return_sequences_last, activation)
    clips = random_clips(3, seed=2)  # pads to bucket 4
    for fuse, kind in ((True, "tf-fused"), (False, "tf-decomposed")):
        predictor = build_fast_predictor(m, max_batch_size=4, jit_compile=False, warmup=False, fuse=fuse)
        assert predictor.kind == kind
        np.testing.assert_allclose(predictor(clips), keras_probability(m, clips), atol=1e-5)


def test_non_linear_model_falls_back_to_compiled_model_call() -> None:
    keras.utils.set_random_seed(4)
    inputs = keras.Input(shape=INPUT_SHAPE)
    a = keras.layers.ConvLSTM2D(2, (3, 3), padding="same", return_sequences=False)(inputs)
    b = keras.layers.ConvLSTM2D(2, (3, 3), padding="same", return_sequences=False)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Add()([a, b]))
    m = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    assert linear_layers(m) is None
    predictor = build_fast_predictor(m, max_batch_size=2, jit_compile=False)
    assert predictor.kind == "tf-model"
    clips = random_clips(3, seed=6)
    np.testing.assert_allclose(predictor(clips), keras_probability(m, clips), atol=1e-5)


def test_unsupported_convlstm_is_not_decomposed() -> None:
    inputs = keras.Input(shape=INPUT_SHAPE)
    x = keras.layers.ConvLSTM2D(2, (3, 3), go_backwards=True, return_sequences=False)(inputs)
    m = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(x)))
    predictor = build_fast_predictor(m, max_batch_size=1, jit_compile=False)
    assert predictor.kind == "tf-model"
    clips = random_clips(1, seed=8)
    np.testing.assert_allclose(predictor(clips), keras_probability(m, clips), atol=1e-5)


@pytest.mark.slow
def test_xla_path_matches_keras_including_non_bucket_size(model: keras.Model) -> None:
    predictor = build_fast_predictor(model, max_batch_size=8, jit_compile=True, warmup=False, fuse=False)
    assert predictor.kind == "tf-decomposed-xla"
    clips = random_clips(13, seed=12)
    expected = keras_probability(model, clips)
    for n in (1, 5, 13):  # buckets 1, 8, 8+8: two XLA compiles
        np.testing.assert_allclose(predictor(clips[:n]), expected[:n], atol=1e-5)


def logit_model(layers: list[keras.layers.Layer]) -> keras.Model:
    """A ConvLSTM chain ending in a linear unit squashed by a steep sigmoid, so drift in the chain shows."""
    keras.utils.set_random_seed(11)
    inputs = keras.Input(shape=INPUT_SHAPE)
    x = inputs
    for layer in layers:
        x = layer(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(1)(x)
    return keras.Model(inputs, keras.layers.Activation("sigmoid")(keras.layers.Rescaling(0.2)(x)))


FUSED_CASES = {
    "hard_sigmoid gates, relu, no pooling": lambda: [
        keras.layers.ConvLSTM2D(4, (3, 3), recurrent_activation="hard_sigmoid", activation="relu",
                                return_sequences=True),
        keras.layers.ConvLSTM2D(2, (3, 3), strides=1, return_sequences=False),
    ],
    "5x5 same, average pooling and dropout between": lambda: [
        keras.layers.ConvLSTM2D(3, (5, 5), padding="same", return_sequences=True),
        keras.layers.TimeDistributed(keras.layers.Dropout(0.5)),
        keras.layers.AveragePooling3D((1, 4, 4)),
        keras.layers.ConvLSTM2D(4, (3, 3), padding="same", return_sequences=True),
        keras.layers.MaxPooling3D((1, 3, 3), strides=(1, 2, 2), padding="valid"),
    ],
    "no bias, even kernel, pooling then TimeDistributed dense": lambda: [
        keras.layers.ConvLSTM2D(3, (2, 2), padding="same", use_bias=False, return_sequences=True),
        keras.layers.MaxPooling3D((1, 8, 8)),
        keras.layers.TimeDistributed(keras.layers.Flatten()),
        keras.layers.TimeDistributed(keras.layers.Dense(3, activation="tanh")),
    ],
}


@pytest.mark.parametrize("case", sorted(FUSED_CASES))
def test_fused_graph_matches_keras_on_other_chains(case: str) -> None:
    m = logit_model(FUSED_CASES[case]())
    predictor = build_fast_predictor(m, max_batch_size=2, jit_compile=False, warmup=False)
    assert predictor.kind == "tf-fused"
    clips = random_clips(2, seed=3)
    expected = keras_probability(m, clips)
    assert float(np.ptp(expected)) > 1e-3 or float(np.min(np.abs(expected - 0.5))) > 1e-3  # not saturated
    np.testing.assert_allclose(predictor(clips), expected, atol=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(not BUNDLED.is_file(), reason="no bundled model in this checkout")
def test_fused_path_matches_keras_on_the_bundled_model_and_keeps_its_decisions() -> None:
    classifier = ClipClassifier.load(BUNDLED, fast=True, max_batch_size=8)
    assert classifier.fast_kind == "tf-fused"
    rng = np.random.default_rng(21)
    noise = random_clips(6, seed=22)
    # smooth clips too (a slowly moving gradient, like a real scene more than noise is)
    xx = np.mgrid[0:64, 0:64][1]
    smooth = np.stack(
        [np.stack([((xx + 3 * t + 40 * k) % 256) for t in range(20)]) for k in range(5)]
    )[..., None].repeat(3, axis=-1)
    clips = np.concatenate([noise, (smooth + rng.integers(0, 20, smooth.shape)).clip(0, 255).astype(np.uint8)])
    expected = keras_probability(classifier.model, quantize(clips, classifier.input_bits))  # what predict scores
    got = classifier.predict(clips)  # 11 clips: buckets 8 + 4
    np.testing.assert_allclose(got, expected, atol=1e-5)
    clear = np.abs(expected - classifier.threshold) > 1e-4
    assert np.array_equal((got >= classifier.threshold)[clear], (expected >= classifier.threshold)[clear])


def test_fused_path_compiles_once_per_lane_shape(model: keras.Model, monkeypatch: pytest.MonkeyPatch) -> None:
    """After warm-up no batch size retraces: one XLA cell trace per layer and lane shape, none later."""
    traced: list[fast._FusedConvLSTM] = []
    original = fast._FusedConvLSTM.__init__

    def recording_init(self: fast._FusedConvLSTM, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        traced.append(self)

    monkeypatch.setattr(fast, "default_lanes", lambda: 2)
    monkeypatch.setattr(fast._FusedConvLSTM, "__init__", recording_init)
    predictor = build_fast_predictor(model, max_batch_size=4, jit_compile=False)
    assert predictor.kind == "tf-fused" and len(traced) == 4
    counts = [layer._cell.experimental_get_tracing_count() for layer in traced]
    assert counts == [2, 2, 2, 2]  # buckets 1, 2, 4 run as lanes of 1, 1 and 2 clips
    for n in (1, 2, 3, 4, 5, 7):
        predictor(random_clips(n, seed=n))
    assert [layer._cell.experimental_get_tracing_count() for layer in traced] == counts


def test_fused_candidate_that_drifts_past_tolerance_is_refused(
    model: keras.Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fused graph off by more than MATCH_TOLERANCE is not used: the next exact candidate is."""
    original = fast._fused_forward

    def drifting(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        forward = original(*args, **kwargs)  # type: ignore[arg-type]
        return lambda clips: forward(clips) + 2 * MATCH_TOLERANCE

    monkeypatch.setattr(fast, "_fused_forward", drifting)
    predictor = build_fast_predictor(model, max_batch_size=1, jit_compile=False, warmup=False)
    assert predictor.kind == "tf-decomposed"
    clips = random_clips(1, seed=30)
    np.testing.assert_allclose(predictor(clips), keras_probability(model, clips), atol=1e-5)


def test_fused_candidate_that_drifts_only_in_larger_buckets_is_refused(
    model: keras.Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The load-time check runs every bucket and the lanes, not one clip: a graph wrong only for batches of
    more than one clip (a lane or padding bug) is refused too."""
    original = fast._fused_forward

    def drifting_in_batches(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        forward = original(*args, **kwargs)  # type: ignore[arg-type]
        return lambda clips: forward(clips) + (2 * MATCH_TOLERANCE if clips.shape[0] > 1 else 0.0)

    monkeypatch.setattr(fast, "_fused_forward", drifting_in_batches)
    predictor = build_fast_predictor(model, max_batch_size=4, jit_compile=False, warmup=False)
    assert predictor.kind == "tf-decomposed"


def test_probe_clips_spread_the_models_outputs(model: keras.Model) -> None:
    """The probe is not all noise: its clips differ in kind, so the outputs are not one saturated value."""
    probe = fast.probe_clips(model.inputs[0].shape[1:], 12)
    assert probe.shape == (12, *model.inputs[0].shape[1:]) and probe.dtype == np.uint8
    p = keras_probability(model, probe)
    assert float(np.ptp(p)) > 1e-3
    assert not np.array_equal(probe[1, 0], probe[2, -1])  # the moving square changes its clip over time


def test_fused_candidate_within_tolerance_is_kept(model: keras.Model, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same check keeps a graph whose drift stays under the tolerance (the refusal is not blanket)."""
    original = fast._fused_forward

    def nudged(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        forward = original(*args, **kwargs)  # type: ignore[arg-type]
        return lambda clips: forward(clips) + MATCH_TOLERANCE / 4

    monkeypatch.setattr(fast, "_fused_forward", nudged)
    predictor = build_fast_predictor(model, max_batch_size=1, jit_compile=False, warmup=False)
    assert predictor.kind == "tf-fused"
