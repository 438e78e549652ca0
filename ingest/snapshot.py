"""Evidence snapshots: the full-resolution frame of a clip's strongest motion, saved as a JPEG."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np


def snapshot_path(evidence_dir: Path, camera_id: str, clip_id: str, at: datetime) -> Path:
    """``evidence_dir/<camera_id>/<YYYYMMDD>/<clip_id>.jpg`` (the day of ``at`` in UTC)."""
    day = at.astimezone(UTC).strftime("%Y%m%d")
    return Path(evidence_dir) / camera_id / day / f"{clip_id}.jpg"


def save_snapshot(
    image: np.ndarray, evidence_dir: Path, camera_id: str, clip_id: str, at: datetime, quality: int = 85
) -> Path:
    """Write ``image`` (BGR) as a JPEG atomically (temp file + rename) and return its path.

    Raises OSError when the JPEG cannot be encoded or written.
    """
    path = snapshot_path(evidence_dir, camera_id, clip_id, at)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise OSError(f"cannot encode snapshot {path.name} as JPEG")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".jpg.{os.getpid()}.tmp")
    tmp.write_bytes(data.tobytes())
    os.replace(tmp, path)
    return path
