"""The evidence janitor's cost: one pass over a store-sized evidence directory (SQLite, real files).

A busy store (20 cameras, a clip every second of motion) writes tens of thousands of snapshots a day; the
janitor walks all of them each ``evidence.janitor_interval_s``.  Measured: a pass that deletes nothing (the
steady state between deletions) and a pass that deletes the unflagged half and the expired alerts.
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alerts.janitor import EvidenceJanitor
from common.db import Database
from common.models import Store
from common.schemas import AlertKind, AlertMessage, ResultMessage
from common.settings import EvidenceSettings

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _populate(root: Path, db: Database, files: int, alerts: int) -> None:
    cameras = 20
    day = NOW.strftime("%Y%m%d")
    old = (NOW - timedelta(hours=2)).timestamp()
    for camera in range(cameras):
        (root / f"cam-{camera}" / day).mkdir(parents=True)
    for index in range(files):
        path = root / f"cam-{index % cameras}" / day / f"clip-{index}.jpg"
        path.write_bytes(b"x" * 1000)
        os.utime(path, (old, old))
    messages = [AlertMessage(
        alert_id=f"alert-{a}", alert_kind=AlertKind.SUSPICIOUS_ACTIVITY, store_id="s", camera_id=f"cam-{a % cameras}",
        raised_at=NOW - timedelta(days=(a % 60)), clip_ids=tuple(f"clip-{2 * a + k}" for k in range(2)),
    ) for a in range(alerts)]
    for start in range(0, len(messages), 1000):
        db.write_alerts(messages[start:start + 1000])
    # Inference is up to date on every camera (its processed line is now), so the unflagged half may go.
    db.write_results([ResultMessage(
        clip_id=f"scored-{camera}", store_id="s", camera_id=f"cam-{camera}", captured_at=NOW,
        start_at=NOW - timedelta(seconds=4), source_start_s=0.0, source_end_s=4.0, probability=0.1, threshold=0.5,
        model_version="bench", snapshot_path=None, inferred_at=NOW) for camera in range(cameras)])


def run(quick: bool = False) -> dict[str, Any]:
    files, alerts = (5_000, 500) if quick else (100_000, 10_000)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "evidence"
        db = Database.from_url(f"sqlite:///{tmp}/bench.db")
        db.upgrade()
        with db.session() as session:
            session.add(Store(id="s", name="S", timezone="UTC"))
        _populate(root, db, files, alerts)
        # keep_unflagged long: the first pass deletes nothing (alert evidence is within the unreviewed period).
        steady = EvidenceJanitor(db, root, EvidenceSettings(keep_unflagged=7 * 24 * 60, keep_unreviewed_days=3650),
                                 clock=lambda: NOW)
        started = time.perf_counter()
        report = steady.sweep()
        steady_s = time.perf_counter() - started
        assert not report.deleted and report.files == files
        deleting = EvidenceJanitor(db, root, EvidenceSettings(keep_unflagged=30, keep_unreviewed_days=30),
                                   clock=lambda: NOW)
        started = time.perf_counter()
        report = deleting.sweep()
        deleting_s = time.perf_counter() - started
        db.close()
    return {
        "files": files,
        "alerts": alerts,
        "pass_nothing_to_delete_s": round(steady_s, 3),
        "pass_nothing_to_delete_ms_per_1000_files": round(1000 * steady_s / files * 1000, 2),
        "pass_deleting_s": round(deleting_s, 3),
        "deleted_files": sum(report.deleted.values()),
        "alerts_marked_deleted": sum(report.alerts_deleted.values()),
    }
