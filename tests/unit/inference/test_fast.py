"""The fast inference path equals Keras: decomposed ConvLSTM graph, buckets/padding, fallbacks, XLA."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from inference.fast import bucket_for, bucket_sizes, build_fast_predictor, linear_layers
from inference.model import INPUT_SHAPE, build_convlstm, preprocess, probability_of_positive


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


@pytest.mark.slow
def test_decomposed_graph_matches_keras_for_several_batch_sizes(model: keras.Model) -> None:
    predictor = build_fast_predictor(model, max_batch_size=4, jit_compile=False)
    assert predictor.kind == "tf-decomposed"
    clips = random_clips(9, seed=1)
    expected = keras_probability(model, clips)
    for n in (1, 3, 4, 9):  # 3 pads to bucket 4; 9 is 4 + 4 + 1
        got = predictor(clips[:n])
        assert got.shape == (n,) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected[:n], atol=1e-5)


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
    predictor = build_fast_predictor(m, max_batch_size=4, jit_compile=False, warmup=False)
    assert predictor.kind == "tf-decomposed"
    clips = random_clips(3, seed=2)  # pads to bucket 4
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
    predictor = build_fast_predictor(model, max_batch_size=8, jit_compile=True, warmup=False)
    assert predictor.kind == "tf-decomposed-xla"
    clips = random_clips(13, seed=12)
    expected = keras_probability(model, clips)
    for n in (1, 5, 13):  # buckets 1, 8, 8+8: two XLA compiles
        np.testing.assert_allclose(predictor(clips[:n]), expected[:n], atol=1e-5)
