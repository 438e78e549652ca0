"""What can be known about a configuration before anything starts, beyond the values themselves.

``common.settings`` checks each value (bounds, time zones, cron, addresses, URLs).  Here are the checks
that look at the machine: the model file exists, its input (from the sidecar, else from the ``.keras``
archive's own ``config.json``; TensorFlow is not loaded) fits every camera's clip settings, and the folders
a role writes to can be written.  ``aislewatch config check`` runs all of them; every other command runs
those of the roles it starts, so a mistake is one line naming the file, the key and the reason, and a
non-zero exit, before any worker starts (never a traceback, and never a CronJob "succeeding" on nothing).
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from common.settings import ConfigError, Settings

# Which checks each role needs: "model" (file, input fit), "database" (a SQLite file's folder), and the
# writable folders by setting name.
ROLE_NEEDS: dict[str, frozenset[str]] = {
    "ingest": frozenset({"cameras", "ingest.spool_dir", "service.evidence_dir"}),
    "infer": frozenset({"model", "database"}),
    "alerts": frozenset({"model-threshold", "database", "service.evidence_dir"}),
    "desk": frozenset({"database", "service.evidence_dir"}),
    "report": frozenset({"database", "reporting.output_dir"}),
    "db": frozenset({"database"}),
    "classify": frozenset({"model"}),
}
ALL_ROLES = frozenset(ROLE_NEEDS)


def check_settings(settings: Settings, source: str, roles: Iterable[str] = ALL_ROLES) -> None:
    """Raise ConfigError naming ``source`` with every problem the ``roles`` would meet at start."""
    problems = settings_problems(settings, roles)
    if problems:
        raise ConfigError(source, problems)


def settings_problems(settings: Settings, roles: Iterable[str] = ALL_ROLES) -> list[str]:
    """One line per problem: the key, its value and the reason."""
    needs: set[str] = set()
    for role in roles:
        needs |= ROLE_NEEDS.get(role, frozenset())
    problems: list[str] = []
    if "model" in needs:
        problems += model_problems(settings)
    elif "model-threshold" in needs and settings.alerts.threshold is None and settings.model.threshold is None:
        # the alert rules take the threshold calibrated into the model's sidecar
        problems += _model_file_problems(settings.model.path, "model.path")
    if "database" in needs:
        problems += database_problems(settings)
    if "cameras" in needs:
        problems += camera_file_problems(settings)
    folders = {
        "ingest.spool_dir": settings.ingest.spool_dir if settings.ingest.spool_max_mb > 0 else None,
        "service.evidence_dir": settings.service.evidence_dir,
        "reporting.output_dir": settings.reporting.output_dir,
    }
    for key, folder in folders.items():
        if key in needs and folder is not None:
            reason = unwritable_reason(Path(folder))
            if reason:
                problems.append(f"{key} ({folder}): {reason}")
    return problems


def _model_file_problems(path: Path, key: str) -> list[str]:
    if not Path(path).exists():
        return [f"{key} ({path}): no such model file (a relative path in a config file is read from the file's folder)"]
    if not Path(path).is_file():
        return [f"{key} ({path}): not a file"]
    return []


def model_problems(settings: Settings) -> list[str]:
    """The model file exists, its archive and sidecar agree on the input, and every camera's clips fit it."""
    from inference.metadata import ModelMetadata, clip_settings_problems

    path = settings.model.path
    problems = _model_file_problems(path, "model.path")
    if problems:
        return problems
    try:
        archive = keras_input_shape(path)
    except ValueError as exc:
        return [f"model.path ({path}): {exc}"]
    try:
        metadata = ModelMetadata.read(path)
    except ValueError as exc:
        return [f"model.path ({path}): {exc}"]
    if metadata is not None and archive is not None and tuple(metadata.input_shape) != archive:
        return [f"model.path ({path}): the model takes clips of shape {archive} but its sidecar "
                f"{ModelMetadata.sidecar_path(path).name} says {tuple(metadata.input_shape)}: a sidecar of another model?"]
    if metadata is None and archive is not None:
        # no sidecar: the archive says what the model takes
        from inference.metadata import _camera_problems

        return _camera_problems(settings, Path(path), archive)
    return clip_settings_problems(settings)


def keras_input_shape(path: Path) -> tuple[int, ...] | None:
    """The clip shape (without the batch axis) a ``.keras`` archive's ``config.json`` declares, read from the
    zip without TensorFlow; None for other formats or when the archive does not say."""
    if Path(path).suffix != ".keras":
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a readable .keras model archive ({exc})") from None
    return _declared_input(config)


def _declared_input(config: dict[str, Any]) -> tuple[int, ...] | None:
    inner = config.get("config") or {}
    shapes: list[Any] = []
    for layer in inner.get("layers") or []:
        layer_config = layer.get("config") or {}
        shape = layer_config.get("batch_shape") or layer_config.get("batch_input_shape")
        if layer.get("class_name") == "InputLayer" or shape:
            shapes.append(shape)
            break
    shapes.append((config.get("build_config") or {}).get("input_shape"))
    for shape in shapes:
        if isinstance(shape, list) and len(shape) >= 2 and all(isinstance(v, int) for v in shape[1:]):
            return tuple(int(v) for v in shape[1:])
    return None


def camera_file_problems(settings: Settings) -> list[str]:
    """Every enabled camera whose source is a video file names one that exists (streams are tried at start)."""
    problems = []
    for s, store in enumerate(settings.stores):
        for c, camera in enumerate(store.cameras):
            source = camera.source
            if not camera.enabled or "${" in source or ("://" in source and not source.startswith("file://")):
                continue
            file = Path(source.removeprefix("file://"))
            if not file.is_file():
                problems.append(f"stores[{s}].cameras[{c}].source ({file}): camera {camera.id}: no such video file "
                                "(a relative path in a config file is read from the file's folder)")
    return problems


def database_problems(settings: Settings) -> list[str]:
    """A SQLite database's file must be creatable or writable (a server database is checked on connect)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(settings.database.url)
    except ArgumentError as exc:
        return [f"database.url: {exc}"]
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return []
    file = Path(url.database)
    if file.is_dir():
        return [f"database.url ({settings.database.url}): {file} is a folder, not a database file"]
    reason = unwritable_reason(file.parent)
    if reason:
        return [f"database.url ({settings.database.url}): the database's folder {file.parent}: {reason}"]
    return []


def unwritable_reason(folder: Path) -> str | None:
    """Why ``folder`` cannot be written (created where missing), or None when it can.  Writes and removes a
    probe file in it, or in the nearest folder above that exists, so read-only mounts are caught too."""
    folder = Path(folder).absolute()
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            return "no part of the path exists"
        existing = existing.parent
    if not existing.is_dir():
        if existing == folder:
            return "exists and is not a folder"
        return f"{existing} is a file, so the folder cannot be created"
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".aislewatch-probe-"):
            pass
    except OSError as exc:
        where = "" if existing == folder else f" (the nearest existing folder above it, {existing})"
        return f"cannot write{where}: {exc.strerror or exc}"
    return None
