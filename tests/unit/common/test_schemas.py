"""Message schemas: round trips, versioning and rejection of malformed payloads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from common.schemas import (
    SCHEMA_VERSION,
    AlertKind,
    ClipHeader,
    ClipMessage,
    MessageError,
    ResultMessage,
    clip_id_for,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_clip(frames: np.ndarray | None = None) -> ClipMessage:
    if frames is None:
        frames = np.random.default_rng(0).integers(0, 256, (20, 64, 64, 3), dtype=np.uint8)
    header = ClipHeader(
        clip_id="c1", store_id="s", camera_id="cam", captured_at=T0 + timedelta(seconds=4), start_at=T0,
        source_start_s=0.0, source_end_s=4.0, shape=frames.shape,
    )
    return ClipMessage(header, frames)


def test_clip_round_trip_keeps_frames_exactly() -> None:
    clip = make_clip()
    data = clip.to_bytes()
    back = ClipMessage.from_bytes(data)
    assert back.header == clip.header
    assert back.frames.dtype == np.uint8
    np.testing.assert_array_equal(back.frames, clip.frames)
    assert back.header.schema_version == SCHEMA_VERSION


def test_clip_payload_is_far_below_kafka_limit() -> None:
    # Worst case: pure noise does not compress; still under 1 MB with room for the header.
    assert len(make_clip().to_bytes()) < 300_000


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b"XXXX" + b[4:], "bad magic"),
        (lambda b: b[:20], "truncated"),
        (lambda b: b[:-100], "cannot be decompressed"),
        (lambda b: b"", "bad magic"),
    ],
)
def test_malformed_clip_is_rejected_with_reason(mutate, reason: str) -> None:
    with pytest.raises(MessageError, match=reason):
        ClipMessage.from_bytes(mutate(make_clip().to_bytes()))


def test_frames_must_match_header() -> None:
    frames = np.zeros((20, 64, 64, 3), dtype=np.float32)
    with pytest.raises(MessageError, match="uint8"):
        make_clip(frames)


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(MessageError):
        ResultMessage.from_bytes(
            b'{"clip_id":"a","store_id":"s","camera_id":"c","captured_at":"2026-01-01T00:00:00",'
            b'"start_at":"2026-01-01T00:00:00","source_start_s":0,"source_end_s":1,"probability":0.5,'
            b'"threshold":0.5,"model_version":"v","inferred_at":"2026-01-01T00:00:00"}'
        )


def test_newer_schema_version_is_refused() -> None:
    with pytest.raises(MessageError, match="newer"):
        ResultMessage.from_bytes(
            b'{"schema_version":99,"clip_id":"a","store_id":"s","camera_id":"c",'
            b'"captured_at":"2026-01-01T00:00:00Z","start_at":"2026-01-01T00:00:00Z","source_start_s":0,'
            b'"source_end_s":1,"probability":0.5,"threshold":0.5,"model_version":"v",'
            b'"inferred_at":"2026-01-01T00:00:00Z"}'
        )


def test_clip_ids_are_stable_per_window() -> None:
    assert clip_id_for("cam", 2, "s1") == clip_id_for("cam", 2, "s1")
    assert clip_id_for("cam", 2, "s1") != clip_id_for("cam", 3, "s1")
    assert clip_id_for("cam", 2, "s1") != clip_id_for("cam2", 2, "s1")
    assert clip_id_for("cam", 2, "s1") != clip_id_for("cam", 2, "s2")


@pytest.mark.parametrize(
    ("kind", "label"),
    [
        (AlertKind.SUSPICIOUS_ACTIVITY, "Suspicious activity"),
        (AlertKind.CAMERA_OFFLINE, "Camera offline"),
        ("camera_offline", "Camera offline"),  # as a database row stores it
        ("tailgating", "Tailgating"),  # a kind this version does not know yet is still readable
    ],
)
def test_every_alert_kind_has_one_label(kind: str, label: str) -> None:
    assert AlertKind.label_of(kind) == label
    if kind in set(AlertKind):
        assert AlertKind(kind).label == label


def test_the_clips_topic_reads_every_kind_by_its_magic_bytes() -> None:
    from common.schemas import ChainEnd, read_clip_topic, utc_now

    whole = make_clip()
    assert isinstance(read_clip_topic(whole.to_bytes()), ClipMessage)  # the previous release's clips still read
    end = ChainEnd(store_id="s", camera_id="c", chain_id="abc", seq=4, keep_from=120, at=utc_now())
    back = read_clip_topic(end.to_bytes())
    assert back == end and end.to_bytes()[:4] == b"AWE2"
    with pytest.raises(MessageError, match="no body"):
        ChainEnd.from_bytes(end.to_bytes() + b"x")
    with pytest.raises(MessageError, match="bad magic"):
        read_clip_topic(b"XXXX" + end.to_bytes()[4:])


def test_a_whole_clip_header_is_the_same_bytes_as_before_chained_clips() -> None:
    header = make_clip().header
    assert b"chain" not in header.to_bytes() and header.schema_version == 1
