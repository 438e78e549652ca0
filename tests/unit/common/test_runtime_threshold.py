"""Which threshold the alert rules apply: configuration first, then what was calibrated into the model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from common.app.runtime import alert_threshold
from common.settings import Settings, load_settings


@dataclass
class _Loaded:  # what alert_threshold reads of a loaded ClipClassifier
    threshold: float


def _settings(model_path: Path, *, model: dict | None = None, alerts: dict | None = None) -> Settings:
    return load_settings(None, overrides={"model": {"path": str(model_path), **(model or {})}, "alerts": alerts or {}})


def test_precedence_alerts_then_model_setting_then_the_model_itself(tmp_path: Path) -> None:
    model = tmp_path / "convlstm.keras"
    model.with_suffix(".json").write_text(json.dumps({
        "version": "v", "threshold": 0.37, "input_shape": [20, 64, 64, 3],
        "class_names": ["normal", "shoplifting"], "architecture": "convlstm-4-8-14-16",
    }))
    assert alert_threshold(_settings(model)) == 0.37  # the sidecar, without loading the model
    assert alert_threshold(_settings(model), _Loaded(0.42)) == 0.42  # the loaded model's own
    assert alert_threshold(_settings(model, model={"threshold": 0.6}), _Loaded(0.42)) == 0.6
    both = _settings(model, model={"threshold": 0.6}, alerts={"threshold": 0.0})
    assert alert_threshold(both, _Loaded(0.42)) == 0.0  # an explicit 0 is a setting, not "unset"
