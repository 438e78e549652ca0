"""Re-running a recording into the same database, through every stage on a real video file: the second run adds
no row and no alert, and says so (N clips already in the database, not counted again); a copy of the file is a
new recording and is counted."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from common.app.embedded import run_embedded, stream_settings
from tests.videos import write_moving_box_video


class Suspicious:
    """Every clip suspicious, so the recording raises alerts (the real model is covered elsewhere)."""

    threshold = 0.5
    version = "always-suspicious-test"

    def predict(self, clips: np.ndarray) -> np.ndarray:
        return np.full(len(clips), 0.95, np.float32)


def rerun_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.module == "reruns"]


def test_a_rerun_is_not_counted_again_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    video = write_moving_box_video(tmp_path / "aisle.mp4", frames=150)  # 10 s at 15 fps
    settings = stream_settings(tmp_path / "state", [{"id": "cam", "source": video}], cooldown_s=0.0)

    with caplog.at_level(logging.WARNING, "aislewatch.infer"):
        first = run_embedded(settings, Suspicious(), timeout_s=120)
    clips, alerts = len(first.results), len(first.alerts)
    first.db.close()
    assert clips >= 5 and alerts >= 1
    assert rerun_lines(caplog) == []

    caplog.clear()
    with caplog.at_level(logging.WARNING, "aislewatch.infer"):
        second = run_embedded(settings, Suspicious(), timeout_s=120)
    assert (len(second.results), len(second.alerts)) == (clips, alerts)  # nothing counted twice
    assert second.clips == clips  # the same windows were cut and published again ...
    lines = rerun_lines(caplog)  # ... and the run says what became of them
    assert lines[0].startswith("clips of camera cam are already in the database (an earlier run of this "
                               "recording, or this ingest restarted on it; first captured ")
    assert lines[-1].startswith(f"{clips} clips of camera cam were already in the database (an earlier run of "
                                "this recording, or this ingest restarted on it; first captured ")
    assert lines[-1].endswith("not counted again; to count a recording again use another database.url or a copy "
                              "of the file")
    second.db.close()

    copy = shutil.copy(video, tmp_path / "aisle-copy.mp4")  # the documented way to analyse it again
    caplog.clear()
    with caplog.at_level(logging.WARNING, "aislewatch.infer"):
        third = run_embedded(stream_settings(tmp_path / "state", [{"id": "cam", "source": copy}], cooldown_s=0.0),
                             Suspicious(),
                             timeout_s=120)
    assert len(third.results) == 2 * clips and len(third.alerts) > alerts
    assert rerun_lines(caplog) == []
    third.db.close()
