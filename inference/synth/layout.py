"""The static part of a store view: layout, colours, camera, lighting and sensor noise.

A fixed camera looks at a shelf unit on the back wall, a checkout counter at one side and an exit at the
other.  The view is laid out in canonical coordinates (output pixels of an unmoved camera) and the camera
is a homography from them to the output pixels.  The static background is drawn once per scene (and
warped once by the homography).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import cv2
import numpy as np

from inference.synth.paint import Colour, Painter, Point, draw_item, hsv_colour, scale_colour
from inference.synth.seeds import sub_seed

NOISE_TILES = 4
NOISE_PAD = 8


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


# --------------------------------------------------------------------------------------------------
# Drawing a random scene (the helpers draw from ``rng`` in a fixed order: the same seed, the same view)


class _Shelf(NamedTuple):
    x0: float
    x1: float
    plank_ys: tuple[float, ...]
    slots: tuple[Slot, ...]
    item_w: float
    item_h: float


def _draw_colours(rng: np.random.Generator) -> tuple[Colour, Colour, Colour, Colour, Colour]:
    """Wall, floor, shelf back, shelf frame and counter colours."""
    wall = hsv_colour(rng.uniform(0, 180), rng.uniform(10, 60), rng.uniform(150, 215))
    floor = hsv_colour(rng.uniform(0, 180), rng.uniform(5, 50), rng.uniform(105, 175))
    shelf_back = hsv_colour(rng.uniform(0, 180), rng.uniform(10, 70), rng.uniform(60, 110))
    shelf_frame = hsv_colour(rng.uniform(10, 25), rng.uniform(20, 120), rng.uniform(150, 215))
    counter = hsv_colour(rng.uniform(0, 180), rng.uniform(30, 140), rng.uniform(80, 160))
    return wall, floor, shelf_back, shelf_frame, counter


def _plan_shelf(rng: np.random.Generator, W: float, H: float) -> _Shelf:
    """The shelf unit's extent, its planks and the items stocked on them."""
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
                col = hsv_colour(
                    rng.choice(hues) + rng.uniform(-6, 6), rng.uniform(200, 255), rng.uniform(205, 255)
                )
                slots.append(Slot(x, py - h, x + w, py, col))
            x += w + item_w * rng.uniform(0.3, 0.55)
    return _Shelf(shelf_x0, shelf_x1, plank_ys, tuple(slots), item_w, item_h)


def _place_camera(rng: np.random.Generator, W: float, H: float) -> tuple[bool, float, np.ndarray]:
    """(mirror, zoom, homography): a slightly zoomed, rotated, tilted and shifted camera."""
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
    return mirror, zoom, hom


def _draw_lighting(rng: np.random.Generator, drift: bool | None) -> Lighting:
    """The view's lighting; ``drift=None`` lets the seed decide whether it drifts."""
    if drift is None:
        drift = bool(rng.random() < 0.4)
    return Lighting(
        gain=rng.uniform(0.75, 1.2),
        contrast=rng.uniform(0.8, 1.15),
        bias=rng.uniform(-15, 15),
        cast=(rng.uniform(0.88, 1.12), rng.uniform(0.92, 1.08), rng.uniform(0.88, 1.12)),
        drift_amp=rng.uniform(0.02, 0.06) if drift else 0.0,
        drift_period_s=rng.uniform(40, 120),
        drift_phase=rng.uniform(0, 2 * math.pi),
    )


def make_scene(seed: int, width: int = 640, height: int = 360, *, drift: bool | None = None) -> Scene:
    """Draw a random store view: colours, shelf layout, camera placement, lighting and sensor noise."""
    rng = np.random.default_rng(sub_seed(seed, 0x5CE))
    W, H = float(width), float(height)
    wall, floor, shelf_back, shelf_frame, counter = _draw_colours(rng)
    shelf = _plan_shelf(rng, W, H)
    mirror, zoom, hom = _place_camera(rng, W, H)
    lighting = _draw_lighting(rng, drift)
    return Scene(
        seed=seed, width=width, height=height, mirror=mirror, zoom=zoom, homography=hom,
        wall=wall, floor=floor, shelf_back=shelf_back, shelf_frame=shelf_frame, counter=counter,
        shelf_x0=shelf.x0, shelf_x1=shelf.x1, plank_ys=shelf.plank_ys, slots=shelf.slots,
        item_w=shelf.item_w, item_h=shelf.item_h,
        lighting=lighting, noise_sigma=float(rng.uniform(1.0, 4.0)),
    )


# --------------------------------------------------------------------------------------------------
# The background image


def _paint_wall_and_floor(img: np.ndarray, pt: Painter, scene: Scene) -> None:
    """Shaded wall and tiled floor meeting at the horizon, skirting board and ceiling lights."""
    W, H = scene.width, scene.height
    horizon = int(H * 0.60)
    shade = np.linspace(0.88, 1.05, horizon, dtype=np.float32)[:, None, None]
    img[:horizon] = np.clip(np.array(scene.wall, np.float32) * shade, 0, 255).astype(np.uint8)
    fshade = np.linspace(0.9, 1.08, H - horizon, dtype=np.float32)[:, None, None]
    img[horizon:] = np.clip(np.array(scene.floor, np.float32) * fshade, 0, 255).astype(np.uint8)
    grout = scale_colour(scene.floor, 0.82)
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
    pt.rect(0, horizon - H * 0.012, W, horizon, scale_colour(scene.wall, 0.6))  # skirting board
    for lx in (0.18, 0.5, 0.82):  # ceiling lights
        pt.rect(W * (lx - 0.07), 0, W * (lx + 0.07), H * 0.025, (245, 250, 250))


def _paint_counter_and_exit(pt: Painter, scene: Scene) -> None:
    """Checkout counter with its till (canonical left) and the exit door (canonical right)."""
    W, H = scene.width, scene.height
    pt.rect(0, H * 0.47, W * 0.19, H * 0.52, scale_colour(scene.counter, 1.3))
    pt.rect(0, H * 0.52, W * 0.17, H * 0.80, scene.counter)
    pt.rect(W * 0.17, H * 0.50, W * 0.19, H * 0.80, scale_colour(scene.counter, 0.7))
    pt.rect(W * 0.06, H * 0.40, W * 0.12, H * 0.47, (40, 40, 45))  # till
    pt.rect(W * 0.07, H * 0.33, W * 0.11, H * 0.39, (60, 60, 60))
    pt.rect(W * 0.075, H * 0.34, W * 0.105, H * 0.38, (200, 160, 90))  # till screen
    pt.rect(W * 0.84, H * 0.17, W * 0.98, H * 0.60, (70, 70, 75))  # door frame
    pt.rect(W * 0.855, H * 0.20, W * 0.965, H * 0.60, (235, 225, 205))  # daylight
    pt.rect(W * 0.87, H * 0.09, W * 0.95, H * 0.15, (60, 170, 40))  # exit sign
    pt.rect(W * 0.885, H * 0.11, W * 0.935, H * 0.13, (225, 245, 225))
    pt.rect(W * 0.83, H * 0.86, W * 1.0, H * 0.97, scale_colour(scene.floor, 0.55))  # door mat


def _paint_shelf(pt: Painter, scene: Scene, with_items: bool) -> None:
    """The shelf unit: back panel, posts, planks and (optionally) the stocked items."""
    W, H = scene.width, scene.height
    x0, x1 = scene.shelf_x0, scene.shelf_x1
    top = H * 0.07
    pt.rect(x0, top, x1, H * 0.60, scene.shelf_back)
    post = W * 0.012
    pt.rect(x0 - post, top - H * 0.01, x0, H * 0.60, scene.shelf_frame)
    pt.rect(x1, top - H * 0.01, x1 + post, H * 0.60, scene.shelf_frame)
    for py in scene.plank_ys:
        pt.rect(x0, py, x1, py + H * 0.016, scene.shelf_frame)
        pt.rect(x0, py + H * 0.016, x1, py + H * 0.022, scale_colour(scene.shelf_frame, 0.6))
    if with_items:
        for s in scene.slots:
            draw_item(pt, *s.centre, s.x1 - s.x0, s.y1 - s.y0, s.colour)


def render_background(scene: Scene, with_items: bool) -> np.ndarray:
    """The static view, drawn canonically and warped once by the camera homography."""
    W, H = scene.width, scene.height
    img = np.empty((H, W, 3), np.uint8)
    pt = Painter(img, np.eye(3), 1.0)
    _paint_wall_and_floor(img, pt, scene)
    _paint_counter_and_exit(pt, scene)
    _paint_shelf(pt, scene, with_items)
    return cv2.warpPerspective(
        img, scene.homography, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


@lru_cache(maxsize=8)
def noise_bank(height: int, width: int, sigma: int) -> tuple[np.ndarray, np.ndarray]:
    """Precomputed gaussian noise tiles as (positive part, negative part) uint8, padded for random offsets."""
    rng = np.random.default_rng(sub_seed(height, width, sigma, 0x0153))
    shape = (NOISE_TILES, height + NOISE_PAD, width + NOISE_PAD, 3)
    n = rng.normal(0.0, float(sigma), size=shape).astype(np.float32)
    n = np.rint(n)
    pos = np.clip(n, 0, 255).astype(np.uint8)
    neg = np.clip(-n, 0, 255).astype(np.uint8)
    return pos, neg
