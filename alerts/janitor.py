"""The evidence janitor: deletes evidence nobody needs any more, so the evidence disk never fills.

Every ``evidence.janitor_interval_s`` the alerts role makes one pass over ``service.evidence_dir`` (the layout
is in ``common.evidence``), in this order:

1. **Unflagged** evidence (a file that belongs to no alert and no missed theft) older than
   ``evidence.keep_unflagged`` minutes is deleted.  Age is taken from the file's mtime, and for a motion
   segment from the end time in its name too (the younger of the two counts), so a segment stays long enough
   for a missed theft to be cut from it.
2. **Alert evidence by verdict**: false alarm → ``keep_false_alarm_days``; confirmed or prevented theft →
   ``keep_theft_days``; no verdict or "unsure" → ``keep_unreviewed_days``.  The period starts when the verdict
   was given (``acknowledged_at``) and, for an alert nobody reviewed, when it was raised: a false alarm
   reviewed late is still kept its full period after the review.  A reopened alert is unreviewed again (from
   ``raised_at``).  Missed thefts' videos are kept like confirmed thefts, from when they were marked.
   A held alert (``alerts.evidence_hold``) is never deleted.  When an alert's evidence goes, the alert gets
   ``evidence_deleted_at``; the row and its verdict stay.
3. **Disk budget**: while the directory holds more than ``evidence.max_gb`` (10^9 bytes), delete the unflagged
   files first (oldest first: they raised nothing; under this pressure even segments younger than
   ``keep_unflagged`` go), then whole alerts' (and missed thefts') evidence, oldest capture first whatever the
   verdict.  Held evidence never goes, even if the budget cannot be met (a warning says so).

An alert's files are its snapshot (``alerts.evidence_path``), its video (``alerts.evidence_video_path``, or
``videos/<alert_id>.mp4`` before the video maker has recorded it) and its clips' snapshots
(``clip_results.evidence_path`` of ``alerts.clip_ids``, or ``<clip_id>.jpg`` by name).  A file shared by
several owners stays while any of them keeps it.

Safety: the walk never follows a symlink (a link is neither counted nor deleted); before anything in a
directory is deleted, that directory is resolved again (once per pass) and must still be itself, inside the
evidence directory; files being written (``*.part``, ``*.tmp``) are never touched, and only evidence-looking
files (``.jpg``, ``.mp4``...) are deleted.  Empty directories of days before yesterday are removed.  An alert is
marked deleted in the database *before* its files go, in an UPDATE that requires ``evidence_hold`` to be
false, so a hold committed a moment earlier always wins; and the desk refuses a hold on an alert already
marked.  Deleting a file that is already gone is nothing; a desk reading a file at that moment keeps its open
handle (POSIX unlink).
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

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from common.db import Database
from common.evidence import SEGMENTS, VIDEOS, parse_segment
from common.metrics import (
    ERRORS,
    EVIDENCE_ALERTS_DELETED,
    EVIDENCE_BYTES,
    EVIDENCE_DELETED,
    EVIDENCE_DELETED_BYTES,
    EVIDENCE_FILES,
    EVIDENCE_HELD,
    EVIDENCE_LAST_PASS,
)
from common.models import Alert, ClipResult, MissedTheft
from common.schemas import Verdict, utc_now
from common.settings import EvidenceSettings, Settings
from common.worker import Worker

log = logging.getLogger("aislewatch.janitor")

GB = 1_000_000_000
DELETABLE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".mp4", ".webm", ".mkv"})
IN_PROGRESS_SUFFIXES = (".part", ".tmp")
CLIP_LOOKUP_CHUNK = 500


class Reason:
    """The ``reason`` label of ``aislewatch_evidence_deleted_total``."""

    UNFLAGGED = "unflagged"
    FALSE_ALARM = "false_alarm"
    THEFT = "theft"
    UNREVIEWED = "unreviewed"
    MISSED_THEFT = "missed_theft"
    DISK_BUDGET = "disk_budget"


@dataclass(frozen=True)
class EvidenceFile:
    """One finished file under the evidence directory (a real path: no symlink on the way)."""

    path: str  # a str, not a Path: a pass handles 100,000s of them and pathlib's parsing dominated the time
    size: int
    at: datetime  # when it was last written (mtime; for a segment, the later of mtime and its end time)


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
    seconds: float = 0.0

    def summary(self, budget_bytes: int) -> str:
        if self.deleted:
            parts = ", ".join(
                f"{n} {reason}" + (f" ({self.alerts_deleted[reason]} alerts)" if self.alerts_deleted[reason] else "")
                for reason, n in sorted(self.deleted.items())
            )
            gone = f"deleted {sum(self.deleted.values())} files, {_size(sum(self.deleted_bytes.values()))}: {parts}"
        else:
            gone = "deleted nothing"
        text = (f"evidence janitor: {gone}; {self.files} files, {_size(self.bytes)} on disk of {_size(budget_bytes)}; "
                f"{self.held_alerts} alerts held; {self.seconds:.2f} s")
        if self.over_budget_bytes:
            text += f"; still {_size(self.over_budget_bytes)} over the budget with only held evidence left"
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
        clock: Callable[[], datetime] = utc_now,
        stop: threading.Event | None = None,
    ) -> None:
        super().__init__(stop)
        self.db = db
        self.evidence_dir = Path(evidence_dir)
        self.settings = settings
        self.clock = clock
        self._clip_paths: dict[str, str | None] = {}  # clip id → clip_results.evidence_path (never changes)
        self._safe_dirs: dict[str, bool] = {}  # directory → resolves inside the evidence directory (this pass)
        self._dirs: list[str] = []  # the directories the last walk went through
        self.last: PassReport | None = None

    @classmethod
    def from_settings(cls, settings: Settings, db: Database, stop: threading.Event | None = None) -> EvidenceJanitor:
        return cls(db, settings.service.evidence_dir, settings.evidence, stop=stop)

    @property
    def budget_bytes(self) -> int:
        return int(self.settings.max_gb * GB)

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
        """One pass of the three rules; updates the metrics and logs one summary line."""
        started = time.monotonic()
        now = self.clock()
        report = PassReport()
        root = os.path.realpath(self.evidence_dir)
        # Files first, then the database: an alert raised while the directory is walked is then seen, so its
        # fresh snapshot is never taken for an unflagged one.
        files = {f.path: f for f in self._scan(root, report)} if os.path.isdir(root) else {}
        owners = self._owners(files, now)
        report.held_alerts = sum(1 for o in owners if o.held and o.alert_id is not None)
        owned: dict[str, list[Owner]] = {}
        self._safe_dirs = {}
        for owner in owners:
            for path in owner.files:
                owned.setdefault(path, []).append(owner)

        # 1. unflagged
        keep_unflagged = timedelta(minutes=self.settings.keep_unflagged)
        for f in sorted(files.values(), key=lambda f: f.at):
            if f.path not in owned and now - f.at > keep_unflagged:
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

        # 3. the disk budget
        total = sum(f.size for f in files.values()) + report.writing_bytes
        budget = self.budget_bytes
        if total > budget:
            for f in sorted((f for f in files.values() if f.path not in owned), key=lambda f: f.at):
                if total <= budget:
                    break
                if self._delete(root, files, f, Reason.DISK_BUDGET, report):
                    total -= f.size
            for owner in sorted(owners, key=lambda o: o.captured_at):
                if total <= budget:
                    break
                if owner.held or owner.done:
                    continue
                before = sum(files[p].size for p in owner.files if p in files)
                self._expire(root, files, owned, owner, Reason.DISK_BUDGET, now, report)
                total -= before - sum(files[p].size for p in owner.files if p in files)
            if total > budget:
                report.over_budget_bytes = total - budget

        self._prune(root, now)
        report.files = len(files)
        report.bytes = sum(f.size for f in files.values()) + report.writing_bytes
        report.seconds = time.monotonic() - started
        EVIDENCE_FILES.set(report.files)
        EVIDENCE_BYTES.set(report.bytes)
        EVIDENCE_HELD.set(report.held_alerts)
        EVIDENCE_LAST_PASS.set(now.timestamp())
        line = report.summary(budget)
        if report.over_budget_bytes:
            log.warning(line)
        else:
            log.info(line)
        self.last = report
        return report

    def _scan(self, root: str, report: PassReport) -> Iterator[EvidenceFile]:
        """Every finished regular file under ``root``, without following any symlink.  The bytes of files
        being written are added to ``report.writing_bytes`` (they take disk too) but the files are not yielded."""
        stack = [root]
        self._dirs = []
        while stack:
            directory = stack.pop()
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
                        stack.append(entry.path)
                        continue
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if entry.name.endswith(IN_PROGRESS_SUFFIXES):
                    report.writing_bytes += info.st_size
                    continue
                at = datetime.fromtimestamp(info.st_mtime, tz=UTC)
                if in_segments:
                    segment = parse_segment(Path(entry.name), "")
                    if segment is not None:
                        at = max(at, segment.end)
                yield EvidenceFile(entry.path, info.st_size, at)

    def _owners(self, files: dict[str, EvidenceFile], now: datetime) -> list[Owner]:
        """Every alert whose evidence is not deleted yet and every missed theft, with their files on disk."""
        s = self.settings
        keep = {Reason.FALSE_ALARM: s.keep_false_alarm_days, Reason.THEFT: s.keep_theft_days,
                Reason.UNREVIEWED: s.keep_unreviewed_days}
        with self.db.sessions() as session:
            alerts = session.execute(
                select(Alert.alert_id, Alert.verdict, Alert.raised_at, Alert.acknowledged_at, Alert.evidence_hold,
                       Alert.evidence_path, Alert.evidence_video_path, Alert.clip_ids)
                .where(Alert.evidence_deleted_at.is_(None))
            ).all()
            missed = session.execute(
                select(MissedTheft.id, MissedTheft.start_at, MissedTheft.marked_at, MissedTheft.video_path)
            ).all()
            clip_ids = {c for row in alerts for c in (row.clip_ids or ())}
            self._load_clip_paths(session, clip_ids)
        self._clip_paths = {c: p for c, p in self._clip_paths.items() if c in clip_ids}

        # Names on disk → files, for the evidence the database does not name (yet).
        videos: dict[str, list[str]] = {}
        snapshots: dict[str, list[str]] = {}
        for path in files:
            parent = _dir_name(path)
            if parent == VIDEOS:
                videos.setdefault(_stem(path), []).append(path)
            elif path.endswith(".jpg") and parent != SEGMENTS:
                snapshots.setdefault(_stem(path), []).append(path)

        owners: list[Owner] = []
        for row in alerts:
            kind = _retention_kind(row.verdict)
            since = row.acknowledged_at if row.verdict and row.acknowledged_at else row.raised_at
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
            owners.append(owner)
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
        hold is checked in the UPDATE itself, so a hold that committed after we read the alerts wins."""
        marked: set[str] = set()
        for start in range(0, len(alert_ids), CLIP_LOOKUP_CHUNK):
            chunk = alert_ids[start:start + CLIP_LOOKUP_CHUNK]
            with self.db.session() as session:
                marked.update(session.scalars(
                    update(Alert)
                    .where(Alert.alert_id.in_(chunk), Alert.evidence_hold.is_(False),
                           Alert.evidence_deleted_at.is_(None))
                    .values(evidence_deleted_at=now)
                    .returning(Alert.alert_id)
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
            if self._inside(directory, root):
                try:
                    os.rmdir(directory)  # only ever succeeds on an empty directory
                except OSError:
                    pass

    def _inside(self, directory: str, root: str) -> bool:
        """Whether ``directory`` still resolves inside ``root`` (checked once per directory and pass)."""
        safe = self._safe_dirs.get(directory)
        if safe is None:
            real = os.path.realpath(directory)
            safe = self._safe_dirs[directory] = real == directory and (real + os.sep).startswith(root + os.sep)
            if not safe:
                log.warning("%s now resolves to %s, not inside the evidence directory %s; nothing in it is deleted",
                            directory, real, root)
        return safe

    def _delete(self, root: str, files: dict[str, EvidenceFile], f: EvidenceFile, reason: str,
                report: PassReport) -> bool:
        """Unlink one scanned file if it is still a regular file in a directory that resolves inside ``root``."""
        if os.path.splitext(f.path)[1].lower() not in DELETABLE_SUFFIXES:
            return False  # not evidence (an operator's note?): counted, never deleted
        if not self._inside(os.path.dirname(f.path), root):
            return False
        files.pop(f.path, None)
        try:
            info = os.lstat(f.path)
            if not stat.S_ISREG(info.st_mode):
                return False
            os.unlink(f.path)
        except FileNotFoundError:
            return False  # already gone: deleting is idempotent
        except OSError as exc:
            ERRORS.labels("janitor", "delete").inc()
            log.warning("cannot delete evidence %s: %s", f.path, exc)
            files[f.path] = f
            return False
        report.deleted[reason] += 1
        report.deleted_bytes[reason] += info.st_size
        EVIDENCE_DELETED.labels(reason).inc()
        EVIDENCE_DELETED_BYTES.labels(reason).inc(info.st_size)
        return True
