"""Relative paths in a configuration file mean "next to this file", whatever the working directory.

``load_settings`` passes a file's parsed YAML through ``resolve_relative_paths`` before validation: every
setting typed ``Path`` (``model.path``, ``model.shadow_path``, ``ingest.spool_dir``, ``reporting.output_dir``,
``service.evidence_dir``, and any added later), a SQLite ``database.url`` with a relative file, and a camera
``source`` that is a relative file path are made absolute against the file's own directory.  So
``aislewatch infer -c /etc/aislewatch/aislewatch.yaml`` finds ``model/convlstm.keras`` beside the file from
any working directory.  Values from the environment (``AISLEWATCH__…``) and the defaults stay relative to the
working directory, as a shell user expects of an environment variable.

The walk follows the settings model's own annotations, so it needs no list of keys to keep up to date.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel


def _absolute(value: Any, base: Path) -> Any:
    if isinstance(value, str | Path) and str(value) and not Path(value).expanduser().is_absolute():
        return str(base / Path(value))
    return value


def _sqlite_url(value: Any, base: Path) -> Any:
    """``sqlite:///build/x.db`` (relative: three slashes) → ``sqlite:////abs/dir/build/x.db``."""
    if not isinstance(value, str) or not value.startswith("sqlite"):
        return value
    scheme, sep, rest = value.partition(":///")
    if not sep or not scheme.startswith("sqlite") or rest.startswith("/") or not rest or rest.startswith(":memory:"):
        return value
    file, query_sep, query = rest.partition("?")
    return f"{scheme}:///{base / file}{query_sep}{query}"


def _camera_source(value: Any, base: Path) -> Any:
    """A relative video file path; URLs (rtsp://, file://) and ``${VAR}`` sources are left alone."""
    if not isinstance(value, str) or "://" in value or value.startswith("$") or value.strip().isdigit():
        return value
    return _absolute(value, base)


# Settings that hold a path inside another type, by (section class name, field name).
_SPECIAL: dict[tuple[str, str], Callable[[Any, Path], Any]] = {
    ("DatabaseSettings", "url"): _sqlite_url,
    ("CameraSettings", "source"): _camera_source,
}


def _kinds(annotation: Any) -> list[Any]:
    """The types an annotation allows (Optional, unions and Annotated unwrapped)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _kinds(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [kind for arg in typing.get_args(annotation) for kind in _kinds(arg)]
    return [annotation]


def _resolve_value(annotation: Any, value: Any, base: Path) -> Any:
    for kind in _kinds(annotation):
        if kind is Path:
            return _absolute(value, base)
        if isinstance(kind, type) and issubclass(kind, BaseModel) and isinstance(value, dict):
            return resolve_relative_paths(value, kind, base)
        if typing.get_origin(kind) is list and isinstance(value, list):
            (item,) = typing.get_args(kind) or (Any,)
            return [_resolve_value(item, v, base) for v in value]
    return value


def resolve_relative_paths(data: dict[str, Any], model: type[BaseModel], base: Path) -> dict[str, Any]:
    """A copy of ``data`` (a section of the YAML, for ``model``) with its relative paths made absolute
    against ``base``; keys the model does not know are kept as they are (validation reports them)."""
    resolved: dict[str, Any] = {}
    for key, value in data.items():
        field = model.model_fields.get(key) if isinstance(key, str) else None
        special = _SPECIAL.get((model.__name__, key)) if isinstance(key, str) else None
        if special is not None:
            resolved[key] = special(value, base)
        elif field is None or value is None:
            resolved[key] = value
        else:
            resolved[key] = _resolve_value(field.annotation, value, base)
    return resolved
