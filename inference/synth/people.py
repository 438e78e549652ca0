"""People: what a shopper looks like and what they do (the planned episode of one person).

Cartoon people walk in, take an item from the shelf and either put it into the basket they carry
(normal), look at it and put it back (normal), or look around and hide it in their jacket, pocket or bag
(concealment) before leaving by the exit.  An episode is planned from a seeded generator once; drawing it
at any time is deterministic (see ``inference.synth.pose``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from inference.synth.layout import Scene, Slot
from inference.synth.paint import Colour, Point, hsv_colour, scale_colour
from inference.synth.truth import EVENT_KINDS

VANISH_S = 0.25  # how long a concealed item takes to shrink out of sight at the body


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
    return hsv_colour(rng.uniform(0, 180), rng.uniform(20, 150), rng.uniform(45, 190))


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


# --------------------------------------------------------------------------------------------------
# Body geometry (shared by planning and drawing)


def body(ep: Episode) -> dict[str, float]:
    """Height, feet line and the standing heights of shoulders, hips and head of the episode's person."""
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


def rest_hand(cx: float, fy: float, P: float, side: int, phase: float, walking: bool) -> Point:
    """Where the hand on ``side`` hangs (swinging while walking)."""
    swing = math.sin(phase) * 0.07 * P * side if walking else 0.0
    return cx + side * 0.2 * P + swing, fy - 0.42 * P


def basket_geom(
    cx: float, fy: float, P: float, side: int, phase: float, walking: bool
) -> tuple[Point, float]:
    """(basket rim centre, half width) for a basket held in the hand on ``-side``."""
    hx, hy = rest_hand(cx, fy, P, -side, phase, walking)
    return (hx - side * 0.05 * P, hy + 0.06 * P), 0.15 * P


def bag_geom(cx: float, fy: float, P: float, side: int) -> tuple[float, float, float, float]:
    """Canonical rectangle of a shoulder bag hanging on ``side``."""
    bx = cx + side * 0.2 * P
    return bx - 0.1 * P, fy - 0.50 * P, bx + 0.1 * P, fy - 0.33 * P


def walk_dir(a: float, b: float) -> int:
    """+1 when walking from ``a`` to ``b`` goes right, else -1."""
    return 1 if b > a else -1


# --------------------------------------------------------------------------------------------------
# Episode planning.  The helpers draw from ``rng`` in a fixed order: the same seed, the same episode.


class _Route(NamedTuple):
    side: int
    x_stand: float
    x_start: float
    x_end: float
    speed: float


@dataclass
class _Act:
    """The act's keyframes, in seconds from the person's arrival at the shelf."""

    keys: list[tuple[float, str, Point | None]] = field(default_factory=list)
    head: list[tuple[float, float]] = field(default_factory=list)
    lean: list[tuple[float, float]] = field(default_factory=list)
    dip: list[tuple[float, float]] = field(default_factory=list)
    t: float = 0.0  # the planning clock
    start: float = 0.0
    motion: float = 0.0
    end: float = 0.0
    stand: float = 0.0  # how long the person stands at the shelf
    conceal_target: str = ""

    def delay(self, extra: float) -> None:
        """Start everything ``extra`` seconds later (the person browses longer)."""
        self.keys = [(kt + extra, st, pnt) for kt, st, pnt in self.keys]
        self.head = [(ht + extra, hv) for ht, hv in self.head]
        self.lean = [(lt + extra, lv) for lt, lv in self.lean]
        self.dip = [(dt + extra, dv) for dt, dv in self.dip]
        self.start += extra
        self.end += extra
        self.motion += extra
        self.stand += extra


def _draw_actor(kind: str, H: float, rng: np.random.Generator) -> tuple[Actor, float]:
    """The person's looks and (height, feet line): (actor, feet_y)."""
    P = H * rng.uniform(0.6, 0.85)  # a close camera: people fill most of the frame height
    fy = H * rng.uniform(0.86, 0.97)
    jacket = _clothes(rng) if rng.random() < (0.65 if kind == "concealment" else 0.4) else None
    p_basket = {"normal_pickup": 1.0, "put_back": 0.6, "concealment": 0.45}[kind]
    basket = hsv_colour(rng.choice([0, 60, 110, 120, 170]), rng.uniform(150, 230), rng.uniform(90, 150))
    has_bag = rng.random() < (0.45 if kind == "concealment" else 0.25)
    n_prev = int(rng.integers(0, 3))
    actor = Actor(
        height=P,
        shirt=_clothes(rng),
        trousers=hsv_colour(rng.uniform(0, 180), rng.uniform(10, 120), rng.uniform(35, 130)),
        jacket=jacket,
        skin=_SKIN[int(rng.integers(len(_SKIN)))],
        hair=_HAIR[int(rng.integers(len(_HAIR)))],
        shoes=scale_colour(_HAIR[int(rng.integers(len(_HAIR)))], 0.7),
        basket=basket if rng.random() < p_basket else None,
        basket_items=tuple(
            hsv_colour(rng.uniform(0, 180), rng.uniform(200, 255), rng.uniform(200, 255))
            for _ in range(n_prev)
        ),
        bag=hsv_colour(rng.uniform(0, 30), rng.uniform(40, 160), rng.uniform(40, 110)) if has_bag else None,
    )
    return actor, fy


def _pick_slot(
    scene: Scene, shoulder_y: float, P: float, taken: frozenset[int], rng: np.random.Generator
) -> int:
    """A free slot near shoulder height, reachable with the person inside the frame."""
    W, H = float(scene.width), float(scene.height)
    want_y = shoulder_y - rng.uniform(-0.1, 0.15) * P
    cands = (
        [i for i, s in enumerate(scene.slots) if i not in taken and 0.3 * W < s.centre[0] < 0.7 * W]
        or [i for i in range(len(scene.slots)) if i not in taken]
        or list(range(len(scene.slots)))
    )
    best_dy = min(abs(scene.slots[i].centre[1] - want_y) for i in cands)
    near = [i for i in cands if abs(scene.slots[i].centre[1] - want_y) <= best_dy + 1e-6 + 0.02 * H]
    return int(near[int(rng.integers(len(near)))])


def _plan_route(kind: str, icx: float, W: float, P: float, rng: np.random.Generator) -> _Route:
    """Where the person enters, stands (beside the item) and leaves, and how fast they walk."""
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
    return _Route(side, x_stand, x_start, x_end, speed)


def _act_pickup(
    act: _Act, route: _Route, fy: float, P: float, item_h: float, rng: np.random.Generator
) -> None:
    """Carry the item from the shelf into the basket."""
    side, x_stand = route.side, route.x_stand
    rim, _ = basket_geom(x_stand, fy, P, side, 0.0, False)
    mid = (x_stand - side * 0.05 * P, fy - 0.6 * P)
    dur = rng.uniform(1.0, 1.5)
    act.motion = act.t
    act.keys.append((act.t + dur * 0.45, "hand", mid))
    act.t += dur
    act.keys.append((act.t, "basket", (rim[0], rim[1] - 0.35 * item_h)))
    act.end = act.t
    act.t += 0.2
    act.keys.append((act.t, "basket", (rim[0], rim[1] - 0.35 * item_h)))


def _act_put_back(
    act: _Act, route: _Route, fy: float, P: float, reach_pt: Point, rng: np.random.Generator
) -> None:
    """Hold the item up for a look, then put it back on the shelf."""
    look = (route.x_stand + route.side * 0.12 * P, fy - 0.74 * P)
    act.motion = act.t
    act.t += 0.6
    act.keys.append((act.t, "hand", look))
    act.t += rng.uniform(0.8, 1.4)
    act.keys.append((act.t, "hand", look))
    act.t += 0.6
    act.keys.append((act.t, "shelf", reach_pt))
    act.end = act.t
    act.t += 0.15
    act.keys.append((act.t, "shelf", reach_pt))


def _conceal_target(actor: Actor, route: _Route, fy: float, rng: np.random.Generator) -> tuple[str, Point]:
    """Where the item is hidden ("jacket", "pocket" or "bag") and the canonical point the hand goes to."""
    P, side, x_stand = actor.height, route.side, route.x_stand
    options = ["jacket"] if actor.jacket is not None else ["pocket"]
    if actor.bag is not None:
        options = [*options, "bag", "bag"]
    target = options[int(rng.integers(len(options)))]
    if target == "jacket":
        return target, (x_stand + side * 0.03 * P, fy - 0.64 * P)
    if target == "pocket":
        return target, (x_stand + side * 0.1 * P, fy - 0.45 * P)
    bx0, by0, bx1, _ = bag_geom(x_stand, fy, P, side)
    return target, ((bx0 + bx1) / 2, by0 + 0.02 * P)


def _look_around(act: _Act, t_look0: float, side: int) -> None:
    """A furtive look-around from ``t_look0`` to now: head and shoulders swing one way, then the other."""
    t = act.t
    first = -side * 1.0
    act.head += [
        (t_look0, side * 0.4),
        (t_look0 + (t - t_look0) * 0.3, first),
        (t_look0 + (t - t_look0) * 0.7, -first),
        (t, 0.0),
    ]
    act.lean += [
        (t_look0, 0.0),
        (t_look0 + (t - t_look0) * 0.3, first * 0.12),
        (t_look0 + (t - t_look0) * 0.7, -first * 0.12),
        (t, 0.0),
    ]


def _act_conceal(act: _Act, actor: Actor, route: _Route, fy: float, rng: np.random.Generator) -> None:
    """Hold the item at the chest, look around, then hide it in the jacket, pocket or bag."""
    P = actor.height
    chest = (route.x_stand + route.side * 0.2 * P, fy - 0.66 * P)
    act.conceal_target, tgt = _conceal_target(actor, route, fy, rng)
    act.t += rng.uniform(0.35, 0.5)
    act.keys.append((act.t, "hand", chest))
    t_look0 = act.t
    act.t += rng.uniform(0.6, 0.85)
    act.keys.append((act.t, "hand", chest))
    _look_around(act, t_look0, route.side)
    # the item is carried, still in full view, to the jacket/pocket/bag, pressed against it for a
    # moment, then vanishes there (shrinks over the last VANISH_S): a distinct, well-lit act
    dur = rng.uniform(0.6, 0.8)
    act.motion = act.t
    act.t += dur
    act.keys.append((act.t, "hand", tgt))
    act.t += rng.uniform(0.3, 0.4) + VANISH_S
    act.keys.append((act.t, "hidden", tgt))
    act.end = act.t
    act.t += 0.3
    act.keys.append((act.t, "hidden", tgt))
    # the body stoops over the hiding place while the item goes in, then straightens: a coarse,
    # whole-body cue that survives 64x64, where the item itself is a few pixels
    depth = rng.uniform(0.16, 0.24)
    act.dip += [(act.motion, 0.0), (act.motion + dur, depth), (act.end, depth), (act.t + 0.3, 0.0)]


def _plan_act(
    kind: str, actor: Actor, slot: Slot, route: _Route, fy: float, rng: np.random.Generator
) -> _Act:
    """Browse, reach for the item, do the act of ``kind`` and rest: the time at the shelf."""
    P = actor.height
    icx, icy = slot.centre
    reach_pt = (icx - route.side * 0.15 * (slot.x1 - slot.x0), icy + 0.05 * P)
    act = _Act()
    act.t = rng.uniform(0.3, 1.0)  # browse
    act.keys.append((act.t, "shelf", None))
    act.t += rng.uniform(0.5, 0.8)
    act.start = act.t
    act.keys.append((act.t, "hand", reach_pt))
    act.t += 0.1
    act.keys.append((act.t, "hand", reach_pt))
    if kind == "normal_pickup":
        _act_pickup(act, route, fy, P, slot.y1 - slot.y0, rng)
    elif kind == "put_back":
        _act_put_back(act, route, fy, P, reach_pt, rng)
    else:
        _act_conceal(act, actor, route, fy, rng)
    act.t += 0.5
    final_state = {"normal_pickup": "basket", "put_back": "shelf", "concealment": "hidden"}[kind]
    act.keys.append((act.t, final_state, None))
    act.t += rng.uniform(0.3, 1.0)
    act.stand = act.t
    return act


def _fit_duration(act: _Act, route: _Route) -> tuple[float, float, float]:
    """(walk in, walk out, speed) for an episode of 8-14 s: hurry up, or browse longer (delays ``act``)."""
    speed = route.speed
    walk_in = abs(route.x_stand - route.x_start) / speed
    walk_out = abs(route.x_end - route.x_stand) / speed
    total = walk_in + act.stand + walk_out
    if total > 14.0:  # hurry up
        k = max(0.35, (14.0 - act.stand) / (walk_in + walk_out))
        walk_in, walk_out, speed = walk_in * k, walk_out * k, speed / k
    elif total < 8.0:  # browse longer
        act.delay(8.0 - total)
    return walk_in, walk_out, speed


def _head_track(act: _Act, route: _Route, t_arrive: float, t_leave: float) -> tuple[tuple[float, float], ...]:
    """Head-turn keys over the episode: ahead while walking, at the shelf while there, then the act's."""
    off = t_arrive
    look_shelf = route.side * 0.45
    head_all = [
        (0.0, walk_dir(route.x_start, route.x_stand) * 0.6),
        (off - 0.3, walk_dir(route.x_start, route.x_stand) * 0.6),
        (off + 0.2, look_shelf),
    ]
    head_all += [(ht + off, hv) for ht, hv in act.head]
    head_all += [(t_leave - 0.4, head_all[-1][1]), (t_leave, walk_dir(route.x_stand, route.x_end) * 0.6)]
    head_all.sort(key=lambda kv: kv[0])
    return tuple(head_all)


def plan_episode(
    scene: Scene, kind: str, rng: np.random.Generator, *, taken: frozenset[int] = frozenset()
) -> Episode:
    """Plan one person episode of ``kind`` (enter, walk to the shelf, act, leave) in ``scene``."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown episode kind {kind!r}")
    W, H = float(scene.width), float(scene.height)
    actor, fy = _draw_actor(kind, H, rng)
    P = actor.height
    slot_i = _pick_slot(scene, fy - 0.79 * P, P, taken, rng)
    slot = scene.slots[slot_i]
    route = _plan_route(kind, slot.centre[0], W, P, rng)
    act = _plan_act(kind, actor, slot, route, fy, rng)
    walk_in, walk_out, speed = _fit_duration(act, route)
    off = t_arrive = walk_in
    t_leave = off + act.stand
    return Episode(
        kind=kind, actor=actor, slot=slot_i, feet_y=fy,
        x_start=route.x_start, x_stand=route.x_stand, x_end=route.x_end, side=route.side, speed=speed,
        t_arrive=t_arrive, t_leave=t_leave, t_exit=t_leave + walk_out,
        act_start=off + act.start, act_end=off + act.end,
        hand_keys=tuple((kt + off, st, pnt) for kt, st, pnt in act.keys),
        head_keys=_head_track(act, route, t_arrive, t_leave),
        conceal_target=act.conceal_target, motion_start=off + act.motion,
        item_colour=slot.colour, item_size=(slot.x1 - slot.x0, slot.y1 - slot.y0),
        lean_keys=tuple((lt + off, lv) for lt, lv in act.lean),
        dip_keys=tuple((dt + off, dv) for dt, dv in act.dip),
    )
