"""What a model file is, read from its JSON sidecar without loading TensorFlow: version, calibrated
threshold, provenance and the clip shape it takes; and whether configured cameras cut clips that fit it.

A model file is a Keras ``.keras`` (or legacy ``.h5``) next to a sidecar with the same stem
(``convlstm.keras`` + ``convlstm.json``).  ``aislewatch config check`` and the start-up of ``infer`` and
``run`` read the sidecar here, so a camera whose ``clip.frames`` or ``clip.size`` cannot feed the model is
refused before anything loads, instead of every clip of that camera ending in the dead-letter topic.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.model_input import CLIP_FRAMES, CLIP_SIZE, FULL_BITS
from common.settings import Settings

log = logging.getLogger(__name__)

INPUT_SHAPE: tuple[int, int, int, int] = (CLIP_FRAMES, CLIP_SIZE, CLIP_SIZE, 3)  # see common.model_input
CLASS_NAMES: tuple[str, str] = ("normal", "shoplifting")  # sigmoid output = P(CLASS_NAMES[1])


@dataclass(frozen=True)
class ModelMetadata:
    """What a model file is: version, calibrated threshold, provenance; stored as the JSON sidecar."""

    version: str
    input_shape: tuple[int, int, int, int] = INPUT_SHAPE
    class_names: tuple[str, str] = CLASS_NAMES
    threshold: float = 0.5
    threshold_goal: str = "default"  # e.g. "max_f1" or "min_precision=0.95"
    architecture: str = "convlstm-4-8-14-16"
    trained_on: dict = field(default_factory=dict)  # {"description", "synthetic": bool, "videos": n, "sha256"}
    metrics: dict = field(default_factory=dict)
    created_at: str = ""
    # What the training inputs looked like (inference.ood.InputDescription.to_dict); empty for a model made
    # before it existed: such a model works as before, its cameras are never flagged out of distribution.
    input_description: dict = field(default_factory=dict)
    # Bits a value of the model's input keeps (``common.model_input.quantize``): serving and training quantize
    # every clip to it, so the bus need carry no more.  A sidecar written before it existed is 8: as before.
    input_bits: int = FULL_BITS

    def __post_init__(self) -> None:
        if isinstance(self.input_bits, bool) or not isinstance(self.input_bits, int) \
                or not 1 <= self.input_bits <= FULL_BITS:
            raise ValueError(f"input_bits must be an integer from 1 to {FULL_BITS}, got {self.input_bits!r}")
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if len(self.class_names) != 2:
            raise ValueError(f"need exactly two class names, got {self.class_names!r}")

    def to_json(self) -> str:
        """Serialise to the sidecar's JSON text (tuples become lists)."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        """Parse sidecar JSON; unknown keys are ignored so newer sidecars still load."""
        raw = json.loads(text)
        if not isinstance(raw, dict) or "version" not in raw:
            raise ValueError("model metadata must be a JSON object with a 'version'")
        known = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {k: v for k, v in raw.items() if k in known}
        if "input_shape" in values:
            values["input_shape"] = tuple(int(v) for v in values["input_shape"])
        if "class_names" in values:
            values["class_names"] = tuple(str(v) for v in values["class_names"])
        if "threshold" in values:
            values["threshold"] = float(values["threshold"])
        return cls(**values)

    @classmethod
    def sidecar_path(cls, model_path: Path) -> Path:
        """Where a model file's metadata lives: same stem, ``.json``."""
        return Path(model_path).with_suffix(".json")

    @classmethod
    def read(cls, model_path: Path) -> ModelMetadata | None:
        """The metadata beside ``model_path``, or None when there is no sidecar (ValueError when it is broken)."""
        sidecar = cls.sidecar_path(Path(model_path))
        if not sidecar.is_file():
            return None
        try:
            return cls.from_json(sidecar.read_text(encoding="utf-8"))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{sidecar}: unreadable model metadata: {exc}") from exc


def calibrated_threshold(model_path: Path) -> float:
    """The threshold calibrated into a model, read from its metadata sidecar without loading the model."""
    metadata = ModelMetadata.read(Path(model_path))
    if metadata is not None:
        return metadata.threshold
    log.warning("no metadata beside %s; calibrated threshold taken as 0.5", model_path)
    return 0.5


def model_input_shape(model_path: Path) -> tuple[int, ...]:
    """The clip shape (frames, height, width, channels) a model takes, from its sidecar; a model without
    one must take the pipeline's ``INPUT_SHAPE`` (loading checks the model itself against it)."""
    metadata = ModelMetadata.read(Path(model_path))
    return INPUT_SHAPE if metadata is None else tuple(metadata.input_shape)


def model_input_bits(model_path: Path) -> int:
    """The bits a value of a model's input keeps, from its sidecar (8 for a model without one)."""
    metadata = ModelMetadata.read(Path(model_path))
    return FULL_BITS if metadata is None else int(metadata.input_bits)


def clip_shape(frames: int, size: int) -> tuple[int, int, int, int]:
    """The shape of the clips a camera with ``clip.frames`` and ``clip.size`` cuts (BGR, square frames)."""
    return (frames, size, size, 3)


def clip_settings_problems(settings: Settings) -> list[str]:
    """One line per camera whose clip settings cannot feed the configured model: the camera, both shapes
    and the setting to change (as ``config check`` names keys).  Reads only the model's sidecar.

    A shadow model (``model.shadow_path``) is scored on the same clips, so it must take the same shape as
    the active one: a candidate that does not, or that is missing, is a problem too.
    """
    problems = _shadow_problems(settings)
    model = settings.model.path
    try:
        wanted = model_input_shape(model)
    except ValueError as exc:
        return [f"model.path ({model}): {exc}", *problems]
    if len(wanted) != 4 or wanted[1] != wanted[2] or wanted[3] != 3:
        return [f"model.path ({model}): input shape {wanted} is not (frames, size, size, 3)", *problems]
    shadow_readable = not problems
    problems += _camera_problems(settings, model, tuple(wanted))
    problems += _camera_bits_problems(settings, model, "model.path")
    if settings.model.shadow_path is not None and shadow_readable:
        problems += _camera_bits_problems(settings, settings.model.shadow_path, "model.shadow_path")
    shadow = settings.model.shadow_path
    if shadow is not None and shadow_readable:
        shadow_shape = model_input_shape(shadow)
        if tuple(shadow_shape) != tuple(wanted):
            problems.append(
                f"model.shadow_path ({shadow}): the candidate takes clips of shape {tuple(shadow_shape)}, the "
                f"active model {model.name} {tuple(wanted)}; shadow mode scores the same clips with both, so "
                "the candidate must take the same shape"
            )
    return problems


def _shadow_problems(settings: Settings) -> list[str]:
    """The shadow model's file or sidecar, when it cannot be read."""
    shadow = settings.model.shadow_path
    if shadow is None:
        return []
    if not Path(shadow).is_file():
        return [f"model.shadow_path ({shadow}): no such model file"]
    try:
        model_input_shape(shadow)
    except ValueError as exc:
        return [f"model.shadow_path ({shadow}): {exc}"]
    return []


def _camera_problems(settings: Settings, model: Path, wanted: tuple[int, ...]) -> list[str]:
    frames, size = wanted[0], wanted[1]
    problems = []
    for s, store in enumerate(settings.stores):
        for c, camera in enumerate(store.cameras):
            if not camera.enabled:
                continue
            cut = clip_shape(camera.clip.frames, camera.clip.size)
            if cut == tuple(wanted):
                continue
            key = f"stores[{s}].cameras[{c}].clip"
            changes = []
            if camera.clip.frames != frames:
                changes.append(f"{key}.frames to {frames} (is {camera.clip.frames})")
            if camera.clip.size != size:
                changes.append(f"{key}.size to {size} (is {camera.clip.size})")
            problems.append(
                f"camera {camera.id} (store {store.id}) cuts clips of shape {cut}, but the model {model.name} "
                f"takes {tuple(wanted)}: set " + " and ".join(changes)
            )
    return problems


def _camera_bits_problems(settings: Settings, model: Path, key: str) -> list[str]:
    """Cameras whose clips keep fewer bits a value (``clip.bits``) than the model's input (``input_bits``):
    the model would be served coarser frames than it was trained on.  More bits are fine (they are dropped)."""
    needed = model_input_bits(model)
    problems = []
    for s, store in enumerate(settings.stores):
        for c, camera in enumerate(store.cameras):
            if camera.enabled and camera.clip.bits < needed:
                problems.append(
                    f"stores[{s}].cameras[{c}].clip.bits: camera {camera.id} (store {store.id}) sends "
                    f"{camera.clip.bits}-bit frames; model {Path(model).name} ({key}) needs {needed}: "
                    f"set clip.bits {needed}"
                )
    return problems
