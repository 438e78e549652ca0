"""The scale simulation's message rewrite, motion schedule and stand-in: generic over the clip header's
fields (the clip format is being replaced), and faithful to the bytes that are not identity."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from tests.bench.bench_scale import bucket_costs
from tests.bench.scale_messages import Rewriter, TemplateError, join_message, split_message
from tests.bench.scale_roles import SimCamera, StandInClassifier, motion_bursts

CLIP_A, CLIP_B = "0a9f5dc61b2ef2224d2c8829", "ee5ab576bd26856e534ffba9"
T0 = datetime(2026, 12, 1, 17, 0, 0, tzinfo=UTC)


def _message(header: dict, body: bytes = b"\x00\x01binary-body\xff") -> bytes:
    return join_message(b"AWX9", header, body)


def _future_header(clip_id: str, previous: str | None) -> dict:
    """A header shaped like the coming format: a session, frame references, the previous clip's id."""
    return {
        "clip_id": clip_id,
        "store_id": "tmpl-store",
        "camera_id": "tmpl-cam",
        "session": "live:tmpl-cam:2026-12-01T16:59:58Z",
        "refs": {"previous_clip_id": previous, "frames": [{"clip": previous, "index": 7}] if previous else []},
        "snapshot_path": f"build/evidence/tmpl-cam/20261201/{clip_id}.jpg",
        "captured_at": (T0 + timedelta(seconds=4)).isoformat().replace("+00:00", "Z"),
        "start_at": T0.isoformat().replace("+00:00", "Z"),
        "published_at": (T0 + timedelta(seconds=1)).isoformat().replace("+00:00", "Z"),
        "shape": [20, 64, 64, 3],
        "new_frames": 5,
    }


def test_a_rewrite_gives_the_camera_its_identity_and_keeps_references_and_body() -> None:
    first, second = _message(_future_header(CLIP_A, None)), _message(_future_header(CLIP_B, CLIP_A))
    now = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
    rewriter = Rewriter("s3-cam-0042", "s3-store-002")
    out1, id1 = rewriter.rewrite(first, now)
    out2, _ = rewriter.rewrite(second, now + timedelta(seconds=1))
    magic, h1, body = split_message(out1)
    _, h2, _ = split_message(out2)
    assert magic == b"AWX9" and body == split_message(first)[2]
    assert id1 == h1["clip_id"] and len(id1) == 24 and id1 not in (CLIP_A, CLIP_B)
    assert h2["refs"]["previous_clip_id"] == id1 == h2["refs"]["frames"][0]["clip"]
    assert h2["refs"]["frames"][0]["index"] == 7 and h2["new_frames"] == 5 and h2["shape"] == [20, 64, 64, 3]
    text = json.dumps(h1)
    assert "tmpl-cam" not in text and "tmpl-store" not in text
    assert h1["camera_id"] == "s3-cam-0042" and h1["store_id"] == "s3-store-002"
    assert h1["snapshot_path"] == f"build/evidence/s3-cam-0042/20261201/{id1}.jpg"
    # the latest timestamp is "now", the others keep their distance to it; published_at is now
    assert datetime.fromisoformat(h1["captured_at"]) == now
    assert datetime.fromisoformat(h1["start_at"]) == now - timedelta(seconds=4)
    assert datetime.fromisoformat(h1["published_at"]) == now
    assert h1["session"] == "live:s3-cam-0042:2026-12-01T16:59:58Z"  # not a timestamp: only the camera changes


def test_two_cameras_replaying_one_template_get_different_ids() -> None:
    message = _message(_future_header(CLIP_B, CLIP_A))
    _, a = Rewriter("cam-a", "store").rewrite(message, T0)
    _, b = Rewriter("cam-b", "store").rewrite(message, T0)
    assert a != b and {len(a), len(b)} == {24}


@pytest.mark.parametrize(("data", "reason"), [
    (b"AWC1", "at least 8 bytes"),
    (b"AWC1" + struct.pack(">I", 99) + b"{}", "runs past"),
    (b"AWC1" + struct.pack(">I", 3) + b"{x}", "not JSON"),
    (b"AWC1" + struct.pack(">I", 2) + b"[]", "JSON list"),
])
def test_a_message_outside_the_framing_is_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(TemplateError, match=reason):
        split_message(data)


def test_cameras_have_motion_about_half_the_time_in_bursts_of_tens_of_seconds() -> None:
    rng = np.random.default_rng(1)
    moving, bursts = 0.0, []
    for _ in range(400):
        camera = motion_bursts(rng, 600.0, (10.0, 30.0), 0.5)
        moving += sum(end - start for start, end in camera)
        bursts += [end - start for start, end in camera if 0 < start and end < 600.0]
    assert 0.45 < moving / (400 * 600.0) < 0.55
    assert 10.0 <= min(bursts) and max(bursts) <= 30.0
    camera = SimCamera("c", "s", "normal", ((0.0, 3.5), (10.0, 12.0)), phase_s=0.25)
    assert camera.due_times(1.0) == [0.25, 1.25, 2.25, 3.25, 10.25, 11.25]


def test_the_stand_in_costs_a_full_batch_at_the_model_rate_and_answers_from_the_table() -> None:
    costs = bucket_costs(400.0, 32, {"bucket_s": {"1": 0.01, "2": 0.012, "4": 0.016, "8": 0.024, "16": 0.04,
                                                  "32": 0.072}})
    assert costs[32] == pytest.approx(32 / 400.0)
    assert costs[1] < costs[2] < costs[32] and costs[1] > costs[32] / 32  # a small batch costs more per clip
    assert bucket_costs(400.0, 32, None)[4] == pytest.approx(4 / 400.0)
    from tests.bench.scale_messages import frames_digest

    clips = np.random.default_rng(0).integers(0, 256, (3, 20, 64, 64, 3), dtype=np.uint8)
    stand_in = StandInClassifier({frames_digest(clips[1]): 0.9}, {1: 0.0, 2: 0.0, 4: 0.0}, threshold=0.5)
    assert list(stand_in.predict(clips)) == pytest.approx([0.04, 0.9, 0.04])
    assert stand_in.unknown == 2 and stand_in.cost_s(3) == 0.0
