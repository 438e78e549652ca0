"""Short labelled training windows: what a window of each label shows, and its frames."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from inference.synth.layout import Scene, make_scene
from inference.synth.people import Episode, plan_episode
from inference.synth.render import SceneRenderer
from inference.synth.seeds import sub_seed

Label = Literal["shoplifting", "normal"]

WINDOW_MARGIN_S = 0.4  # a normal act lies at least this far inside an "act" training window
# What a shoplifting window must show: from just before the hand sets off for the body until just after the
# item has vanished there. The reach and the look-around may fall outside, as they do in most of the
# stride-spaced windows a camera stream is cut into; requiring the whole act (about 2.5 s of a 4 s window)
# left one stream window per incident, too few for an N-of-M rule.
CONCEAL_BEFORE_S = 0.3
CONCEAL_AFTER_S = 0.3

_LABELS: tuple[str, ...] = ("shoplifting", "normal")
_PREFIXES = {"shoplifting": "sl", "normal": "nm"}


@dataclass(frozen=True)
class WindowInfo:
    """How a training window was made, with per-frame item ground truth (for tests and the manifest)."""

    label: str
    episode_kind: str
    mode: str  # "act" | "episode" | "before_act" | "after_act"
    scene_seed: int
    window_start_s: float  # episode time of the first frame (the person enters at 0)
    act_start_s: float  # relative to the first frame (may lie outside the window for normal windows)
    act_end_s: float
    motion_start_s: float  # when the hand sets off for the basket / body / shelf, relative to the first frame
    conceal_target: str
    item_state: tuple[str, ...]
    item_visible: tuple[bool, ...]
    item_boxes: tuple[tuple[int, int, int, int] | None, ...]

    def summary(self) -> dict[str, object]:
        """The manifest fields (no per-frame lists)."""
        return {
            "episode_kind": self.episode_kind,
            "mode": self.mode,
            "scene_seed": self.scene_seed,
            "window_start_s": round(self.window_start_s, 4),
            "act_start_s": round(self.act_start_s, 4),
            "act_end_s": round(self.act_end_s, 4),
            "motion_start_s": round(self.motion_start_s, 4),
            "conceal_target": self.conceal_target,
        }


def concealment_core(ep: Episode) -> tuple[float, float]:
    """The episode-time span a window must contain to count as showing a concealment."""
    return ep.motion_start - CONCEAL_BEFORE_S, ep.act_end + CONCEAL_AFTER_S


def window_shows_concealment(ep: Episode, start: float, duration_s: float) -> bool:
    """True when a window [start, start + duration_s) of a concealment episode contains its core."""
    lo, hi = concealment_core(ep)
    return ep.kind == "concealment" and start <= lo + 1e-9 and hi <= start + duration_s + 1e-9


def _pick_window(ep: Episode, mode: str, dur: float, rng: np.random.Generator) -> tuple[str, float] | None:
    """(mode, window start in episode time); None if a concealment episode has no act-free window."""
    if mode == "act":  # the window holds this span, at a random offset
        if ep.kind == "concealment":
            span_lo, span_hi = concealment_core(ep)
        else:
            span_lo, span_hi = ep.act_start - WINDOW_MARGIN_S, ep.act_end + WINDOW_MARGIN_S
        lo, hi = span_hi - dur, span_lo
        if lo <= hi:
            return mode, float(rng.uniform(lo, hi))
        return mode, (span_lo + span_hi) / 2 - dur / 2
    if mode in ("before_act", "after_act"):
        ranges = {
            "before_act": (-0.5, ep.act_start - dur - 0.15),
            "after_act": (ep.act_end + 0.15, ep.t_exit - dur + 0.3),
        }
        ok = [m for m, (lo, hi) in ranges.items() if lo <= hi]
        if not ok:
            return None
        m = mode if mode in ok else ok[0]
        lo, hi = ranges[m]
        return m, float(rng.uniform(lo, hi))
    return "episode", float(rng.uniform(0.0, max(0.0, ep.t_exit - dur)))


def _choose_episode(label: str, rng: np.random.Generator) -> tuple[str, str]:
    """(episode kind, window mode) of a window of ``label``."""
    if label == "shoplifting":
        return "concealment", "act"
    r = rng.random()
    if r < 0.3:
        return "normal_pickup", "act"
    if r < 0.5:
        return "put_back", "act"
    if r < 0.75:
        return ("normal_pickup" if rng.random() < 0.6 else "put_back"), "episode"
    return "concealment", ("before_act" if rng.random() < 0.5 else "after_act")


def _render_frames(
    renderer: SceneRenderer, ep: Episode, start: float, n: int, fps: float, *, hide_item: bool
) -> tuple[np.ndarray, list[str], list[bool], list[tuple[int, int, int, int] | None]]:
    """The window's frames and, per frame, the target item's state, visibility and box."""
    sc = renderer.scene
    frames = np.empty((n, sc.height, sc.width, 3), np.uint8)
    states: list[str] = []
    visible: list[bool] = []
    boxes: list[tuple[int, int, int, int] | None] = []
    for i in range(n):
        frames[i], info = renderer.frame(i / fps, ep, start + i / fps, hide_item=hide_item)
        if info is None and (start + i / fps < 0 or ep.kind == "put_back"):  # the item is on the shelf
            states.append("shelf")
            visible.append(True)
            boxes.append(renderer.slot_box(ep.slot))
        elif info is None:  # the person has left with the item
            states.append("gone")
            visible.append(False)
            boxes.append(None)
        else:
            states.append(info.item_state)
            visible.append(info.item_visible)
            boxes.append(info.item_box)
    return frames, states, visible, boxes


def _frame_count(duration_s: float, fps: float) -> int:
    """How many frames a training window of ``duration_s`` at ``fps`` has (at least one)."""
    return max(1, round(duration_s * fps))


def plan_window(label: Label, seed: int, *, width: int = 320, height: int = 180, duration_s: float = 4.0,
                scene_seed: int | None = None) -> tuple[Scene, Episode, float, WindowInfo]:
    """What a training window of ``label`` shows: (scene, episode, window start in episode time, how it was
    made, with the per-frame item lists still empty)."""
    if label not in _LABELS:
        raise ValueError(f"label must be one of {_LABELS}, got {label!r}")
    if width < 16 or height < 16 or duration_s <= 0:
        raise ValueError("width/height must be >= 16 and fps/duration_s > 0")
    code = _LABELS.index(label)
    rng = np.random.default_rng(sub_seed(seed, code, 0xE915))
    if scene_seed is None:
        scene_seed = sub_seed(seed, code, 0x5CE7E)
    scene = make_scene(scene_seed, width, height)
    kind, mode = _choose_episode(label, rng)
    ep = plan_episode(scene, kind, rng)
    picked = _pick_window(ep, mode, duration_s, rng)
    if picked is None:  # too long a window to avoid the concealment: use a normal episode instead
        ep = plan_episode(scene, "normal_pickup", rng)
        picked = _pick_window(ep, "episode", duration_s, rng)
    assert picked is not None
    mode, start = picked
    info = WindowInfo(
        label=label, episode_kind=ep.kind, mode=mode, scene_seed=scene_seed, window_start_s=start,
        act_start_s=ep.act_start - start, motion_start_s=ep.motion_start - start,
        act_end_s=ep.act_end - start, conceal_target=ep.conceal_target,
        item_state=(), item_visible=(), item_boxes=(),
    )
    return scene, ep, start, info


def render_window(label: Label, seed: int, *, width: int = 320, height: int = 180, fps: float = 15.0,
                  duration_s: float = 4.0, hide_item: bool = False,
                  scene_seed: int | None = None) -> tuple[np.ndarray, WindowInfo]:
    """``render_episode_window`` plus how it was made (``hide_item`` renders the same window without the
    target item, so a test can measure exactly what the item contributes)."""
    if fps <= 0:
        raise ValueError("width/height must be >= 16 and fps/duration_s > 0")
    scene, ep, start, info = plan_window(label, seed, width=width, height=height, duration_s=duration_s,
                                         scene_seed=scene_seed)
    n = _frame_count(duration_s, fps)
    renderer = SceneRenderer(scene, noise_seed=sub_seed(seed, _LABELS.index(label), 0x0153))
    frames, states, visible, boxes = _render_frames(renderer, ep, start, n, fps, hide_item=hide_item)
    return frames, replace(info, item_state=tuple(states), item_visible=tuple(visible), item_boxes=tuple(boxes))


def render_episode_window(label: Label, seed: int, *, width: int = 320, height: int = 180, fps: float = 15.0,
                          duration_s: float = 4.0) -> np.ndarray:
    """(T,H,W,3) uint8 BGR: a short training video. For "shoplifting", the window holds the hand carrying the item
    to the body and the item vanishing there, with 0.3 s either side, at a random offset (the reach and
    look-around before it may be cut off, as in a stream window). For "normal", a window at a
    random offset of a normal episode (pick-up to basket, put-back, walking, browsing) OR of a shoplifting episode that
    does not overlap its concealment act at all (walking in/out) -- so the model learns the act, not the person."""
    frames, _ = render_window(label, seed, width=width, height=height, fps=fps, duration_s=duration_s)
    return frames
