"""The harness's PostgreSQL and RTSP servers work as the pipeline needs them to."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from servers import PostgresServer, RtspServer, write_synthetic_video


def read_frames(url: str, count: int, timeout_s: float = 30.0) -> list:  # type: ignore[type-arg]
    """Read ``count`` frames from an RTSP URL with opencv's FFmpeg backend over TCP, as the ingest does."""
    os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "rtsp_transport;tcp"
    import cv2

    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
    frames = []
    try:
        deadline = time.monotonic() + timeout_s
        while cap.isOpened() and len(frames) < count and time.monotonic() < deadline:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    return frames


@pytest.mark.postgres
def test_postgres_database_per_test(pg_url: str, postgres_server: PostgresServer) -> None:
    assert pg_url.startswith("postgresql+psycopg2://aislewatch:")
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE clips (id text PRIMARY KEY, p real)"))
            conn.execute(sa.text("INSERT INTO clips VALUES ('a', 0.5), ('b', 0.9)"))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM clips")).scalar() == 2
    finally:
        engine.dispose()
    # The role must authenticate: a wrong password is refused.
    wrong = sa.make_url(pg_url).set(password="wrong")
    bad = sa.create_engine(wrong)
    with pytest.raises(sa.exc.OperationalError, match="password authentication failed"):
        bad.connect()
    bad.dispose()


@pytest.mark.postgres
def test_postgres_stop_and_restart_keeps_data(pg_url: str, postgres_server: PostgresServer) -> None:
    engine = sa.create_engine(pg_url, pool_pre_ping=True)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (x int)"))
            conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        postgres_server.stop()
        with pytest.raises(sa.exc.OperationalError):
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        postgres_server.start()
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT x FROM t")).scalar() == 1
    finally:
        engine.dispose()


@pytest.mark.rtsp
def test_rtsp_serves_h264_frames_with_auth(rtsp_server_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    one_second = write_synthetic_video(tmp_path / "short.mp4", seconds=1.0)
    server: RtspServer = rtsp_server_factory([one_second, one_second], username="cam", password="s3cret")
    assert set(server.urls) == {"cam1", "cam2"}
    # 25 frames from a 15-frame file: the stream loops.
    frames = read_frames(server.urls["cam2"], 25)
    assert len(frames) == 25
    assert frames[0].shape == (360, 640, 3)
    assert read_frames(server.url("cam1", credentials=False), 1) == []
    assert "s3cret" not in server.log_path.read_text(encoding="utf-8", errors="replace")


@pytest.mark.rtsp
@pytest.mark.slow
def test_rtsp_stop_and_restart_same_port(rtsp_server_factory, synthetic_video: Path) -> None:  # type: ignore[no-untyped-def]
    server: RtspServer = rtsp_server_factory({"door": synthetic_video})
    url = server.url("door")
    assert len(read_frames(url, 5)) == 5
    port = server.port
    server.stop()
    assert read_frames(url, 1, timeout_s=5) == []
    server.start()
    assert server.port == port
    assert len(read_frames(url, 5)) == 5
