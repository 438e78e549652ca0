"""Each frame's motion verdict, area and box are those of the pre-issue-12 detector, bit for bit.

``tests.ingest_reference.motion`` is a verbatim copy of the old ``MotionDetector``; the detector has been made
cheaper since (the still regions dropped by a label lookup instead of ``np.isin``, changed pixels counted
only inside the regions, ...), which must change nothing it reports.  Real footage (people walking: several
regions, some still, every frame) and the benchmark's stream (a faint rectangle: regions but rarely motion),
every frame examined.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from common.settings import MotionSettings
from ingest.motion import MotionDetector
from tests.ingest_reference.motion import MotionDetector as ReferenceDetector
from tests.videos import real_footage


def compare(path: Path) -> tuple[int, int]:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    ok, image = cap.read()
    assert ok
    settings = MotionSettings()
    new = MotionDetector(settings, image.shape[1], image.shape[0])
    old = ReferenceDetector(settings, image.shape[1], image.shape[0])
    frames = moving = 0
    while ok:
        got, want = new.update(image), old.update(image)
        assert (got.moving, got.area_fraction, got.bbox) == (want.moving, want.area_fraction, want.bbox), frames
        frames += 1
        moving += got.moving
        ok, image = cap.read()
    return frames, moving


def test_real_footage_gives_the_old_verdicts() -> None:
    frames, moving = compare(real_footage("vtest.avi"))
    assert moving > 0.8 * frames  # people walk through all of it: the moving path is what is compared


@pytest.mark.slow
def test_the_benchmark_stream_gives_the_old_verdicts(tmp_path: Path) -> None:
    from tests.bench.bench_ingest import make_stream

    frames, moving = compare(make_stream(tmp_path / "stream.mp4", seconds=20))
    assert 0 < moving < frames
