"""What training writes beside a model, and how result documents become strict JSON.

Shared by ``train`` (which writes the files), ``evaluate`` (which reads the split and history back) and
``classify`` (which writes verdicts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.model import ModelMetadata


@dataclass(frozen=True)
class TrainArtefacts:
    """Where ``train`` writes its files for a given model path."""

    model: Path
    sidecar: Path
    split: Path
    history: Path
    skipped: Path
    duplicates: Path
    checkpoint: Path
    cache: Path


def artefact_paths(model_path: Path) -> TrainArtefacts:
    """The files written beside ``model_path`` (see the module docstring)."""
    model_path = Path(model_path)
    stem, folder = model_path.stem, model_path.parent
    return TrainArtefacts(
        model=model_path,
        sidecar=ModelMetadata.sidecar_path(model_path),
        split=folder / f"{stem}.split.json",
        history=folder / f"{stem}.history.json",
        skipped=folder / f"{stem}.skipped.json",
        duplicates=folder / f"{stem}.duplicates.json",
        checkpoint=folder / "checkpoints" / f"{stem}.best.keras",
        cache=folder / "clip-cache",
    )


def jsonable(value: Any) -> Any:
    """Replace NaN/inf by None and numpy scalars by Python ones so ``json.dumps`` writes strict JSON."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
