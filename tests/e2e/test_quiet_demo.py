"""`make demo`'s command, run as the Makefile runs it (a fresh process), prints its own lines only: no
TensorFlow start-up block, no Alembic set-up lines, no raw OpenCV/FFmpeg messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOISE = ("absl::InitializeLog", "oneDNN custom operations", "cpu_feature_guard", "This TensorFlow binary",
         "alembic", "setup plugin", "Context impl", "[ WARN:", "[mpeg4 @", "[h264 @", "[mov,mp4")


def test_demo_prints_no_library_start_up_blocks(tmp_path: Path) -> None:
    make = (REPO / "Makefile").read_text()
    assert "$(VENV)/bin/aislewatch demo\n" in make  # the command below is the one `make demo` runs
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AISLEWATCH", "TF_CPP", "OPENCV_LOG", "OPENCV_FFMPEG_LOGLEVEL"))}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-m", "common.app.cli", "demo", "--quick", "--out", str(tmp_path / "demo")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "[5/5] comparing with the ground truth" in output  # it ran to the end
    printed = [marker for marker in NOISE if marker in output]
    assert printed == [], f"library noise in the demo's output: {printed}\n{output}"
