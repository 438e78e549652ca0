"""The classifier's model files: architecture, metadata sidecar, .keras/.h5 loading, shape checks, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from inference.model import (
    CLASS_NAMES,
    INPUT_SHAPE,
    ClipClassifier,
    ModelMetadata,
    ModelShapeError,
    build_convlstm,
    preprocess,
    probability_of_positive,
    save_model,
)


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(7)
    return build_convlstm()


@pytest.fixture(scope="module")
def clips() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, size=(3, *INPUT_SHAPE), dtype=np.uint8)


def keras_probability(model: keras.Model, clips: np.ndarray) -> np.ndarray:
    return probability_of_positive(model.predict(preprocess(clips), verbose=0))


def test_build_convlstm_layer_shapes_and_params(model: keras.Model) -> None:
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.ConvLSTM2D)]
    assert [layer.filters for layer in convs] == [4, 8, 14, 16]
    # valid 3x3 conv then (1,2,2) 'same' pooling: 64 -> 62 -> 31 -> 29 -> 15 -> 13 -> 7 -> 5 -> 3
    assert [tuple(layer.output.shape) for layer in convs] == [
        (None, 20, 62, 62, 4),
        (None, 20, 29, 29, 8),
        (None, 20, 13, 13, 14),
        (None, 20, 5, 5, 16),
    ]
    for layer in convs:
        assert layer.cell.kernel_size == (3, 3)
        assert layer.return_sequences and layer.recurrent_dropout == pytest.approx(0.2)
        assert layer.activation.__name__ == "tanh"
    # ConvLSTM params: 4 gates * (3*3*(C_in + F) * F + F)
    assert [layer.count_params() for layer in convs] == [1024, 3488, 11144, 17344]
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling3D)]
    assert len(pools) == 4 and all(p.pool_size == (1, 2, 2) for p in pools)
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.TimeDistributed)]
    assert len(dropouts) == 3  # none after the last block
    assert tuple(model.output.shape) == (None, 1)
    assert model.layers[-1].activation.__name__ == "sigmoid"
    assert model.count_params() == 1024 + 3488 + 11144 + 17344 + (20 * 3 * 3 * 16 + 1)


def test_metadata_json_round_trip_and_sidecar_path() -> None:
    meta = ModelMetadata(
        version="v1",
        threshold=0.73,
        threshold_goal="min_precision=0.95",
        trained_on={"description": "synthetic", "synthetic": True, "videos": 12, "sha256": "ab" * 32},
        metrics={"auc": 0.9},
        created_at="2025-01-01T00:00:00Z",
    )
    back = ModelMetadata.from_json(meta.to_json())
    assert back == meta
    assert back.input_shape == INPUT_SHAPE and back.class_names == CLASS_NAMES
    assert ModelMetadata.sidecar_path(Path("/m/convlstm.keras")) == Path("/m/convlstm.json")
    # unknown keys from a newer writer are ignored; missing ones take defaults
    assert ModelMetadata.from_json(json.dumps({"version": "x", "new_field": 1})) == ModelMetadata(version="x")


@pytest.mark.parametrize(
    "text",
    ['{"threshold": 0.5}', "[1, 2]", '{"version": "v", "threshold": 1.5}', '{"version": "v", "input_bits": 0}',
     '{"version": "v", "input_bits": 9}', '{"version": "v", "input_bits": 6.5}'],
)
def test_metadata_rejects_bad_json(text: str) -> None:
    with pytest.raises(ValueError):
        ModelMetadata.from_json(text)


def test_save_load_round_trip_keeps_metadata_and_outputs(
    tmp_path: Path, model: keras.Model, clips: np.ndarray
) -> None:
    path = tmp_path / "convlstm.keras"
    meta = ModelMetadata(version="aw-1", threshold=0.61, threshold_goal="max_f1", trained_on={"videos": 3})
    save_model(model, path, meta)
    assert path.is_file() and ModelMetadata.sidecar_path(path).is_file()
    clf = ClipClassifier.load(path, fast=False)
    assert clf.metadata == meta
    assert clf.threshold == pytest.approx(0.61) and clf.version == "aw-1"
    got = clf.predict(clips)
    assert got.dtype == np.float32 and got.shape == (3,)
    np.testing.assert_allclose(got, keras_probability(model, clips), atol=1e-6)
    np.testing.assert_allclose(clf.predict(clips[0]), got[:1], atol=1e-6)  # a single clip is a batch of one


def test_input_bits_default_to_eight_and_round_trip() -> None:
    assert ModelMetadata(version="x").input_bits == 8  # a sidecar from before input_bits: as before
    assert ModelMetadata.from_json(json.dumps({"version": "x", "input_bits": 6})).input_bits == 6
    assert ModelMetadata.from_json(ModelMetadata(version="x", input_bits=5).to_json()).input_bits == 5


@pytest.mark.parametrize("fast", [False, True])
def test_predict_quantizes_to_the_models_input_bits_on_every_path(
    tmp_path: Path, model: keras.Model, clips: np.ndarray, fast: bool
) -> None:
    """Keras predict and the fused fast path both see the clips kept to the sidecar's input_bits: clips sent
    at 8 bits score as their 6-bit selves, clips already quantized are unchanged, and an 8-bit model sees
    every bit (so the two models do differ on noise clips)."""
    from common.model_input import quantize

    six, eight = tmp_path / "six.keras", tmp_path / "eight.keras"
    save_model(model, six, ModelMetadata(version="six", input_bits=6))
    save_model(model, eight, ModelMetadata(version="eight"))
    clf6 = ClipClassifier.load(six, fast=fast, max_batch_size=4)
    clf8 = ClipClassifier.load(eight, fast=fast, max_batch_size=4)
    assert clf6.input_bits == 6 and clf8.input_bits == 8
    quantized = quantize(clips, 6)
    np.testing.assert_allclose(clf6.predict(clips), keras_probability(model, quantized), atol=1e-5)
    np.testing.assert_array_equal(clf6.predict(clips), clf6.predict(quantized))
    np.testing.assert_allclose(clf8.predict(clips), keras_probability(model, clips), atol=1e-5)
    assert np.abs(keras_probability(model, clips) - keras_probability(model, quantized)).max() > 1e-6


def test_legacy_h5_loads_with_default_metadata(tmp_path: Path, model: keras.Model, clips: np.ndarray) -> None:
    path = tmp_path / "legacy.h5"
    model.save(path)  # Keras 3 writes the legacy Keras 2 HDF5 format for .h5
    clf = ClipClassifier.load(path, fast=False)
    import hashlib

    assert clf.version == hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert clf.threshold == 0.5 and clf.metadata.input_shape == INPUT_SHAPE
    np.testing.assert_allclose(clf.predict(clips), keras_probability(model, clips), atol=1e-6)


def test_wrong_input_shape_is_refused_naming_both_shapes(tmp_path: Path) -> None:
    path = tmp_path / "c3d_like.keras"
    build_convlstm(input_shape=(16, 112, 112, 3)).save(path)
    with pytest.raises(ModelShapeError) as excinfo:
        ClipClassifier.load(path, fast=False)
    message = str(excinfo.value)
    assert "(None, 16, 112, 112, 3)" in message and "(None, 20, 64, 64, 3)" in message


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ClipClassifier.load(tmp_path / "absent.keras", fast=False)


def softmax_variant(base: keras.Model) -> keras.Model:
    """The same stack ending in Dense(2, softmax), as some public versions do."""
    features = base.get_layer("flatten").output
    keras.utils.set_random_seed(11)
    head = keras.layers.Dense(2, activation="softmax", name="classes")(features)
    return keras.Model(base.input, head)


@pytest.mark.parametrize("fast", [False, True])
def test_softmax_two_output_gives_column_one(
    tmp_path: Path, model: keras.Model, clips: np.ndarray, fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AISLEWATCH_XLA", "0")  # XLA compile is slow; the XLA path is tested in test_fast
    two = softmax_variant(model)
    path = tmp_path / "softmax.h5"
    two.save(path)
    clf = ClipClassifier.load(path, fast=fast, max_batch_size=2)
    expected = two.predict(preprocess(clips), verbose=0)
    assert not np.allclose(expected[:, 1], expected[:, 0])
    np.testing.assert_allclose(clf.predict(clips), expected[:, 1], atol=1e-5)


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        (np.array([[0.2], [0.9]]), [0.2, 0.9]),
        (np.array([[0.8, 0.2], [0.1, 0.9]]), [0.2, 0.9]),
        (np.array([0.3, 0.4]), [0.3, 0.4]),
    ],
)
def test_probability_of_positive(outputs: np.ndarray, expected: list[float]) -> None:
    np.testing.assert_allclose(probability_of_positive(outputs), expected)


def test_probability_of_positive_refuses_three_classes() -> None:
    with pytest.raises(ModelShapeError):
        probability_of_positive(np.zeros((2, 3)))


@pytest.mark.parametrize(
    ("clips", "error"),
    [
        (np.zeros((1, *INPUT_SHAPE), dtype=np.float32), TypeError),
        (np.zeros((1, 16, 64, 64, 3), dtype=np.uint8), ModelShapeError),
    ],
)
def test_predict_refuses_wrong_clips(model: keras.Model, clips: np.ndarray, error: type) -> None:
    clf = ClipClassifier(model, ModelMetadata(version="t"), fast=False)
    with pytest.raises(error):
        clf.predict(clips)


def test_preprocess_scales_uint8_to_unit_floats() -> None:
    out = preprocess(np.array([0, 51, 255], dtype=np.uint8))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 0.2, 1.0], atol=1e-7)
    with pytest.raises(TypeError):
        preprocess(np.zeros(3, dtype=np.float32))
