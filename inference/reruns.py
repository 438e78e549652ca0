"""A recording analysed again into the same database is said so, plainly, instead of silently giving nothing.

A clip's id is derived from its camera, its capture session and its window's place on the clip grid; a
file's session is the file itself (its path, size and modification time), so cutting the same recording
again gives the same ids.  That is on purpose: it is what makes a restarted ingest, re-reading a file it was
half-way through, add nothing twice, and what lets a recording be counted once in the store's reports.  The
result rows are unique by clip id, so a re-run stores nothing new and raises no alert.

Two things end in "already stored", and they are told apart by the clip's capture time (wall-clock time of
its frames, which starts again at each run's start):

- a **redelivery** (the bus delivered a message again after a crash or a rebalance) carries the capture time
  stored the first time: it is the exactly-once guarantee at work, counted, never warned about;
- a **re-run** (a new run cut the same windows of the same recording) carries a new capture time: the worker
  warns, once per camera and again in a summary when it stops, that N clips were already in the database and
  are not counted again, and how to count the recording again (another ``database.url``, or a copy of the file,
  which is a new recording).  An ingest restarted on a file it had begun (a crash, an OOM kill, a pod moved)
  stamps its clips from its own new start too, so it looks the same here: the message names both causes, and
  the ``rerun`` count includes such restarts.

Both are counted in ``aislewatch_clips_already_stored_total{reason="rerun"|"redelivery"}``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from prometheus_client import Counter

from common.db import Database
from common.schemas import ResultMessage

ALREADY_STORED = Counter(
    "aislewatch_clips_already_stored_total",
    "Clips whose result was in the database already, not counted again: rerun (a new run cut the same windows "
    "of the same recording, or an ingest restarted on it) or redelivery (the bus delivered the same clip again)",
    ["reason"],
)

# Both causes of a stored clip with a new capture time, and what to do when counting it again is wanted.
_CAUSES = "an earlier run of this recording, or this ingest restarted on it"
_ADVICE = "to count a recording again use another database.url or a copy of the file"

# Capture times round-trip through the database; anything closer than this is the same clip delivered again.
_SAME_TIME = timedelta(milliseconds=1)


@dataclass
class CameraReruns:
    clips: int = 0  # clips of this camera found stored by an earlier run
    first_analysed: datetime | None = None  # the earliest stored capture time among them


@dataclass
class RerunWatch:
    """Tells re-runs from redeliveries among the results a batch did not store, and says so for re-runs."""

    db: Database
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("aislewatch.infer"))
    cameras: dict[str, CameraReruns] = field(default_factory=dict)
    redeliveries: int = 0

    def observe(self, results: Sequence[ResultMessage], written: int) -> int:
        """After a batch's write of ``results`` stored ``written`` new rows: how many of the others were re-run
        clips (warned about, the first time per camera), the rest being redeliveries."""
        skipped = len(results) - written  # a clip twice in one batch is a redelivery too
        if skipped <= 0:
            return 0
        unique = {r.clip_id: r for r in results}
        stored = self.db.stored_capture_times(list(unique)) if len(unique) > written else {}
        reruns = 0
        for clip_id, result in unique.items():
            at = stored.get(clip_id)
            if at is None or abs(at - result.captured_at) <= _SAME_TIME:
                continue  # new now, or the same clip delivered again
            reruns += 1
            camera = self.cameras.get(result.camera_id)
            if camera is None:
                camera = self.cameras[result.camera_id] = CameraReruns()
                self.log.warning(
                    "clips of camera %s are already in the database (%s; first captured %s): not counted again "
                    "(no new results, no alerts); %s", result.camera_id, _CAUSES, _when(at), _ADVICE,
                )
            camera.clips += 1
            if camera.first_analysed is None or at < camera.first_analysed:
                camera.first_analysed = at
        redelivered = max(0, skipped - reruns)
        self.redeliveries += redelivered
        if reruns:
            ALREADY_STORED.labels("rerun").inc(reruns)
        if redelivered:
            ALREADY_STORED.labels("redelivery").inc(redelivered)
            self.log.debug("%d redelivered clips were stored already (exactly one row each)", redelivered)
        return reruns

    def summary(self) -> list[str]:
        """One line per camera that had re-run clips: N clips already in the database, not counted again."""
        return [
            f"{reruns.clips} {'clip' if reruns.clips == 1 else 'clips'} of camera {camera_id} "
            f"{'was' if reruns.clips == 1 else 'were'} already in the database ({_CAUSES}; first captured "
            f"{_when(reruns.first_analysed)}): not counted again; {_ADVICE}"
            for camera_id, reruns in sorted(self.cameras.items())
        ]

    def report(self) -> None:
        """Log the summary (at shutdown)."""
        for line in self.summary():
            self.log.warning("%s", line)


def _when(at: datetime | None) -> str:
    return "?" if at is None else at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
