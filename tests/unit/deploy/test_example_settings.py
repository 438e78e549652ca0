"""deploy/README.md says the example config has every setting: each key of the settings model is in
deploy/config/aislewatch.example.yaml (as a key, or as a commented-out ``# key:`` for secrets and overrides),
and the file passes ``config check``."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from common.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "deploy" / "config" / "aislewatch.example.yaml"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The settings model inside an annotation (``list[CameraSettings]``, ``DeskSettings | None`` …)."""
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, typing.Union, types.UnionType):
        return next((m for m in map(_model_of, typing.get_args(annotation)) if m is not None), None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def setting_paths(model: type[BaseModel] = Settings, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, field in model.model_fields.items():
        path = (*prefix, field.alias or name)
        yield path
        inner = _model_of(field.annotation)
        if inner is not None:
            yield from setting_paths(inner, path)


def _present(doc: Any, path: tuple[str, ...]) -> bool:
    node = doc
    for key in path:
        if isinstance(node, list):  # stores, cameras: any item that has the key
            node = next((item for item in node if isinstance(item, dict) and key in item), None)
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def example_with_commented_keys() -> Any:
    """The example parsed with each commented-out ``# key: …`` line read as the key (its value dropped)."""
    text = re.sub(r"^(\s*)# ?([a-z_]+):.*$", r"\1\2: null", EXAMPLE.read_text(), flags=re.M)
    return yaml.safe_load(text)


def test_the_walk_finds_nested_settings() -> None:
    paths = set(setting_paths())
    assert {("stores", "cameras", "realtime"), ("stores", "cameras", "motion", "hold_s"), ("desk", "port")} <= paths


def test_every_setting_is_in_the_example() -> None:
    doc = example_with_commented_keys()
    missing = [".".join(p) for p in setting_paths() if not _present(doc, p)]
    assert missing == [], f"settings missing from {EXAMPLE.name}: {missing}"


def test_the_example_is_a_valid_config() -> None:
    settings = load_settings(EXAMPLE)
    camera = settings.stores[0].cameras[0]
    assert camera.realtime is False and camera.loop is False  # written as the defaults they are
