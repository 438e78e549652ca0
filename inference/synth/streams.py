"""Long camera streams: still periods and one person at a time, with the stream's ground truth."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inference.synth.layout import Scene, make_scene
from inference.synth.people import Episode, plan_episode
from inference.synth.render import SceneRenderer
from inference.synth.seeds import sub_seed
from inference.synth.truth import Event, GroundTruth
from inference.synth.video import write_video

STILL_GAP_S = 3.0  # empty aisle before, between and after episodes in a stream


@dataclass(frozen=True)
class StreamSpec:
    """What a stream shows and how it is filmed: ``seed`` draws the episodes' order and timing and, unless
    ``scene_seed`` gives a camera view (see ``camera_scene_seed``), the view too."""

    seed: int
    duration_s: float
    incidents: int
    normal_shoppers: int
    fps: float = 15.0
    width: int = 640
    height: int = 360
    scene_seed: int | None = None

    def __post_init__(self) -> None:
        if self.incidents < 0 or self.normal_shoppers < 0:
            raise ValueError("incidents and normal_shoppers must be >= 0")
        if self.fps <= 0 or self.duration_s <= 0 or self.width < 16 or self.height < 16:
            raise ValueError("fps and duration_s must be > 0, width/height >= 16")

    @property
    def frame_count(self) -> int:
        """How many frames the stream has."""
        return round(self.duration_s * self.fps)


@dataclass(frozen=True, eq=False)
class StreamPlan:
    """A stream's scene, its episodes with their start times, and the ground truth."""

    scene: Scene
    episodes: tuple[Episode, ...]
    starts: tuple[float, ...]
    truth: GroundTruth
    noise_seed: int = field(default=0)


def _plan_episodes(
    scene: Scene, incidents: int, normal_shoppers: int, rng: np.random.Generator
) -> list[Episode]:
    """The stream's episodes in a seeded order; taken items are not picked again until the shelf is restocked."""
    kinds = ["concealment"] * incidents + [
        "normal_pickup" if rng.random() < 0.7 else "put_back" for _ in range(normal_shoppers)
    ]
    kinds = [kinds[i] for i in rng.permutation(len(kinds))]
    episodes: list[Episode] = []
    taken: set[int] = set()
    for kind in kinds:
        if len(taken) >= len(scene.slots) - 1:
            taken.clear()  # restocked
        ep = plan_episode(scene, kind, rng, taken=frozenset(taken))
        if kind != "put_back":
            taken.add(ep.slot)
        episodes.append(ep)
    return episodes


def _place_in_time(
    episodes: list[Episode], spec: StreamSpec, rng: np.random.Generator
) -> tuple[list[float], list[Event]]:
    """Start times (>= STILL_GAP_S of empty aisle around each episode, the slack spread at random) and
    each episode's event in stream time."""
    need = STILL_GAP_S * (len(episodes) + 1) + sum(ep.duration for ep in episodes)
    if need > spec.duration_s:
        raise ValueError(
            f"{spec.incidents} incidents + {spec.normal_shoppers} normal shoppers need at least {need:.1f} s "
            f"(episodes ~8-14 s each, {STILL_GAP_S} s still gaps), got duration_s={spec.duration_s}"
        )
    slack = (spec.duration_s - need) * rng.dirichlet(np.ones(len(episodes) + 1))
    starts: list[float] = []
    events: list[Event] = []
    t = STILL_GAP_S + float(slack[0])
    for i, ep in enumerate(episodes):
        starts.append(t)
        events.append(Event(ep.kind, t + ep.act_start, t + ep.act_end, t, t + ep.t_exit))
        t += ep.duration + STILL_GAP_S + float(slack[i + 1])
    return starts, events


def plan_stream_spec(spec: StreamSpec) -> StreamPlan:
    """Place the episodes of a stream in time (seeded order, >= STILL_GAP_S of empty aisle around each)."""
    rng = np.random.default_rng(sub_seed(spec.seed, 0x57EA))
    scene_seed = sub_seed(spec.seed, 0x5CE7E, 1) if spec.scene_seed is None else spec.scene_seed
    scene = make_scene(scene_seed, spec.width, spec.height)
    episodes = _plan_episodes(scene, spec.incidents, spec.normal_shoppers, rng)
    starts, events = _place_in_time(episodes, spec, rng)
    truth = GroundTruth(
        fps=float(spec.fps), width=spec.width, height=spec.height, duration_s=float(spec.duration_s),
        seed=spec.seed, incidents=tuple(e for e in events if e.kind == "concealment"),
        normal_events=tuple(e for e in events if e.kind != "concealment"),
    )
    return StreamPlan(scene, tuple(episodes), tuple(starts), truth, noise_seed=sub_seed(spec.seed, 0x0153))


def iter_stream_frames(plan: StreamPlan) -> Iterator[np.ndarray]:
    """Lazily render a planned stream, one frame at a time (memory stays flat)."""
    renderer = SceneRenderer(plan.scene, plan.noise_seed)
    fps = plan.truth.fps
    n = round(plan.truth.duration_s * fps)
    j = 0
    eps, starts = plan.episodes, plan.starts
    for i in range(n):
        t = i / fps
        while j < len(eps) and t > starts[j] + eps[j].t_exit:
            if eps[j].kind != "put_back":
                renderer.empty_slot(eps[j].slot)
            j += 1
        active = j < len(eps) and t >= starts[j]
        frame, _ = renderer.frame(t, eps[j] if active else None, t - starts[j] if active else 0.0)
        yield frame


def write_stream_spec(path: Path, spec: StreamSpec, *, progress: bool = False) -> GroundTruth:
    """Writes the stream video (mp4v) and a sidecar `path.with_suffix('.truth.json')`; returns the stream's
    ground truth.  Shows a tqdm progress bar when progress=True."""
    from tqdm import tqdm

    path = Path(path)
    plan = plan_stream_spec(spec)
    frames = tqdm(iter_stream_frames(plan), total=spec.frame_count, desc="stream", unit="frame",
                  disable=not progress)
    write_video(path, frames, spec.fps, spec.width, spec.height)
    path.with_suffix(".truth.json").write_text(plan.truth.to_json())
    return plan.truth


# The keyword forms, for callers that give a stream field by field.


def plan_stream(seed: int, *, scene_seed: int | None = None, duration_s: float, incidents: int,
                normal_shoppers: int, fps: float = 15.0, width: int = 640, height: int = 360) -> StreamPlan:
    """Place the episodes of a stream in time (seeded order, >= STILL_GAP_S of empty aisle around each):
    ``plan_stream_spec`` of the ``StreamSpec`` these arguments make."""
    spec = StreamSpec(seed=seed, duration_s=duration_s, incidents=incidents, normal_shoppers=normal_shoppers,
                      fps=fps, width=width, height=height, scene_seed=scene_seed)
    return plan_stream_spec(spec)


def render_stream(seed: int, *, scene_seed: int | None = None, duration_s: float, incidents: int,
                  normal_shoppers: int, fps: float = 15.0, width: int = 640,
                  height: int = 360) -> tuple[Iterator[np.ndarray], GroundTruth]:
    """A long camera stream: still periods (>= 3 s of empty aisle between episodes, and at the start), normal shoppers
    and concealment incidents in a seeded random order, one person at a time. Returns a frame iterator (lazy, to
    keep memory flat) and the ground truth."""
    spec = StreamSpec(seed=seed, duration_s=duration_s, incidents=incidents, normal_shoppers=normal_shoppers,
                      fps=fps, width=width, height=height, scene_seed=scene_seed)
    plan = plan_stream_spec(spec)
    return iter_stream_frames(plan), plan.truth


def write_stream(path: Path, *, duration_s: float, seed: int, incidents: int, normal_shoppers: int,
                 fps: float = 15.0, width: int = 640, height: int = 360, progress: bool = False,
                 scene_seed: int | None = None) -> GroundTruth:
    """Writes the stream video (mp4v) and a sidecar `path.with_suffix('.truth.json')`.  ``scene_seed``
    films it with a given camera view (see ``camera_scene_seed``); by default the view follows ``seed``."""
    spec = StreamSpec(seed=seed, duration_s=duration_s, incidents=incidents, normal_shoppers=normal_shoppers,
                      fps=fps, width=width, height=height, scene_seed=scene_seed)
    return write_stream_spec(path, spec, progress=progress)
