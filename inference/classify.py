"""Offline classification of whole video files: sliding windows, a probability timeline, a verdict.

Each video is cut into windows of ``window_s`` seconds every ``stride_s`` seconds (plus one window
flush with the end, so the tail is covered); each window becomes a clip of 20 evenly spaced frames,
exactly like a training clip.  The file is read once, sequentially; windows are scored in batches as
soon as their last frame has been read, and frames no later window needs are dropped, so memory stays
bounded on hour-long files.  The verdict is "shoplifting" when at least ``min_consecutive`` consecutive
windows score at or above the threshold (a sustained signal, like the live N-of-M alert rule).

A file whose stream ends before the frame count it declares (truncated, or corrupt part-way) is scored as
far as it decodes; its verdict is marked ``partial`` with the frames and seconds decoded of those declared,
and ``aislewatch classify`` exits non-zero for it unless ``--accept-partial`` is given.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from common.model_input import CLIP_FRAMES, CLIP_SIZE, model_clip, sample_indices
from inference.artefacts import jsonable
from inference.dataset import ReadProgress, VideoReadError, iter_frames_at
from inference.model import ClipClassifier, load_classifier

log = logging.getLogger(__name__)

DEFAULT_FPS = 15.0  # assumed when a file does not declare its frame rate
VERDICT_SHOPLIFTING, VERDICT_NORMAL, VERDICT_ERROR = "shoplifting", "normal", "error"


@dataclass(frozen=True)
class Window:
    """A window of the video: its time span and the frame indices of its clip."""

    start_s: float
    end_s: float
    indices: tuple[int, ...]


@dataclass(frozen=True)
class WindowScore:
    """A scored window."""

    start_s: float
    end_s: float
    probability: float


@dataclass(frozen=True)
class VideoVerdict:
    """The outcome for one video file; ``verdict`` is "shoplifting", "normal" or "error" (see ``error``)."""

    path: str
    verdict: str
    threshold: float | None = None
    max_probability: float | None = None
    duration_s: float | None = None
    fps: float | None = None
    frame_count: int | None = None
    windows: tuple[WindowScore, ...] = ()
    flagged: tuple[WindowScore, ...] = ()  # the windows that drove a "shoplifting" verdict
    incidents: tuple[WindowScore, ...] = ()  # flagged runs merged: span and peak probability
    chart: str | None = None
    model_version: str | None = None
    error: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    partial: bool = False  # the stream ended before ``frame_count``: only what decoded was scored
    decoded_frames: int | None = None
    decoded_s: float | None = None

    @property
    def decoded(self) -> str:
        """How much of the video was decoded, e.g. "decoded 60 frames (6.0 s) of 120 declared (12.0 s)"."""
        if self.decoded_frames is None or self.frame_count is None or not self.fps:
            return ""
        return (
            f"decoded {self.decoded_frames} frames ({self.decoded_frames / self.fps:.1f} s) of "
            f"{self.frame_count} declared ({self.frame_count / self.fps:.1f} s)"
        )

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        return format_verdicts([self])


def plan_windows(
    frame_count: int, fps: float, window_s: float = 4.0, stride_s: float = 1.0, n_frames: int = CLIP_FRAMES
) -> list[Window]:
    """Windows over ``frame_count`` frames; a video shorter than one window gets a single whole-video window."""
    if frame_count < 1:
        return []
    if window_s <= 0 or stride_s <= 0 or fps <= 0:
        raise ValueError("window_s, stride_s and fps must be > 0")
    span = max(1, round(window_s * fps))
    step = max(1, round(stride_s * fps))
    if frame_count <= span:
        starts = [0]
        span = frame_count
    else:
        starts = list(range(0, frame_count - span + 1, step))
        if starts[-1] + span < frame_count:
            starts.append(frame_count - span)
    windows = []
    for start in starts:
        idx = start + sample_indices(span, n_frames)
        windows.append(Window(start / fps, (start + span) / fps, tuple(int(i) for i in idx)))
    return windows


def sustained_runs(above: np.ndarray, min_consecutive: int) -> list[tuple[int, int]]:
    """[start, stop) index ranges of runs of True at least ``min_consecutive`` long."""
    runs, start = [], None
    for i, flag in enumerate([*np.asarray(above, dtype=bool).tolist(), False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            if i - start >= min_consecutive:
                runs.append((start, i))
            start = None
    return runs


def _probe(capture: cv2.VideoCapture, path: Path) -> tuple[int, float, list[str]]:
    notes = []
    fps = capture.get(cv2.CAP_PROP_FPS)
    if not fps or not math.isfinite(fps) or fps <= 0 or fps > 1000:
        notes.append(f"no frame rate in file; assumed {DEFAULT_FPS:g} fps")
        fps = DEFAULT_FPS
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    count = int(count) if count and math.isfinite(count) and count > 0 else 0
    if count == 0:
        # No frame count in the container: count by grabbing through once, then reopen.
        while capture.grab():
            count += 1
        notes.append("no frame count in file; counted by an extra pass")
        capture.open(str(path))
    return count, float(fps), notes


def score_video(
    classifier: ClipClassifier,
    path: Path,
    *,
    window_s: float = 4.0,
    stride_s: float = 1.0,
    batch_size: int = 32,
    progress: ReadProgress | None = None,
) -> tuple[list[WindowScore], int, float, list[str]]:
    """Score every window of a video in one sequential read; returns (scores, frame count, fps, notes).

    ``progress``, when given, says how many frames were decoded and whether the stream ended before the
    declared frame count; the windows past that point are not scored.
    """
    progress = progress if progress is not None else ReadProgress()
    path = Path(path)
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoReadError(path, "cannot open (not a video, or an unsupported codec)")
        count, fps, notes = _probe(capture, path)
        if count == 0:
            raise VideoReadError(path, "no frames")
        windows = plan_windows(count, fps, window_s, stride_s)
        needed = sorted({i for w in windows for i in w.indices})
        frames: dict[int, np.ndarray] = {}
        pending: list[np.ndarray] = []
        probabilities: list[float] = []
        next_window = 0

        def flush() -> None:
            if pending:
                probabilities.extend(float(p) for p in classifier.predict(np.stack(pending)))
                pending.clear()

        for index, frame in iter_frames_at(capture, needed, CLIP_SIZE, path=path, progress=progress):
            frames[index] = frame
            while next_window < len(windows) and windows[next_window].indices[-1] <= index:
                window = windows[next_window]
                pending.append(model_clip([frames[i] for i in window.indices], len(window.indices), CLIP_SIZE))
                next_window += 1
                if len(pending) >= batch_size:
                    flush()
                if next_window < len(windows):
                    keep_from = windows[next_window].indices[0]
                    for stale in [i for i in frames if i < keep_from]:
                        del frames[stale]
        flush()
        if next_window < len(windows):
            notes.append(
                f"truncated: decoded {progress.frames} frames ({progress.frames / fps:.1f} s) of {count} "
                f"declared ({count / fps:.1f} s); {len(windows) - next_window} windows not scored"
            )
        if not probabilities:
            raise VideoReadError(path, "no frames could be decoded")
        scores = [
            WindowScore(round(w.start_s, 3), round(w.end_s, 3), p)
            for w, p in zip(windows[:next_window], probabilities, strict=True)
        ]
        return scores, count, fps, notes
    finally:
        capture.release()


def _header_overstates(progress: ReadProgress, count: int, fps: float) -> bool:
    """A stream that ends early in frames but not in time: its last frame's own timestamp reaches the
    declared duration (e.g. a file that declares 50 fps and holds 25), so nothing is missing from it."""
    if progress.last_time_s is None or fps <= 0:
        return False
    return progress.last_time_s >= count / fps - max(1.0, 2.0 / fps)


def merge_spans(spans: list[WindowScore]) -> tuple[WindowScore, ...]:
    """Merge time-overlapping spans (sorted by start) into one each, keeping the peak probability."""
    merged: list[WindowScore] = []
    for span in sorted(spans, key=lambda w: w.start_s):
        if merged and span.start_s < merged[-1].end_s:
            last = merged[-1]
            merged[-1] = WindowScore(last.start_s, max(last.end_s, span.end_s), max(last.probability, span.probability))
        else:
            merged.append(span)
    return tuple(merged)


def decide(
    scores: list[WindowScore], threshold: float, min_consecutive: int = 2
) -> tuple[str, tuple[WindowScore, ...], tuple[WindowScore, ...]]:
    """(verdict, flagged windows, merged incidents) for scored windows.

    A video with fewer windows than ``min_consecutive`` needs all of them above the threshold.
    """
    if not scores:
        return VERDICT_NORMAL, (), ()
    above = np.array([s.probability >= threshold for s in scores])
    runs = sustained_runs(above, max(1, min(min_consecutive, len(scores))))
    flagged = tuple(s for a, b in runs for s in scores[a:b])
    incidents = merge_spans(
        [WindowScore(scores[a].start_s, scores[b - 1].end_s, max(s.probability for s in scores[a:b])) for a, b in runs]
    )
    return (VERDICT_SHOPLIFTING if runs else VERDICT_NORMAL), flagged, incidents


def plot_timeline(verdict: VideoVerdict, path: Path) -> None:
    """Probability vs time: a point per window at its centre, the threshold line, windows above it shaded
    (orange), and the sustained runs that drove the verdict (red)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.2))
    threshold = float(verdict.threshold or 0.5)
    for span in merge_spans([w for w in verdict.windows if w.probability >= threshold]):
        ax.axvspan(span.start_s, span.end_s, color="tab:orange", alpha=0.2, lw=0)
    for i, inc in enumerate(verdict.incidents):
        ax.axvspan(inc.start_s, inc.end_s, color="tab:red", alpha=0.2, lw=0, label="sustained run" if i == 0 else None)
    centres = [(w.start_s + w.end_s) / 2 for w in verdict.windows]
    ax.plot(centres, [w.probability for w in verdict.windows], marker="o", ms=3, lw=1.5, label="P(shoplifting)")
    ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"threshold {threshold:.3f}")
    ax.set(
        xlabel="time (s)",
        ylabel="probability",
        ylim=(-0.02, 1.02),
        xlim=(0, max(verdict.duration_s or 0, centres[-1] if centres else 1)),
        title=f"{Path(verdict.path).name}: {verdict.verdict} (model {verdict.model_version})",
    )
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _chart_name(path: Path, used: set[str]) -> str:
    name = f"{path.stem}.timeline.png"
    n = 1
    while name in used:
        n += 1
        name = f"{path.stem}-{n}.timeline.png"
    used.add(name)
    return name


def classify_videos(
    paths: list[Path],
    model_path: Path,
    out_dir: Path,
    *,
    window_s: float = 4.0,
    stride_s: float = 1.0,
    as_json: bool = False,
    threshold: float | None = None,
    min_consecutive: int = 2,
    fast: bool = False,
) -> list[VideoVerdict]:
    """Classify whole video files; writes a timeline PNG per video (and ``verdicts.json`` when ``as_json``).

    ``threshold`` overrides the model's calibrated one (e.g. from config); ``fast`` uses the XLA predictor
    (worth its compile time only for hours of video).  An unreadable file yields a
    verdict "error" with the reason; the other files are still processed.  The model is loaded once.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classifier = load_classifier(model_path, fast=fast)
    used_threshold = float(classifier.threshold if threshold is None else threshold)
    verdicts: list[VideoVerdict] = []
    chart_names: set[str] = set()
    for raw in paths:
        path = Path(raw)
        try:
            if not path.is_file():
                raise VideoReadError(path, "file not found")
            progress = ReadProgress()
            scores, count, fps, notes = score_video(
                classifier, path, window_s=window_s, stride_s=stride_s, progress=progress
            )
        except (VideoReadError, cv2.error) as exc:
            reason = exc.reason if isinstance(exc, VideoReadError) else f"decoder error: {exc}".splitlines()[0]
            log.error("cannot classify %s: %s", path, reason)
            verdicts.append(VideoVerdict(path=str(path), verdict=VERDICT_ERROR, error=reason,
                                         model_version=classifier.version))
            continue
        label, flagged, incidents = decide(scores, used_threshold, min_consecutive)
        partial = progress.ended and progress.frames < count and not _header_overstates(progress, count, fps)
        if progress.ended and progress.frames < count and not partial:
            notes = [n for n in notes if not n.startswith("truncated:")]
            notes.append(
                f"the file declares {count} frames at {fps:g} fps but holds {progress.frames} frames over the "
                f"same {progress.last_time_s:.1f} s (its frame-rate header is wrong; the windows follow the "
                "declared rate, so each spans more real time than window_s)"
            )
        decoded = progress.frames if partial else count
        if partial:
            log.warning("%s is truncated: %d of %d frames decoded; its verdict covers those", path, decoded, count)
        verdict = VideoVerdict(
            path=str(path),
            verdict=label,
            threshold=used_threshold,
            max_probability=max(s.probability for s in scores),
            duration_s=round(count / fps, 3),
            fps=fps,
            frame_count=count,
            windows=tuple(scores),
            flagged=flagged,
            incidents=incidents,
            model_version=classifier.version,
            notes=tuple(notes),
            partial=partial,
            decoded_frames=decoded,
            decoded_s=round(decoded / fps, 3),
        )
        chart = out_dir / _chart_name(path, chart_names)
        plot_timeline(verdict, chart)
        verdicts.append(replace(verdict, chart=str(chart)))
    if as_json:
        doc = {"model": str(model_path), "threshold": used_threshold, "videos": [v.to_dict() for v in verdicts]}
        (out_dir / "verdicts.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return verdicts


def format_verdicts(verdicts: list[VideoVerdict], *, as_json: bool = False) -> str:
    """Text for the CLI: one block per video, or the whole list as JSON."""
    if as_json:
        return json.dumps([v.to_dict() for v in verdicts], indent=2)
    lines = []
    for v in verdicts:
        if v.verdict == VERDICT_ERROR:
            lines.append(f"{v.path}: ERROR {v.error}")
            continue
        partial = f" PARTIAL ({v.decoded})" if v.partial else ""
        lines.append(
            f"{v.path}: {v.verdict.upper()}{partial} (max p={v.max_probability:.3f}, threshold {v.threshold:.3f}, "
            f"{len(v.windows)} windows over {v.duration_s:.1f} s) chart: {v.chart}"
        )
        lines.extend(f"  incident {i.start_s:.1f}-{i.end_s:.1f} s, peak p={i.probability:.3f}" for i in v.incidents)
        lines.extend(f"  note: {n}" for n in v.notes)
    return "\n".join(lines)
