"""Passers-by: people who only walk through the view, alone or in crowds, near or far, at their own speed.

Real cameras see far more walking than handling: people crossing the aisle behind a shopper, a crowd
crossing a hall seen from above.  A model trained only on one shopper at a shelf learns nothing about
them and, on real footage, called people walking "shoplifting".  A :class:`Walker` is a person of any size
walking a straight line in any direction across the frame (its feet line moves too, so walks up and down
the image are possible); :meth:`Walker.at` poses them for one frame as an :class:`Episode` that
``SceneRenderer.frame(passers=...)`` draws.  :func:`hall_background` is an open floor (tiles, no shelves)
for crowd scenes seen from above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from inference.synth.layout import Scene
from inference.synth.paint import Colour
from inference.synth.people import Episode, plan_episode


@dataclass(frozen=True)
class Walker:
    """A person walking at constant velocity; ``x0, y0`` is where their feet are at time 0 (pixels)."""

    template: Episode  # looks (actor) and the slot it is bound to; never acts
    x0: float
    y0: float
    vx: float  # pixels per second
    vy: float

    def at(self, t: float) -> Episode:
        """The walker at time ``t`` as an episode posed at its arrival time: at its place, mid-stride
        by the distance walked so far, facing the way it walks."""
        x, y = self.x0 + self.vx * t, self.y0 + self.vy * t
        walked = math.hypot(self.vx, self.vy) * max(0.0, t + 10.0)  # + 10 s: strides already under way
        facing = 1.0 if self.vx >= 0 else -1.0
        ep = self.template
        # _stance at t == t_arrive: cx = x_stand, walking, stride phase from |x_stand - x_start|
        return replace(
            ep, feet_y=y, x_start=x - facing * walked, x_stand=x, x_end=x + facing, t_arrive=1.0, t_leave=1.0,
            t_exit=1.0 + 1e-6, act_start=1e6, act_end=1e6, motion_start=1e6,
            hand_keys=((1e6, "shelf", None),), head_keys=((0.0, 0.0),), lean_keys=(), dip_keys=(),
        )


def plan_walker(scene: Scene, rng: np.random.Generator, *, height: float, mid: tuple[float, float],
                heading: float, speed: float, at_s: float) -> Walker:
    """A walker of ``height`` pixels whose feet are at ``mid`` at time ``at_s``, heading ``heading`` radians
    (0: to the right, pi/2: down the image) at ``speed`` pixels per second; looks from the shopper generator."""
    template = plan_episode(scene, "normal_pickup", rng)
    actor = template.actor
    actor = replace(actor, height=float(height), basket=actor.basket if rng.random() < 0.35 else None,
                    basket_items=actor.basket_items if rng.random() < 0.35 else ())
    template = replace(template, actor=actor)
    vx, vy = speed * math.cos(heading), speed * math.sin(heading)
    return Walker(template, mid[0] - vx * at_s, mid[1] - vy * at_s, vx, vy)


def plan_crowd(scene: Scene, rng: np.random.Generator, count: int, duration_s: float, *,
               size: tuple[float, float], feet: tuple[float, float] = (0.3, 1.02),
               any_direction: float = 0.3) -> list[Walker]:
    """``count`` walkers on screen around the middle of a ``duration_s`` window: heights ``size`` (fractions
    of the frame height), feet lines in ``feet`` (fractions), mostly walking across the image (within 25°
    of horizontal), a share ``any_direction`` in any direction, at 0.3-1.6 body heights per second."""
    W, H = float(scene.width), float(scene.height)
    out = []
    for _ in range(count):
        P = H * float(rng.uniform(*size))
        if rng.random() < any_direction:
            heading = float(rng.uniform(0, 2 * math.pi))
        else:
            heading = float(rng.uniform(-0.44, 0.44)) + (math.pi if rng.random() < 0.5 else 0.0)
        mid = (float(rng.uniform(0.0, W)), float(H * rng.uniform(*feet)))
        out.append(plan_walker(scene, rng, height=P, mid=mid, heading=heading,
                               speed=P * float(rng.uniform(0.3, 1.6)), at_s=duration_s * float(rng.uniform(0.2, 0.8))))
    return out


def hall_background(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """An open floor filling the frame (the scene's floor colour, lightened, in tiles): a hall, a
    concourse or a store's open floor seen from above, with no shelf to act at."""
    W, H = scene.width, scene.height
    floor = np.array(scene.floor, np.float64)
    base = floor + (255.0 - floor) * rng.uniform(0.1, 0.75)
    img = np.empty((H, W, 3), np.uint8)
    img[:] = np.clip(base, 0, 255).astype(np.uint8)
    line: Colour = tuple(int(v) for v in np.clip(base * rng.uniform(0.78, 0.95), 0, 255))  # type: ignore[assignment]
    step = int(rng.integers(10, 34))
    ox, oy = (int(v) for v in rng.integers(0, step, size=2))
    for x in range(ox, W, step):
        cv2.line(img, (x, 0), (x, H - 1), line, 1)
    for y in range(oy, H, max(6, int(step * rng.uniform(0.5, 1.0)))):
        cv2.line(img, (0, y), (W - 1, y), line, 1)
    for _ in range(int(rng.integers(0, 8))):  # floor markings
        c = (int(rng.integers(0, W)), int(rng.integers(0, H)))
        cv2.circle(img, c, int(rng.integers(3, 9)), line, 1)
    return img
