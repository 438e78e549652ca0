"""Deterministic synthetic store-aisle CCTV footage (there is no real footage).

A fixed camera looks at a shelf unit on the back wall, a checkout counter at one side and an exit at the
other.  Cartoon people walk in, take an item from the shelf and either put it into the basket they carry
(normal), look at it and put it back (normal), or look around and hide it in their jacket, pocket or bag
(concealment) before leaving by the exit.  Everything is seeded: the same seed gives identical frames.

Speed: the static background is drawn once per scene (and warped once by the camera homography); a frame
is a copy of it, a few cv2 primitives for the person, a per-channel lighting LUT and sensor noise picked
from precomputed tiles.  The discriminating cue (a bright item that vanishes at the torso vs. stays
visible in the basket) is sized to survive a 64x64 squash of the whole frame.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal, cast

import cv2
import numpy as np

EventKind = Literal["concealment", "normal_pickup", "put_back"]
Label = Literal["shoplifting", "normal"]
EVENT_KINDS: tuple[str, ...] = ("concealment", "normal_pickup", "put_back")

STILL_GAP_S = 3.0  # empty aisle before, between and after episodes in a stream
WINDOW_MARGIN_S = 0.4  # a normal act lies at least this far inside an "act" training window
# What a shoplifting window must show: from just before the hand sets off for the body until just after the
# item has vanished there. The reach and the look-around may fall outside, as they do in most of the
# stride-spaced windows a camera stream is cut into; requiring the whole act (about 2.5 s of a 4 s window)
# left one stream window per incident, too few for an N-of-M rule.
CONCEAL_BEFORE_S = 0.3
CONCEAL_AFTER_S = 0.3
_VANISH_S = 0.25  # how long a concealed item takes to shrink out of sight at the body
_SHIFT = 4  # cv2 sub-pixel drawing: coordinates are multiplied by 2**_SHIFT
_ONE = 1 << _SHIFT

Colour = tuple[int, int, int]
Point = tuple[float, float]


# --------------------------------------------------------------------------------------------------
# Ground truth


@dataclass(frozen=True)
class Event:
    """One person episode's act; times in seconds from the start of the video/stream."""

    kind: str  # "concealment" | "normal_pickup" | "put_back"
    start_s: float  # start of the act (hand reaches item)
    end_s: float  # end of the act (item hidden / in basket / back on shelf)
    person_enter_s: float
    person_exit_s: float

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}; expected one of {EVENT_KINDS}")
        if not self.person_enter_s <= self.start_s <= self.end_s <= self.person_exit_s:
            raise ValueError(f"event times out of order: {self}")


@dataclass(frozen=True)
class GroundTruth:
    """What happens in a rendered stream: concealments (incidents) and normal acts."""

    fps: float
    width: int
    height: int
    duration_s: float
    seed: int
    incidents: tuple[Event, ...]  # concealments only
    normal_events: tuple[Event, ...]

    def to_json(self) -> str:
        """Serialise to JSON (the stream's sidecar ``.truth.json``)."""
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> GroundTruth:
        """Parse what ``to_json`` wrote."""
        data = json.loads(text)
        return cls(
            fps=float(data["fps"]),
            width=int(data["width"]),
            height=int(data["height"]),
            duration_s=float(data["duration_s"]),
            seed=int(data["seed"]),
            incidents=tuple(Event(**e) for e in data["incidents"]),
            normal_events=tuple(Event(**e) for e in data["normal_events"]),
        )

    @property
    def all_events(self) -> tuple[Event, ...]:
        """Every episode's event, in time order."""
        return tuple(sorted(self.incidents + self.normal_events, key=lambda e: e.person_enter_s))


# --------------------------------------------------------------------------------------------------
# Small helpers


def _hsv(h: float, s: float, v: float) -> Colour:
    px = np.array([[[h % 180, s, v]]], dtype=np.uint8)
    b, g, r = cv2.cvtColor(px, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def _scale(c: Colour, k: float) -> Colour:
    return tuple(int(max(0, min(255, round(v * k)))) for v in c)  # type: ignore[return-value]


def _smooth(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3.0 - 2.0 * x)


def _lerp(a: Point, b: Point, k: float) -> Point:
    return a[0] + (b[0] - a[0]) * k, a[1] + (b[1] - a[1]) * k


def _sub_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


class _Painter:
    """Draws canonical-coordinate shapes onto an image through the camera homography."""

    def __init__(
        self, img: np.ndarray, hom: np.ndarray, scale: float, colour: Callable[[Colour], Colour] | None = None
    ) -> None:
        self.img = img
        self.h = [float(v) for v in hom.ravel()]
        self.s = scale
        self.c: Callable[[Colour], Colour] = colour if colour is not None else (lambda c: c)

    def p(self, x: float, y: float) -> tuple[int, int]:
        h = self.h
        w = h[6] * x + h[7] * y + h[8]
        return (int((h[0] * x + h[1] * y + h[2]) / w * _ONE), int((h[3] * x + h[4] * y + h[5]) / w * _ONE))

    def circle(self, c: Point, r: float, col: Colour) -> None:
        cv2.circle(
            self.img, self.p(*c), max(_ONE // 2, int(r * self.s * _ONE)), self.c(col), -1, cv2.LINE_8, _SHIFT
        )

    def ellipse(self, c: Point, ax: float, ay: float, col: Colour) -> None:
        axes = (max(1, int(ax * self.s * _ONE)), max(1, int(ay * self.s * _ONE)))
        cv2.ellipse(self.img, self.p(*c), axes, 0, 0, 360, self.c(col), -1, cv2.LINE_8, _SHIFT)

    def line(self, a: Point, b: Point, thick: float, col: Colour) -> None:
        t = max(1, round(thick * self.s))
        cv2.line(self.img, self.p(*a), self.p(*b), self.c(col), t, cv2.LINE_8, _SHIFT)

    def poly(self, pts: list[Point], col: Colour) -> None:
        arr = np.array([self.p(x, y) for x, y in pts], dtype=np.int32)
        cv2.fillConvexPoly(self.img, arr, self.c(col), cv2.LINE_8, _SHIFT)

    def rect(self, x0: float, y0: float, x1: float, y1: float, col: Colour) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], col)

    def bbox(self, x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
        """Output-pixel bounding box (x0, y0, x1, y1), clipped to the image, of a canonical rectangle."""
        pts = [self.p(x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]
        hh, ww = self.img.shape[:2]
        xs = [q[0] / _ONE for q in pts]
        ys = [q[1] / _ONE for q in pts]
        return (
            max(0, math.floor(min(xs)) - 1),
            max(0, math.floor(min(ys)) - 1),
            min(ww, math.ceil(max(xs)) + 2),
            min(hh, math.ceil(max(ys)) + 2),
        )


# --------------------------------------------------------------------------------------------------
# Scene (static part of the view)


@dataclass(frozen=True)
class Slot:
    """An item on the shelf, canonical pixel rectangle."""

    x0: float
    y0: float
    x1: float
    y1: float
    colour: Colour

    @property
    def centre(self) -> Point:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2


@dataclass(frozen=True)
class Lighting:
    """Global brightness/contrast/colour cast, optionally drifting slowly (sinusoid)."""

    gain: float
    contrast: float
    bias: float
    cast: tuple[float, float, float]
    drift_amp: float
    drift_period_s: float
    drift_phase: float

    def lut(self, t: float) -> np.ndarray:
        """(256, 1, 3) uint8 per-channel lookup table at time ``t``."""
        g = self.gain * (
            1.0 + self.drift_amp * math.sin(2 * math.pi * t / self.drift_period_s + self.drift_phase)
        )
        v = np.arange(256, dtype=np.float32)
        base = (v - 128.0) * self.contrast + 128.0
        out = np.stack([base * g * c + self.bias for c in self.cast], axis=-1)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(256, 1, 3)


@dataclass(frozen=True, eq=False)
class Scene:
    """Static layout, colours, camera and sensor of one store view (canonical coords = output pixels)."""

    seed: int
    width: int
    height: int
    mirror: bool
    zoom: float
    homography: np.ndarray  # canonical -> output pixels
    wall: Colour
    floor: Colour
    shelf_back: Colour
    shelf_frame: Colour
    counter: Colour
    shelf_x0: float
    shelf_x1: float
    plank_ys: tuple[float, ...]
    slots: tuple[Slot, ...]
    item_w: float
    item_h: float
    lighting: Lighting
    noise_sigma: float

    @property
    def scale(self) -> float:
        return self.zoom


def make_scene(seed: int, width: int = 640, height: int = 360, *, drift: bool | None = None) -> Scene:
    """Draw a random store view: colours, shelf layout, camera placement, lighting and sensor noise."""
    rng = np.random.default_rng(_sub_seed(seed, 0x5CE))
    W, H = float(width), float(height)
    wall = _hsv(rng.uniform(0, 180), rng.uniform(10, 60), rng.uniform(150, 215))
    floor = _hsv(rng.uniform(0, 180), rng.uniform(5, 50), rng.uniform(105, 175))
    shelf_back = _hsv(rng.uniform(0, 180), rng.uniform(10, 70), rng.uniform(60, 110))
    shelf_frame = _hsv(rng.uniform(10, 25), rng.uniform(20, 120), rng.uniform(150, 215))
    counter = _hsv(rng.uniform(0, 180), rng.uniform(30, 140), rng.uniform(80, 160))

    shelf_x0 = W * rng.uniform(0.21, 0.27)
    shelf_x1 = W * rng.uniform(0.73, 0.79)
    top, bottom = H * 0.07, H * 0.60
    n_planks = 3  # few, tall shelves: items big enough to stay a clear blob at 64x64
    plank_ys = tuple(top + (k + 1) * (bottom - top) / n_planks for k in range(n_planks))
    item_w = W * rng.uniform(0.08, 0.10)
    item_h = min(item_w * rng.uniform(0.95, 1.25), 0.85 * (bottom - top) / n_planks)
    hues = (rng.uniform(0, 180) + np.arange(5) * 36 + rng.uniform(-8, 8, size=5)) % 180  # distinct groups
    slots: list[Slot] = []
    for py in plank_ys:
        x = shelf_x0 + W * 0.012 + rng.uniform(0, item_w * 0.3)
        while x + item_w < shelf_x1 - W * 0.012:
            w = item_w * rng.uniform(0.92, 1.05)
            h = item_h * rng.uniform(0.9, 1.0)
            if rng.random() < 0.85:
                col = _hsv(
                    rng.choice(hues) + rng.uniform(-6, 6), rng.uniform(200, 255), rng.uniform(205, 255)
                )
                slots.append(Slot(x, py - h, x + w, py, col))
            x += w + item_w * rng.uniform(0.3, 0.55)

    mirror = bool(rng.random() < 0.5)
    zoom = rng.uniform(1.04, 1.14)
    rot = math.radians(rng.uniform(-1.5, 1.5))
    keystone = rng.uniform(-0.03, 0.03) * W
    shift = (rng.uniform(-0.02, 0.02) * W, rng.uniform(-0.02, 0.02) * H)
    cx, cy = W / 2, H / 2
    src = np.array([[0, 0], [W, 0], [W, H], [0, H]], dtype=np.float32)
    dst = []
    for k, (x, y) in enumerate(src):
        dx, dy = (x - cx) * zoom, (y - cy) * zoom
        dx, dy = dx * math.cos(rot) - dy * math.sin(rot), dx * math.sin(rot) + dy * math.cos(rot)
        if k < 2:  # top corners: keystone (camera tilt)
            dx += -keystone if x < cx else keystone
        px, py = cx + dx + shift[0], cy + dy + shift[1]
        dst.append([W - px if mirror else px, py])
    hom = cv2.getPerspectiveTransform(src, np.array(dst, dtype=np.float32))

    if drift is None:
        drift = bool(rng.random() < 0.4)
    lighting = Lighting(
        gain=rng.uniform(0.75, 1.2),
        contrast=rng.uniform(0.8, 1.15),
        bias=rng.uniform(-15, 15),
        cast=(rng.uniform(0.88, 1.12), rng.uniform(0.92, 1.08), rng.uniform(0.88, 1.12)),
        drift_amp=rng.uniform(0.02, 0.06) if drift else 0.0,
        drift_period_s=rng.uniform(40, 120),
        drift_phase=rng.uniform(0, 2 * math.pi),
    )
    return Scene(
        seed=seed,
        width=width,
        height=height,
        mirror=mirror,
        zoom=zoom,
        homography=hom,
        wall=wall,
        floor=floor,
        shelf_back=shelf_back,
        shelf_frame=shelf_frame,
        counter=counter,
        shelf_x0=shelf_x0,
        shelf_x1=shelf_x1,
        plank_ys=plank_ys,
        slots=tuple(slots),
        item_w=item_w,
        item_h=item_h,
        lighting=lighting,
        noise_sigma=float(rng.uniform(1.0, 4.0)),
    )


def _draw_item(pt: _Painter, cx: float, cy: float, w: float, h: float, col: Colour) -> None:
    pt.rect(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, _scale(col, 0.55))
    m = max(1.0, w * 0.1)
    pt.rect(cx - w / 2 + m, cy - h / 2 + m, cx + w / 2 - m, cy + h / 2 - m, col)


def _render_background(scene: Scene, with_items: bool) -> np.ndarray:
    """The static view, drawn canonically and warped once by the camera homography."""
    W, H = scene.width, scene.height
    img = np.empty((H, W, 3), np.uint8)
    pt = _Painter(img, np.eye(3), 1.0)
    horizon = int(H * 0.60)
    shade = np.linspace(0.88, 1.05, horizon, dtype=np.float32)[:, None, None]
    img[:horizon] = np.clip(np.array(scene.wall, np.float32) * shade, 0, 255).astype(np.uint8)
    fshade = np.linspace(0.9, 1.08, H - horizon, dtype=np.float32)[:, None, None]
    img[horizon:] = np.clip(np.array(scene.floor, np.float32) * fshade, 0, 255).astype(np.uint8)
    grout = _scale(scene.floor, 0.82)
    vx, vy = W / 2, -H * 0.9
    for k in range(-12, 13):  # floor tiles converging to a vanishing point
        xb = W / 2 + k * W * 0.11
        t = (horizon - vy) / (H - vy)
        pt.line((vx + (xb - vx) * t, horizon), (xb, H), 1, grout)
    y, step = float(horizon), H * 0.045
    while y < H:
        pt.line((0, y), (W, y), 1, grout)
        step *= 1.35
        y += step
    pt.rect(0, horizon - H * 0.012, W, horizon, _scale(scene.wall, 0.6))  # skirting board
    for lx in (0.18, 0.5, 0.82):  # ceiling lights
        pt.rect(W * (lx - 0.07), 0, W * (lx + 0.07), H * 0.025, (245, 250, 250))

    # checkout counter (canonical left) and exit door (canonical right)
    pt.rect(0, H * 0.47, W * 0.19, H * 0.52, _scale(scene.counter, 1.3))
    pt.rect(0, H * 0.52, W * 0.17, H * 0.80, scene.counter)
    pt.rect(W * 0.17, H * 0.50, W * 0.19, H * 0.80, _scale(scene.counter, 0.7))
    pt.rect(W * 0.06, H * 0.40, W * 0.12, H * 0.47, (40, 40, 45))  # till
    pt.rect(W * 0.07, H * 0.33, W * 0.11, H * 0.39, (60, 60, 60))
    pt.rect(W * 0.075, H * 0.34, W * 0.105, H * 0.38, (200, 160, 90))  # till screen
    pt.rect(W * 0.84, H * 0.17, W * 0.98, H * 0.60, (70, 70, 75))  # door frame
    pt.rect(W * 0.855, H * 0.20, W * 0.965, H * 0.60, (235, 225, 205))  # daylight
    pt.rect(W * 0.87, H * 0.09, W * 0.95, H * 0.15, (60, 170, 40))  # exit sign
    pt.rect(W * 0.885, H * 0.11, W * 0.935, H * 0.13, (225, 245, 225))
    pt.rect(W * 0.83, H * 0.86, W * 1.0, H * 0.97, _scale(scene.floor, 0.55))  # door mat

    # shelf unit
    x0, x1 = scene.shelf_x0, scene.shelf_x1
    top = H * 0.07
    pt.rect(x0, top, x1, H * 0.60, scene.shelf_back)
    post = W * 0.012
    pt.rect(x0 - post, top - H * 0.01, x0, H * 0.60, scene.shelf_frame)
    pt.rect(x1, top - H * 0.01, x1 + post, H * 0.60, scene.shelf_frame)
    for py in scene.plank_ys:
        pt.rect(x0, py, x1, py + H * 0.016, scene.shelf_frame)
        pt.rect(x0, py + H * 0.016, x1, py + H * 0.022, _scale(scene.shelf_frame, 0.6))
    if with_items:
        for s in scene.slots:
            _draw_item(pt, *s.centre, s.x1 - s.x0, s.y1 - s.y0, s.colour)
    return cv2.warpPerspective(
        img, scene.homography, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


_NOISE_TILES = 4
_NOISE_PAD = 8


@lru_cache(maxsize=8)
def _noise_bank(height: int, width: int, sigma: int) -> tuple[np.ndarray, np.ndarray]:
    """Precomputed gaussian noise tiles as (positive part, negative part) uint8, padded for random offsets."""
    rng = np.random.default_rng(_sub_seed(height, width, sigma, 0x0153))
    shape = (_NOISE_TILES, height + _NOISE_PAD, width + _NOISE_PAD, 3)
    n = rng.normal(0.0, float(sigma), size=shape).astype(np.float32)
    n = np.rint(n)
    pos = np.clip(n, 0, 255).astype(np.uint8)
    neg = np.clip(-n, 0, 255).astype(np.uint8)
    return pos, neg


# --------------------------------------------------------------------------------------------------
# People and episodes


@dataclass(frozen=True)
class Actor:
    """Appearance of one person (canonical pixels / BGR colours)."""

    height: float
    shirt: Colour
    trousers: Colour
    jacket: Colour | None
    skin: Colour
    hair: Colour
    shoes: Colour
    basket: Colour | None
    basket_items: tuple[Colour, ...]
    bag: Colour | None


_SKIN = ((172, 201, 235), (140, 175, 222), (105, 140, 198), (70, 105, 160), (50, 75, 115), (150, 190, 240))
_HAIR = ((25, 25, 30), (30, 50, 80), (40, 80, 140), (120, 140, 160), (20, 30, 50), (170, 180, 190))


def _clothes(rng: np.random.Generator) -> Colour:
    return _hsv(rng.uniform(0, 180), rng.uniform(20, 150), rng.uniform(45, 190))


@dataclass(frozen=True)
class Episode:
    """A planned person episode; times are seconds from the person entering (t=0)."""

    kind: str
    actor: Actor
    slot: int
    feet_y: float
    x_start: float
    x_stand: float
    x_end: float
    side: int  # +1: the item is to the person's right (canonical), -1: left
    speed: float
    t_arrive: float
    t_leave: float
    t_exit: float
    act_start: float
    act_end: float
    hand_keys: tuple[tuple[float, str, Point | None], ...]  # (t, item state after t, hand point / None=rest)
    head_keys: tuple[tuple[float, float], ...]
    conceal_target: str  # "jacket" | "pocket" | "bag" | ""
    motion_start: float  # start of the hand-to-basket / hand-to-body motion (after grasping)
    item_colour: Colour
    item_size: tuple[float, float]
    lean_keys: tuple[tuple[float, float], ...] = ()  # (t, sideways lean of the upper body in units of P)
    dip_keys: tuple[tuple[float, float], ...] = ()  # (t, how far the body crouches, in units of P)

    @property
    def duration(self) -> float:
        return self.t_exit


def _body(ep: Episode) -> dict[str, float]:
    P = ep.actor.height
    fy = ep.feet_y
    return {
        "P": P,
        "fy": fy,
        "shoulder_y": fy - 0.79 * P,
        "hip_y": fy - 0.47 * P,
        "head_y": fy - 0.905 * P,
        "head_r": 0.085 * P,
    }


def _rest_hand(cx: float, fy: float, P: float, side: int, phase: float, walking: bool) -> Point:
    swing = math.sin(phase) * 0.07 * P * side if walking else 0.0
    return cx + side * 0.2 * P + swing, fy - 0.42 * P


def _basket_geom(
    cx: float, fy: float, P: float, side: int, phase: float, walking: bool
) -> tuple[Point, float]:
    """(basket rim centre, half width) for a basket held in the hand on ``-side``."""
    hx, hy = _rest_hand(cx, fy, P, -side, phase, walking)
    return (hx - side * 0.05 * P, hy + 0.06 * P), 0.15 * P


def _bag_geom(cx: float, fy: float, P: float, side: int) -> tuple[float, float, float, float]:
    bx = cx + side * 0.2 * P
    return bx - 0.1 * P, fy - 0.50 * P, bx + 0.1 * P, fy - 0.33 * P


def plan_episode(
    scene: Scene, kind: str, rng: np.random.Generator, *, taken: frozenset[int] = frozenset()
) -> Episode:
    """Plan one person episode of ``kind`` (enter, walk to the shelf, act, leave) in ``scene``."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown episode kind {kind!r}")
    W, H = float(scene.width), float(scene.height)
    P = H * rng.uniform(0.6, 0.85)  # a close camera: people fill most of the frame height
    fy = H * rng.uniform(0.86, 0.97)
    jacket = _clothes(rng) if rng.random() < (0.65 if kind == "concealment" else 0.4) else None
    p_basket = {"normal_pickup": 1.0, "put_back": 0.6, "concealment": 0.45}[kind]
    basket = _hsv(rng.choice([0, 60, 110, 120, 170]), rng.uniform(150, 230), rng.uniform(90, 150))
    has_bag = rng.random() < (0.45 if kind == "concealment" else 0.25)
    n_prev = int(rng.integers(0, 3))
    actor = Actor(
        height=P,
        shirt=_clothes(rng),
        trousers=_hsv(rng.uniform(0, 180), rng.uniform(10, 120), rng.uniform(35, 130)),
        jacket=jacket,
        skin=_SKIN[int(rng.integers(len(_SKIN)))],
        hair=_HAIR[int(rng.integers(len(_HAIR)))],
        shoes=_scale(_HAIR[int(rng.integers(len(_HAIR)))], 0.7),
        basket=basket if rng.random() < p_basket else None,
        basket_items=tuple(
            _hsv(rng.uniform(0, 180), rng.uniform(200, 255), rng.uniform(200, 255)) for _ in range(n_prev)
        ),
        bag=_hsv(rng.uniform(0, 30), rng.uniform(40, 160), rng.uniform(40, 110)) if has_bag else None,
    )

    # target item: a free slot near shoulder height, reachable with the person inside the frame
    shoulder_y = fy - 0.79 * P
    want_y = shoulder_y - rng.uniform(-0.1, 0.15) * P
    cands = (
        [i for i, s in enumerate(scene.slots) if i not in taken and 0.3 * W < s.centre[0] < 0.7 * W]
        or [i for i in range(len(scene.slots)) if i not in taken]
        or list(range(len(scene.slots)))
    )
    best_dy = min(abs(scene.slots[i].centre[1] - want_y) for i in cands)
    near = [i for i in cands if abs(scene.slots[i].centre[1] - want_y) <= best_dy + 1e-6 + 0.02 * H]
    slot_i = int(near[int(rng.integers(len(near)))])
    slot = scene.slots[slot_i]
    icx, icy = slot.centre
    side = 1 if rng.random() < 0.5 else -1
    x_stand = icx - side * rng.uniform(0.3, 0.4) * P
    if not 0.12 * W < x_stand < 0.88 * W:
        side = -side
        x_stand = icx - side * rng.uniform(0.3, 0.4) * P

    margin = 0.75 * P
    left, right = -margin, W + margin
    x_start = left if rng.random() < 0.5 else right
    checkout, exit_ = left, right  # canonical: counter at the left, exit door at the right
    if kind == "normal_pickup":
        x_end = checkout
    elif kind == "concealment":
        x_end = exit_
    else:
        x_end = left if rng.random() < 0.5 else right
    speed = P * rng.uniform(0.6, 1.05)

    # act timeline (relative to arrival at the shelf)
    keys: list[tuple[float, str, Point | None]] = []
    head: list[tuple[float, float]] = []
    lean: list[tuple[float, float]] = []
    dip: list[tuple[float, float]] = []
    reach_pt = (icx - side * 0.15 * (slot.x1 - slot.x0), icy + 0.05 * P)
    item_size = (slot.x1 - slot.x0, slot.y1 - slot.y0)
    browse = rng.uniform(0.3, 1.0)
    t = browse
    keys.append((t, "shelf", None))
    t += rng.uniform(0.5, 0.8)
    act_start_rel = t
    keys.append((t, "hand", reach_pt))
    t += 0.1
    keys.append((t, "hand", reach_pt))
    chest = (x_stand + side * 0.2 * P, fy - 0.66 * P)
    conceal_target = ""
    if kind == "normal_pickup":
        rim, _ = _basket_geom(x_stand, fy, P, side, 0.0, False)
        mid = (x_stand - side * 0.05 * P, fy - 0.6 * P)
        dur = rng.uniform(1.0, 1.5)
        motion_rel = t
        keys.append((t + dur * 0.45, "hand", mid))
        t += dur
        keys.append((t, "basket", (rim[0], rim[1] - 0.35 * item_size[1])))
        act_end_rel = t
        t += 0.2
        keys.append((t, "basket", (rim[0], rim[1] - 0.35 * item_size[1])))
    elif kind == "put_back":
        look = (x_stand + side * 0.12 * P, fy - 0.74 * P)
        motion_rel = t
        t += 0.6
        keys.append((t, "hand", look))
        t += rng.uniform(0.8, 1.4)
        keys.append((t, "hand", look))
        t += 0.6
        keys.append((t, "shelf", reach_pt))
        act_end_rel = t
        t += 0.15
        keys.append((t, "shelf", reach_pt))
    else:
        options = ["jacket"] if actor.jacket is not None else ["pocket"]
        if actor.bag is not None:
            options = [*options, "bag", "bag"]
        conceal_target = options[int(rng.integers(len(options)))]
        if conceal_target == "jacket":
            tgt = (x_stand + side * 0.03 * P, fy - 0.64 * P)
        elif conceal_target == "pocket":
            tgt = (x_stand + side * 0.1 * P, fy - 0.45 * P)
        else:
            bx0, by0, bx1, _ = _bag_geom(x_stand, fy, P, side)
            tgt = ((bx0 + bx1) / 2, by0 + 0.02 * P)
        t += rng.uniform(0.35, 0.5)
        keys.append((t, "hand", chest))
        t_look0 = t
        t += rng.uniform(0.6, 0.85)
        keys.append((t, "hand", chest))
        first = -side * 1.0
        head += [
            (t_look0, side * 0.4),
            (t_look0 + (t - t_look0) * 0.3, first),
            (t_look0 + (t - t_look0) * 0.7, -first),
            (t, 0.0),
        ]
        # a furtive look-around: head and shoulders swing to one side, then the other
        lean += [
            (t_look0, 0.0),
            (t_look0 + (t - t_look0) * 0.3, first * 0.12),
            (t_look0 + (t - t_look0) * 0.7, -first * 0.12),
            (t, 0.0),
        ]
        # the item is carried, still in full view, to the jacket/pocket/bag, pressed against it for a
        # moment, then vanishes there (shrinks over the last _VANISH_S): a distinct, well-lit act
        dur = rng.uniform(0.6, 0.8)
        motion_rel = t
        t += dur
        keys.append((t, "hand", tgt))
        t += rng.uniform(0.3, 0.4) + _VANISH_S
        keys.append((t, "hidden", tgt))
        act_end_rel = t
        t += 0.3
        keys.append((t, "hidden", tgt))
        # the body stoops over the hiding place while the item goes in, then straightens: a coarse,
        # whole-body cue that survives 64x64, where the item itself is a few pixels
        depth = rng.uniform(0.16, 0.24)
        dip += [(motion_rel, 0.0), (motion_rel + dur, depth), (act_end_rel, depth), (t + 0.3, 0.0)]
    t += 0.5
    final_state = {"normal_pickup": "basket", "put_back": "shelf", "concealment": "hidden"}[kind]
    keys.append((t, final_state, None))
    t += rng.uniform(0.3, 1.0)
    stand = t

    walk_in = abs(x_stand - x_start) / speed
    walk_out = abs(x_end - x_stand) / speed
    total = walk_in + stand + walk_out
    if total > 14.0:  # hurry up
        k = max(0.35, (14.0 - stand) / (walk_in + walk_out))
        walk_in, walk_out, speed = walk_in * k, walk_out * k, speed / k
    elif total < 8.0:  # browse longer
        extra = 8.0 - total
        keys = [(kt + extra, st, pnt) for kt, st, pnt in keys]
        head = [(ht + extra, hv) for ht, hv in head]
        lean = [(lt + extra, lv) for lt, lv in lean]
        dip = [(dt + extra, dv) for dt, dv in dip]
        act_start_rel += extra
        act_end_rel += extra
        motion_rel += extra
        stand += extra
    t_arrive = walk_in
    off = t_arrive
    look_shelf = side * 0.45
    head_all = [
        (0.0, _walk_dir(x_start, x_stand) * 0.6),
        (off - 0.3, _walk_dir(x_start, x_stand) * 0.6),
        (off + 0.2, look_shelf),
    ]
    head_all += [(ht + off, hv) for ht, hv in head]
    t_leave = off + stand
    head_all += [(t_leave - 0.4, head_all[-1][1]), (t_leave, _walk_dir(x_stand, x_end) * 0.6)]
    head_all.sort(key=lambda kv: kv[0])
    return Episode(
        kind=kind,
        actor=actor,
        slot=slot_i,
        feet_y=fy,
        x_start=x_start,
        x_stand=x_stand,
        x_end=x_end,
        side=side,
        speed=speed,
        t_arrive=t_arrive,
        t_leave=t_leave,
        t_exit=t_leave + walk_out,
        act_start=off + act_start_rel,
        act_end=off + act_end_rel,
        hand_keys=tuple((kt + off, st, pnt) for kt, st, pnt in keys),
        head_keys=tuple(head_all),
        conceal_target=conceal_target,
        motion_start=off + motion_rel,
        item_colour=slot.colour,
        item_size=item_size,
        lean_keys=tuple((lt + off, lv) for lt, lv in lean),
        dip_keys=tuple((dt + off, dv) for dt, dv in dip),
    )


def _walk_dir(a: float, b: float) -> int:
    return 1 if b > a else -1


@dataclass(frozen=True)
class PoseInfo:
    """Where the target item is in one frame (debug/ground truth for tests)."""

    item_state: str  # "shelf" | "hand" | "basket" | "hidden" ("gone" in WindowInfo: left the view)
    item_visible: bool
    item_box: tuple[int, int, int, int] | None  # output pixels (x0, y0, x1, y1)
    person_box: tuple[int, int, int, int] | None


def _interp_keys(keys: tuple[tuple[float, float], ...], t: float) -> float:
    if t <= keys[0][0]:
        return keys[0][1]
    for (t0, v0), (t1, v1) in itertools.pairwise(keys):
        if t <= t1:
            return v0 + (v1 - v0) * _smooth((t - t0) / max(1e-6, t1 - t0))
    return keys[-1][1]


def _draw_person(
    pt: _Painter, ep: Episode, t: float, slot: Slot, shadow: Colour, *, hide_item: bool = False
) -> PoseInfo:
    """Draw the episode's person at episode time ``t`` (no-op outside the episode)."""
    a = ep.actor
    b = _body(ep)
    P, fy = b["P"], b["fy"]
    # body position and walk phase
    if t <= ep.t_arrive:
        k = t / max(1e-6, ep.t_arrive)
        cx = ep.x_start + (ep.x_stand - ep.x_start) * k
        walking = True
    elif t < ep.t_leave:
        cx, walking = ep.x_stand, False
    else:
        k = (t - ep.t_leave) / max(1e-6, ep.t_exit - ep.t_leave)
        cx = ep.x_stand + (ep.x_end - ep.x_stand) * k
        walking = True
    dist = abs(cx - ep.x_start) if t <= ep.t_arrive else abs(ep.x_stand - ep.x_start) + abs(cx - ep.x_stand)
    phase = dist / (0.3 * P) * math.pi
    bob = abs(math.sin(phase)) * 0.012 * P if walking else 0.0
    dip = _interp_keys(ep.dip_keys, t) * P if ep.dip_keys else 0.0
    top = -bob + dip
    side = ep.side
    sh_y = b["shoulder_y"] + top
    lx = _interp_keys(ep.lean_keys, t) * P if ep.lean_keys else 0.0  # upper-body lean (look-around)
    hip_y = b["hip_y"] + top

    # acting hand and item state
    keys = ep.hand_keys
    state = "shelf"
    hand: Point | None = None
    first_t = keys[0][0]
    if t >= first_t:
        pts = [
            (kt, st, pnt if pnt is not None else _rest_hand(cx, fy, P, side, phase, walking))
            for kt, st, pnt in keys
        ]
        if t >= pts[-1][0]:
            state = pts[-1][1]
        else:
            for (t0, s0, p0), (t1, _s1, p1) in itertools.pairwise(pts):
                if t < t1:
                    hand = _lerp(p0, p1, _smooth((t - t0) / max(1e-6, t1 - t0)))
                    state = s0
                    break
    if hand is None:
        hand = _rest_hand(cx, fy, P, side, phase, walking)
    elif dip:
        hand = (hand[0], hand[1] + dip)
    iw, ih = ep.item_size
    # item scale while vanishing into the jacket/pocket/bag (the last _VANISH_S of the act)
    item_scale = 1.0
    if ep.kind == "concealment" and state == "hand":
        span_start = ep.act_end - _VANISH_S
        if t > span_start:
            item_scale = max(0.0, 1.0 - (t - span_start) / max(1e-6, ep.act_end - span_start))

    # shadow, legs, shoes
    pt.ellipse((cx, fy + 0.01 * P), 0.2 * P, 0.035 * P, shadow)
    swing = math.sin(phase) * 0.11 * P if walking else 0.0
    leg_t = 0.1 * P
    for s, sw in ((-1, swing), (1, -swing)):
        foot = (cx + s * 0.06 * P + sw, fy - 0.02 * P)
        pt.line((cx + s * 0.065 * P, hip_y + 0.02 * P), foot, leg_t, a.trousers)
        pt.ellipse(
            (foot[0] + _walk_dir(ep.x_start, ep.x_end) * 0.02 * P, fy - 0.01 * P),
            0.055 * P,
            0.025 * P,
            a.shoes,
        )
    # torso
    pt.poly(
        [
            (cx - 0.15 * P + lx, sh_y),
            (cx + 0.15 * P + lx, sh_y),
            (cx + 0.13 * P, hip_y + 0.04 * P),
            (cx - 0.13 * P, hip_y + 0.04 * P),
        ],
        a.shirt,
    )
    if a.jacket is not None:
        for s in (-1, 1):
            pt.poly(
                [
                    (cx + s * 0.15 * P + lx, sh_y),
                    (cx + s * 0.045 * P + lx, sh_y),
                    (cx + s * 0.055 * P, hip_y + 0.07 * P),
                    (cx + s * 0.14 * P, hip_y + 0.07 * P),
                ],
                a.jacket,
            )
    pt.line(
        (cx - 0.13 * P, hip_y + 0.035 * P),
        (cx + 0.13 * P, hip_y + 0.035 * P),
        0.025 * P,
        _scale(a.trousers, 0.6),
    )  # belt
    # bag (strap from the far shoulder) on the acting side
    if a.bag is not None:
        bx0, by0, bx1, by1 = _bag_geom(cx, fy + top, P, side)
        pt.line((cx - side * 0.1 * P + lx, sh_y), ((bx0 + bx1) / 2, by0), 0.025 * P, _scale(a.bag, 0.7))
        pt.rect(bx0, by0, bx1, by1, a.bag)
        pt.rect(bx0, by0, bx1, by0 + 0.04 * P, _scale(a.bag, 0.7))
    # basket in the other hand, with what is already in it
    sleeve = a.jacket if a.jacket is not None else a.shirt
    other_hand = _rest_hand(cx, fy, P, -side, phase, walking)
    other_sh = (cx - side * 0.15 * P + lx, sh_y + 0.03 * P)
    rim: Point | None = None
    if a.basket is not None:
        rim, half = _basket_geom(cx, fy + top, P, side, phase, walking)
        n_prev = len(a.basket_items)
        for j, col in enumerate(a.basket_items):
            bx = rim[0] + (j - (n_prev - 1) / 2) * 0.12 * P - side * 0.03 * P
            _draw_item(pt, bx, rim[1] - 0.05 * P * 0 - 0.1 * ih, iw * 0.9, ih * 0.9, col)
    # the target item: on the shelf, in the basket, or in the hand (drawn after the arm)
    sx0, sy0, sx1, sy1 = slot.x0, slot.y0, slot.x1, slot.y1
    item_centre: Point | None = None
    if state == "shelf":
        item_centre = ((sx0 + sx1) / 2, (sy0 + sy1) / 2)
        if not hide_item:
            _draw_item(pt, *item_centre, iw, ih, ep.item_colour)
    elif state == "basket" and rim is not None:
        item_centre = (rim[0] + side * 0.03 * P, rim[1] - 0.25 * ih)
        if not hide_item:
            _draw_item(pt, *item_centre, iw, ih, ep.item_colour)
    if rim is not None and a.basket is not None:
        _, half = _basket_geom(cx, fy + top, P, side, phase, walking)
        bcol = a.basket
        pt.line(other_hand, (rim[0] - half * 0.8, rim[1]), 0.02 * P, _scale(bcol, 0.8))
        pt.line(other_hand, (rim[0] + half * 0.8, rim[1]), 0.02 * P, _scale(bcol, 0.8))
        pt.poly(
            [
                (rim[0] - half, rim[1]),
                (rim[0] + half, rim[1]),
                (rim[0] + half * 0.85, rim[1] + 0.16 * P),
                (rim[0] - half * 0.85, rim[1] + 0.16 * P),
            ],
            bcol,
        )
        for j in (1, 2):
            yy = rim[1] + j * 0.055 * P
            pt.line((rim[0] - half * 0.95, yy), (rim[0] + half * 0.95, yy), 0.012 * P, _scale(bcol, 0.6))
    pt.line(other_sh, _lerp(other_sh, other_hand, 0.5), 0.085 * P, sleeve)
    pt.line(_lerp(other_sh, other_hand, 0.5), other_hand, 0.075 * P, sleeve)
    pt.circle(other_hand, 0.04 * P, a.skin)
    # head: hair cap and face shifted by the head turn
    turn = _interp_keys(ep.head_keys, t)
    hx, hy, r = cx + 1.4 * lx, b["head_y"] + top, b["head_r"]
    pt.line((hx, hy + r * 0.8), (cx + lx, sh_y + 0.01 * P), 0.06 * P, a.skin)  # neck
    pt.circle((hx, hy), r, a.hair)
    pt.ellipse((hx + turn * 0.38 * r, hy + 0.18 * r), r * (0.78 - 0.22 * abs(turn)), r * 0.8, a.skin)
    for e in (-1, 1):
        ex = hx + turn * 0.55 * r + e * 0.3 * r * (1 - 0.45 * abs(turn))
        pt.circle((ex, hy + 0.1 * r), max(0.6, 0.1 * r), (30, 30, 30))
    # acting arm (shoulder -> elbow -> hand) and the item in the hand
    sh = (cx + side * 0.15 * P + lx, sh_y + 0.03 * P)
    elbow = _elbow(sh, hand, 0.21 * P, side)
    pt.line(sh, elbow, 0.085 * P, sleeve)
    pt.line(elbow, hand, 0.075 * P, sleeve)
    pt.circle(hand, 0.04 * P, a.skin)
    visible = state in ("shelf", "basket")
    if state == "hand" and item_scale > 0.0:
        item_centre = (hand[0], hand[1] - 0.2 * ih)
        if item_scale > 0.2:
            visible = True
            if not hide_item:
                _draw_item(pt, *item_centre, iw * item_scale, ih * item_scale, ep.item_colour)
        else:
            item_centre = None
    elif state == "hand":
        item_centre = None
    box = None
    if item_centre is not None and visible:
        box = pt.bbox(
            item_centre[0] - iw / 2, item_centre[1] - ih / 2, item_centre[0] + iw / 2, item_centre[1] + ih / 2
        )
    pbox = pt.bbox(cx - 0.35 * P, fy - P, cx + 0.35 * P, fy)
    return PoseInfo(item_state=state, item_visible=visible, item_box=box, person_box=pbox)


def _elbow(sh: Point, hand: Point, seg: float, side: int) -> Point:
    dx, dy = hand[0] - sh[0], hand[1] - sh[1]
    d = math.hypot(dx, dy)
    mid = (sh[0] + dx / 2, sh[1] + dy / 2)
    if d >= 2 * seg or d < 1e-6:
        return mid
    off = math.sqrt(seg * seg - (d / 2) ** 2)
    nx, ny = -dy / d, dx / d
    c1 = (mid[0] + nx * off, mid[1] + ny * off)
    c2 = (mid[0] - nx * off, mid[1] - ny * off)
    score = lambda c: c[1] + 0.8 * side * (c[0] - sh[0])  # noqa: E731 - elbows point down and outward
    return c1 if score(c1) >= score(c2) else c2


# --------------------------------------------------------------------------------------------------
# Frame rendering


class SceneRenderer:
    """Renders frames of one scene: cached background + one person + lighting LUT + sensor noise."""

    def __init__(self, scene: Scene, noise_seed: int) -> None:
        self.scene = scene
        self.bg = _render_background(scene, with_items=True)
        self.bg_empty = _render_background(scene, with_items=False)
        self._pos, self._neg = _noise_bank(
            scene.height, scene.width, max(1, min(4, round(scene.noise_sigma)))
        )
        self._rng = np.random.default_rng(noise_seed)
        self._shadow = _scale(scene.floor, 0.72)
        self._probe = _Painter(self.bg, scene.homography, scene.scale)
        self._lut_key: float | None = None
        self._lut = np.zeros((256, 1, 3), np.uint8)
        self._lit_bg = self.bg
        self._lit_empty = self.bg_empty
        self._colour_cache: dict[Colour, Colour] = {}

    def _relight(self, t: float) -> None:
        """Lighting is pointwise, so it is applied to the cached backgrounds and to each drawn colour
        instead of to every frame; a drifting light re-lights the background only when it has changed."""
        light = self.scene.lighting
        key = (
            0.0
            if light.drift_amp == 0
            else round(
                light.drift_amp * math.sin(2 * math.pi * t / light.drift_period_s + light.drift_phase), 3
            )
        )
        if key == self._lut_key:
            return
        self._lut_key = key
        lut = light.lut(t)
        if np.array_equal(lut, self._lut):
            return
        self._lut = lut
        self._lit_bg = cv2.LUT(self.bg, lut)
        self._lit_empty = cv2.LUT(self.bg_empty, lut)
        self._colour_cache = {}

    def _light_colour(self, c: Colour) -> Colour:
        out = self._colour_cache.get(c)
        if out is None:
            lut = self._lut
            out = (int(lut[c[0], 0, 0]), int(lut[c[1], 0, 1]), int(lut[c[2], 0, 2]))
            self._colour_cache[c] = out
        return out

    def slot_box(self, index: int) -> tuple[int, int, int, int]:
        """Output-pixel box of a shelf slot."""
        s = self.scene.slots[index]
        return self._probe.bbox(s.x0, s.y0, s.x1, s.y1)

    def empty_slot(self, index: int) -> None:
        """Permanently remove a shelf item from the background (it was taken)."""
        x0, y0, x1, y1 = self.slot_box(index)
        self.bg[y0:y1, x0:x1] = self.bg_empty[y0:y1, x0:x1]
        if self._lit_bg is not self.bg:
            self._lit_bg[y0:y1, x0:x1] = self._lit_empty[y0:y1, x0:x1]

    def frame(
        self, t: float, episode: Episode | None = None, t_episode: float = 0.0, *, hide_item: bool = False
    ) -> tuple[np.ndarray, PoseInfo | None]:
        """One BGR frame at stream time ``t``; ``episode`` (if any) is drawn at its own time ``t_episode``."""
        sc = self.scene
        self._relight(t)
        img = self._lit_bg.copy()
        info = None
        if episode is not None and 0.0 <= t_episode <= episode.t_exit:
            x0, y0, x1, y1 = self.slot_box(episode.slot)
            img[y0:y1, x0:x1] = self._lit_empty[y0:y1, x0:x1]
            pt = _Painter(img, sc.homography, sc.scale, self._light_colour)
            info = _draw_person(
                pt, episode, t_episode, sc.slots[episode.slot], self._shadow, hide_item=hide_item
            )
        k = int(self._rng.integers(_NOISE_TILES))
        oy, ox = (int(v) for v in self._rng.integers(_NOISE_PAD, size=2))
        h, w = sc.height, sc.width
        cv2.add(img, self._pos[k, oy : oy + h, ox : ox + w], dst=img)
        cv2.subtract(img, self._neg[k, oy : oy + h, ox : ox + w], dst=img)
        return img, info


# --------------------------------------------------------------------------------------------------
# Short training windows


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


_LABELS: tuple[str, ...] = ("shoplifting", "normal")


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


def render_window(
    label: Label,
    seed: int,
    *,
    width: int = 320,
    height: int = 180,
    fps: float = 15.0,
    duration_s: float = 4.0,
    hide_item: bool = False,
    scene_seed: int | None = None,
) -> tuple[np.ndarray, WindowInfo]:
    """``render_episode_window`` plus how it was made (``hide_item`` renders the same window without the
    target item, so a test can measure exactly what the item contributes)."""
    if label not in _LABELS:
        raise ValueError(f"label must be one of {_LABELS}, got {label!r}")
    if width < 16 or height < 16 or fps <= 0 or duration_s <= 0:
        raise ValueError("width/height must be >= 16 and fps/duration_s > 0")
    code = _LABELS.index(label)
    rng = np.random.default_rng(_sub_seed(seed, code, 0xE915))
    if scene_seed is None:
        scene_seed = _sub_seed(seed, code, 0x5CE7E)
    scene = make_scene(scene_seed, width, height)
    if label == "shoplifting":
        kind, mode = "concealment", "act"
    else:
        r = rng.random()
        if r < 0.3:
            kind, mode = "normal_pickup", "act"
        elif r < 0.5:
            kind, mode = "put_back", "act"
        elif r < 0.75:
            kind, mode = ("normal_pickup" if rng.random() < 0.6 else "put_back"), "episode"
        else:
            kind, mode = "concealment", ("before_act" if rng.random() < 0.5 else "after_act")
    ep = plan_episode(scene, kind, rng)
    picked = _pick_window(ep, mode, duration_s, rng)
    if picked is None:  # too long a window to avoid the concealment: use a normal episode instead
        kind = "normal_pickup"
        ep = plan_episode(scene, kind, rng)
        picked = _pick_window(ep, "episode", duration_s, rng)
    assert picked is not None
    mode, start = picked
    n = max(1, round(duration_s * fps))
    renderer = SceneRenderer(scene, noise_seed=_sub_seed(seed, code, 0x0153))
    frames = np.empty((n, height, width, 3), np.uint8)
    states: list[str] = []
    visible: list[bool] = []
    boxes: list[tuple[int, int, int, int] | None] = []
    for i in range(n):
        frames[i], info = renderer.frame(i / fps, ep, start + i / fps, hide_item=hide_item)
        if info is None and (start + i / fps < 0 or kind == "put_back"):  # the item is on the shelf
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
    info_w = WindowInfo(
        label=label,
        episode_kind=kind,
        mode=mode,
        scene_seed=scene_seed,
        window_start_s=start,
        act_start_s=ep.act_start - start,
        motion_start_s=ep.motion_start - start,
        act_end_s=ep.act_end - start,
        conceal_target=ep.conceal_target,
        item_state=tuple(states),
        item_visible=tuple(visible),
        item_boxes=tuple(boxes),
    )
    return frames, info_w


def render_episode_window(
    label: Literal["shoplifting", "normal"],
    seed: int,
    *,
    width: int = 320,
    height: int = 180,
    fps: float = 15.0,
    duration_s: float = 4.0,
) -> np.ndarray:
    """(T,H,W,3) uint8 BGR: a short training video. For "shoplifting", the window holds the hand carrying the item
    to the body and the item vanishing there, with 0.3 s either side, at a random offset (the reach and
    look-around before it may be cut off, as in a stream window). For "normal", a window at a
    random offset of a normal episode (pick-up to basket, put-back, walking, browsing) OR of a shoplifting episode that
    does not overlap its concealment act at all (walking in/out) -- so the model learns the act, not the person."""
    frames, _ = render_window(label, seed, width=width, height=height, fps=fps, duration_s=duration_s)
    return frames


def _open_writer(path: Path, fps: float, width: int, height: int) -> cv2.VideoWriter:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), float(fps), (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot open a mp4v video writer for {path}")
    return writer


def write_dataset(
    out_dir: Path,
    per_class: int,
    seed: int = 0,
    *,
    width: int = 320,
    height: int = 180,
    fps: float = 15.0,
    duration_s: float = 4.0,
    progress: bool = True,
    cameras: int | None = None,
    store_seed: int = 0,
) -> Path:
    """With ``cameras``, every video is filmed by one of that many fixed camera views of one store
    (``camera_scene_seed(store_seed, k)``), as a deployment's own footage is; without it, each video has
    a view of its own.

    Writes out_dir/shoplifting/*.mp4 and out_dir/normal/*.mp4 (cv2.VideoWriter fourcc 'mp4v'; H.264 is not
    available in opencv-python here) plus out_dir/manifest.json (seed, per-file label and params). Shows a tqdm
    progress bar when progress=True. Each video is one file; names like shoplifting/sl_00012.mp4."""
    from tqdm import tqdm

    if per_class < 0:
        raise ValueError("per_class must be >= 0")
    out_dir = Path(out_dir)
    prefixes = {"shoplifting": "sl", "normal": "nm"}
    for label in _LABELS:
        (out_dir / label).mkdir(parents=True, exist_ok=True)
    files: list[dict[str, object]] = []
    n_frames = max(1, round(duration_s * fps))
    with tqdm(total=2 * per_class, desc="scenes", unit="video", disable=not progress) as bar:
        for i in range(per_class):
            for code, label in enumerate(_LABELS):
                vseed = _sub_seed(seed, code, i, 0xDA7A)
                # the view is drawn from the video's own seed, independent of its label
                view = None if not cameras else camera_scene_seed(store_seed, vseed % cameras)
                frames, info = render_window(
                    cast(Label, label), vseed, width=width, height=height, fps=fps, duration_s=duration_s,
                    scene_seed=view,
                )
                rel = f"{label}/{prefixes[label]}_{i:05d}.mp4"
                writer = _open_writer(out_dir / rel, fps, width, height)
                try:
                    for f in frames:
                        writer.write(f)
                finally:
                    writer.release()
                files.append({"path": rel, "label": label, "seed": vseed, **info.summary()})
                bar.update(1)
    manifest = {
        "generator": "common.scenes",
        "seed": seed,
        "per_class": per_class,
        "cameras": cameras,
        "store_seed": store_seed if cameras else None,
        "width": width,
        "height": height,
        "fps": fps,
        "duration_s": duration_s,
        "frames_per_video": n_frames,
        "labels": list(_LABELS),
        "files": files,
    }
    path = out_dir / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2))
    return path


# --------------------------------------------------------------------------------------------------
# Long camera streams


@dataclass(frozen=True, eq=False)
class StreamPlan:
    """A stream's scene, its episodes with their start times, and the ground truth."""

    scene: Scene
    episodes: tuple[Episode, ...]
    starts: tuple[float, ...]
    truth: GroundTruth
    noise_seed: int = field(default=0)


def camera_scene_seed(store_seed: int, camera_index: int) -> int:
    """The scene seed of one fixed camera view of a synthetic store (shared by datasets and streams)."""
    return _sub_seed(store_seed, camera_index, 0xCA3E7A)


def plan_stream(
    seed: int,
    *,
    scene_seed: int | None = None,
    duration_s: float,
    incidents: int,
    normal_shoppers: int,
    fps: float = 15.0,
    width: int = 640,
    height: int = 360,
) -> StreamPlan:
    """Place the episodes of a stream in time (seeded order, >= STILL_GAP_S of empty aisle around each)."""
    if incidents < 0 or normal_shoppers < 0:
        raise ValueError("incidents and normal_shoppers must be >= 0")
    if fps <= 0 or duration_s <= 0 or width < 16 or height < 16:
        raise ValueError("fps and duration_s must be > 0, width/height >= 16")
    rng = np.random.default_rng(_sub_seed(seed, 0x57EA))
    if scene_seed is None:
        scene_seed = _sub_seed(seed, 0x5CE7E, 1)
    scene = make_scene(scene_seed, width, height)
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
    need = STILL_GAP_S * (len(episodes) + 1) + sum(ep.duration for ep in episodes)
    if need > duration_s:
        raise ValueError(
            f"{incidents} incidents + {normal_shoppers} normal shoppers need at least {need:.1f} s "
            f"(episodes ~8-14 s each, {STILL_GAP_S} s still gaps), got duration_s={duration_s}"
        )
    slack = (duration_s - need) * rng.dirichlet(np.ones(len(episodes) + 1))
    starts: list[float] = []
    events: list[Event] = []
    t = STILL_GAP_S + float(slack[0])
    for i, ep in enumerate(episodes):
        starts.append(t)
        events.append(Event(ep.kind, t + ep.act_start, t + ep.act_end, t, t + ep.t_exit))
        t += ep.duration + STILL_GAP_S + float(slack[i + 1])
    truth = GroundTruth(
        fps=float(fps),
        width=width,
        height=height,
        duration_s=float(duration_s),
        seed=seed,
        incidents=tuple(e for e in events if e.kind == "concealment"),
        normal_events=tuple(e for e in events if e.kind != "concealment"),
    )
    return StreamPlan(scene, tuple(episodes), tuple(starts), truth, noise_seed=_sub_seed(seed, 0x0153))


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


def render_stream(
    seed: int,
    *,
    scene_seed: int | None = None,
    duration_s: float,
    incidents: int,
    normal_shoppers: int,
    fps: float = 15.0,
    width: int = 640,
    height: int = 360,
) -> tuple[Iterator[np.ndarray], GroundTruth]:
    """A long camera stream: still periods (>= 3 s of empty aisle between episodes, and at the start), normal shoppers
    and concealment incidents in a seeded random order, one person at a time. Returns a frame iterator (lazy, to
    keep memory flat) and the ground truth."""
    plan = plan_stream(
        seed,
        scene_seed=scene_seed,
        duration_s=duration_s,
        incidents=incidents,
        normal_shoppers=normal_shoppers,
        fps=fps,
        width=width,
        height=height,
    )
    return iter_stream_frames(plan), plan.truth


def write_stream(
    path: Path,
    *,
    duration_s: float,
    seed: int,
    incidents: int,
    normal_shoppers: int,
    fps: float = 15.0,
    width: int = 640,
    height: int = 360,
    progress: bool = False,
    scene_seed: int | None = None,
) -> GroundTruth:
    """Writes the stream video (mp4v) and a sidecar `path.with_suffix('.truth.json')`.  ``scene_seed``
    films it with a given camera view (see ``camera_scene_seed``); by default the view follows ``seed``."""
    from tqdm import tqdm

    path = Path(path)
    frames, truth = render_stream(
        seed,
        scene_seed=scene_seed,
        duration_s=duration_s,
        incidents=incidents,
        normal_shoppers=normal_shoppers,
        fps=fps,
        width=width,
        height=height,
    )
    writer = _open_writer(path, fps, width, height)
    try:
        total = round(duration_s * fps)
        for f in tqdm(frames, total=total, desc="stream", unit="frame", disable=not progress):
            writer.write(f)
    finally:
        writer.release()
    path.with_suffix(".truth.json").write_text(truth.to_json())
    return truth
