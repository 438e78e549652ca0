"""Does a camera's footage look like what the model was trained on?  A compact description of the training
inputs, stored in the model's sidecar, and the rolling per-camera check the inference worker makes with it.

What is described: nine per-clip image statistics of the model input itself (the uint8 20x64x64 BGR clip
that ``common.model_input.model_clip`` makes for training and serving alike), from five of its frames:

* mean and standard deviation of each colour channel (the scene's palette and contrast),
* colourfulness (mean spread between the channels of a pixel),
* edge density (mean absolute spatial gradient) and fine texture (mean absolute Laplacian): drawn scenes are
  flat, real cameras have texture, sensor noise and compression blocks.

Why these and not the penultimate layer's features: they cost about 2 ms a clip in numpy on the clip the
worker already holds, are the same on every inference path (the compiled fast path, XLA, the torch
backend, a legacy ``.h5``), and can be computed for any model from the data it was trained on without
loading it (``aislewatch model describe``).  They describe what the camera shows, not what the model
learned, so a scene can match in these statistics and still be foreign to the model; they catch the
common case of a model trained on one kind of footage and pointed at another.  Statistics of motion
(frame differences) were tried and left out: they measure how much moves, and flagged empty aisles of the
very views the model was trained on.

The description is the mean and the (shrunk) covariance of those statistics over the training clips, log
scaled where a statistic is a magnitude, and the distribution of the Mahalanobis distance of the training
clips themselves: a clip is *beyond* the description when its distance exceeds the 99.5th percentile of
the training clips'.  One clip beyond it means little (an odd moment); at run time a margin is added
(``model.ood_margin``); a camera is flagged when at least half of its last ``window`` clips are beyond it, and cleared when fewer than a quarter are
(``CameraFamiliarity``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.metadata import ModelMetadata

log = logging.getLogger(__name__)

FEATURE_NAMES: tuple[str, ...] = (
    "mean_b", "mean_g", "mean_r",
    "log_std_b", "log_std_g", "log_std_r",
    "log_colourfulness",
    "log_edge_density",
    "log_fine_texture",
)
DESCRIPTION_VERSION = 1
PERCENTILE = 99.5
_EPS = 1.0  # added before the log of a magnitude in grey levels, so a flat frame is not -inf
_SPATIAL_FRAMES = (0, 5, 10, 15, 19)  # spatial statistics from five frames of twenty: as good, four times cheaper


def clip_features(clips: np.ndarray) -> np.ndarray:
    """The statistics above for each clip of ``clips`` (N, T, H, W, 3) uint8 BGR, as (N, len(FEATURE_NAMES))."""
    clips = np.asarray(clips)
    if clips.ndim != 5 or clips.shape[-1] != 3:
        raise ValueError(f"expected clips of shape (N, T, H, W, 3), got {clips.shape}")
    n, t = clips.shape[:2]
    frames = [i for i in _SPATIAL_FRAMES if i < t] or [0]
    spatial = clips[:, frames].astype(np.float32)  # (N, F, H, W, 3)
    flat = spatial.reshape(n, -1, 3)
    mean = flat.mean(axis=1)
    std = flat.std(axis=1)
    colourful = (spatial.max(axis=-1) - spatial.min(axis=-1)).reshape(n, -1).mean(axis=1)
    grey = spatial[..., 1]  # green: the luminance proxy, no colour conversion needed
    gx = np.abs(np.diff(grey, axis=3)).reshape(n, -1).mean(axis=1)
    gy = np.abs(np.diff(grey, axis=2)).reshape(n, -1).mean(axis=1)
    lap = np.abs(
        4 * grey[:, :, 1:-1, 1:-1] - grey[:, :, :-2, 1:-1] - grey[:, :, 2:, 1:-1] - grey[:, :, 1:-1, :-2] - grey[:, :, 1:-1, 2:]
    ).reshape(n, -1).mean(axis=1)
    return np.column_stack([
        mean / 255.0,
        np.log(std + _EPS),
        np.log(colourful + _EPS),
        np.log(gx + gy + _EPS),
        np.log(lap + _EPS),
    ]).astype(np.float64)


@dataclass(frozen=True)
class InputDescription:
    """What the training inputs looked like, in ``FEATURE_NAMES`` statistics; stored in the model's sidecar."""

    mean: tuple[float, ...]
    precision: tuple[tuple[float, ...], ...]  # inverse of the shrunk covariance
    threshold: float  # the PERCENTILE-th percentile of the training clips' distances
    clips: int
    distance_quantiles: dict[str, float] = field(default_factory=dict)  # "50", "90", "99", "99.5", "max"
    feature_names: tuple[str, ...] = FEATURE_NAMES
    version: int = DESCRIPTION_VERSION
    source: str = ""

    def __post_init__(self) -> None:
        d = len(self.feature_names)
        if len(self.mean) != d or len(self.precision) != d or any(len(row) != d for row in self.precision):
            raise ValueError(f"input description: {d} features, but mean {len(self.mean)} and precision "
                             f"{len(self.precision)}x{len(self.precision[0]) if self.precision else 0}")
        if not self.threshold > 0:
            raise ValueError(f"input description: threshold must be > 0, got {self.threshold}")

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row of ``features`` from the training clips' mean."""
        centred = np.asarray(features, dtype=np.float64) - np.asarray(self.mean)
        prec = np.asarray(self.precision)
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", centred, prec, centred), 0.0))

    def score(self, clips: np.ndarray) -> np.ndarray:
        """Each clip's distance divided by the threshold: above 1 is beyond what the model was trained on."""
        return self.distances(clip_features(clips)) / self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version, "feature_names": list(self.feature_names), "mean": list(self.mean),
            "precision": [list(r) for r in self.precision], "threshold": self.threshold,
            "percentile": PERCENTILE, "clips": self.clips, "distance_quantiles": dict(self.distance_quantiles),
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> InputDescription | None:
        """The description in a sidecar's ``input_description``; None when it is missing or of another kind
        (another version or other statistics: the caller treats the model as not described)."""
        if not raw:
            return None
        if raw.get("version") != DESCRIPTION_VERSION or tuple(raw.get("feature_names", ())) != FEATURE_NAMES:
            log.warning("the model's input description is of another kind (version %s); not used", raw.get("version"))
            return None
        return cls(
            mean=tuple(float(v) for v in raw["mean"]),
            precision=tuple(tuple(float(v) for v in row) for row in raw["precision"]),
            threshold=float(raw["threshold"]),
            clips=int(raw["clips"]),
            distance_quantiles={str(k): float(v) for k, v in raw.get("distance_quantiles", {}).items()},
            source=str(raw.get("source", "")),
        )


def describe(features: np.ndarray, *, source: str = "", shrinkage: float = 0.05) -> InputDescription:
    """The description of training clips with these ``clip_features`` rows.

    The covariance is shrunk towards its diagonal (``shrinkage``) so that statistics which move together
    in the training scenes (drawn with one renderer) do not make the precision blow up along directions
    the training set never varied in; the threshold is then set on the training clips' own distances.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(FEATURE_NAMES):
        raise ValueError(f"expected features of shape (N, {len(FEATURE_NAMES)}), got {x.shape}")
    if len(x) < 2 * len(FEATURE_NAMES):
        raise ValueError(f"need at least {2 * len(FEATURE_NAMES)} training clips to describe, got {len(x)}")
    mean = x.mean(axis=0)
    cov = np.cov(x, rowvar=False)
    diag = np.diag(np.maximum(np.diag(cov), 1e-6))
    cov = (1 - shrinkage) * cov + shrinkage * diag + 1e-9 * np.eye(len(mean))
    precision = np.linalg.inv(cov)
    centred = x - mean
    dist = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", centred, precision, centred), 0.0))
    quantiles = {str(q): float(np.percentile(dist, q)) for q in (50, 90, 99, PERCENTILE)}
    quantiles["max"] = float(dist.max())
    return InputDescription(
        mean=tuple(float(v) for v in mean),
        precision=tuple(tuple(float(v) for v in row) for row in precision),
        threshold=float(np.percentile(dist, PERCENTILE)),
        clips=len(x),
        distance_quantiles=quantiles,
        source=source,
    )


def describe_clips(
    batches: Iterable[np.ndarray], *, source: str = "", progress: Callable[[int], None] | None = None
) -> InputDescription:
    """``describe`` over clips that come in batches (N, T, H, W, 3) uint8; ``progress(clips_so_far)``."""
    rows: list[np.ndarray] = []
    seen = 0
    for batch in batches:
        if len(batch) == 0:
            continue
        rows.append(clip_features(batch))
        seen += len(batch)
        if progress is not None:
            progress(seen)
    if not rows:
        raise ValueError("no clips to describe")
    return describe(np.concatenate(rows), source=source)


@dataclass(frozen=True)
class FamiliarityChange:
    """A camera whose footage crossed into or out of what the model was trained on."""

    camera_id: str
    store_id: str
    out_of_distribution: bool
    beyond_fraction: float  # of the last ``clips`` clips, the fraction beyond the description
    clips: int
    median_score: float


@dataclass
class _CameraScores:
    store_id: str
    beyond: deque[bool]
    scores: deque[float]
    flagged: bool | None = None  # None until the first decision


class CameraFamiliarity:
    """Rolling per-camera check: of the last ``window`` clips, how many were beyond the description.

    A camera is decided once it has ``min_clips`` clips: flagged when at least ``flag_fraction`` of the
    window is beyond, cleared again when fewer than ``clear_fraction`` are (the gap keeps a camera on the
    edge from flapping).  ``observe`` returns each camera's first decision and every change after it.
    """

    def __init__(self, window: int = 20, min_clips: int = 10,
                 flag_fraction: float = 0.5, clear_fraction: float = 0.25) -> None:
        if not 1 <= min_clips <= window:
            raise ValueError(f"need 1 <= min_clips <= window, got {min_clips} and {window}")
        if not 0 < clear_fraction <= flag_fraction <= 1:
            raise ValueError(f"need 0 < clear_fraction <= flag_fraction <= 1, got {clear_fraction}, {flag_fraction}")
        self.window, self.min_clips = window, min_clips
        self.flag_fraction, self.clear_fraction = flag_fraction, clear_fraction
        self._cameras: dict[str, _CameraScores] = {}

    def flagged(self, camera_id: str) -> bool:
        """True while the camera is flagged out of distribution; before its first decision, whether its
        latest clip was beyond the description (a clip speaks for itself until there are enough of them)."""
        camera = self._cameras.get(camera_id)
        if camera is None or not camera.beyond:
            return False
        return camera.beyond[-1] if camera.flagged is None else camera.flagged

    def beyond_fraction(self, camera_id: str) -> float | None:
        camera = self._cameras.get(camera_id)
        return None if camera is None or not camera.beyond else sum(camera.beyond) / len(camera.beyond)

    def observe(self, camera_id: str, store_id: str, score: float) -> FamiliarityChange | None:
        """Add one clip's score (distance / threshold); the camera's decision when it is new or changed."""
        camera = self._cameras.get(camera_id)
        if camera is None:
            camera = self._cameras[camera_id] = _CameraScores(
                store_id, deque(maxlen=self.window), deque(maxlen=self.window)
            )
        camera.store_id = store_id
        camera.beyond.append(bool(score > 1.0))
        camera.scores.append(float(score))
        if len(camera.beyond) < self.min_clips:
            return None
        fraction = sum(camera.beyond) / len(camera.beyond)
        flagged = fraction >= (self.clear_fraction if camera.flagged else self.flag_fraction)
        if flagged == camera.flagged:
            return None
        camera.flagged = flagged
        return FamiliarityChange(camera_id, store_id, flagged, fraction, len(camera.beyond),
                                 float(np.median(camera.scores)))


def read_description(model_path: Path) -> InputDescription | None:
    """The input description in a model's sidecar; None for a model without one (a legacy ``.h5``, an old
    sidecar, or none at all)."""
    metadata = ModelMetadata.read(Path(model_path))
    return None if metadata is None else InputDescription.from_dict(metadata.input_description)


def write_description(model_path: Path, description: InputDescription) -> Path:
    """Store ``description`` in the model's sidecar (its other fields kept); the sidecar's path."""
    sidecar = ModelMetadata.sidecar_path(Path(model_path))
    metadata = ModelMetadata.read(Path(model_path))
    if metadata is None:
        raise FileNotFoundError(f"{sidecar}: no metadata beside the model to add the description to")
    updated = dataclasses.replace(metadata, input_description=description.to_dict())
    tmp = sidecar.with_suffix(".json.tmp")
    tmp.write_text(updated.to_json() + "\n", encoding="utf-8")
    tmp.replace(sidecar)
    return sidecar


def describe_dataset(dataset_dir: Path, *, max_videos: int | None = None, seed: int = 0,
                     cache_dir: Path | None = None, say: Callable[[str], None] = print,
                     bits: int = 8) -> InputDescription:
    """The description of a class-per-folder dataset's clips, decoded as ``train`` decodes them (the same
    cache) and kept to ``bits`` bits a value (the model's ``input_bits``); ``max_videos`` takes an even
    random sample of them, both classes alike."""
    from inference.dataset import discover_videos, load_clips

    items = discover_videos(Path(dataset_dir))
    if max_videos is not None and len(items) > max_videos:
        rng = np.random.default_rng(seed)
        items = [items[i] for i in sorted(rng.choice(len(items), size=max_videos, replace=False))]
    say(f"describing the inputs of {len(items)} videos under {dataset_dir}")
    clips = load_clips(items, cache_dir=cache_dir, progress=True, bits=bits)
    if clips.skipped:
        say(f"  {len(clips.skipped)} videos could not be read and are left out")
    description = describe(clip_features(clips.clips), source=f"{Path(dataset_dir).name}: {len(clips.items)} videos")
    q = description.distance_quantiles
    say(f"  {description.clips} clips; training distances: median {q['50']:.2f}, 99th {q['99']:.2f}, "
        f"99.5th {description.threshold:.2f} (the threshold), max {q['max']:.2f}")
    return description
