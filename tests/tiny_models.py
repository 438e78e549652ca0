"""Tiny real Keras model files for tests that need models, not a trained ConvLSTM: built and loaded in well
under a second each.

A tiny model averages the clip over time and space (GlobalAveragePooling3D on the [0, 1] input) and puts
the mean colour through one sigmoid unit: ``p = sigmoid(weight * (B + G + R) + bias)``.  With weight 0 it
says ``sigmoid(bias)`` for every clip (bias 30: 1.0, bias -30: 0.0); with weight 2 and bias -3 it says
"bright clips are shoplifting".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inference.metadata import INPUT_SHAPE, ModelMetadata


def save_tiny_model(path: Path, *, weight: float, bias: float, version: str, threshold: float = 0.5,
                    input_shape: tuple[int, ...] = INPUT_SHAPE) -> Path:
    """Write a tiny model and its metadata sidecar to ``path`` (``.keras``)."""
    import keras

    from inference.model import save_model

    inputs = keras.Input(shape=input_shape, name="clip")
    pooled = keras.layers.GlobalAveragePooling3D(name="mean_colour")(inputs)
    output = keras.layers.Dense(1, activation="sigmoid", name="p_shoplifting")(pooled)
    model = keras.Model(inputs, output, name=f"tiny_{version}")
    model.get_layer("p_shoplifting").set_weights(
        [np.full((input_shape[-1], 1), weight, np.float32), np.array([bias], np.float32)]
    )
    save_model(model, path, ModelMetadata(version=version, threshold=threshold,
                                          input_shape=tuple(input_shape)))  # type: ignore[arg-type]
    return path
