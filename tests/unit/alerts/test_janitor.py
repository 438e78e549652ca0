"""The evidence janitor on a real SQLite database and real files: unflagged evidence, retention by verdict,
holds, the disk budget, symlinks out of the evidence directory, missed thefts, races with a hold, metrics."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, update

from alerts.janitor import EvidenceJanitor, Owner, Reason
from common.clock import FakeClock
from common.db import Database
from common.evidence import alert_video_path, segment_path
from common.models import Alert, AlertEvent, MissedTheft, Store
from common.schemas import AlertKind, AlertMessage, ResultMessage
from common.settings import EvidenceSettings, Settings

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CAMERA = "cam-1"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.from_url(f"sqlite:///{tmp_path / 'janitor.db'}")
    database.upgrade()
    with database.session() as session:
        session.add(Store(id="store-1", name="Store 1", timezone="UTC"))
    yield database
    database.close()


@pytest.fixture
def evidence(tmp_path: Path) -> Path:
    root = tmp_path / "evidence"
    root.mkdir()
    return root


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


def janitor(db: Database, evidence: Path, clock: FakeClock, **settings: Any) -> EvidenceJanitor:
    return EvidenceJanitor(db, evidence, EvidenceSettings(**settings), clock=clock.now)


def write(path: Path, size: int = 100, *, age: timedelta = timedelta(0)) -> Path:
    """A file of ``size`` bytes whose mtime is ``age`` before NOW."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    at = (NOW - age).timestamp()
    os.utime(path, (at, at))
    return path


def snapshot(evidence: Path, clip_id: str, *, size: int = 100, age: timedelta = timedelta(0)) -> Path:
    return write(evidence / CAMERA / (NOW - age).strftime("%Y%m%d") / f"{clip_id}.jpg", size, age=age)


def add_alert(db: Database, evidence: Path, alert_id: str, *, raised_ago: timedelta, verdict: str | None = None,
              reviewed_ago: timedelta | None = None, held: bool = False, size: int = 100,
              clip_rows: bool = True, video: bool = True, settled: bool = True) -> list[Path]:
    """An alert with two clips (each with a snapshot), a video, and optionally a verdict and a hold.  Returns
    its files: the clip snapshots (the first is also the alert's snapshot) and the video.  ``settled``: the
    video maker is done with it (otherwise it is pending and owns the motion segments around its clips)."""
    raised = NOW - raised_ago
    clips = [f"{alert_id}-c{i}" for i in range(2)]
    files = [snapshot(evidence, c, size=size, age=raised_ago) for c in clips]
    if clip_rows:
        db.write_results([ResultMessage(
            clip_id=c, store_id="store-1", camera_id=CAMERA, captured_at=raised, start_at=raised - timedelta(seconds=4),
            source_start_s=0.0, source_end_s=4.0, probability=0.9, threshold=0.5, model_version="t",
            snapshot_path=str(f), inferred_at=raised) for c, f in zip(clips, files, strict=True)])
    db.write_alerts([AlertMessage(
        alert_id=alert_id, alert_kind=AlertKind.SUSPICIOUS_ACTIVITY, store_id="store-1", camera_id=CAMERA,
        raised_at=raised, probability=0.9, clip_ids=tuple(clips), snapshot_path=str(files[0]) if clip_rows else None,
    )])
    values: dict[str, Any] = {"evidence_hold": held, "evidence_video_settled_at": raised if settled else None}
    if video:
        files.append(write(alert_video_path(evidence, CAMERA, alert_id, raised), size, age=raised_ago))
        # The video maker records the path; without clip rows the janitor finds the video by its name alone.
        values["evidence_video_path"] = str(files[-1]) if clip_rows else None
    if verdict is not None:
        values.update(verdict=verdict, status="acknowledged", acknowledged_by="gs",
                      acknowledged_at=NOW - (reviewed_ago if reviewed_ago is not None else raised_ago))
    with db.session() as session:
        session.execute(update(Alert).where(Alert.alert_id == alert_id).values(**values))
    return files


def scored(db: Database, *, at: datetime = NOW, camera: str = CAMERA, clip_id: str | None = None) -> None:
    """A clip of ``camera`` captured at ``at`` has been scored (its result stored): the camera's processed line."""
    db.write_results([ResultMessage(
        clip_id=clip_id or f"scored-{camera}-{at.timestamp():.0f}", store_id="store-1", camera_id=camera,
        captured_at=at, start_at=at - timedelta(seconds=4), source_start_s=0.0, source_end_s=4.0, probability=0.1,
        threshold=0.5, model_version="t", snapshot_path=None, inferred_at=at)])


def stored(db: Database, alert_id: str) -> Alert:
    with db.sessions() as session:
        row = session.scalar(select(Alert).where(Alert.alert_id == alert_id))
        assert row is not None
        return row


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- 1. unflagged ------------------------------------------------------------------------------------------

def test_unflagged_evidence_goes_after_keep_unflagged_minutes(db: Database, evidence: Path, clock: FakeClock) -> None:
    old = snapshot(evidence, "quiet-old", age=timedelta(minutes=31))
    young = snapshot(evidence, "quiet-young", age=timedelta(minutes=29))
    day = evidence / CAMERA / NOW.strftime("%Y%m%d")
    old_segment = write(segment_path(evidence, CAMERA, NOW - timedelta(minutes=40), NOW - timedelta(minutes=39)),
                        age=timedelta(minutes=39))
    # Copied in with an old mtime, but its name says it ended 5 minutes ago: the younger time counts.
    named_young = write(segment_path(evidence, CAMERA, NOW - timedelta(minutes=6), NOW - timedelta(minutes=5)),
                        age=timedelta(hours=2))
    being_written = write(day / "segments" / "123-open.mp4.part", age=timedelta(minutes=50))
    snapshot_tmp = write(day / "x.jpg.77.tmp", age=timedelta(minutes=50))
    not_evidence = write(evidence / "README.txt", age=timedelta(days=30))
    scored(db)  # inference is up to date

    report = janitor(db, evidence, clock, keep_unflagged=30).sweep()

    assert not old.exists() and not old_segment.exists()
    for kept in (young, named_young, being_written, snapshot_tmp, not_evidence):
        assert kept.exists(), kept
    assert report.deleted == {Reason.UNFLAGGED: 2}
    assert report.writing_bytes == 200  # the .part and the .tmp take disk too


def test_evidence_of_clips_not_scored_yet_is_kept_while_inference_lags(db: Database, evidence: Path,
                                                                     clock: FakeClock) -> None:
    # Inference is two hours behind on cam-1 (the bus holds the clips); cam-2 has no result at all yet.
    scored(db, at=NOW - timedelta(hours=2))
    unscored = snapshot(evidence, "unscored", age=timedelta(hours=1))
    unscored_segment = write(segment_path(evidence, CAMERA, NOW - timedelta(minutes=92), NOW - timedelta(minutes=91)),
                             age=timedelta(minutes=91))
    # Scored, but less than keep_unflagged before the processed line: a guard may still mark it missed.
    recently_scored = snapshot(evidence, "recently-scored", age=timedelta(hours=2, minutes=20))
    long_scored = snapshot(evidence, "long-scored", age=timedelta(hours=3))
    cam2 = evidence / "cam-2" / NOW.strftime("%Y%m%d")
    never_scored = write(cam2 / "never-scored.jpg", age=timedelta(hours=4))
    past_ceiling = write(cam2 / "past-ceiling.jpg", age=timedelta(hours=6))  # 10 * keep_unflagged = 5 h

    report = janitor(db, evidence, clock, keep_unflagged=30).sweep()

    assert all(f.exists() for f in (unscored, unscored_segment, recently_scored, never_scored))
    assert not long_scored.exists() and not past_ceiling.exists()
    assert report.deleted == {Reason.UNFLAGGED: 2} and report.protected_unscored == 4
    # Inference catches up: the clips raised nothing, so their evidence goes keep_unflagged after the line.
    scored(db, at=NOW + timedelta(hours=1, minutes=30))
    clock.advance(3600)
    janitor(db, evidence, clock, keep_unflagged=30).sweep()
    assert not any(f.exists() for f in (unscored, unscored_segment, recently_scored))


def test_an_alert_whose_video_is_pending_owns_the_segments_around_its_clips(db: Database, evidence: Path,
                                                                          clock: FakeClock) -> None:
    raised = NOW - timedelta(hours=1)
    files = add_alert(db, evidence, "pending", raised_ago=timedelta(hours=1), settled=False)
    # Its clips span raised - 4 s .. raised (+ 3 s margins): these overlap that window ...
    needed = [write(segment_path(evidence, CAMERA, raised + timedelta(seconds=a), raised + timedelta(seconds=b)),
                    age=timedelta(hours=1)) for a, b in ((-12, -6), (-6, 0), (0, 6))]
    # ... these do not, and another camera's segment at the same time belongs to another camera.
    unneeded = [write(segment_path(evidence, CAMERA, raised + timedelta(seconds=a), raised + timedelta(seconds=b)),
                      age=timedelta(hours=1)) for a, b in ((-30, -20), (10, 16))]
    other_camera = write(segment_path(evidence, "cam-2", raised - timedelta(seconds=2), raised), age=timedelta(hours=1))
    scored(db)
    scored(db, camera="cam-2")
    worker = janitor(db, evidence, clock, keep_unflagged=30)
    worker.sweep()
    assert all(f.exists() for f in files + needed)
    assert not any(f.exists() for f in [*unneeded, other_camera])
    # The video maker is done with it: the segments raised nothing more and go as unflagged.
    with db.session() as session:
        session.execute(update(Alert).where(Alert.alert_id == "pending").values(evidence_video_settled_at=NOW))
    assert worker.sweep().deleted == {Reason.UNFLAGGED: 3}
    assert all(f.exists() for f in files) and not any(f.exists() for f in needed)


def test_orphaned_part_files_of_a_crash_are_deleted_after_an_hour(db: Database, evidence: Path,
                                                                  clock: FakeClock) -> None:
    day = evidence / CAMERA / NOW.strftime("%Y%m%d")
    orphan = write(day / "segments" / "1000-open.mp4.part", 500, age=timedelta(minutes=61))
    orphan_tmp = write(day / "y.jpg.12.tmp", 300, age=timedelta(hours=5))
    writing = write(day / "segments" / "2000-open.mp4.part", 200, age=timedelta(seconds=3))
    report = janitor(db, evidence, clock).sweep()
    assert not orphan.exists() and not orphan_tmp.exists() and writing.exists()
    assert report.deleted == {Reason.ORPHAN: 2} and report.deleted_bytes == {Reason.ORPHAN: 800}
    assert report.writing_bytes == 200 and report.bytes == 200


def test_reopening_an_old_alert_gives_it_a_full_unreviewed_period(db: Database, evidence: Path,
                                                                  clock: FakeClock) -> None:
    reopened = add_alert(db, evidence, "reopened", raised_ago=timedelta(days=40), verdict="theft_confirmed")
    long_ago = add_alert(db, evidence, "long-ago", raised_ago=timedelta(days=40), verdict="theft_confirmed")
    for alert_id, ago in (("reopened", timedelta(days=1)), ("long-ago", timedelta(days=31))):
        with db.session() as session:  # what DeskQueries.reopen leaves: no verdict, no acknowledged_at, an event
            session.execute(update(Alert).where(Alert.alert_id == alert_id).values(
                verdict=None, status="open", acknowledged_by=None, acknowledged_at=None))
            session.add(AlertEvent(alert_id=alert_id, store_id="store-1", event="reopened", at=NOW - ago, actor="ms"))
    report = janitor(db, evidence, clock, keep_unreviewed_days=30).sweep()
    assert all(f.exists() for f in reopened) and stored(db, "reopened").evidence_deleted_at is None
    assert not any(f.exists() for f in long_ago) and report.alerts_deleted == {Reason.UNREVIEWED: 1}


@pytest.mark.parametrize("verdict, raised_days, reviewed_days, deleted, reason", [
    ("false_alarm", 8, 8, True, Reason.FALSE_ALARM),
    ("false_alarm", 6, 6, False, None),
    ("false_alarm", 40, 2, False, None),  # the period starts at the verdict, not at the alert
    ("theft_confirmed", 300, 300, False, None),
    ("theft_confirmed", 366, 366, True, Reason.THEFT),
    ("theft_prevented", 366, 366, True, Reason.THEFT),
    ("theft_prevented", 364, 364, False, None),
    ("unsure", 31, 31, True, Reason.UNREVIEWED),
    ("unsure", 29, 29, False, None),
    (None, 31, None, True, Reason.UNREVIEWED),
    (None, 29, None, False, None),
])
def test_alert_evidence_is_kept_by_its_verdict(db: Database, evidence: Path, clock: FakeClock, verdict: str | None,
                                               raised_days: int, reviewed_days: int | None, deleted: bool,
                                               reason: str | None) -> None:
    files = add_alert(db, evidence, "a1", raised_ago=timedelta(days=raised_days), verdict=verdict,
                      reviewed_ago=timedelta(days=reviewed_days) if reviewed_days is not None else None)
    report = janitor(db, evidence, clock, keep_false_alarm_days=7, keep_theft_days=365,
                     keep_unreviewed_days=30).sweep()
    row = stored(db, "a1")
    assert [f.exists() for f in files] == [not deleted] * 3
    assert row.verdict == verdict  # the row and its verdict stay
    if deleted:
        assert row.evidence_deleted_at == NOW
        assert report.deleted == {reason: 3} and report.alerts_deleted == {reason: 1}
    else:
        assert row.evidence_deleted_at is None and not report.deleted


def test_alert_files_are_found_by_name_without_clip_rows_or_a_recorded_video(db: Database, evidence: Path,
                                                                           clock: FakeClock) -> None:
    files = add_alert(db, evidence, "a1", raised_ago=timedelta(days=40), clip_rows=False)
    unrelated = snapshot(evidence, "someone-else", age=timedelta(minutes=1))
    report = janitor(db, evidence, clock).sweep()
    assert not any(f.exists() for f in files) and unrelated.exists()
    assert report.deleted == {Reason.UNREVIEWED: 3}
    assert stored(db, "a1").evidence_deleted_at == NOW


def test_fresh_alert_evidence_is_not_taken_for_unflagged(db: Database, evidence: Path, clock: FakeClock) -> None:
    files = add_alert(db, evidence, "a1", raised_ago=timedelta(hours=5))  # older than keep_unflagged
    assert not janitor(db, evidence, clock, keep_unflagged=30).sweep().deleted
    assert all(f.exists() for f in files)


def test_a_held_false_alarm_survives_until_released(db: Database, evidence: Path, clock: FakeClock) -> None:
    files = add_alert(db, evidence, "a1", raised_ago=timedelta(days=100), verdict="false_alarm", held=True)
    worker = janitor(db, evidence, clock, keep_false_alarm_days=7)
    report = worker.sweep()
    assert all(f.exists() for f in files) and stored(db, "a1").evidence_deleted_at is None
    assert report.held_alerts == 1 and not report.deleted
    with db.session() as session:
        session.execute(update(Alert).where(Alert.alert_id == "a1").values(evidence_hold=False))
    worker.sweep()
    assert not any(f.exists() for f in files) and stored(db, "a1").evidence_deleted_at == NOW


def test_a_file_shared_with_a_held_alert_stays(db: Database, evidence: Path, clock: FakeClock) -> None:
    files = add_alert(db, evidence, "old", raised_ago=timedelta(days=40))
    db.write_alerts([AlertMessage(alert_id="held", alert_kind=AlertKind.SUSPICIOUS_ACTIVITY, store_id="store-1",
                                  camera_id=CAMERA, raised_at=NOW - timedelta(days=40), clip_ids=("old-c0",))])
    with db.session() as session:
        session.execute(update(Alert).where(Alert.alert_id == "held").values(evidence_hold=True))
    janitor(db, evidence, clock).sweep()
    assert files[0].exists()  # old-c0's snapshot: the held alert has it too
    assert not files[1].exists() and not files[2].exists()
    assert stored(db, "old").evidence_deleted_at == NOW


def test_a_hold_committed_during_the_pass_wins(db: Database, evidence: Path, clock: FakeClock) -> None:
    files = add_alert(db, evidence, "a1", raised_ago=timedelta(days=100), verdict="false_alarm")

    class HeldMeanwhile(EvidenceJanitor):
        def _owners(self, *args: Any, **kwargs: Any) -> list[Owner]:
            owners = super()._owners(*args, **kwargs)  # read unheld ...
            with db.session() as session:  # ... then a manager's hold commits before the deletion
                session.execute(update(Alert).where(Alert.alert_id == "a1").values(evidence_hold=True))
            return owners

    report = HeldMeanwhile(db, evidence, EvidenceSettings(), clock=clock.now).sweep()
    assert all(f.exists() for f in files) and stored(db, "a1").evidence_deleted_at is None
    assert not report.deleted


def test_missed_theft_videos_are_kept_like_thefts(db: Database, evidence: Path, clock: FakeClock) -> None:
    paths = {}
    with db.session() as session:
        for name, days in (("recent", 100), ("expired", 366)):
            video = write(evidence / CAMERA / "missed" / f"{name}.mp4", age=timedelta(days=days))
            paths[name] = video
            session.add(MissedTheft(store_id="store-1", camera_id=CAMERA, start_at=NOW - timedelta(days=days + 1),
                                    end_at=NOW - timedelta(days=days + 1) + timedelta(seconds=20), marked_by="ms",
                                    marked_at=NOW - timedelta(days=days), video_path=str(video)))
    report = janitor(db, evidence, clock, keep_theft_days=365).sweep()
    assert paths["recent"].exists() and not paths["expired"].exists()
    assert report.deleted == {Reason.MISSED_THEFT: 1}
    with db.sessions() as session:
        assert session.query(MissedTheft).count() == 2  # the rows stay


# -- 3. the disk budget ------------------------------------------------------------------------------------

def test_disk_budget_deletes_the_oldest_unheld_evidence_first_unflagged_or_not(db: Database, evidence: Path,
                                                                              clock: FakeClock) -> None:
    held = add_alert(db, evidence, "oldest-held", raised_ago=timedelta(days=3), size=1000, held=True)
    older = add_alert(db, evidence, "older", raised_ago=timedelta(days=2), size=1000, verdict="theft_confirmed")
    quiet_old = snapshot(evidence, "quiet-old", size=1000, age=timedelta(hours=36))
    newer = add_alert(db, evidence, "newer", raised_ago=timedelta(days=1), size=1000, verdict="false_alarm",
                      reviewed_ago=timedelta(hours=1))
    # Pending: its video is still to be cut from the segment around its clips.
    pending = add_alert(db, evidence, "pending", raised_ago=timedelta(hours=12), size=1000, settled=False)
    raised = NOW - timedelta(hours=12)
    pending.append(write(segment_path(evidence, CAMERA, raised - timedelta(seconds=2), raised + timedelta(seconds=2)),
                         1000, age=timedelta(hours=12)))
    quiet_young = snapshot(evidence, "quiet-young", size=1000, age=timedelta(minutes=5))
    unscored = write(evidence / "cam-2" / NOW.strftime("%Y%m%d") / "unscored.jpg", 1000, age=timedelta(minutes=10))
    scored(db)  # cam-1 is scored up to now; cam-2 never was
    # 16,000 bytes against 9,500; unflagged files are kept a week (rule 1 takes none).  Oldest unheld first,
    # unflagged or not: "older" (13,000), the 36-hour-old unflagged snapshot (12,000), "newer" (9,000).  The
    # seconds-old unflagged snapshot is younger than all of those and stays; never the held alert, the pending
    # alert (segment included), nor the camera whose clips are not scored yet.
    report = janitor(db, evidence, clock, max_gb=9500 / 1e9, keep_unflagged=7 * 24 * 60).sweep()
    assert not any(f.exists() for f in older + newer) and not quiet_old.exists()
    assert all(f.exists() for f in held + pending) and quiet_young.exists() and unscored.exists()
    assert stored(db, "older").evidence_deleted_at == NOW and stored(db, "newer").evidence_deleted_at == NOW
    assert stored(db, "oldest-held").evidence_deleted_at is None and stored(db, "pending").evidence_deleted_at is None
    assert report.deleted == {Reason.DISK_BUDGET: 7} and report.alerts_deleted == {Reason.DISK_BUDGET: 2}
    assert report.bytes == 9000 and report.over_budget_bytes == 0


def test_disk_budget_never_deletes_held_evidence(db: Database, evidence: Path, clock: FakeClock,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    held = add_alert(db, evidence, "held", raised_ago=timedelta(days=3), size=1000, held=True)
    with caplog.at_level(logging.WARNING, logger="aislewatch.janitor"):
        report = janitor(db, evidence, clock, max_gb=1000 / 1e9).sweep()
    assert all(f.exists() for f in held)
    assert report.over_budget_bytes == 2000 and not report.deleted
    assert "over the budget with only held evidence left" in caplog.text


# -- safety ------------------------------------------------------------------------------------------------

def test_nothing_outside_the_evidence_directory_is_touched(db: Database, evidence: Path, clock: FakeClock,
                                                           tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    target = write(outside / "precious.jpg", age=timedelta(days=400))
    deep = write(outside / "day" / "other.mp4", age=timedelta(days=400))
    (evidence / CAMERA).mkdir()
    link = evidence / CAMERA / "link.jpg"
    link.symlink_to(target)
    os.utime(link, ((NOW - timedelta(days=400)).timestamp(),) * 2, follow_symlinks=False)
    (evidence / CAMERA / "20250101").symlink_to(outside / "day", target_is_directory=True)
    # An expired alert whose stored snapshot lies outside, and one that reaches it through the link.
    db.write_alerts([AlertMessage(alert_id=f"a{i}", alert_kind=AlertKind.SUSPICIOUS_ACTIVITY, store_id="store-1",
                                  camera_id=CAMERA, raised_at=NOW - timedelta(days=400), snapshot_path=str(path))
                     for i, path in enumerate((target, link, evidence / CAMERA / "20250101" / "other.mp4"))])

    report = janitor(db, evidence, clock).sweep()

    assert target.read_bytes() == b"x" * 100 and deep.exists()
    assert link.is_symlink() and (evidence / CAMERA / "20250101").is_symlink()
    assert not report.deleted and report.files == 0 and report.skipped_links == 2


def test_a_directory_swapped_for_a_link_out_after_the_walk_is_left_alone(db: Database, evidence: Path,
                                                                         clock: FakeClock, tmp_path: Path) -> None:
    quiet = snapshot(evidence, "quiet", age=timedelta(hours=2))
    day = quiet.parent
    outside = tmp_path / "outside-day"

    class Swapped(EvidenceJanitor):
        def _owners(self, *args: Any, **kwargs: Any) -> list[Owner]:
            owners = super()._owners(*args, **kwargs)
            day.rename(outside)  # after the walk, the day directory becomes a link out of the evidence dir
            day.symlink_to(outside, target_is_directory=True)
            return owners

    report = Swapped(db, evidence, EvidenceSettings(), clock=clock.now).sweep()
    assert (outside / "quiet.jpg").exists() and not report.deleted


def test_a_directory_swapped_for_a_link_between_two_deletions_redirects_nothing(db: Database, evidence: Path,
                                                                               clock: FakeClock, tmp_path: Path) -> None:
    first = snapshot(evidence, "first", age=timedelta(hours=3))
    second = snapshot(evidence, "second", age=timedelta(hours=2))
    scored(db)
    day = first.parent
    outside = tmp_path / "outside-day"
    outside.mkdir()
    precious = write(outside / "second.jpg", age=timedelta(days=1))  # same name as the second file

    class SwappedMidPass(EvidenceJanitor):
        def _delete(self, *args: Any, **kwargs: Any) -> bool:
            deleted = super()._delete(*args, **kwargs)
            if not day.is_symlink():  # after the first deletion in the directory, it becomes a link out
                day.rename(tmp_path / "moved-day")
                day.symlink_to(outside, target_is_directory=True)
            return deleted

    report = SwappedMidPass(db, evidence, EvidenceSettings(), clock=clock.now).sweep()
    moved = tmp_path / "moved-day"
    assert not (moved / first.name).exists() and (moved / second.name).exists()
    # The second deletion would have gone through the link to outside/second.jpg: it stayed.
    assert precious.read_bytes() == b"x" * 100 and report.deleted == {Reason.UNFLAGGED: 1}


def test_empty_directories_of_past_days_are_removed(db: Database, evidence: Path, clock: FakeClock) -> None:
    old = snapshot(evidence, "old", age=timedelta(days=3))
    (old.parent / "segments").mkdir()
    yesterday = evidence / CAMERA / (NOW - timedelta(days=1)).strftime("%Y%m%d")
    yesterday.mkdir()
    held = add_alert(db, evidence, "held", raised_ago=timedelta(days=5), held=True)
    janitor(db, evidence, clock).sweep()
    assert not old.parent.exists()  # its day emptied: gone, segments/ too
    assert yesterday.is_dir() and (evidence / CAMERA).is_dir()  # ingest may still write there
    assert all(f.exists() for f in held)


def test_a_missing_evidence_directory_is_an_empty_pass(db: Database, tmp_path: Path, clock: FakeClock) -> None:
    report = janitor(db, tmp_path / "not-yet", clock).sweep()
    assert (report.files, report.bytes, dict(report.deleted)) == (0, 0, {})


def test_a_second_pass_deletes_nothing_more(db: Database, evidence: Path, clock: FakeClock) -> None:
    add_alert(db, evidence, "a1", raised_ago=timedelta(days=100), verdict="false_alarm")
    snapshot(evidence, "quiet", age=timedelta(hours=1))
    scored(db)
    worker = janitor(db, evidence, clock)
    assert sum(worker.sweep().deleted.values()) == 4
    again = worker.sweep()
    assert not again.deleted and not again.alerts_deleted and again.files == 0


# -- metrics, log line, the loop ---------------------------------------------------------------------------

def test_metrics_count_deletions_and_what_is_left(db: Database, evidence: Path, clock: FakeClock,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    before = {r: sample("aislewatch_evidence_deleted_total", reason=r) for r in (Reason.UNFLAGGED, Reason.FALSE_ALARM)}
    before_bytes = sample("aislewatch_evidence_deleted_bytes_total", reason=Reason.UNFLAGGED)
    before_alerts = sample("aislewatch_evidence_alerts_deleted_total", reason=Reason.FALSE_ALARM)
    add_alert(db, evidence, "gone", raised_ago=timedelta(days=10), verdict="false_alarm")
    add_alert(db, evidence, "kept", raised_ago=timedelta(days=1), size=250, held=True)
    snapshot(evidence, "quiet", size=70, age=timedelta(hours=1))
    scored(db)
    with caplog.at_level(logging.INFO, logger="aislewatch.janitor"):
        janitor(db, evidence, clock, keep_false_alarm_days=7).sweep()
    assert sample("aislewatch_evidence_deleted_total", reason=Reason.UNFLAGGED) - before[Reason.UNFLAGGED] == 1
    assert sample("aislewatch_evidence_deleted_total", reason=Reason.FALSE_ALARM) - before[Reason.FALSE_ALARM] == 3
    assert sample("aislewatch_evidence_deleted_bytes_total", reason=Reason.UNFLAGGED) - before_bytes == 70
    assert sample("aislewatch_evidence_alerts_deleted_total", reason=Reason.FALSE_ALARM) - before_alerts == 1
    assert sample("aislewatch_evidence_bytes") == 750
    assert sample("aislewatch_evidence_files") == 3
    assert sample("aislewatch_evidence_held_alerts") == 1
    assert sample("aislewatch_evidence_janitor_last_pass_timestamp_seconds") == NOW.timestamp()
    (line,) = [r.getMessage() for r in caplog.records if r.name == "aislewatch.janitor"]
    assert line.startswith("evidence janitor: deleted 4 files") and "1 unflagged" in line
    assert "3 false_alarm (1 alerts)" in line and "3 files, 750 B on disk" in line and "1 alerts held" in line


def test_a_dry_run_counts_what_it_would_delete_and_deletes_nothing(db: Database, evidence: Path, clock: FakeClock,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    before = sample("aislewatch_evidence_dry_run_deleted_total", reason=Reason.FALSE_ALARM)
    before_bytes = sample("aislewatch_evidence_dry_run_deleted_bytes_total", reason=Reason.UNFLAGGED)
    before_real = sample("aislewatch_evidence_deleted_total", reason=Reason.FALSE_ALARM)
    expired = add_alert(db, evidence, "expired", raised_ago=timedelta(days=10), verdict="false_alarm")
    quiet = snapshot(evidence, "quiet", size=70, age=timedelta(hours=1))
    orphan = write(evidence / CAMERA / NOW.strftime("%Y%m%d") / "segments" / "1-open.mp4.part", age=timedelta(hours=2))
    old_day = snapshot(evidence, "old-day", age=timedelta(days=5))
    scored(db)
    with caplog.at_level(logging.INFO, logger="aislewatch.janitor"):
        report = janitor(db, evidence, clock, janitor="dry_run", keep_false_alarm_days=7).sweep()
    assert all(f.exists() for f in [*expired, quiet, orphan, old_day])
    assert stored(db, "expired").evidence_deleted_at is None
    assert report.dry_run and report.deleted == {Reason.FALSE_ALARM: 3, Reason.UNFLAGGED: 2, Reason.ORPHAN: 1}
    assert sample("aislewatch_evidence_dry_run_deleted_total", reason=Reason.FALSE_ALARM) - before == 3
    assert sample("aislewatch_evidence_dry_run_deleted_bytes_total", reason=Reason.UNFLAGGED) - before_bytes == 170
    assert sample("aislewatch_evidence_deleted_total", reason=Reason.FALSE_ALARM) == before_real
    assert any("dry run, would delete 6 files" in r.getMessage() for r in caplog.records)
    assert any("would delete" in r.getMessage() and "quiet.jpg" in r.getMessage() for r in caplog.records)


def test_the_worker_passes_every_interval_and_stops_at_once(db: Database, evidence: Path, clock: FakeClock) -> None:
    quiet = snapshot(evidence, "quiet", age=timedelta(hours=1))
    scored(db)
    stop = threading.Event()
    worker = EvidenceJanitor(db, evidence, EvidenceSettings(janitor_interval_s=3600), clock=clock.now, stop=stop)
    worker.start_thread()
    for _ in range(200):
        if worker.last is not None:
            break
        threading.Event().wait(0.01)
    assert worker.last is not None and not quiet.exists()
    stop.set()
    worker.join(5)
    assert not worker.alive and worker.error is None


def test_a_failing_pass_is_counted_and_the_worker_carries_on(db: Database, evidence: Path, clock: FakeClock) -> None:
    before = sample("aislewatch_errors_total", stage="janitor", kind="OperationalError")
    db.close()
    with db.engine.begin() as connection:  # the schema gone: every query fails
        connection.exec_driver_sql("DROP TABLE missed_thefts")
    worker = EvidenceJanitor(db, evidence, EvidenceSettings(janitor_interval_s=1), clock=clock.now)
    worker.stop_event.set()  # one step only: the wait returns at once
    assert worker.step() is True
    assert sample("aislewatch_errors_total", stage="janitor", kind="OperationalError") - before == 1


def test_the_alerts_role_runs_the_janitor(tmp_path: Path) -> None:
    from common.app.runtime import Pipeline
    from common.inprocess_bus import InProcessBus

    settings = Settings(
        stores=[{"id": "s", "name": "S", "cameras": [{"id": "c", "name": "C", "source": "c.mp4"}]}],
        database={"url": f"sqlite:///{tmp_path / 'db.sqlite'}"},
        service={"evidence_dir": str(tmp_path / "ev"), "metrics_port": 0},
        alerts={"threshold": 0.5}, evidence={"janitor_interval_s": 120},
    )
    pipeline = Pipeline.build(settings, {"alerts"}, bus=InProcessBus())
    try:
        (found,) = [w for w in pipeline.workers if isinstance(w, EvidenceJanitor)]
        assert found.evidence_dir == tmp_path / "ev" and found.settings.janitor_interval_s == 120
        assert found.stop_event is pipeline.stop
    finally:
        pipeline.close()
    off = Pipeline.build(settings.model_copy(update={"evidence": EvidenceSettings(janitor="off")}), {"alerts"},
                         bus=InProcessBus())
    try:
        assert not [w for w in off.workers if isinstance(w, EvidenceJanitor)]
    finally:
        off.close()
