"""The evidence janitor: deletes evidence nobody needs any more, so the evidence disk never fills.

Every ``evidence.janitor_interval_s`` the alerts role makes one pass over ``service.evidence_dir`` (the layout
is in ``common.evidence``), in this order:

0. **Orphans**: a ``*.part`` or ``*.tmp`` file whose mtime is more than an hour old (``ORPHAN_AGE``) is what a
   crash left mid-write (a segment is open for ``evidence.segment_s`` ≤ 60 s, a snapshot for milliseconds),
   so it is deleted (reason ``orphan``).  Younger ones are being written: counted on the disk, never touched.
1. **Unflagged** evidence (a file that belongs to no alert and no missed theft) is deleted once it is older
   than ``evidence.keep_unflagged`` minutes *counted from the camera's processed line*.  Age is taken from
   the file's mtime, and for a motion segment from the end time in its name too (the younger counts).  The
   processed line of a camera is the newest ``clip_results.captured_at`` of that camera minus a safety margin
   (``evidence.segment_s + margin_before_s + margin_after_s`` + one clip window): inference may lag behind
   ingest (the bus holds the clips), and a clip not scored yet may still raise an alert that needs its
   snapshot and the segments around it.  So a file goes when ``at < min(now, processed line) -
   keep_unflagged``.  A camera with no results at all has no line: its files are not scored yet.  Either way
   a hard ceiling of ``UNSCORED_CEILING * keep_unflagged`` (default 10 * 30 min = 5 h) past the wall clock
   bounds what an inference outage can pile up: past it, unflagged files go even if never scored (their
   clips, scored later, get alerts without video).  Unflagged motion can be marked as a missed theft only
   within those ``keep_unflagged`` minutes; after that the video is gone.
2. **Alert evidence by verdict**: false alarm → ``keep_false_alarm_days``; confirmed or prevented theft →
   ``keep_theft_days``; no verdict or "unsure" → ``keep_unreviewed_days``.  The period starts at the latest of
   when the alert was raised, when its verdict was given (``acknowledged_at``) and when it was last reopened
   (its latest ``reopened`` row in ``alert_events``): a false alarm reviewed late is still kept its full
   period after the review, and a reopened alert (its verdict cleared) gets a full unreviewed period from the
   reopen.  Missed thefts' videos are kept like confirmed thefts, from when they were marked.  A held alert
   (``alerts.evidence_hold``) is never deleted.  When an alert's evidence goes, the alert gets
   ``evidence_deleted_at``; the row and its verdict stay.
3. **Disk budget**: while the directory holds more than ``evidence.max_gb`` (10^9 bytes, files being written
   included), delete the oldest unheld evidence first: unflagged files (by their age) and whole alerts' and
   missed thefts' evidence (by when the alert was raised) in one order, oldest first, whatever the verdict.
   Never held evidence, never an unflagged file rule 1 protects (not scored yet, within the ceiling), never
   a pending alert's files; if only those are left the budget is not met (a warning says so).

An alert's files are its snapshot (``alerts.evidence_path``), its video (``alerts.evidence_video_path``, or
``videos/<alert_id>.mp4`` before the video maker has recorded it) and its clips' snapshots
(``clip_results.evidence_path`` of ``alerts.clip_ids``, or ``<clip_id>.jpg`` by name).  A suspicious-activity
alert whose video is not settled yet (``evidence_video_settled_at`` NULL: the video maker has still to cut it)
also owns the motion segments of its camera that overlap its window (its clips' ``start_at`` -
``margin_before_s`` to ``captured_at`` + ``margin_after_s``), and while pending none of its files is deleted
by the budget.  A file shared by several owners stays while any of them keeps it.

``evidence.janitor``: ``on`` (the default) deletes; ``dry_run`` makes the same passes, logs and counts what
it would delete (``aislewatch_evidence_dry_run_deleted_total`` / ``..._bytes_total``) and deletes and marks
nothing; ``off`` does not start the janitor.

Safety: the walk never follows a symlink (a link is neither counted nor deleted).  Every deletion opens the
directory chain from the evidence directory down with ``O_DIRECTORY | O_NOFOLLOW`` and unlinks the name
relative to that handle (``dir_fd``), so a directory swapped for a symlink at any moment of the pass makes
the open fail and nothing is deleted through it.  Only evidence-looking files (``.jpg``, ``.mp4``...) and
orphans are deleted.  Empty directories of days before yesterday are removed.  An alert is marked deleted in
the database *before* its files go, in an UPDATE that requires ``evidence_hold`` to be false, so a hold
committed a moment earlier always wins; and the desk refuses a hold on an alert already marked.  Deleting a
file that is already gone is nothing; a desk reading a file at that moment keeps its open handle (POSIX
unlink).
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from common.db import Database
from common.evidence import SEGMENTS, VIDEOS, parse_segment
from common.metrics import (
    ERRORS,
    EVIDENCE_ALERTS_DELETED,
    EVIDENCE_BYTES,
    EVIDENCE_DELETED,
    EVIDENCE_DELETED_BYTES,
    EVIDENCE_DRY_RUN_DELETED,
    EVIDENCE_DRY_RUN_DELETED_BYTES,
    EVIDENCE_FILES,
    EVIDENCE_HELD,
    EVIDENCE_LAST_PASS,
)
from common.models import Alert, AlertEvent, ClipResult, MissedTheft
from common.schemas import AlertEventKind, AlertKind, Verdict, utc_now
from common.settings import EvidenceSettings, Settings
from common.worker import Worker

log = logging.getLogger("aislewatch.janitor")

GB = 1_000_000_000
DELETABLE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".mp4", ".webm", ".mkv"})
IN_PROGRESS_SUFFIXES = (".part", ".tmp")
CLIP_LOOKUP_CHUNK = 500
ORPHAN_AGE = timedelta(hours=1)  # a *.part/*.tmp older than this was left by a crash (segments are <= 60 s)
UNSCORED_CEILING = 10  # times keep_unflagged: past it unflagged files go even if their camera was never scored
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class Reason:
    """The ``reason`` label of ``aislewatch_evidence_deleted_total``."""

    UNFLAGGED = "unflagged"
    FALSE_ALARM = "false_alarm"
    THEFT = "theft"
    UNREVIEWED = "unreviewed"
    MISSED_THEFT = "missed_theft"
    DISK_BUDGET = "disk_budget"
    ORPHAN = "orphan"


@dataclass(frozen=True)
class EvidenceFile:
    """One finished file under the evidence directory (a real path: no symlink on the way)."""

    path: str  # a str, not a Path: a pass handles 100,000s of them and pathlib's parsing dominated the time
    size: int
    at: datetime  # when it was last written (mtime; for a segment, the later of mtime and its end time)
    camera: str | None = None  # the first directory under the evidence directory
    span: tuple[datetime, datetime] | None = None  # a motion segment's start and end (from its name)


@dataclass(eq=False)
class Owner:
    """An alert or a missed theft and the files it keeps."""

    key: str
    kind: str  # the retention class: Reason.FALSE_ALARM, THEFT, UNREVIEWED or MISSED_THEFT
    captured_at: datetime  # the budget's "oldest first"
    expires_at: datetime
    held: bool
    recorded: bool  # the database names evidence for it (a path), even if the files are gone
    alert_id: str | None = None
    files: set[str] = field(default_factory=set)
    done: bool = False  # its evidence was deleted in this pass
    pending: bool = False  # an alert whose video is not settled yet: the budget leaves its files alone


@dataclass
class PassReport:
    """What one pass found and did; ``summary`` is its log line."""

    files: int = 0
    bytes: int = 0
    held_alerts: int = 0
    skipped_links: int = 0
    writing_bytes: int = 0  # files being written (*.part, *.tmp): on the disk, never deleted
    deleted: Counter[str] = field(default_factory=Counter)  # reason → files
    deleted_bytes: Counter[str] = field(default_factory=Counter)  # reason → bytes
    alerts_deleted: Counter[str] = field(default_factory=Counter)  # reason → alerts marked evidence_deleted_at
    over_budget_bytes: int = 0  # still over the budget after the pass (only held evidence left)
    protected_unscored: int = 0  # unflagged files kept because their camera's clips are not scored yet
    dry_run: bool = False  # evidence.janitor = dry_run: "deleted" is what would have been deleted
    seconds: float = 0.0

    def summary(self, budget_bytes: int) -> str:
        if self.deleted:
            parts = ", ".join(
                f"{n} {reason}" + (f" ({self.alerts_deleted[reason]} alerts)" if self.alerts_deleted[reason] else "")
                for reason, n in sorted(self.deleted.items())
            )
            verb = "would delete" if self.dry_run else "deleted"
            gone = f"{verb} {sum(self.deleted.values())} files, {_size(sum(self.deleted_bytes.values()))}: {parts}"
        else:
            gone = "would delete nothing" if self.dry_run else "deleted nothing"
        if self.dry_run:
            gone = "dry run, " + gone
        text = (f"evidence janitor: {gone}; {self.files} files, {_size(self.bytes)} on disk of {_size(budget_bytes)}; "
                f"{self.held_alerts} alerts held; {self.seconds:.2f} s")
        if self.protected_unscored:
            text += f"; {self.protected_unscored} unflagged files kept longer: their clips are scored late"
        if self.over_budget_bytes:
            text += (f"; still {_size(self.over_budget_bytes)} over the budget with only held evidence left "
                     "(or evidence of clips not scored yet, or of alerts whose video is pending)")
        return text


def _size(n: int) -> str:
    for unit, scale in (("GB", GB), ("MB", 1_000_000), ("kB", 1000)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _retention_kind(verdict: str | None) -> str:
    if verdict == Verdict.FALSE_ALARM.value:
        return Reason.FALSE_ALARM
    if verdict in (Verdict.THEFT_CONFIRMED.value, Verdict.THEFT_PREVENTED.value):
        return Reason.THEFT
    return Reason.UNREVIEWED  # no verdict, "unsure", or one this version does not know


def _real(path: str | None) -> str | None:
    """A database path as the real path it names (relative ones from the working directory, like the desk)."""
    if not path:
        return None
    return os.path.realpath(path)


def _dir_name(path: str) -> str:
    return os.path.basename(os.path.dirname(path))


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


class EvidenceJanitor(Worker):
    """Enforces the evidence lifecycle (see the module docstring), one pass every ``interval_s``."""

    name = "evidence-janitor"

    def __init__(
        self,
        db: Database,
        evidence_dir: Path,
        settings: EvidenceSettings,
        *,
        clip_window_s: float = 4.0,
        clock: Callable[[], datetime] = utc_now,
        stop: threading.Event | None = None,
    ) -> None:
        super().__init__(stop)
        self.db = db
        self.evidence_dir = Path(evidence_dir)
        self.settings = settings
        self.clip_window_s = clip_window_s
        self.clock = clock
        self._clip_paths: dict[str, str | None] = {}  # clip id → clip_results.evidence_path (never changes)
        self._dirs: list[str] = []  # the directories the last walk went through
        self._orphans: list[EvidenceFile] = []  # *.part / *.tmp files older than ORPHAN_AGE (the last walk)
        self.last: PassReport | None = None

    @classmethod
    def from_settings(cls, settings: Settings, db: Database, stop: threading.Event | None = None) -> EvidenceJanitor:
        # Clip windows are per camera: the longest one bounds how far back an unscored clip reaches.
        window = max((camera.clip.window_s for store in settings.stores for camera in store.cameras), default=4.0)
        return cls(db, settings.service.evidence_dir, settings.evidence, clip_window_s=window, stop=stop)

    @property
    def budget_bytes(self) -> int:
        return int(self.settings.max_gb * GB)

    @property
    def dry_run(self) -> bool:
        return self.settings.janitor == "dry_run"

    @property
    def safety(self) -> timedelta:
        """How far before a camera's newest scored clip evidence may still be needed by a clip not scored yet:
        one segment, both margins and one clip window."""
        s = self.settings
        return timedelta(seconds=s.segment_s + s.margin_before_s + s.margin_after_s + self.clip_window_s)

    # -- the worker loop -------------------------------------------------------------------------------
    def step(self) -> bool:
        try:
            self.sweep()
            self.progressed()
        except Exception as exc:  # a database that is away, a disk error: try again next interval
            ERRORS.labels("janitor", type(exc).__name__).inc()
            self.log.warning("evidence janitor pass failed (tried again in %.0f s): %s",
                             self.settings.janitor_interval_s, exc, exc_info=True)
        self.stop_event.wait(self.settings.janitor_interval_s)
        return True

    # -- one pass --------------------------------------------------------------------------------------
    def sweep(self) -> PassReport:
        """One pass of the rules; updates the metrics and logs one summary line."""
        started = time.monotonic()
        now = self.clock()
        report = PassReport(dry_run=self.dry_run)
        root = os.path.realpath(self.evidence_dir)
        # Files first, then the database: an alert raised while the directory is walked is then seen, so its
        # fresh snapshot is never taken for an unflagged one.
        self._orphans = []
        files = {f.path: f for f in self._scan(root, report, now)} if os.path.isdir(root) else {}
        owners = self._owners(files, now)
        report.held_alerts = sum(1 for o in owners if o.held and o.alert_id is not None)
        owned: dict[str, list[Owner]] = {}
        for owner in owners:
            for path in owner.files:
                owned.setdefault(path, []).append(owner)

        # 0. orphans of a crash mid-write
        for orphan in self._orphans:
            if self._delete(root, files, orphan, Reason.ORPHAN, report):
                report.writing_bytes -= orphan.size

        # 1. unflagged, measured from each camera's processed line
        keep_unflagged = timedelta(minutes=self.settings.keep_unflagged)
        ceiling = now - keep_unflagged * UNSCORED_CEILING
        lines = self._processed_lines({f.camera for f in files.values() if f.path not in owned}, now)
        protected: set[str] = set()  # not scored yet (within the ceiling): not even the budget takes these
        for f in sorted(files.values(), key=lambda f: f.at):
            if f.path in owned:
                continue
            line = lines.get(f.camera)
            if f.at >= ceiling and (line is None or f.at >= line):
                protected.add(f.path)
            if f.at >= now - keep_unflagged:
                continue  # young: kept (the budget may take it once its clips are scored)
            if f.at >= ceiling and (line is None or f.at >= line - keep_unflagged):
                report.protected_unscored += 1  # kept longer: its camera's clips are scored late
                continue
            self._delete(root, files, f, Reason.UNFLAGGED, report)

        # 2. retention by verdict (holds never): the expired alerts are marked in batches, then their files go
        expired = [o for o in sorted(owners, key=lambda o: o.expires_at) if not o.held and now >= o.expires_at]
        marked = self._mark([o.alert_id for o in expired if o.alert_id is not None and (o.recorded or o.files)], now)
        for owner in expired:
            if owner.alert_id is not None and not (owner.recorded or owner.files):
                continue  # nothing was ever recorded: "deleted by retention" would be untrue
            if owner.alert_id is None or owner.alert_id in marked:
                self._expire(root, files, owned, owner, owner.kind, now, report, marked=True)
            else:
                owner.held = True  # held since we read it: the hold wins

        # 3. the disk budget: the oldest unheld evidence first, unflagged files and alerts in one order
        total = sum(f.size for f in files.values()) + report.writing_bytes
        budget = self.budget_bytes
        if total > budget:
            candidates: list[tuple[datetime, int, EvidenceFile | Owner]] = [
                (f.at, 0, f) for f in files.values() if f.path not in owned and f.path not in protected
            ]
            candidates += [(o.captured_at, 1, o) for o in owners if not (o.held or o.done or o.pending)]
            candidates.sort(key=lambda c: (c[0], c[1]))
            for _, _, item in candidates:
                if total <= budget:
                    break
                if isinstance(item, EvidenceFile):
                    if item.path in files and self._delete(root, files, item, Reason.DISK_BUDGET, report):
                        total -= item.size
                    continue
                if item.held or item.done:
                    continue  # a hold that won the race in rule 2
                before = sum(files[p].size for p in item.files if p in files)
                self._expire(root, files, owned, item, Reason.DISK_BUDGET, now, report)
                total -= before - sum(files[p].size for p in item.files if p in files)
            if total > budget:
                report.over_budget_bytes = total - budget

        if not self.dry_run:
            self._prune(root, now)
        report.files = len(files)
        report.bytes = sum(f.size for f in files.values()) + report.writing_bytes
        report.seconds = time.monotonic() - started
        EVIDENCE_FILES.set(report.files)
        EVIDENCE_BYTES.set(report.bytes)
        EVIDENCE_HELD.set(report.held_alerts)
        EVIDENCE_LAST_PASS.set(now.timestamp())
        summary = report.summary(budget)
        if report.over_budget_bytes:
            log.warning(summary)
        else:
            log.info(summary)
        self.last = report
        return report

    def _scan(self, root: str, report: PassReport, now: datetime) -> Iterator[EvidenceFile]:
        """Every finished regular file under ``root``, without following any symlink.  The bytes of files
        being written are added to ``report.writing_bytes`` (they take disk too) but the files are not yielded;
        those older than ``ORPHAN_AGE`` are kept in ``self._orphans``."""
        stack: list[tuple[str, str | None]] = [(root, None)]
        self._dirs = []
        orphan_before = (now - ORPHAN_AGE).timestamp()
        while stack:
            directory, camera = stack.pop()
            self._dirs.append(directory)
            in_segments = os.path.basename(directory) == SEGMENTS
            try:
                entries = list(os.scandir(directory))
            except OSError as exc:  # removed meanwhile, or unreadable: the next pass sees it again
                log.debug("cannot list %s: %s", directory, exc)
                continue
            for entry in entries:
                try:
                    if entry.is_symlink():
                        report.skipped_links += 1
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((entry.path, camera if camera is not None else entry.name))
                        continue
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                at = datetime.fromtimestamp(info.st_mtime, tz=UTC)
                if entry.name.endswith(IN_PROGRESS_SUFFIXES):
                    report.writing_bytes += info.st_size
                    if info.st_mtime < orphan_before:
                        self._orphans.append(EvidenceFile(entry.path, info.st_size, at, camera))
                    continue
                span = None
                if in_segments:
                    segment = parse_segment(Path(entry.name), "")
                    if segment is not None:
                        at = max(at, segment.end)
                        span = (segment.start, segment.end)
                yield EvidenceFile(entry.path, info.st_size, at, camera, span)

    def _processed_lines(self, cameras: Iterable[str | None], now: datetime) -> dict[str | None, datetime]:
        """Per camera, the newest ``captured_at`` of its scored clips minus ``safety`` (never after ``now``); a
        camera with no scored clip has none.  One indexed MAX per camera (ix_clip_results_camera_time)."""
        lines: dict[str | None, datetime] = {}
        wanted = sorted(c for c in set(cameras) if c is not None)
        if not wanted:
            return lines
        with self.db.sessions() as session:
            for camera in wanted:
                newest = session.scalar(select(func.max(ClipResult.captured_at)).where(ClipResult.camera_id == camera))
                if newest is not None:
                    if newest.tzinfo is None:
                        newest = newest.replace(tzinfo=UTC)
                    lines[camera] = min(newest - self.safety, now)
        return lines

    def _owners(self, files: dict[str, EvidenceFile], now: datetime) -> list[Owner]:
        """Every alert whose evidence is not deleted yet and every missed theft, with their files on disk."""
        s = self.settings
        keep = {Reason.FALSE_ALARM: s.keep_false_alarm_days, Reason.THEFT: s.keep_theft_days,
                Reason.UNREVIEWED: s.keep_unreviewed_days}
        with self.db.sessions() as session:
            alerts = session.execute(
                select(Alert.alert_id, Alert.kind, Alert.camera_id, Alert.verdict, Alert.raised_at,
                       Alert.acknowledged_at, Alert.evidence_hold, Alert.evidence_path, Alert.evidence_video_path,
                       Alert.clip_ids, Alert.evidence_video_settled_at)
                .where(Alert.evidence_deleted_at.is_(None))
            ).all()
            missed = session.execute(
                select(MissedTheft.id, MissedTheft.start_at, MissedTheft.marked_at, MissedTheft.video_path)
            ).all()
            clip_ids = {c for row in alerts for c in (row.clip_ids or ())}
            self._load_clip_paths(session, clip_ids)
            pending = [row for row in alerts if row.kind == AlertKind.SUSPICIOUS_ACTIVITY.value
                       and row.evidence_video_settled_at is None]
            spans = self._clip_spans(session, {c for row in pending for c in (row.clip_ids or ())})
        self._clip_paths = {c: p for c, p in self._clip_paths.items() if c in clip_ids}

        # Names on disk → files, for the evidence the database does not name (yet).
        videos: dict[str, list[str]] = {}
        snapshots: dict[str, list[str]] = {}
        segments: dict[str | None, list[EvidenceFile]] = {}
        for path, f in files.items():
            parent = _dir_name(path)
            if parent == VIDEOS:
                videos.setdefault(_stem(path), []).append(path)
            elif parent == SEGMENTS:
                if f.span is not None:
                    segments.setdefault(f.camera, []).append(f)
            elif path.endswith(".jpg"):
                snapshots.setdefault(_stem(path), []).append(path)

        owners: list[Owner] = []
        for row in alerts:
            kind = _retention_kind(row.verdict)
            since = max(t for t in (row.raised_at, row.acknowledged_at) if t is not None)
            clip_paths = [self._clip_paths.get(c) for c in row.clip_ids or ()]
            named = [row.evidence_path, row.evidence_video_path, *clip_paths]
            owner = Owner(
                key=f"alert:{row.alert_id}", kind=kind, captured_at=row.raised_at,
                expires_at=since + timedelta(days=keep[kind]), held=bool(row.evidence_hold),
                recorded=any(named), alert_id=row.alert_id,
            )
            owner.files.update(p for p in map(_real, named) if p is not None and p in files)
            owner.files.update(videos.get(row.alert_id, ()))
            for clip_id in row.clip_ids or ():
                owner.files.update(snapshots.get(clip_id, ()))
            if row.kind == AlertKind.SUSPICIOUS_ACTIVITY.value and row.evidence_video_settled_at is None:
                # The video maker has still to cut its video from these segments: they are its evidence.
                owner.pending = True
                known = [spans[c] for c in row.clip_ids or () if c in spans]
                if known:
                    start = min(a for a, _ in known) - timedelta(seconds=s.margin_before_s)
                    end = max(b for _, b in known) + timedelta(seconds=s.margin_after_s)
                else:  # clip rows not (yet) readable: a window around the raise, as wide as it can need
                    start, end = row.raised_at - self.safety, row.raised_at + self.safety
                for segment in segments.get(row.camera_id, ()):
                    assert segment.span is not None
                    if segment.span[1] >= start and segment.span[0] <= end:
                        owner.files.add(segment.path)
            owners.append(owner)
        self._apply_reopens([o for o in owners if o.alert_id is not None and now >= o.expires_at], keep)
        for missed_id, start_at, marked_at, video_path in missed:
            video = _real(video_path)
            owner = Owner(
                key=f"missed:{missed_id}", kind=Reason.MISSED_THEFT, captured_at=start_at,
                expires_at=marked_at + timedelta(days=s.keep_theft_days), held=False, recorded=bool(video_path),
            )
            if video is not None and video in files:
                owner.files.add(video)
            owners.append(owner)
        return owners

    def _apply_reopens(self, due: list[Owner], keep: dict[str, float]) -> None:
        """A reopened alert's period counts from its latest reopen: looked up (indexed by alert id) only for the
        alerts that would expire otherwise, so a pass stays cheap however long the alert history is."""
        by_id = {o.alert_id: o for o in due}
        ids = sorted(i for i in by_id if i is not None)
        for start in range(0, len(ids), CLIP_LOOKUP_CHUNK):
            chunk = ids[start:start + CLIP_LOOKUP_CHUNK]
            with self.db.sessions() as session:
                rows = session.execute(
                    select(AlertEvent.alert_id, func.max(AlertEvent.at))
                    .where(AlertEvent.alert_id.in_(chunk), AlertEvent.event == AlertEventKind.REOPENED.value)
                    .group_by(AlertEvent.alert_id)
                ).all()
            for alert_id, reopened_at in rows:
                if reopened_at is None:
                    continue
                if reopened_at.tzinfo is None:
                    reopened_at = reopened_at.replace(tzinfo=UTC)
                owner = by_id[alert_id]
                owner.expires_at = max(owner.expires_at, reopened_at + timedelta(days=keep[owner.kind]))

    def _clip_spans(self, session: Session, clip_ids: set[str]) -> dict[str, tuple[datetime, datetime]]:
        """clip id → (start_at, captured_at) of the pending alerts' clips."""
        spans: dict[str, tuple[datetime, datetime]] = {}
        wanted = sorted(clip_ids)
        for start in range(0, len(wanted), CLIP_LOOKUP_CHUNK):
            rows = session.execute(
                select(ClipResult.clip_id, ClipResult.start_at, ClipResult.captured_at)
                .where(ClipResult.clip_id.in_(wanted[start:start + CLIP_LOOKUP_CHUNK]))
            ).all()
            spans.update((clip_id, (a, b)) for clip_id, a, b in rows)
        return spans

    def _load_clip_paths(self, session: Session, clip_ids: Iterable[str]) -> None:
        missing = sorted(c for c in clip_ids if c not in self._clip_paths)
        for start in range(0, len(missing), CLIP_LOOKUP_CHUNK):
            chunk = missing[start:start + CLIP_LOOKUP_CHUNK]
            rows = session.execute(
                select(ClipResult.clip_id, ClipResult.evidence_path).where(ClipResult.clip_id.in_(chunk))
            ).all()
            found = dict(rows)
            for clip_id in chunk:
                # A clip with no row yet may get one: ask again next pass (only stored answers are kept).
                if clip_id in found:
                    self._clip_paths[clip_id] = found[clip_id]

    # -- deleting ------------------------------------------------------------------------------------
    def _mark(self, alert_ids: list[str], now: datetime) -> set[str]:
        """Set ``evidence_deleted_at`` on those of ``alert_ids`` still unheld and unmarked; returns them.  The
        hold is checked in the UPDATE itself, so a hold that committed after we read the alerts wins.  A dry run
        only reads which of them it would mark."""
        marked: set[str] = set()
        for start in range(0, len(alert_ids), CLIP_LOOKUP_CHUNK):
            chunk = alert_ids[start:start + CLIP_LOOKUP_CHUNK]
            where = (Alert.alert_id.in_(chunk), Alert.evidence_hold.is_(False), Alert.evidence_deleted_at.is_(None))
            if self.dry_run:
                with self.db.sessions() as session:
                    marked.update(session.scalars(select(Alert.alert_id).where(*where)))
                continue
            with self.db.session() as session:
                marked.update(session.scalars(
                    update(Alert).where(*where).values(evidence_deleted_at=now).returning(Alert.alert_id)
                ))
        return marked

    def _expire(self, root: str, files: dict[str, EvidenceFile], owned: dict[str, list[Owner]], owner: Owner,
                reason: str, now: datetime, report: PassReport, *, marked: bool = False) -> None:
        """Delete ``owner``'s evidence (the files no other live owner keeps) and mark the alert (unless the
        caller has: ``marked``)."""
        if owner.done:
            return
        if owner.alert_id is not None:
            if not owner.recorded and not owner.files:
                return  # nothing was ever recorded: "deleted by retention" would be untrue
            if not marked and owner.alert_id not in self._mark([owner.alert_id], now):
                owner.held = True  # held since we read it: the hold wins
                return
            report.alerts_deleted[reason] += 1
            if not self.dry_run:
                EVIDENCE_ALERTS_DELETED.labels(reason).inc()
        owner.done = True
        for path in sorted(owner.files):
            others = [o for o in owned.get(path, ()) if o is not owner and not o.done]
            if path in files and not others:
                self._delete(root, files, files[path], reason, report)

    def _prune(self, root: str, now: datetime) -> None:
        """Remove the empty directories of days before yesterday (``<camera>/<YYYYMMDD>/...``): today's and
        yesterday's stay, since ingest may be about to write into them."""
        cutoff = (now - timedelta(days=1)).astimezone(UTC).strftime("%Y%m%d")
        for directory in sorted(self._dirs, key=len, reverse=True):
            parts = os.path.relpath(directory, root).split(os.sep)
            if len(parts) < 2 or not (len(parts[1]) == 8 and parts[1].isdigit()) or parts[1] >= cutoff:
                continue
            fd = self._open_dir(root, os.path.dirname(directory))
            if fd is None:
                continue
            try:
                os.rmdir(os.path.basename(directory), dir_fd=fd)  # only ever succeeds on an empty directory
            except OSError:
                pass
            finally:
                os.close(fd)

    def _open_dir(self, root: str, directory: str) -> int | None:
        """A handle on ``directory``, opened from ``root`` down one component at a time with ``O_NOFOLLOW``: if
        any of them is (now) a symlink, or not a directory, there is no handle and nothing is deleted in it."""
        rel = os.path.relpath(directory, root)
        parts = [] if rel == os.curdir else rel.split(os.sep)
        if os.pardir in parts:
            return None
        try:
            fd = os.open(root, _DIR_FLAGS)
        except OSError as exc:
            log.warning("cannot open the evidence directory %s: %s", root, exc)
            return None
        for part in parts:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                os.close(fd)
                return None  # removed meanwhile
            except OSError as exc:  # ELOOP: swapped for a symlink; ENOTDIR: for a file
                os.close(fd)
                log.warning("%s is no longer a directory inside the evidence directory %s (%s); nothing in it "
                            "is deleted", directory, root, exc)
                return None
            os.close(fd)
            fd = child
        return fd

    def _delete(self, root: str, files: dict[str, EvidenceFile], f: EvidenceFile, reason: str,
                report: PassReport) -> bool:
        """Unlink one scanned file, by name relative to a handle on its directory (see ``_open_dir``), if it is
        still a regular file.  A dry run counts it and unlinks nothing."""
        name = os.path.basename(f.path)
        if reason != Reason.ORPHAN and os.path.splitext(name)[1].lower() not in DELETABLE_SUFFIXES:
            return False  # not evidence (an operator's note?): counted, never deleted
        if reason == Reason.ORPHAN and not name.endswith(IN_PROGRESS_SUFFIXES):
            return False
        fd = self._open_dir(root, os.path.dirname(f.path))
        if fd is None:
            return False
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode):
                return False
            if not self.dry_run:
                os.unlink(name, dir_fd=fd)
        except FileNotFoundError:
            files.pop(f.path, None)
            return False  # already gone: deleting is idempotent
        except OSError as exc:
            ERRORS.labels("janitor", "delete").inc()
            log.warning("cannot delete evidence %s: %s", f.path, exc)
            return False
        finally:
            os.close(fd)
        files.pop(f.path, None)
        report.deleted[reason] += 1
        report.deleted_bytes[reason] += info.st_size
        if self.dry_run:
            log.info("dry run: would delete %s (%s, %d bytes)", f.path, reason, info.st_size)
            EVIDENCE_DRY_RUN_DELETED.labels(reason).inc()
            EVIDENCE_DRY_RUN_DELETED_BYTES.labels(reason).inc(info.st_size)
        else:
            EVIDENCE_DELETED.labels(reason).inc()
            EVIDENCE_DELETED_BYTES.labels(reason).inc(info.st_size)
        return True
