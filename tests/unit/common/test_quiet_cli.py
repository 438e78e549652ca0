"""Quiet by default: the CLI, run as a user runs it (a subprocess), prints no TensorFlow or Alembic start-up
block and no raw OpenCV/FFmpeg line; ``--log-format json`` keeps stderr all JSON; ``--verbose`` shows them."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tiny_models import save_tiny_model
from tests.videos import write_moving_box_video

REPO = Path(__file__).resolve().parents[3]
TF_BLOCK = ("absl::InitializeLog", "oneDNN custom operations", "cpu_feature_guard", "This TensorFlow binary")
ALEMBIC = ("alembic", "setup plugin", "Context impl", "Will assume")
RAW_NATIVE = ("[mpeg4 @", "[mov,mp4", "[ WARN:", "Error at MB")


def aislewatch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``aislewatch ARGS`` in a fresh process with this checkout's code and a clean AisleWatch environment."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AISLEWATCH", "TF_CPP", "OPENCV_LOG", "OPENCV_FFMPEG_LOGLEVEL"))}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "common.app.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def corrupt_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MP4 whose header and index are intact but whose frame data is damaged: FFmpeg complains per frame."""
    folder = tmp_path_factory.mktemp("quiet")
    data = bytearray(write_moving_box_video(folder / "ok.mp4", 60).read_bytes())
    for i in range(3000, len(data) - 4000, 53):
        data[i] ^= 0xFF
    path = folder / "damaged.mp4"
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "never.keras", weight=0.0, bias=-30.0, version="q-0")


def _classify(*flags: str, video: Path, model: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return aislewatch(*flags, "classify", str(video), "--model", str(model), "--out", str(out), "--window", "1",
                      "--stride", "1", "--accept-partial", cwd=out.parent)


def test_a_model_command_prints_no_tensorflow_block_and_json_logs_stay_json(
    corrupt_mp4: Path, tiny_model: Path, tmp_path: Path
) -> None:
    done = _classify("--log-format", "json", video=corrupt_mp4, model=tiny_model, out=tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert "PARTIAL" in done.stdout  # the damaged file was read (what it could decode)
    for marker in (*TF_BLOCK, *RAW_NATIVE):
        assert marker not in done.stderr, f"{marker!r} printed:\n{done.stderr}"
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines, "classify logs the truncated read: it should show as a JSON log line"
    records = [json.loads(line) for line in lines]  # every line of stderr is one JSON object
    assert any(corrupt_mp4.name in r["message"] for r in records)


def test_verbose_shows_what_is_hidden(corrupt_mp4: Path, tiny_model: Path, tmp_path: Path) -> None:
    """The same command with --verbose: the block and the decoder's lines are there (so the quiet is real)."""
    done = _classify("--verbose", video=corrupt_mp4, model=tiny_model, out=tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert "oneDNN custom operations" in done.stderr and "[mpeg4 @" in done.stderr


def test_database_commands_print_no_alembic_lines(tmp_path: Path) -> None:
    config = tmp_path / "aislewatch.yaml"
    config.write_text(f"database:\n  url: sqlite:///{tmp_path / 'aw.db'}\n")
    done = aislewatch("db", "upgrade", "-c", str(config), cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "database schema is up to date", done
    assert done.stderr == "", done.stderr
    (tmp_path / "aw.db").unlink()
    verbose = aislewatch("--verbose", "db", "upgrade", "-c", str(config), cwd=tmp_path)
    assert verbose.returncode == 0 and "Running upgrade" in verbose.stderr, verbose.stderr
    report = aislewatch("report", "-c", str(config), cwd=tmp_path)
    assert not any(marker in report.stderr for marker in ALEMBIC), report.stderr


def test_ingest_with_no_cameras_warns(tmp_path: Path) -> None:
    """A config without cameras starts 0 cameras: the process says so (it keeps running: SIGTERM ends it)."""
    config = tmp_path / "aislewatch.yaml"
    config.write_text(f"database:\n  url: sqlite:///{tmp_path / 'aw.db'}\nstores: []\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AISLEWATCH")}
    env["PYTHONPATH"] = str(REPO)
    process = subprocess.Popen([sys.executable, "-m", "common.app.cli", "--log-format", "json", "ingest", "-c",
                                str(config)], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([process.stderr], [], [], 1.0)
            if ready:
                line = process.stderr.readline()
                if not line:
                    break
                lines.append(line)
                if "no cameras" in line:
                    break
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    warnings = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(w["level"] == "WARNING" and "no cameras" in w["message"] for w in warnings), lines


def test_a_refused_partial_read_is_a_json_log_line_too(corrupt_mp4: Path, tiny_model: Path, tmp_path: Path) -> None:
    """Without --accept-partial classify refuses the damaged file (exit 1): that refusal is a log record, so
    stderr stays JSON Lines (it was a bare 'aislewatch: … is truncated' line)."""
    out = tmp_path / "out"
    done = aislewatch("--log-format", "json", "classify", str(corrupt_mp4), "--model", str(tiny_model), "--out",
                      str(out), "--window", "1", "--stride", "1", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert any("--accept-partial" in r["message"] and r["level"] == "ERROR" for r in records), records
