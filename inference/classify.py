"""Offline classification of whole video files: sliding windows, a probability timeline, a verdict.

Each video is cut into windows of ``window_s`` seconds every ``stride_s`` seconds of the frames' own
time (container timestamps, ``common.frame_time``; a header's frame rate may lie), plus one window flush
with the end, so the tail is covered; each window becomes a clip of 20 frames on the window's own time
grid (``common.model_input.sample_times``), exactly like a training clip and an ingest clip.  The file is read once, sequentially; windows are scored in batches as
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
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from common.frame_time import FrameTimer
from common.model_input import CLIP_FRAMES, CLIP_SIZE, model_clip, model_frame, quantize, sample_times
from inference.artefacts import jsonable
from inference.dataset import ReadProgress, VideoReadError
from inference.model import ClipClassifier, load_classifier
from inference.ood import InputDescription, read_description

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
    familiarity: float | None = None  # distance from the training inputs over their threshold (None: no description)


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
    decoded_s: float | None = None  # real seconds decoded, by the frames' own timestamps
    declared_s: float | None = None  # the duration the header declares (its frame count over its rate)
    out_of_distribution: bool | None = None  # most windows beyond the model's training inputs (None: not known)

    @property
    def decoded(self) -> str:
        """How much of the video was decoded, e.g. "decoded 60 frames (6.0 s) of 120 declared (12.0 s)"."""
        if self.decoded_frames is None or self.frame_count is None or self.decoded_s is None:
            return ""
        declared = self.declared_s if self.declared_s is not None else self.decoded_s
        return (
            f"decoded {self.decoded_frames} frames ({self.decoded_s:.1f} s) of "
            f"{self.frame_count} declared ({declared:.1f} s)"
        )

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        return format_verdicts([self])


class WindowPlanner:
    """Windows of ``window_s`` seconds every ``stride_s`` seconds of the frames' own time, planned as frames
    arrive: window k is [k * stride_s, k * stride_s + window_s), decided when the first frame at or after its
    end arrives, or at the end of the stream when the stream covered it (its end within the last frame's
    interval).  At the end one more window flush with the end covers the tail, and a stream shorter than a
    window gets one whole-stream window.  A window's clip is the frames of its span picked on its own time
    grid (``common.model_input.sample_times`` from the window's start over ``window_s``, as ingest picks);
    a window with no frame in it (a gap in a variable-rate file) is not scored."""

    def __init__(self, window_s: float = 4.0, stride_s: float = 1.0, n_frames: int = CLIP_FRAMES) -> None:
        if window_s <= 0 or stride_s <= 0:
            raise ValueError("window_s and stride_s must be > 0")
        self.window_s, self.stride_s, self.n_frames = window_s, stride_s, n_frames
        self._frames: deque[tuple[int, float]] = deque()  # (index, source time) of the frames still needed
        self._next_k = 0
        self._count = 0
        self._emitted = 0
        self._last_end = -math.inf

    def _window(self, start: float, end: float, slack: float = 1e-9) -> Window | None:
        picked = [(i, t) for i, t in self._frames if start - slack <= t < end - 1e-9]
        if not picked:
            return None
        chosen = sample_times([t for _, t in picked], self.n_frames, start=start, span=self.window_s)
        self._emitted += 1
        self._last_end = max(self._last_end, end)
        return Window(start, end, tuple(picked[int(j)][0] for j in chosen))

    def _decide_until(self, until: float) -> list[Window]:
        out = []
        while self._next_k * self.stride_s + self.window_s <= until:
            start = self._next_k * self.stride_s
            window = self._window(start, start + self.window_s)
            if window is not None:
                out.append(window)
            self._next_k += 1
        return out

    def push(self, t: float) -> list[Window]:
        """Add the next frame (at source time ``t``); returns the windows it completed."""
        out = self._decide_until(t + 1e-9)
        # keep what a later grid window or the final tail window (which starts after t - window_s) may need
        keep = min(self._next_k * self.stride_s, t - self.window_s) - 1e-6
        while self._frames and self._frames[0][1] < keep:
            self._frames.popleft()
        self._frames.append((self._count, t))
        self._count += 1
        return out

    def finish(self, end_s: float) -> list[Window]:
        """At the end of the stream (``end_s``: where the last frame's interval ends): the windows left."""
        if not self._frames:
            return []
        out = self._decide_until(end_s + 1e-6)
        if not self._emitted:
            window = self._window(0.0, max(end_s, self._frames[-1][1] + 1e-6), slack=math.inf)
            return [window] if window is not None else []
        if self._last_end < end_s - 1e-6:
            tail = self._window(max(0.0, end_s - self.window_s), end_s + 1e-6, slack=1e-6)
            if tail is not None:
                out.append(Window(tail.start_s, end_s, tail.indices))
        return out

    @property
    def keep_from(self) -> int:
        """The first frame index a window still to come may use."""
        return self._frames[0][0] if self._frames else self._count


def plan_windows(
    times: list[float] | np.ndarray, end_s: float, window_s: float = 4.0, stride_s: float = 1.0,
    n_frames: int = CLIP_FRAMES,
) -> list[Window]:
    """The windows :class:`WindowPlanner` plans for frames at ``times`` in a stream ending at ``end_s``."""
    planner = WindowPlanner(window_s, stride_s, n_frames)
    windows = [w for t in times for w in planner.push(float(t))]
    return windows + planner.finish(end_s)


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


def _probe(capture: cv2.VideoCapture) -> tuple[int, float, list[str]]:
    """The header's frame count (0 when it has none) and nominal rate: only for the truncation check and
    the first frame interval; the windows follow the frames' own timestamps."""
    notes = []
    fps = capture.get(cv2.CAP_PROP_FPS)
    if not fps or not math.isfinite(fps) or fps <= 0 or fps > 1000:
        notes.append(f"no frame rate in file; its frames are placed by their timestamps (assumed {DEFAULT_FPS:g} "
                     "fps where a frame has none)")
        fps = DEFAULT_FPS
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    count = int(count) if count and math.isfinite(count) and count > 0 else 0
    return count, float(fps), notes


def score_video(
    classifier: ClipClassifier,
    path: Path,
    *,
    window_s: float = 4.0,
    stride_s: float = 1.0,
    batch_size: int = 32,
    progress: ReadProgress | None = None,
    description: InputDescription | None = None,
) -> tuple[list[WindowScore], int, float, list[str]]:
    """Score every window of a video in one sequential read; returns (scores, the header's frame count,
    the measured frame rate, notes).

    Frames are placed by their own container timestamps (``common.frame_time.FrameTimer``), so windows
    span ``window_s`` of real time whatever the header says.  ``progress``, when given, says how many
    frames were decoded, where the stream ended in time, and whether it ended before the declared frame
    count.
    """
    progress = progress if progress is not None else ReadProgress()
    path = Path(path)
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoReadError(path, "cannot open (not a video, or an unsupported codec)")
        count, nominal_fps, notes = _probe(capture)
        timer = FrameTimer(nominal_fps)
        progress.nominal_fps = nominal_fps
        planner = WindowPlanner(window_s, stride_s)
        frames: dict[int, np.ndarray] = {}
        pending: list[np.ndarray] = []
        windows: list[Window] = []
        probabilities: list[float] = []
        familiarity: list[float] = []  # with a description: each window's distance from the training inputs

        def flush() -> None:
            if pending:
                batch = quantize(np.stack(pending), classifier.input_bits)  # what the model sees, described too
                probabilities.extend(float(p) for p in classifier.predict(batch))
                if description is not None:
                    familiarity.extend(float(d) for d in description.score(batch))
                pending.clear()

        def score(done: list[Window]) -> None:
            for window in done:
                windows.append(window)
                pending.append(model_clip([frames[i] for i in window.indices], len(window.indices), CLIP_SIZE))
                if len(pending) >= batch_size:
                    flush()

        index = 0
        while capture.grab():
            t = timer.place(capture.get(cv2.CAP_PROP_POS_MSEC))
            progress.frames, progress.last_time_s, progress.end_s = timer.frames, t, timer.end_s
            score(planner.push(t))
            for stale in [i for i in frames if i < planner.keep_from]:
                del frames[stale]
            ok, image = capture.retrieve()
            if not ok or image is None:
                raise VideoReadError(path, f"cannot decode frame {index}")
            frames[index] = model_frame(image, CLIP_SIZE)
            index += 1
        progress.ended = True
        if index == 0:
            raise VideoReadError(path, "no frames")
        score(planner.finish(timer.end_s))
        flush()
        if count and progress.frames < count:
            notes.append(
                f"truncated: decoded {progress.frames} frames ({timer.end_s:.1f} s) of {count} "
                f"declared ({count / nominal_fps:.1f} s)"
            )
        if not probabilities:
            raise VideoReadError(path, "no frames could be decoded")
        scores = [
            WindowScore(round(w.start_s, 3), round(w.end_s, 3), p,
                        round(familiarity[k], 3) if familiarity else None)
            for k, (w, p) in enumerate(zip(windows, probabilities, strict=True))
        ]
        return scores, count, round(timer.fps, 3), notes
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
    ood_margin: float = 2.0,
) -> list[VideoVerdict]:
    """Classify whole video files; writes a timeline PNG per video (and ``verdicts.json`` when ``as_json``).

    ``threshold`` overrides the model's calibrated one (e.g. from config); ``fast`` uses the XLA predictor
    (worth its compile time only for hours of video).  An unreadable file yields a
    verdict "error" with the reason; the other files are still processed.  The model is loaded once.  With
    the model's input description (``inference.ood``), a video most of whose windows lie beyond
    ``ood_margin`` times its training inputs' threshold is marked ``out_of_distribution``, with a note: the
    verdict of a model on scenes unlike its training is unvalidated.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classifier = load_classifier(model_path, fast=fast)
    used_threshold = float(classifier.threshold if threshold is None else threshold)
    description = read_description(Path(model_path))
    verdicts: list[VideoVerdict] = []
    chart_names: set[str] = set()
    for raw in paths:
        path = Path(raw)
        try:
            if not path.is_file():
                raise VideoReadError(path, "is a directory, not a video file" if path.is_dir() else "file not found")
            progress = ReadProgress()
            scores, count, fps, notes = score_video(
                classifier, path, window_s=window_s, stride_s=stride_s, progress=progress, description=description
            )
        except (VideoReadError, cv2.error) as exc:
            reason = exc.reason if isinstance(exc, VideoReadError) else f"decoder error: {exc}".splitlines()[0]
            log.error("cannot classify %s: %s", path, reason)
            verdicts.append(VideoVerdict(path=str(path), verdict=VERDICT_ERROR, error=reason,
                                         model_version=classifier.version))
            continue
        label, flagged, incidents = decide(scores, used_threshold, min_consecutive)
        nominal = progress.nominal_fps or fps
        real_s = float(progress.end_s or 0.0)
        declared_s = count / nominal if count else real_s
        short = progress.ended and progress.frames < count
        partial = short and not _header_overstates(progress, count, nominal)
        if short and not partial:
            notes = [n for n in notes if not n.startswith("truncated:")]
            notes.append(
                f"the file declares {count} frames at {nominal:g} fps but holds {progress.frames} frames at "
                f"{fps:g} fps over the same {real_s:.1f} s (its frame-rate header is wrong; the windows follow "
                "the frames' own timestamps)"
            )
        elif not partial and count and abs(nominal - fps) > 0.02 * fps:
            notes.append(f"the header says {nominal:g} fps, the frames' timestamps {fps:g} fps; windows follow "
                         "the timestamps")
        out_of_distribution = None
        if description is not None:
            distances = [w.familiarity for w in scores if w.familiarity is not None]
            beyond = sum(d > ood_margin for d in distances)
            out_of_distribution = bool(distances) and 2 * beyond >= len(distances)
            if out_of_distribution:
                notes.append(
                    f"this model was not trained on scenes like this video's: {beyond} of {len(distances)} windows "
                    f"are beyond its training inputs (median {float(np.median(distances)) / ood_margin:.2f} of the "
                    "limit), so its verdict here is unvalidated; retrain with `aislewatch train` on your own footage"
                )
        decoded = progress.frames
        if partial:
            log.warning("%s is truncated: %d of %d frames decoded; its verdict covers those", path, decoded, count)
        verdict = VideoVerdict(
            path=str(path),
            verdict=label,
            threshold=used_threshold,
            max_probability=max(s.probability for s in scores),
            duration_s=round(declared_s if partial else real_s, 3),
            fps=fps,
            frame_count=count if partial else decoded,
            windows=tuple(scores),
            flagged=flagged,
            incidents=incidents,
            model_version=classifier.version,
            notes=tuple(notes),
            partial=partial,
            decoded_frames=decoded,
            decoded_s=round(real_s, 3),
            declared_s=round(declared_s, 3),
            out_of_distribution=out_of_distribution,
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
