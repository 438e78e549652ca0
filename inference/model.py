"""The clip classifier: architecture, model files with metadata sidecars, and loading for inference.

A model file is a Keras ``.keras`` (or legacy Keras 2 ``.h5``) next to a JSON sidecar with the same stem
(``convlstm.keras`` + ``convlstm.json``) holding :class:`ModelMetadata` (``inference.metadata``, readable
without TensorFlow): version, calibrated threshold, input shape and what it was trained on.
:class:`ClipClassifier` is what the inference worker and evaluation use.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np

from common.model_input import quantize
from inference.devices import DeviceChoice, device_buckets, resolve_device
from inference.metadata import CLASS_NAMES as CLASS_NAMES  # re-exported: defined with the metadata
from inference.metadata import INPUT_SHAPE, ModelMetadata
from inference.metadata import calibrated_threshold as calibrated_threshold

if TYPE_CHECKING:
    from collections.abc import Callable

    from common.settings import InferenceSettings, ModelSettings


log = logging.getLogger(__name__)

CONVLSTM_FILTERS: tuple[int, ...] = (4, 8, 14, 16)


class ModelShapeError(ValueError):
    """The model file expects clips of another shape than the pipeline produces."""


def build_convlstm(input_shape: tuple[int, ...] = INPUT_SHAPE, dropout: float = 0.2) -> keras.Model:
    """The ConvLSTM stack public shoplifting/violence work uses: 4, 8, 14, 16 filters, sigmoid output.

    Each ConvLSTM2D (3x3, tanh, valid padding, recurrent_dropout 0.2, return_sequences) is followed by
    MaxPooling3D((1, 2, 2), 'same') and TimeDistributed(Dropout) except the last; then Flatten, Dense(1).
    """
    inputs = keras.Input(shape=tuple(input_shape), name="clip")
    x = inputs
    for index, filters in enumerate(CONVLSTM_FILTERS):
        x = keras.layers.ConvLSTM2D(
            filters=filters,
            kernel_size=(3, 3),
            activation="tanh",
            data_format="channels_last",
            recurrent_dropout=0.2,
            return_sequences=True,
            name=f"convlstm_{index}",
        )(x)
        x = keras.layers.MaxPooling3D(
            pool_size=(1, 2, 2), padding="same", data_format="channels_last", name=f"pool_{index}"
        )(x)
        if index < len(CONVLSTM_FILTERS) - 1:
            x = keras.layers.TimeDistributed(keras.layers.Dropout(dropout), name=f"dropout_{index}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="p_shoplifting")(x)
    return keras.Model(inputs, outputs, name="convlstm_4_8_14_16")


def save_model(model: keras.Model, path: Path, metadata: ModelMetadata) -> None:
    """Write the model (``.keras`` or ``.h5``, by suffix) and its metadata sidecar next to it."""
    path = Path(path)
    if path.suffix not in (".keras", ".h5"):
        raise ValueError(f"model path must end in .keras or .h5, got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    ModelMetadata.sidecar_path(path).write_text(metadata.to_json() + "\n", encoding="utf-8")


def preprocess(clips_uint8: np.ndarray) -> np.ndarray:
    """Turn uint8 clips (N, 20, 64, 64, 3) into the model's float32 input in [0, 1]."""
    clips = np.asarray(clips_uint8)
    if clips.dtype != np.uint8:
        raise TypeError(f"clips must be uint8, got {clips.dtype}")
    return clips.astype(np.float32) * np.float32(1.0 / 255.0)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def probability_of_positive(outputs: np.ndarray) -> np.ndarray:
    """Model outputs -> P(shoplifting) of shape (N,): sigmoid (N, 1) as is, softmax (N, 2) column 1."""
    out = np.asarray(outputs, dtype=np.float32)
    if out.ndim == 1:
        return out
    if out.ndim == 2 and out.shape[1] == 1:
        return out[:, 0]
    if out.ndim == 2 and out.shape[1] == 2:
        return out[:, 1]
    raise ModelShapeError(f"model output shape {out.shape} is neither (N, 1) sigmoid nor (N, 2) softmax")


def _check_model_shapes(model: keras.Model, path: Path) -> None:
    """Refuse models whose input is not (None, *INPUT_SHAPE) or whose output is not 1 or 2 units."""
    expected = (None, *INPUT_SHAPE)
    inputs = model.inputs if hasattr(model, "inputs") and model.inputs else None
    if inputs is None or len(inputs) != 1:
        raise ModelShapeError(f"{path.name}: model must have exactly one input of shape {expected}")
    got = tuple(None if d is None else int(d) for d in inputs[0].shape)
    if got[1:] != expected[1:] or len(got) != len(expected):
        raise ModelShapeError(
            f"{path.name}: model input shape {got} does not match the pipeline's clip shape {expected}"
        )
    out_shape = tuple(model.outputs[0].shape)
    if len(out_shape) != 2 or out_shape[-1] not in (1, 2):
        raise ModelShapeError(f"{path.name}: model output shape {out_shape} is neither (None, 1) nor (None, 2)")


class ClipClassifier:
    """A loaded model plus metadata; ``predict`` maps uint8 clips to P(shoplifting)."""

    def __init__(
        self,
        model: keras.Model,
        metadata: ModelMetadata,
        *,
        fast: bool = True,
        max_batch_size: int = 32,
        xla: bool | None = None,
        device: str = "cpu",
        precision: str = "float32",
    ) -> None:
        """``device`` ("cpu" or "gpu", as :func:`inference.devices.resolve_device` chose) sizes the batch buckets."""
        self.model = model
        self.metadata = metadata
        self.device = device
        self.max_batch_size = int(max_batch_size)
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self._fast: Callable[[np.ndarray], np.ndarray] | None = None
        self.fast_kind = "none"
        if fast:
            from inference.fast import build_fast_predictor

            predictor = build_fast_predictor(model, max_batch_size=self.max_batch_size, jit_compile=xla,
                                             buckets=device_buckets(device, self.max_batch_size),
                                             precision=precision)
            self._fast = predictor
            self.fast_kind = predictor.kind

    @classmethod
    def load(
        cls, path: Path, *, fast: bool = True, max_batch_size: int = 32, xla: bool | None = None,
        device: str = "cpu", precision: str = "float32",
    ) -> ClipClassifier:
        """Load a ``.keras`` or legacy ``.h5`` model and its sidecar metadata (defaults when absent).

        Raises FileNotFoundError for a missing file and ModelShapeError for a model whose input is not
        (None, 20, 64, 64, 3).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        model = keras.models.load_model(path, compile=False)
        _check_model_shapes(model, path)
        sidecar = ModelMetadata.sidecar_path(path)
        if sidecar.is_file():
            metadata = ModelMetadata.from_json(sidecar.read_text(encoding="utf-8"))
        else:
            log.warning("no metadata sidecar %s; using defaults (threshold 0.5)", sidecar.name)
            metadata = ModelMetadata(
                version=file_sha256(path)[:12],
                trained_on={"description": f"unknown (no sidecar for {path.name})"},
            )
        if tuple(metadata.input_shape) != INPUT_SHAPE:
            raise ModelShapeError(
                f"{sidecar.name}: metadata input shape {tuple(metadata.input_shape)} does not match "
                f"the pipeline's clip shape {INPUT_SHAPE}"
            )
        return cls(model, metadata, fast=fast, max_batch_size=max_batch_size, xla=xla, device=device,
                   precision=precision)

    @property
    def threshold(self) -> float:
        """The calibrated decision threshold from the metadata."""
        return float(self.metadata.threshold)

    @property
    def version(self) -> str:
        """The model version from the metadata (or the file's sha256 prefix)."""
        return self.metadata.version

    @property
    def input_bits(self) -> int:
        """Bits a value of the model's input keeps (``common.model_input.quantize``; 8 for an older model)."""
        return int(self.metadata.input_bits)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The clip shape the model takes (frames, height, width, channels)."""
        return tuple(self.metadata.input_shape)

    def predict(self, clips: np.ndarray) -> np.ndarray:
        """uint8 clips (N, 20, 64, 64, 3) BGR -> float32 (N,) probability of shoplifting, each clip first kept
        to the model's ``input_bits``."""
        clips = np.asarray(clips)
        if clips.dtype != np.uint8:
            raise TypeError(f"clips must be uint8, got {clips.dtype}")
        if clips.ndim == len(INPUT_SHAPE):
            clips = clips[None]
        if clips.shape[1:] != INPUT_SHAPE:
            raise ModelShapeError(f"clips of shape {clips.shape[1:]} do not match the model's {INPUT_SHAPE}")
        if clips.shape[0] == 0:
            return np.zeros((0,), dtype=np.float32)
        # The model's input precision, in one place for every path below (fused, XLA, torch, Keras): clips
        # that arrive quantized (ingest's ``clip.bits``) are unchanged, others get what the model was trained on.
        clips = quantize(clips, self.input_bits)
        if self._fast is not None:
            return self._fast(clips)
        parts = []
        for start in range(0, clips.shape[0], self.max_batch_size):
            batch = preprocess(clips[start : start + self.max_batch_size])
            parts.append(probability_of_positive(self.model.predict(batch, verbose=0)))
        return np.concatenate(parts).astype(np.float32)


def select_device(device: str) -> str:
    """Pin TensorFlow to the CPU, or insist on a GPU; "auto" uses a GPU when one is visible."""
    return resolve_device(device).device


def load_classifier(
    path: Path, *, fast: bool = False, max_batch_size: int = 32, xla: bool | None = None,
    device: str | DeviceChoice | None = None, precision: str = "float32",
) -> ClipClassifier:
    """The one way to load a model for scoring, by the workers and by the offline commands alike.

    ``device`` ("auto", "cpu", "gpu", or a choice already made) pins the backend first and is logged in one
    line with the reason; None leaves it as it is (CPU buckets).  ``fast`` builds the batched predictor
    (:mod:`inference.fast`); when it cannot be built, plain Keras predict is used with a warning, since the
    fast path is an optimisation that must never stop classification.  A missing file, a model of the wrong
    shape or a ``gpu`` that is not there still raises.
    """
    choice = resolve_device(device) if isinstance(device, str) else device
    if isinstance(device, str) and choice is not None:
        log.info("%s", choice.describe())
    on = choice.device if choice is not None else "cpu"
    if not fast:
        return ClipClassifier.load(Path(path), fast=False, max_batch_size=max_batch_size, device=on)
    try:
        return ClipClassifier.load(Path(path), fast=True, max_batch_size=max_batch_size, xla=xla, device=on,
                                   precision=precision)
    except (FileNotFoundError, ValueError):
        raise
    except Exception as exc:
        log.warning("fast predictor unavailable (%s); using plain Keras predict", exc)
        return ClipClassifier.load(Path(path), fast=False, max_batch_size=max_batch_size, device=on)


def classifier_from_settings(model: ModelSettings, inference: InferenceSettings) -> ClipClassifier:
    """The serving classifier the settings describe: the batched fast path on the configured device, with the
    batch size and precision of that device (``InferenceSettings.batching``); the choice is logged once."""
    choice = resolve_device(model.device)
    log.info("%s", choice.describe())
    batching = inference.batching(choice.device)
    return load_classifier(model.path, fast=True, max_batch_size=batching.max_batch_size, xla=model.xla,
                           device=choice, precision=batching.precision)


def shadow_classifier_from_settings(model: ModelSettings, inference: InferenceSettings) -> ClipClassifier | None:
    """The candidate of shadow mode (``model.shadow_path``), loaded like the active one; None when unset.

    Loaded at start so that a missing file or a model of another shape stops the start with the reason,
    rather than every batch failing quietly in shadow; the device is the one the active model pinned.
    """
    if model.shadow_path is None:
        return None
    choice = resolve_device(model.device)  # the same answer as the active model's, logged there
    batching = inference.batching(choice.device)
    shadow = load_classifier(model.shadow_path, fast=True, max_batch_size=batching.max_batch_size, xla=model.xla,
                             device=choice, precision=batching.precision)
    log.info("shadow mode: candidate %s (%s) scores every clip beside the active model", shadow.version,
             model.shadow_path)
    return shadow
