"""Event-level evaluation: recorded camera streams → the real pipeline → caught, missed, false alarms per
camera-hour, and how the model scored every camera's clips.

Clip accuracy on a held-out split says how often one window is right; a security desk feels something
else: whether each theft raised an alert, and how many alerts were for nothing.  This runs the production
workers (motion gating, the clip grid, the model, the N-of-M rule and its cooldown) embedded over every
video in a folder and scores the alerts.  A video with a ``.truth.json`` beside it (as ``aislewatch synth
stream`` writes them, or as a deployment writes for its own labelled recordings) is scored against its
incidents; a video without one is a recording known to hold no incident (ordinary shoppers, people walking),
so every alert on it is a false alarm.  Its length is measured from its frames' own timestamps, not from
the container header, which can lie (``vtest.avi`` declares 682 frames at 50 fps and holds 341 at 25).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from common.app.embedded import prepare_output, run_embedded, say, stream_settings
from common.app.scoring import (
    HISTOGRAM_EDGES,
    incident_detail,
    match_alerts,
    print_incident_table,
    score_distribution,
)
from common.schemas import AlertKind
from common.words import count
from inference.dataset import VIDEO_SUFFIXES
from inference.synth import GroundTruth


@dataclass(frozen=True)
class RecordingTiming:
    """A video's length as its frames' timestamps give it, beside what its header declares."""

    duration_s: float
    frames: int  # decoded
    fps: float  # from the timestamps (frames per second of real time)
    declared_fps: float
    declared_frames: int
    from_timestamps: bool  # False: the container gave no usable timestamps and the header's rate was used

    @property
    def header_agrees(self) -> bool:
        """Whether the header's frame count and rate are the frames' own (within 2 %): a header can state the
        right length with both wrong, as ``vtest.avi``'s does (682 at 50 fps for 341 at 25)."""
        return (abs(self.declared_frames - self.frames) <= max(1, 0.02 * self.frames)
                and abs(self.declared_fps - self.fps) <= 0.02 * self.fps)

    def as_dict(self) -> dict[str, Any]:
        """The report's ``timing`` entry."""
        return {
            "duration_s": round(self.duration_s, 3), "frames": self.frames, "fps": round(self.fps, 3),
            "declared_fps": round(self.declared_fps, 3), "declared_frames": self.declared_frames,
            "from_timestamps": self.from_timestamps, "header_agrees": self.header_agrees,
        }


def measure_recording(path: Path) -> RecordingTiming:
    """Decode ``path`` once (grab only, no colour conversion) and time it by its frames' own timestamps.

    OpenCV's ``CAP_PROP_POS_MSEC`` after each grab steps by the real frame interval even where
    ``CAP_PROP_FPS`` and ``CAP_PROP_FRAME_COUNT`` are wrong; some containers answer 0 for a frame (often
    the last), so the length is the span of the answered timestamps plus one median step for each frame
    outside it.  Raises ``ValueError`` for a file that opens to no frame."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError(f"{path}: cannot be opened as a video")
        declared_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        declared_frames = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        stamps: list[tuple[int, float]] = []  # (frame index, seconds) where the container answered
        frames = 0
        while cap.grab():
            at_ms = cap.get(cv2.CAP_PROP_POS_MSEC)
            if at_ms and at_ms > 0:
                stamps.append((frames, at_ms / 1000.0))
            frames += 1
    finally:
        cap.release()
    if frames == 0:
        raise ValueError(f"{path}: opened but no frame could be decoded")
    steps = [(t1 - t0) / (i1 - i0) for (i0, t0), (i1, t1) in pairwise(stamps) if t1 > t0]
    if steps:
        step = statistics.median(steps)
        (first_i, first_t), (last_i, last_t) = stamps[0], stamps[-1]
        duration = (last_t - first_t) + step * (frames - (last_i - first_i))
        return RecordingTiming(duration, frames, 1.0 / step, declared_fps, declared_frames, True)
    fps = declared_fps if declared_fps > 0 else 15.0
    return RecordingTiming(frames / fps, frames, fps, declared_fps, declared_frames, False)


@dataclass(frozen=True)
class Recording:
    """One camera of the evaluation: its video and its truth (an empty one for an unlabelled recording)."""

    camera: str  # the file stem
    path: Path
    truth: GroundTruth
    labelled: bool
    timing: RecordingTiming | None = None  # measured for unlabelled recordings (their truth gives no length)

    @property
    def duration_s(self) -> float:
        """The footage's length: the truth's for a labelled stream, the frames' timestamps' otherwise."""
        return self.truth.duration_s


def find_streams(stream_dir: Path) -> dict[str, Path]:
    """camera id (the file stem) → video, for every video in ``stream_dir`` (with or without a truth file)."""
    stream_dir = Path(stream_dir)
    if not stream_dir.is_dir():
        raise FileNotFoundError(f"{stream_dir} is not a folder of streams")
    streams: dict[str, Path] = {}
    for path in sorted(stream_dir.iterdir()):
        if not path.is_file() or path.suffix.lower() not in VIDEO_SUFFIXES:
            continue
        if path.stem in streams:
            raise ValueError(f"{streams[path.stem].name} and {path.name} would both be camera {path.stem!r}; "
                             "rename one")
        streams[path.stem] = path
    if not streams:
        raise FileNotFoundError(f"no video ({', '.join(sorted(VIDEO_SUFFIXES))}) in {stream_dir}")
    return streams


def load_recordings(streams: dict[str, Path]) -> dict[str, Recording]:
    """camera id → its recording: the truth beside it, or, with none, an empty truth timed from its frames."""
    recordings: dict[str, Recording] = {}
    for cid, path in streams.items():
        truth_path = path.with_suffix(".truth.json")
        if truth_path.is_file():
            recordings[cid] = Recording(cid, path, GroundTruth.from_json(truth_path.read_text()), True)
            continue
        timing = measure_recording(path)
        truth = GroundTruth(fps=timing.fps, width=0, height=0, duration_s=timing.duration_s, seed=0,
                            incidents=(), normal_events=())
        recordings[cid] = Recording(cid, path, truth, False, timing)
    return recordings


def evaluate_streams(
    stream_dir: Path,
    out: Path,
    *,
    model_path: Path | None = None,
    threshold: float | None = None,
    n_of_m: tuple[int, int] | None = None,
    overlap: float | None = None,
    plots_dir: Path | None = None,
) -> dict[str, Any]:
    """Run the embedded pipeline over ``stream_dir`` and write ``out/stream-eval.json`` (and, with
    ``plots_dir``, ``scores.png`` there: the clip-score histogram of every camera)."""
    from common.app.runtime import alert_threshold
    from inference.model import classifier_from_settings

    started = time.monotonic()
    recordings = load_recordings(find_streams(stream_dir))
    for rec in recordings.values():
        if rec.timing is not None:
            _say_timing(rec)
    truths = {cid: rec.truth for cid, rec in recordings.items()}
    out = prepare_output(out)
    settings = stream_settings(
        out,
        [{"id": cid, "source": rec.path} for cid, rec in recordings.items()],
        store={"id": "eval", "name": "Stream evaluation", "timezone": "UTC"},
        model_path=model_path,
        threshold=threshold,
        n_of_m=n_of_m,
        overlap=overlap,
        # generator streams may put two incidents on one camera 10 s apart; the rule's cooldown must not
        # hide the second (one incident's clips span about 5 s, so 8 s still stops repeats)
        cooldown_s=8.0,
    )
    classifier = classifier_from_settings(settings.model, settings.inference)
    used_threshold = alert_threshold(settings, classifier)
    rule = settings.alerts.n_of_m
    unlabelled = sum(1 for rec in recordings.values() if not rec.labelled)
    say(f"{count(len(recordings), 'stream')} ({unlabelled} without a truth file: no incident in them), model "
        f"{classifier.version}, threshold {used_threshold:.2f}, rule {rule[0]} of {rule[1]}")
    run = run_embedded(settings, classifier, started=started, timeout_s=max(240.0, 60.0 * len(recordings)))
    try:
        rows, false_alarm_alerts = match_alerts(run.alerts, truths)
        # match_alerts lists the incidents in this order
        incidents = [incident for truth in truths.values() for incident in truth.incidents]
        for row, incident in zip(rows, incidents, strict=True):
            row.update(incident_detail(run.results, row["camera"], incident.start_s, incident.end_s,
                                        used_threshold))
        cameras = [_camera_row(rec, run.results, run.alerts, false_alarm_alerts, used_threshold)
                   for rec in recordings.values()]
        hours = sum(rec.duration_s for rec in recordings.values()) / 3600.0
        detected = sum(1 for r in rows if r["detected"])
        false_alarms = len(false_alarm_alerts)
        report: dict[str, Any] = {
            "streams": len(recordings),
            "unlabelled_streams": unlabelled,
            "hours": round(hours, 6),
            "model_version": classifier.version,
            "threshold": used_threshold,
            "n_of_m": list(rule),
            "incidents": len(rows),
            "detected": detected,
            "recall": round(detected / len(rows), 4) if rows else None,
            "alerts": sum(c["alerts"] for c in cameras),
            "false_alarms": false_alarms,
            "false_alarms_per_camera_hour": round(false_alarms / hours, 2) if hours else None,
            "normal_shoppers": sum(len(t.normal_events) for t in truths.values()),
            "clips": run.clips,
            "results": len(run.results),
            "scores": score_distribution([r.probability for r in run.results], used_threshold),
            "cameras": cameras,
            "incident_table": rows,
            "seconds": round(time.monotonic() - started, 1),
            "note": ("A stream without a .truth.json is taken to hold no incident: every alert on it is a false "
                     "alarm.  Synthetic streams measure the pipeline and the model on generator scenes, not a "
                     "real store; a few seconds of real footage give a rate with a very wide margin."),
        }
    finally:
        run.db.close()
    (out / "stream-eval.json").write_text(json.dumps(report, indent=2, default=str))
    if plots_dir is not None:
        report["plots"] = [str(plot_scores(report, Path(plots_dir) / "scores.png"))]
        (out / "stream-eval.json").write_text(json.dumps(report, indent=2, default=str))
    _print_report(report)
    return report


def _say_timing(rec: Recording) -> None:
    timing = rec.timing
    assert timing is not None
    how = "by its frames' timestamps" if timing.from_timestamps else "by its header's rate (no timestamps)"
    line = f"  {rec.camera}: no truth file; {timing.duration_s:.1f} s, {timing.frames} frames at {timing.fps:.1f} fps {how}"
    if not timing.header_agrees:
        line += f" (the header declares {timing.declared_frames} frames at {timing.declared_fps:g} fps)"
    say(line)


def _camera_row(rec: Recording, results: list[Any], alerts: list[Any], false_alarm_alerts: list[Any],
                threshold: float) -> dict[str, Any]:
    """One camera's line of the report: footage, clips, alerts, false alarms, and its score distribution."""
    own = [r for r in results if r.camera_id == rec.camera]
    suspicious = [a for a in alerts if a.camera_id == rec.camera and a.kind == AlertKind.SUSPICIOUS_ACTIVITY]
    false_alarms = sum(1 for a in false_alarm_alerts if a.camera_id == rec.camera)
    hours = rec.duration_s / 3600.0
    ends = [r.source_end_s for r in own if r.source_end_s is not None]
    return {
        "camera": rec.camera,
        "file": rec.path.name,
        "labelled": rec.labelled,
        "duration_s": round(rec.duration_s, 3),
        "hours": round(hours, 6),
        "incidents": len(rec.truth.incidents),
        "clips": len(own),
        # how far along the recording the pipeline's clips reached, on the pipeline's own clock: well past
        # ``duration_s`` or far short of it means ingest timed the frames differently from their timestamps
        "last_clip_end_s": round(max(ends), 3) if ends else None,
        "alerts": len(suspicious),
        "false_alarms": false_alarms,
        "false_alarms_per_camera_hour": round(false_alarms / hours, 2) if hours else None,
        "scores": score_distribution([r.probability for r in own], threshold),
        "timing": rec.timing.as_dict() if rec.timing is not None else None,
    }


def plot_scores(report: dict[str, Any], path: Path) -> Path:
    """A histogram of the clip scores of every camera (one line each), the threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    edges = list(HISTOGRAM_EDGES)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for cam in report["cameras"]:
        counts = cam["scores"]["histogram"]["counts"]
        label = f"{cam['camera']} ({'truth' if cam['labelled'] else 'no truth'}, {cam['clips']} clips)"
        ax.stairs(counts, edges, label=label, lw=1.6)
    ax.axvline(report["threshold"], color="crimson", ls="--", lw=1, label=f"threshold {report['threshold']:.2f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("P(shoplifting) per clip")
    ax.set_ylabel("clips")
    ax.set_title(f"Clip scores, model {report['model_version']}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _print_report(report: dict[str, Any]) -> None:
    if report["incident_table"]:
        print_incident_table(report["incident_table"], [
            ("clips>=thr", 11, lambda r: str(r["clips_over_threshold"])),
            ("holding", 8, lambda r: str(r["clips_holding_act"])),
            ("peak p", 7, lambda r: f"{r['peak_p']:.2f}"),
        ])
        print(f"incidents {report['incidents']}  detected {report['detected']}  false alarms "
              f"{report['false_alarms']} ({report['false_alarms_per_camera_hour']} per camera-hour over "
              f"{report['hours'] * 60:.1f} camera-minutes, {report['normal_shoppers']} normal shoppers)")
    width = max([10, *(len(c["camera"]) for c in report["cameras"])])
    header = (f"{'camera':{width}} {'truth':>5} {'footage':>9} {'clips':>5} {'alerts':>6} {'false':>5} "
              f"{'per cam-h':>9}   {'min':>4} {'med':>4} {'p90':>4} {'p99':>4} {'max':>4} {'>=thr':>6}")
    rule = "-" * len(header)
    print(rule)
    print(header)
    overall = {"camera": "all", "labelled": None, "duration_s": report["hours"] * 3600.0,
               "clips": report["results"], "alerts": report["alerts"], "false_alarms": report["false_alarms"],
               "false_alarms_per_camera_hour": report["false_alarms_per_camera_hour"], "scores": report["scores"]}
    for i, cam in enumerate([*report["cameras"], overall]):
        if i == len(report["cameras"]):
            print(rule)
        sc = cam["scores"]
        truth = "" if cam["labelled"] is None else ("yes" if cam["labelled"] else "no")
        share = "-" if sc["at_or_over_threshold"] is None else f"{100 * sc['at_or_over_threshold']:.1f}%"
        per_hour = cam["false_alarms_per_camera_hour"]
        print(f"{cam['camera']:{width}} {truth:>5} {_footage(cam['duration_s']):>9} {cam['clips']:>5} "
              f"{cam['alerts']:>6} {cam['false_alarms']:>5} {'-' if per_hour is None else per_hour:>9}   "
              f"{_fmt(sc['min']):>4} {_fmt(sc['median']):>4} {_fmt(sc['p90']):>4} {_fmt(sc['p99']):>4} "
              f"{_fmt(sc['max']):>4} {share:>6}")
    print(rule)
    counts = report["scores"]["histogram"]["counts"]
    peak = max(counts) or 1
    print(f"clip scores, all cameras (threshold {report['threshold']:.2f}):")
    for lo, hi, n in zip(HISTOGRAM_EDGES, HISTOGRAM_EDGES[1:], counts, strict=False):
        print(f"  {lo:.1f}-{hi:.1f} {'#' * round(30 * n / peak):<30} {n}")
    for cam in report["cameras"]:
        timing = cam["timing"]
        if timing is not None and not timing["header_agrees"]:
            print(f"note: {cam['file']} declares {timing['declared_frames']} frames at {timing['declared_fps']:g} "
                  f"fps but holds {timing['frames']} over {timing['duration_s']:.1f} s by its frame timestamps; "
                  f"its rate per hour uses {timing['duration_s']:.1f} s")
    for cam in report["cameras"]:
        end, duration = cam["last_clip_end_s"], cam["duration_s"]
        if end is not None and (end > duration + 0.5 or end < 0.6 * duration):
            print(f"note: {cam['camera']}'s last clip ends at {end:.1f} s on the pipeline's clock, the recording "
                  f"lasts {duration:.1f} s: motion stopped early, or ingest timed its frames differently")
    if report["hours"] < 1.0:
        print(f"only {report['hours'] * 3600.0:.1f} s of footage: a rate per camera-hour from so little is a "
              "rough indication, not a measurement to rely on")


def _footage(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 600 else f"{seconds / 3600.0:.2f} h"
