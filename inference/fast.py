"""Fast batched inference for the ConvLSTM classifier (the inference worker's path).

Keras's ConvLSTM2D runs four input and four recurrent convolutions and a dozen element-wise ops per time
step.  On TensorFlow the fast path, for a model that is a linear chain of ConvLSTM2D and per-frame layers,
is ``tf-fused`` (:class:`_FusedConvLSTM`): per step one oneDNN convolution over the frame and the padded
previous state with the input and recurrent kernels stacked, then one XLA-compiled cell (gates, carry,
state, the following per-frame max-pooling, the next step's conv input).  Uint8 clips go in; the 1/255
scale is folded into the first kernel.  A batch runs as a few independent lanes so that one lane's cell
(XLA runs it on one thread) overlaps another lane's convolution.  Next come ``tf-decomposed`` (each
layer's input convolution hoisted out of the time loop as one conv over N*T frames) and the compiled
whole model.  Everything is traced for a fixed set of batch-size buckets (inputs are zero-padded up to
the next bucket, so nothing retraces after load), and each candidate is checked against Keras at load
(MATCH_TOLERANCE) before it is used.  On the torch backend the path is a batched no-grad model call.
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


# --- the fused path: per-step joint convolution (oneDNN) + one XLA-compiled LSTM cell per step -----------------

_IDENTITY_AT_INFERENCE: tuple[type, ...] = (
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
)


def _identity_at_inference(layer: keras.layers.Layer) -> bool:
    """Dropout and noise layers (also inside TimeDistributed) do nothing with ``training=False``."""
    if isinstance(layer, keras.layers.TimeDistributed):
        return _identity_at_inference(layer.layer)
    return isinstance(layer, _IDENTITY_AT_INFERENCE)


def _frame_max_pool(layer: keras.layers.Layer) -> tuple[tuple[int, int], tuple[int, int], str] | None:
    """(pool, strides, padding) of a MaxPooling3D that pools each frame alone (depth 1), else None."""
    if not isinstance(layer, keras.layers.MaxPooling3D) or layer.data_format != "channels_last":
        return None
    pool, strides = tuple(layer.pool_size), tuple(layer.strides)
    if pool[0] != 1 or strides[0] != 1:
        return None
    return (pool[1], pool[2]), (strides[1], strides[2]), layer.padding.upper()


def _same_padding(size: int) -> tuple[int, int]:
    """TensorFlow's SAME padding for a stride-1 kernel of ``size``: the odd pixel goes after."""
    return (size - 1) // 2, size - 1 - (size - 1) // 2


class _FusedConvLSTM:
    """One ConvLSTM2D at inference, a frame at a time, with two graph nodes per step.

    Step ``t`` runs one convolution over ``concat(x_t, pad(h_{t-1}))`` with the input and recurrent
    kernels stacked along the input channels (the input conv's 'valid'/'same' padding and the recurrent
    conv's 'same' padding agree once ``h`` is padded), then one XLA-fused cell: the four gates, the new
    carry and state, the frame's max-pooling when a MaxPooling3D(1, k, k) follows, and the next step's
    convolution input (``x_{t+1}`` cast and ``h_t`` padded, concatenated).  Sigmoid gates are computed as
    ``0.5 * tanh(z / 2) + 0.5`` with the halving folded into the kernels (measured a little cheaper than
    XLA's logistic).  The pipeline's 1/255 input scaling is folded into the first layer's kernel
    (``input_scale``).
    """

    def __init__(
        self,
        layer: keras.layers.Layer,
        *,
        input_scale: float = 1.0,
        pool: tuple[tuple[int, int], tuple[int, int], str] | None = None,
    ) -> None:
        import tensorflow as tf

        cell = layer.cell
        filters = int(layer.filters)
        kernel = np.asarray(keras.ops.convert_to_numpy(cell.kernel), dtype=np.float64) * input_scale
        recurrent = np.asarray(keras.ops.convert_to_numpy(cell.recurrent_kernel), dtype=np.float64)
        bias = (
            np.asarray(keras.ops.convert_to_numpy(cell.bias), dtype=np.float64)
            if cell.use_bias
            else np.zeros((4 * filters,))
        )
        known = {"tanh": tf.tanh, "sigmoid": tf.sigmoid, "relu": tf.nn.relu, "linear": tf.identity}
        act = known.get(getattr(cell.activation, "__name__", ""), cell.activation)
        rec_name = getattr(cell.recurrent_activation, "__name__", "")
        self._sigmoid_gates = rec_name == "sigmoid"
        rec_act = known.get(rec_name, cell.recurrent_activation)
        if self._sigmoid_gates:  # sigmoid(z) = 0.5 * tanh(z / 2) + 0.5: halve the i, f, o columns
            half = np.full((4 * filters,), 0.5)
            half[2 * filters : 3 * filters] = 1.0
            kernel, recurrent, bias = kernel * half, recurrent * half, bias * half
        kh, kw = (int(k) for k in cell.kernel_size)
        self._padding = cell.padding.upper()
        # 'valid': x_t is larger than h by the kernel, so h gets the recurrent conv's 'same' padding and one
        # 'valid' conv covers both; 'same': x_t and h have one size and one 'same' conv covers both
        self._h_pad = (
            [[0, 0], list(_same_padding(kh)), list(_same_padding(kw)), [0, 0]]
            if self._padding == "VALID"
            else [[0, 0]] * 4
        )
        self._kernel = tf.constant(kernel, dtype=tf.float32)
        self._joint = tf.constant(np.concatenate([kernel, recurrent], axis=2), dtype=tf.float32)
        bias_t = tf.constant(bias, dtype=tf.float32)
        self.return_sequences = bool(layer.return_sequences)
        self._filters = filters
        self._pool = pool if self.return_sequences else None
        sigmoid_gates, pool_spec, h_pad = self._sigmoid_gates, self._pool, self._h_pad

        def cell_step(gates: Any, c: Any, x_next: Any) -> tuple[Any, Any, Any]:
            # activations per gate slice: XLA then fuses each into its consumer; a tanh over all four gates
            # at once would be materialised (one more 16-channel pass) because two fusions read it
            i, f, g, o = tf.split(gates + bias_t, 4, axis=-1)
            if sigmoid_gates:
                i, f, o = 0.5 * tf.tanh(i) + 0.5, 0.5 * tf.tanh(f) + 0.5, 0.5 * tf.tanh(o) + 0.5
            else:
                i, f, o = rec_act(i), rec_act(f), rec_act(o)
            c = f * c + i * act(g)
            h = o * act(c)
            out = h if pool_spec is None else tf.nn.max_pool2d(h, pool_spec[0], pool_spec[1], pool_spec[2])
            nxt = tf.concat([tf.cast(x_next, tf.float32), tf.pad(h, h_pad)], axis=-1)
            return c, out, nxt

        self._cell = tf.function(cell_step, jit_compile=True, reduce_retracing=False)

    def __call__(self, frames: Sequence[Any]) -> Any:
        """Per-frame inputs (N, H, W, C) in time order -> per-frame outputs, or the last state."""
        import tensorflow as tf

        c = nxt = None
        outputs = []
        for step, frame in enumerate(frames):
            if step == 0:  # h0 = c0 = 0: the input conv alone
                gates = tf.nn.conv2d(tf.cast(frame, tf.float32), self._kernel, strides=1, padding=self._padding)
                c = tf.zeros((*gates.shape[:-1], self._filters), dtype=tf.float32)
            else:
                gates = tf.nn.conv2d(nxt, self._joint, strides=1, padding=self._padding)
            # one cell signature for every step (the last one's unused next input costs less than another
            # XLA compile per batch bucket)
            x_next = frames[min(step + 1, len(frames) - 1)]
            c, out, nxt = self._cell(gates, c, x_next)
            outputs.append(out)
        return outputs if self.return_sequences else outputs[-1]


def _fused_forward(
    layers: Sequence[keras.layers.Layer], input_scale: float, lanes: int = 1
) -> Callable[[Any], Any]:
    """A function of uint8 clips (N, T, H, W, C) equal to the chain of ``layers`` on ``clips * input_scale``.

    Between ConvLSTM layers the sequence stays a Python list of per-frame tensors (no stacking); other
    layers see the usual (N, T, ...) tensor.  ``lanes`` > 1 splits a batch into that many independent
    chains (when it divides the batch): TensorFlow's inter-op threads then run one lane's cell (XLA runs
    it on one thread) while another lane's convolution runs.
    """
    import tensorflow as tf

    layers = [layer for layer in layers if not _identity_at_inference(layer)]
    fold_scale = bool(layers) and isinstance(layers[0], keras.layers.ConvLSTM2D)
    plan: list[Any] = []
    index = 0
    while index < len(layers):
        layer = layers[index]
        if isinstance(layer, keras.layers.ConvLSTM2D):
            pool = _frame_max_pool(layers[index + 1]) if index + 1 < len(layers) else None
            if pool is not None and layer.return_sequences:
                index += 1  # the pooling runs inside the cell
            scale = input_scale if fold_scale and not plan else 1.0
            plan.append(_FusedConvLSTM(layer, input_scale=scale, pool=pool))
        else:
            plan.append(layer)
        index += 1
    raw_scale = None if fold_scale else input_scale

    def forward(clips: Any) -> Any:
        n = int(clips.shape[0])
        if lanes > 1 and n >= lanes and n % lanes == 0:
            return tf.concat([forward_lane(part) for part in tf.split(clips, lanes, axis=0)], axis=0)
        return forward_lane(clips)

    def forward_lane(clips: Any) -> Any:
        x: Any = clips
        if raw_scale is not None:
            x = tf.cast(x, tf.float32) * raw_scale
        for step in plan:
            if isinstance(step, _FusedConvLSTM):
                frames = x if isinstance(x, list) else tf.unstack(x, axis=1)
                x = step(frames)
            else:
                if isinstance(x, list):
                    x = tf.stack(x, axis=1)
                x = step(x, training=False)
        return tf.stack(x, axis=1) if isinstance(x, list) else x

    return forward


def default_lanes() -> int:
    """Independent lanes per batch on the fused path: one per CPU this process may use, at most 4."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cpus))


def _tf_predictor(
    model: keras.Model, buckets: Sequence[int], *, path: str, jit: bool, lanes: int | None = None
) -> FastPredictor:
    """``path``: "fused" (per-step joint conv + XLA cell), "decomposed" (hoisted input convs) or "model"."""
    import tensorflow as tf

    input_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    scale = 1.0 / 255.0
    layers: list[keras.layers.Layer] = []
    if path in ("fused", "decomposed"):
        found = linear_layers(model)
        if found is None or not _decomposable(found):
            raise ValueError("model is not a linear ConvLSTM2D chain we can decompose")
        layers = found
    if path == "fused":
        forward_uint8 = _fused_forward(layers, scale, lanes=default_lanes() if lanes is None else lanes)
    elif path == "decomposed":
        steps = [_tf_convlstm(layer) if isinstance(layer, keras.layers.ConvLSTM2D) else layer for layer in layers]

        def forward_uint8(clips: Any) -> Any:
            x = tf.cast(clips, tf.float32) * scale
            for step in steps:
                x = step(x) if not isinstance(step, keras.layers.Layer) else step(x, training=False)
            return x

    elif path == "model":

        def forward_uint8(clips: Any) -> Any:
            return model(tf.cast(clips, tf.float32) * scale, training=False)

    else:
        raise ValueError(f"unknown fast path {path!r}")

    def graph(clips: Any) -> Any:
        return _to_probability(tf.cast(forward_uint8(clips), tf.float32))

    # the fused path's cells are XLA clusters inside a plain graph: its convolutions stay on oneDNN
    compiled = tf.function(graph, jit_compile=jit and path != "fused", reduce_retracing=False)
    concrete = {size: compiled.get_concrete_function(tf.TensorSpec((size, *input_shape), tf.uint8)) for size in buckets}

    def run_bucket(batch: np.ndarray) -> np.ndarray:
        return concrete[batch.shape[0]](tf.constant(batch)).numpy()

    return FastPredictor(run_bucket, buckets, f"tf-{path}" + ("-xla" if jit and path != "fused" else ""))


def _torch_predictor(model: keras.Model, buckets: Sequence[int], precision: str = "float32") -> FastPredictor:
    from inference.torch_path import torch_run_bucket  # the torch backend's path lives in its own module

    run_bucket, kind = torch_run_bucket(model, precision)
    return FastPredictor(run_bucket, buckets, kind)


def _predict_fallback(model: keras.Model, buckets: Sequence[int]) -> FastPredictor:
    def run_bucket(batch: np.ndarray) -> np.ndarray:
        x = batch.astype(np.float32) * np.float32(1.0 / 255.0)
        return _to_probability(np.asarray(model.predict_on_batch(x), dtype=np.float32))

    return FastPredictor(run_bucket, buckets, "keras-predict")


def probe_clips(input_shape: Sequence[int], n: int, seed: int = 0) -> np.ndarray:
    """``n`` clips to check a candidate with: noise, still smooth scenes and a square moving over a smooth
    scene, so the model's outputs spread instead of all sitting where its sigmoid is flat."""
    t, h, w, c = (int(d) for d in input_shape)
    rng = np.random.default_rng(seed)
    clips = np.empty((n, t, h, w, c), dtype=np.uint8)
    rows, cols = np.arange(h)[:, None] * 4 // h, np.arange(w)[None, :] * 4 // w
    for i in range(n):
        if i % 3 == 0:
            clips[i] = rng.integers(0, 256, size=(t, h, w, c), dtype=np.uint8)
            continue
        clips[i] = rng.uniform(0, 255, size=(4, 4, c))[rows, cols].astype(np.uint8)[None]
        if i % 3 == 2:
            size = max(2, h // 5)
            y, x = int(rng.integers(0, h - size)), int(rng.integers(0, w - size))
            dy, dx = rng.integers(-2, 3, size=2)
            for step in range(t):
                yy, xx = int(np.clip(y + dy * step, 0, h - size)), int(np.clip(x + dx * step, 0, w - size))
                clips[i, step, yy : yy + size, xx : xx + size] = rng.integers(0, 256, size=c, dtype=np.uint8)
    return clips


def max_difference(predictor: FastPredictor, probe: np.ndarray, expected: np.ndarray) -> float:
    """Largest |P(candidate) - P(Keras)| over the probe run at every bucket size, one clip more than each
    (so padding is used) and the whole probe at once (every lane of the largest bucket)."""
    n = probe.shape[0]
    sizes = sorted({min(n, s) for b in predictor.buckets for s in (b, b + 1)} | {n})
    return max(float(np.max(np.abs(predictor(probe[:size]) - expected[:size]))) for size in sizes)


def _reference(model: keras.Model, clips: np.ndarray) -> np.ndarray:
    x = clips.astype(np.float32) * np.float32(1.0 / 255.0)
    out = np.asarray(keras.ops.convert_to_numpy(model(x, training=False)), dtype=np.float32)
    return _to_probability(out)


def jit_default() -> bool:
    """Whole-graph XLA for the fallback candidates off unless AISLEWATCH_XLA=1 (``model.xla: true``): on
    2 cores it costs ~7 s of compile per bucket and its convolutions are slower than oneDNN's."""
    return os.environ.get("AISLEWATCH_XLA", "0").strip().lower() not in ("0", "false", "no", "off")


def build_fast_predictor(
    model: keras.Model,
    *,
    max_batch_size: int = 32,
    warmup: bool = True,
    jit_compile: bool | None = None,
    fuse: bool = True,
    buckets: Sequence[int] | None = None,
    precision: str = "float32",
) -> FastPredictor:
    """The fastest exact predictor this backend offers for ``model`` (uint8 clips -> P(shoplifting)).

    On TensorFlow, in order: the fused graph (unless ``fuse`` is False) and the decomposed graph (when
    the model is a linear chain whose ConvLSTM2D layers we reproduce), then the whole model, the last two
    with whole-graph XLA first when ``jit_compile`` (default: :func:`jit_default`).  Each candidate is
    warmed up for all buckets (when ``warmup``) and checked against Keras on :func:`probe_clips` run at every
    bucket size, one more than each (padding) and the whole probe (every lane); one that fails or differs by
    more than MATCH_TOLERANCE is skipped.  The last resort is batched ``model.predict_on_batch``.  ``buckets`` (default
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
        if fuse:
            candidates.append(functools.partial(_tf_predictor, model, buckets, path="fused", jit=True))
        for path in ("decomposed", "model"):
            for jit in jit_options:
                candidates.append(functools.partial(_tf_predictor, model, buckets, path=path, jit=jit))
    probe = probe_clips(input_shape, max(buckets))
    expected = _reference(model, probe)
    for make in candidates:
        try:
            predictor = make()
            if warmup:
                predictor.warm_up(input_shape)
            diff = max_difference(predictor, probe, expected)
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
