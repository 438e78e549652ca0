"""Evidence video on disk: where each file lives, how a camera's motion is written as short H.264 segments, and
how an alert's video is put together from them without encoding anything twice.

Ingest writes, while a camera has motion, a run of MP4 segments (``SegmentEncoder``), each frame encoded once,
each segment starting on a keyframe.  The alerts role (which shares the evidence volume with ingest in scaled
mode) later copies the packets of the segments that cover an alert's clips plus a margin into one MP4
(``remux``): no decoding, no re-encoding.  Both agree on nothing but the paths below.

    <evidence_dir>/<camera_id>/<YYYYMMDD>/<clip_id>.jpg                      snapshot of one clip (ingest)
    <evidence_dir>/<camera_id>/<YYYYMMDD>/segments/<start_ms>-<end_ms>.mp4   motion video (ingest)
    <evidence_dir>/<camera_id>/<YYYYMMDD>/videos/<alert_id>.mp4              an alert's video (alerts)
    <evidence_dir>/<camera_id>/<YYYYMMDD>/missed/<missed_theft_id>.mp4        a theft the model missed (desk)

Times are the frames' ``captured_at`` (the clock that stamps the clips), in milliseconds since the epoch, UTC.
A segment being written is ``<start_ms>-open.mp4.part`` and is renamed when closed, so readers never see half
a file.  PyAV (FFmpeg's libraries, with libx264, in a wheel from the registry) does the encoding: H.264 High
profile, yuv420p, ``+faststart``, which Chromium plays in a ``<video>`` element.
"""

from __future__ import annotations

import bisect
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("aislewatch.evidence")

SEGMENTS = "segments"
VIDEOS = "videos"
MISSED = "missed"  # videos of thefts a manager marked as missed: training positives, kept like held evidence
TIME_BASE = Fraction(1, 1000)  # frame pts in milliseconds since the segment's start: variable frame rate is fine
# x264 threads per camera: a few keep one camera's encoding off the capture's critical path; x264's default
# (about 1.5 x the cores) would start hundreds of threads for 20 cameras on one host.
ENCODER_THREADS = 2
_SEGMENT_NAME = re.compile(r"^(\d+)-(\d+)\.mp4$")


def _ms(at: datetime) -> int:
    return round(at.timestamp() * 1000)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def day_dir(evidence_dir: Path, camera_id: str, at: datetime) -> Path:
    return Path(evidence_dir) / camera_id / at.astimezone(UTC).strftime("%Y%m%d")


def segment_path(evidence_dir: Path, camera_id: str, start: datetime, end: datetime) -> Path:
    return day_dir(evidence_dir, camera_id, start) / SEGMENTS / f"{_ms(start)}-{_ms(end)}.mp4"


def alert_video_path(evidence_dir: Path, camera_id: str, alert_id: str, at: datetime) -> Path:
    return day_dir(evidence_dir, camera_id, at) / VIDEOS / f"{alert_id}.mp4"


def missed_video_path(evidence_dir: Path, camera_id: str, missed_id: int, start: datetime) -> Path:
    return day_dir(evidence_dir, camera_id, start) / MISSED / f"{missed_id}.mp4"


@dataclass(frozen=True)
class Segment:
    camera_id: str
    start: datetime
    end: datetime
    path: Path

    @property
    def bytes(self) -> int:
        return self.path.stat().st_size

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()


def parse_segment(path: Path, camera_id: str) -> Segment | None:
    match = _SEGMENT_NAME.match(path.name)
    if match is None:
        return None
    return Segment(camera_id, _at(int(match.group(1))), _at(int(match.group(2))), path)


_OPEN_NAME = re.compile(r"^(\d+)-open\.mp4\.part$")


class SegmentIndex:
    """The segments on disk, each camera's day folders listed at most once: one index per pass of a reader that
    looks up many windows (the alert video maker), so a pass costs one listing per camera and day, and each
    look-up a binary search, however many alerts are pending.  A fresh index sees new files; this one does not."""

    def __init__(self, evidence_dir: Path) -> None:
        self.evidence_dir = Path(evidence_dir)
        # (camera, day) → (closed segments by start, their starts, the longest one's length, open segments' starts)
        self._days: dict[tuple[str, str], tuple[list[Segment], list[datetime], timedelta, list[datetime]]] = {}
        self.listings = 0  # directories listed so far

    def _day(self, camera_id: str, day: datetime) -> tuple[list[Segment], list[datetime], timedelta, list[datetime]]:
        directory = day_dir(self.evidence_dir, camera_id, day) / SEGMENTS
        key = (camera_id, directory.parent.name)
        known = self._days.get(key)
        if known is not None:
            return known
        closed: list[Segment] = []
        opened: list[datetime] = []
        try:
            names = os.listdir(directory)
            self.listings += 1
        except (FileNotFoundError, NotADirectoryError):
            names = []
        for name in names:
            match = _SEGMENT_NAME.match(name)
            if match is not None:
                closed.append(Segment(camera_id, _at(int(match.group(1))), _at(int(match.group(2))), directory / name))
            elif (part := _OPEN_NAME.match(name)) is not None:
                opened.append(_at(int(part.group(1))))
        closed.sort(key=lambda s: s.start)
        longest = max((s.end - s.start for s in closed), default=timedelta(0))
        known = (closed, [s.start for s in closed], longest, sorted(opened))
        self._days[key] = known
        return known

    @staticmethod
    def _days_of(start: datetime, end: datetime) -> Iterable[datetime]:
        day = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
        while day <= end:
            yield day
            day += timedelta(days=1)

    def overlapping(self, camera_id: str, start: datetime, end: datetime) -> list[Segment]:
        """The closed segments of ``camera_id`` that overlap [start, end], oldest first."""
        found: list[Segment] = []
        for day in self._days_of(start, end):
            closed, starts, longest, _ = self._day(camera_id, day)
            lo = bisect.bisect_left(starts, start - longest)  # none starting earlier can reach ``start``
            hi = bisect.bisect_right(starts, end)
            found.extend(s for s in closed[lo:hi] if s.end >= start)
        return sorted(found, key=lambda s: s.start)

    def open_before(self, camera_id: str, end: datetime) -> bool:
        """Whether a segment of ``camera_id`` that starts at or before ``end`` is still being written."""
        for day in self._days_of(end - timedelta(days=1), end):
            opened = self._day(camera_id, day)[3]
            if opened and opened[0] <= end:
                return True
        return False


def segments_overlapping(evidence_dir: Path, camera_id: str, start: datetime, end: datetime) -> list[Segment]:
    """The closed segments of ``camera_id`` that overlap [start, end], oldest first."""
    return SegmentIndex(evidence_dir).overlapping(camera_id, start, end)


class SegmentEncoder:
    """One open segment: frames in, H.264 out, at most once per frame.

    ``add`` takes BGR frames of one size with increasing ``at``; ``close`` finishes the file and renames it to
    its final name (start and end in the name).  A segment with no frame leaves no file.
    """

    def __init__(self, evidence_dir: Path, camera_id: str, start: datetime, *, width: int, height: int,
                 crf: int = 28, preset: str = "veryfast", threads: int = ENCODER_THREADS) -> None:
        import av

        self.evidence_dir = Path(evidence_dir)
        self.camera_id = camera_id
        self.start = start
        self.end = start
        self.frames = 0
        self.bytes = 0
        directory = day_dir(self.evidence_dir, camera_id, start) / SEGMENTS
        directory.mkdir(parents=True, exist_ok=True)
        self._part = directory / f"{_ms(start)}-open.mp4.part"
        self._container: Any = av.open(str(self._part), "w", format="mp4", options={"movflags": "+faststart"})
        stream = self._container.add_stream("libx264", rate=30)
        stream.width, stream.height = width - width % 2, height - height % 2  # yuv420p needs even sizes
        stream.pix_fmt = "yuv420p"
        stream.time_base = TIME_BASE
        stream.codec_context.time_base = TIME_BASE
        # zerolatency: no B-frames and no lookahead, so packets come out in order and a segment can end at
        # any frame; each segment is its own closed GOP starting with a keyframe.
        # threads: x264 would start about 1.5 x the cores per camera; a few cameras at once would start hundreds.
        stream.options = {"crf": str(crf), "preset": preset, "tune": "zerolatency", "profile": "high",
                          "threads": str(threads)}
        stream.codec_context.thread_count = threads
        self._stream = stream
        self._last_pts = -1

    @property
    def size(self) -> tuple[int, int]:
        return int(self._stream.width), int(self._stream.height)

    def add(self, image: np.ndarray, at: datetime, pixel_format: str = "bgr24") -> None:
        """``image`` is BGR (h, w, 3), or with ``pixel_format="yuv420p"`` planar I420 (h * 3 / 2, w) of the
        stream's (even) size, as ``cv2.COLOR_BGR2YUV_I420`` makes it: half the memory while frames wait."""
        import av

        pts = max(_ms(at) - _ms(self.start), self._last_pts + 1)  # strictly increasing, even for equal stamps
        width, height = self.size
        if pixel_format == "yuv420p":
            if image.shape != (height * 3 // 2, width):
                raise ValueError(f"yuv420p frame must be {(height * 3 // 2, width)}, got {image.shape}")
        elif image.shape[1] != width or image.shape[0] != height:
            image = image[:height, :width]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=pixel_format)
        self._last_pts = pts
        frame.pts = pts
        frame.time_base = TIME_BASE
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1
        self.end = max(self.end, at)

    def close(self) -> Segment | None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        if self.frames == 0:
            self._part.unlink(missing_ok=True)
            return None
        # The last frame is shown until the next one would have come; end = its time (what the name says).
        final = segment_path(self.evidence_dir, self.camera_id, self.start, self.end)
        os.replace(self._part, final)
        self.bytes = final.stat().st_size
        return Segment(self.camera_id, self.start, self.end, final)

    def abandon(self) -> None:
        """Close without keeping anything (a failure mid-write)."""
        try:
            self._container.close()
        except Exception:  # the container may be broken: the file goes anyway
            pass
        self._part.unlink(missing_ok=True)


@dataclass(frozen=True)
class CutResult:
    """A video put together from segments: where it is, how many segments went in, and whether it stops short
    of what was asked (``partial``, with the ``reason``: a later segment of another frame size or encoder
    header, which cannot go into the same MP4)."""

    path: Path
    segments: int
    start: datetime
    end: datetime
    partial: bool = False
    reason: str | None = None

    @property
    def covered_s(self) -> float:
        return (self.end - self.start).total_seconds()


def _header(stream: Any) -> tuple[int, int, str, bytes]:
    context = stream.codec_context
    return int(context.width), int(context.height), str(context.name), bytes(context.extradata or b"")


def remux(segments: Sequence[Segment], out: Path) -> CutResult:
    """Copy the packets of ``segments`` (one camera, oldest first) into one MP4 at ``out``, each segment placed at
    its own start time; nothing is decoded or encoded.  Written to a temporary name and renamed, so a reader
    never sees a partial file; on any failure the temporary file is removed and the error raised.

    Where segments overlap, the earlier one's frames win and the later one joins at its first keyframe after
    them (its frames before that keyframe reference pictures that are not in the video), or not at all.  A
    segment of another frame size or encoder header (a changed preset, say) cannot share the MP4: the video
    stops before it and the result says it is partial."""
    import av

    if not segments:
        raise ValueError("no segments to put together")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    origin = segments[0].start
    used = 0
    end = origin
    reason: str | None = None
    try:
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as target:
            template: Any = None
            header: tuple[int, int, str, bytes] | None = None
            written_until = -1.0
            for segment in segments:
                with av.open(str(segment.path)) as source:
                    stream = source.streams.video[0]
                    if template is None:
                        template = target.add_stream_from_template(stream)
                        header = _header(stream)
                    elif _header(stream) != header:
                        width, height, codec, _ = _header(stream)
                        assert header is not None
                        what = ("another frame size" if (width, height) != header[:2] else
                                "another codec" if codec != header[2] else "another encoder header (its settings changed)")
                        reason = f"segment {segment.path.name} has {what}; the video stops before it"
                        log.warning("%s: %s", out.name, reason)
                        break
                    shift_s = (segment.start - origin).total_seconds()
                    joined = False  # whether this segment's packets go in: from a keyframe after what was written
                    wrote = False
                    for packet in source.demux(stream):
                        if packet.dts is None or packet.pts is None:  # the demuxer's end-of-stream marker
                            continue
                        base = packet.time_base
                        at_s = float(packet.pts * base) + shift_s
                        if not joined:
                            if at_s <= written_until or not packet.is_keyframe:
                                continue  # overlapping frames, or ones referencing them: the earlier segment's win
                            joined = True
                        shift = round(shift_s / base)
                        packet.pts += shift
                        packet.dts += shift
                        packet.stream = template
                        target.mux(packet)
                        written_until = at_s
                        wrote = True
                    if wrote:
                        used += 1
                        end = max(end, segment.end)
            if used == 0:
                raise ValueError("the segments hold no frames")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return CutResult(out, used, origin, end, partial=reason is not None, reason=reason)


def cut_video(evidence_dir: Path, camera_id: str, start: datetime, end: datetime, out: Path, *,
              index: SegmentIndex | None = None) -> CutResult | None:
    """Put the video of ``camera_id`` over [start, end] at ``out`` from its closed motion segments (``remux``);
    None when no segment overlaps the span.  Raises what ``remux`` raises (a damaged segment, a full disk),
    leaving no temporary file behind.  ``index``: a ``SegmentIndex`` shared by many look-ups in one pass."""
    segments = (index or SegmentIndex(evidence_dir)).overlapping(camera_id, start, end)
    if not segments:
        return None
    return remux(segments, out)


def video_duration_s(path: Path) -> float:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        return float(container.duration or 0) / 1_000_000


def files_under(evidence_dir: Path) -> Iterable[Path]:
    """Every finished evidence file (snapshots, segments, alert videos); files being written are skipped."""
    root = Path(evidence_dir)
    if not root.is_dir():
        return
    for directory, _, names in os.walk(root):
        for name in names:
            if not name.endswith(".part"):
                yield Path(directory) / name
