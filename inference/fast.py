"""Fast batched inference for the ConvLSTM classifier (the inference worker's path).

Keras's ConvLSTM2D runs the input convolution inside the time loop, one small conv per step.  On CPU the
fast path instead computes each ConvLSTM layer's input convolution for all T steps as one conv over N*T
images, keeps only the recurrent convolution in an unrolled time loop, and compiles the whole chain with
XLA for a fixed set of batch-size buckets (inputs are zero-padded up to the next bucket, so nothing
retraces after load).  Other layers of a linear model (pooling, dropout, flatten, dense) are the Keras
layers themselves, called with ``training=False``.  Models that are not a linear chain fall back to a
compiled ``model(x, training=False)``; on the torch backend the path is a batched no-grad model call.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from inference.torch_path import PRECISION_TOLERANCE

log = logging.getLogger(__name__)

MATCH_TOLERANCE = 1e-3  # a decomposed graph differing from Keras by more than this is not used


def bucket_sizes(max_batch_size: int) -> tuple[int, ...]:
    """Batch sizes compiled ahead: powers of two below ``max_batch_size``, plus the maximum itself."""
    if max_batch_size < 1:
        raise ValueError("max_batch_size must be >= 1")
    sizes, size = [], 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    sizes.append(max_batch_size)
    return tuple(sizes)


def bucket_for(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket holding ``n`` clips (``n`` must not exceed the largest bucket)."""
    for size in buckets:
        if n <= size:
            return size
    raise ValueError(f"{n} clips exceed the largest bucket {buckets[-1]}")


def _to_probability(out: Any) -> Any:
    """(N, 1) sigmoid -> (N,); (N, 2) softmax -> column 1.  Works on tf/torch/numpy tensors."""
    if out.shape[-1] == 2:
        return out[:, 1]
    return out[:, 0]


class FastPredictor:
    """Runs uint8 clips (N, T, H, W, C) through per-bucket compiled functions; returns float32 (N,)."""

    def __init__(self, run_bucket: Callable[[np.ndarray], np.ndarray], buckets: Sequence[int], kind: str):
        self._run_bucket = run_bucket
        self.buckets = tuple(buckets)
        self.max_batch_size = self.buckets[-1]
        self.kind = kind

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        clips = np.ascontiguousarray(clips, dtype=np.uint8)
        n = clips.shape[0]
        out = np.empty((n,), dtype=np.float32)
        for start in range(0, n, self.max_batch_size):
            chunk = clips[start : start + self.max_batch_size]
            size = bucket_for(chunk.shape[0], self.buckets)
            if size != chunk.shape[0]:
                padded = np.zeros((size, *chunk.shape[1:]), dtype=np.uint8)
                padded[: chunk.shape[0]] = chunk
                chunk = padded
            result = np.asarray(self._run_bucket(chunk), dtype=np.float32).reshape(-1)
            out[start : start + min(self.max_batch_size, n - start)] = result[: min(self.max_batch_size, n - start)]
        return out

    def warm_up(self, input_shape: Sequence[int]) -> None:
        """Compile every bucket now so the first real batches are not slow."""
        for size in self.buckets:
            self._run_bucket(np.zeros((size, *input_shape), dtype=np.uint8))


def linear_layers(model: keras.Model) -> list[keras.layers.Layer] | None:
    """The model's layers in order if it is a single-input single-output chain, else None."""
    try:
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            return None
        layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        if isinstance(model, keras.Sequential):
            return layers
        previous = model.inputs[0]
        for layer in layers:
            if layer.input is not previous:
                return None
            previous = layer.output
        return layers if previous is model.outputs[0] else None
    except (AttributeError, ValueError, TypeError):
        return None


def convlstm_supported(layer: keras.layers.Layer) -> bool:
    """Whether our decomposition reproduces this ConvLSTM2D exactly at inference."""
    if not isinstance(layer, keras.layers.ConvLSTM2D):
        return False
    cell = layer.cell
    return (
        cell.data_format == "channels_last"
        and tuple(cell.strides) == (1, 1)
        and tuple(cell.dilation_rate) == (1, 1)
        and cell.padding in ("valid", "same")
        and not layer.go_backwards
        and not layer.stateful
        and not getattr(layer, "zero_output_for_mask", False)
    )


def _decomposable(layers: Sequence[keras.layers.Layer]) -> bool:
    return any(isinstance(layer, keras.layers.ConvLSTM2D) for layer in layers) and all(
        convlstm_supported(layer) for layer in layers if isinstance(layer, keras.layers.ConvLSTM2D)
    )


def _tf_convlstm(layer: keras.layers.Layer) -> Callable[[Any], Any]:
    """A TF function equal to ``layer(x, training=False)`` with the input conv hoisted out of the loop."""
    import tensorflow as tf

    cell = layer.cell
    kernel = tf.constant(keras.ops.convert_to_numpy(cell.kernel), dtype=tf.float32)
    recurrent = tf.constant(keras.ops.convert_to_numpy(cell.recurrent_kernel), dtype=tf.float32)
    bias = (
        tf.constant(keras.ops.convert_to_numpy(cell.bias), dtype=tf.float32) if cell.use_bias else None
    )
    padding = cell.padding.upper()
    known = {"tanh": tf.tanh, "sigmoid": tf.sigmoid, "relu": tf.nn.relu, "linear": tf.identity}
    act = known.get(getattr(cell.activation, "__name__", ""), cell.activation)
    rec_act = known.get(getattr(cell.recurrent_activation, "__name__", ""), cell.recurrent_activation)
    return_sequences = layer.return_sequences

    def run(x: Any) -> Any:
        n, t = tf.shape(x)[0], x.shape[1]
        h_in, w_in, c_in = x.shape[2], x.shape[3], x.shape[4]
        z = tf.nn.conv2d(tf.reshape(x, (-1, h_in, w_in, c_in)), kernel, strides=1, padding=padding)
        if bias is not None:
            z = z + bias
        z = tf.reshape(z, (n, t, z.shape[1], z.shape[2], z.shape[3]))
        h = c = None
        outputs = []
        for step in range(t):
            gates = z[:, step]
            if h is not None:  # h0 = c0 = 0, so step 0 has no recurrent term
                gates = gates + tf.nn.conv2d(h, recurrent, strides=1, padding="SAME")
            i, f, g, o = tf.split(gates, 4, axis=-1)  # Keras gate order: i, f, c, o
            i, f, o = rec_act(i), rec_act(f), rec_act(o)
            c = i * act(g) if c is None else f * c + i * act(g)
            h = o * act(c)
            outputs.append(h)
        return tf.stack(outputs, axis=1) if return_sequences else h

    return run


def _tf_predictor(model: keras.Model, buckets: Sequence[int], *, decompose: bool, jit: bool) -> FastPredictor:
    import tensorflow as tf

    input_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    layers = linear_layers(model) if decompose else None
    if decompose and (layers is None or not _decomposable(layers)):
        raise ValueError("model is not a linear ConvLSTM2D chain we can decompose")
    if layers is not None:
        steps = [_tf_convlstm(layer) if isinstance(layer, keras.layers.ConvLSTM2D) else layer for layer in layers]

        def forward(x: Any) -> Any:
            for step in steps:
                x = step(x) if not isinstance(step, keras.layers.Layer) else step(x, training=False)
            return x

        kind = "tf-decomposed"
    else:

        def forward(x: Any) -> Any:
            return model(x, training=False)

        kind = "tf-model"

    def graph(clips: Any) -> Any:
        x = tf.cast(clips, tf.float32) * (1.0 / 255.0)
        return _to_probability(tf.cast(forward(x), tf.float32))

    compiled = tf.function(graph, jit_compile=jit, reduce_retracing=False)
    concrete = {size: compiled.get_concrete_function(tf.TensorSpec((size, *input_shape), tf.uint8)) for size in buckets}

    def run_bucket(batch: np.ndarray) -> np.ndarray:
        return concrete[batch.shape[0]](tf.constant(batch)).numpy()

    return FastPredictor(run_bucket, buckets, kind + ("-xla" if jit else ""))


def _torch_predictor(model: keras.Model, buckets: Sequence[int], precision: str = "float32") -> FastPredictor:
    from inference.torch_path import torch_run_bucket  # the torch backend's path lives in its own module

    run_bucket, kind = torch_run_bucket(model, precision)
    return FastPredictor(run_bucket, buckets, kind)


def _predict_fallback(model: keras.Model, buckets: Sequence[int]) -> FastPredictor:
    def run_bucket(batch: np.ndarray) -> np.ndarray:
        x = batch.astype(np.float32) * np.float32(1.0 / 255.0)
        return _to_probability(np.asarray(model.predict_on_batch(x), dtype=np.float32))

    return FastPredictor(run_bucket, buckets, "keras-predict")


def _reference(model: keras.Model, clips: np.ndarray) -> np.ndarray:
    x = clips.astype(np.float32) * np.float32(1.0 / 255.0)
    out = np.asarray(keras.ops.convert_to_numpy(model(x, training=False)), dtype=np.float32)
    return _to_probability(out)


def jit_default() -> bool:
    """XLA off unless AISLEWATCH_XLA=1: it costs ~7 s of compile per bucket at load on 2 cores for ~15% more
    throughput; services that run for days turn it on with ``model.xla: true``."""
    return os.environ.get("AISLEWATCH_XLA", "0").strip().lower() not in ("0", "false", "no", "off")


def build_fast_predictor(
    model: keras.Model, *, max_batch_size: int = 32, warmup: bool = True, jit_compile: bool | None = None,
    buckets: Sequence[int] | None = None, precision: str = "float32",
) -> FastPredictor:
    """The fastest exact predictor this backend offers for ``model`` (uint8 clips -> P(shoplifting)).

    On TensorFlow, in order: the decomposed graph (when the model is a linear chain whose ConvLSTM2D
    layers we reproduce), then the whole model, each with XLA first when ``jit_compile`` (default:
    :func:`jit_default`).  Each candidate is warmed up for all buckets (when ``warmup``) and checked
    against Keras on a small random batch; one that fails or differs by more than MATCH_TOLERANCE is
    skipped.  The last resort is batched ``model.predict_on_batch``.  ``buckets`` (default
    :func:`bucket_sizes`) come from the device (``inference.devices.device_buckets``); ``precision`` other
    than float32 applies on the torch backend's GPU path only (``inference.torch_path``).
    """
    buckets = tuple(buckets) if buckets else bucket_sizes(max_batch_size)
    input_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    backend = keras.backend.backend()
    jit_options = (True, False) if (jit_default() if jit_compile is None else jit_compile) else (False,)
    candidates: list[Callable[[], FastPredictor]] = []
    if precision != "float32" and backend != "torch":
        log.warning("inference.gpu_precision %s is applied on the torch backend only; %s runs float32", precision,
                    backend)
    if backend == "torch":
        candidates.append(lambda: _torch_predictor(model, buckets, precision))
    elif backend == "tensorflow":
        for decompose in (True, False):
            for jit in jit_options:
                candidates.append(functools.partial(_tf_predictor, model, buckets, decompose=decompose, jit=jit))
    probe = np.random.default_rng(0).integers(0, 256, size=(1, *input_shape), dtype=np.uint8)
    expected = _reference(model, probe)
    for make in candidates:
        try:
            predictor = make()
            if warmup:
                predictor.warm_up(input_shape)
            diff = float(np.max(np.abs(predictor(probe) - expected)))
        except Exception as error:  # a backend/compiler refusing the graph is not fatal: try the next one
            log.warning("fast inference candidate failed (%s); trying the next", error)
            continue
        reduced = predictor.kind.endswith(("-float16", "-bfloat16"))  # checked against float32 already
        if diff <= (PRECISION_TOLERANCE if reduced else MATCH_TOLERANCE):
            log.info("fast inference: %s, buckets %s, max diff vs Keras %.2e", predictor.kind, buckets, diff)
            return predictor
        log.warning("fast inference candidate %s differs from Keras by %.2e; skipped", predictor.kind, diff)
    log.warning("no compiled fast path for this model; using batched model.predict")
    return _predict_fallback(model, buckets)
