"""Clip settings that cannot feed the model are refused by `config check` and at the start of infer/run,
naming the camera, both shapes and the setting to change; the model's shape comes from its sidecar."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from common.app.cli import main
from common.settings import DEFAULT_MODEL_PATH

ROOT = Path(__file__).resolve().parents[3]


def config(tmp_path: Path, *, model: Path = DEFAULT_MODEL_PATH) -> Path:
    """Three file cameras: cam-ok fits the bundled model (20, 64, 64, 3); cam-frames and cam-size do not."""
    path = tmp_path / "aislewatch.yaml"
    for name in ("a.mp4", "b.mp4", "c.mp4"):  # file cameras must exist (ingest's start-up check)
        (tmp_path / name).touch()
    path.write_text(f"""
stores:
  - id: store-1
    cameras:
      - {{id: cam-ok, source: {tmp_path / 'a.mp4'}}}
      - {{id: cam-frames, source: {tmp_path / 'b.mp4'}, clip: {{frames: 10}}}}
      - {{id: cam-size, source: {tmp_path / 'c.mp4'}, clip: {{size: 32}}}}
model:
  path: {model}
database:
  url: sqlite:///{tmp_path / 'aw.db'}
""")
    return path


def test_config_check_names_camera_shapes_and_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(tmp_path)
    assert main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err
    lines = [line for line in err.splitlines() if line.startswith(f"aislewatch: {path}: ")]  # one line each
    assert len(lines) == 2 and "cam-ok" not in err
    frames, size = lines
    assert "camera cam-frames" in frames and "(10, 64, 64, 3)" in frames and "(20, 64, 64, 3)" in frames
    assert "stores[0].cameras[1].clip.frames to 20 (is 10)" in frames
    assert "camera cam-size" in size and "(20, 32, 32, 3)" in size and "(20, 64, 64, 3)" in size
    assert "stores[0].cameras[2].clip.size to 64 (is 32)" in size


def test_the_models_shape_is_read_from_its_sidecar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "short.h5"  # config check never loads the model: its file need not be a working one
    model.write_bytes(b"")
    model.with_suffix(".json").write_text(json.dumps({"version": "short", "input_shape": [10, 64, 64, 3],
                                                             "input_bits": 5}))
    assert main(["config", "check", str(config(tmp_path, model=model))]) == 2
    err = capsys.readouterr().err
    assert "cam-frames" not in err  # 10 frames is what this model takes
    assert "camera cam-ok" in err and "stores[0].cameras[0].clip.frames to 10 (is 20)" in err
    assert "camera cam-size" in err and "clip.frames to 10" in err and "clip.size to 64 (is 32)" in err


@pytest.mark.parametrize(
    ("camera_bits", "model_bits", "refused"),
    [
        (6, 6, False),
        (8, 6, False),  # more bits than the model sees: dropped, fine
        (6, None, True),  # a model without input_bits takes 8, as before
        (6, 8, True),
        (5, 6, True),
        (8, None, False),
    ],
)
def test_a_camera_with_fewer_bits_than_the_model_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], camera_bits: int, model_bits: int | None, refused: bool
) -> None:
    model = tmp_path / "m.h5"  # an .h5 is not opened by config check
    model.write_bytes(b"")
    sidecar = {"version": "m"} if model_bits is None else {"version": "m", "input_bits": model_bits}
    model.with_suffix(".json").write_text(json.dumps(sidecar))
    (tmp_path / "a.mp4").touch()
    path = tmp_path / "bits.yaml"
    path.write_text(f"stores:\n  - id: s\n    cameras:\n      - {{id: cam-x, source: {tmp_path / 'a.mp4'}, "
                    f"clip: {{bits: {camera_bits}}}}}\nmodel:\n  path: {model}\n")
    assert main(["config", "check", str(path)]) == (2 if refused else 0)
    err = capsys.readouterr().err
    needed = 8 if model_bits is None else model_bits
    message = (f"stores[0].cameras[0].clip.bits: camera cam-x (store s) sends {camera_bits}-bit frames; "
               f"model m.h5 (model.path) needs {needed}: set clip.bits {needed}")
    assert (message in err) == refused, err


def test_a_shadow_model_with_more_bits_than_the_cameras_is_refused(tmp_path: Path, capsys) -> None:
    for name, bits in (("active", 5), ("candidate", 8)):
        (tmp_path / f"{name}.h5").write_bytes(b"")
        (tmp_path / f"{name}.json").write_text(json.dumps({"version": name, "input_bits": bits}))
    (tmp_path / "a.mp4").touch()
    path = tmp_path / "shadow.yaml"
    path.write_text(f"stores:\n  - id: s\n    cameras:\n      - {{id: cam-x, source: {tmp_path / 'a.mp4'}}}\n"
                    f"model:\n  path: {tmp_path / 'active.h5'}\n  shadow_path: {tmp_path / 'candidate.h5'}\n")
    assert main(["config", "check", str(path)]) == 2
    assert "model candidate.h5 (model.shadow_path) needs 8: set clip.bits 8" in capsys.readouterr().err


def test_a_fitting_config_passes_and_says_the_models_input(tmp_path: Path, capsys) -> None:
    path = tmp_path / "ok.yaml"
    (tmp_path / "a.mp4").touch()
    path.write_text(f"stores:\n  - id: s\n    cameras:\n      - {{id: c, source: {tmp_path / 'a.mp4'}}}\n")
    assert main(["config", "check", str(path)]) == 0
    assert "model input (20, 64, 64, 3)" in capsys.readouterr().out


def test_config_check_does_not_load_tensorflow(tmp_path: Path) -> None:
    path = config(tmp_path)
    script = (
        "import sys\nfrom common.app.cli import main\n"
        f"rc = main(['config', 'check', {str(path)!r}])\n"
        "print('rc', rc, 'tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "rc 2 False False", done.stderr
    assert "cam-frames" in done.stderr


@pytest.mark.parametrize("command", ["run", "infer"])
def test_infer_and_run_refuse_to_start(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    path = config(tmp_path)
    assert main([command, "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert "camera cam-frames" in err and "(10, 64, 64, 3)" in err and "clip.frames to 20" in err
    assert "camera cam-size" in err and "clip.size to 64" in err
    assert not (tmp_path / "aw.db").exists()  # refused before anything started
