"""Posing and drawing a planned person at one moment: body, arms, head, basket, bag and the target item.

The discriminating cue (a bright item that vanishes at the torso vs. stays visible in the basket) is sized
to survive a 64x64 squash of the whole frame.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from inference.synth.layout import Slot
from inference.synth.paint import Colour, Painter, Point, draw_item, lerp, scale_colour, smooth
from inference.synth.people import VANISH_S, Actor, Episode, bag_geom, basket_geom, body, rest_hand, walk_dir


@dataclass(frozen=True)
class PoseInfo:
    """Where the target item is in one frame (debug/ground truth for tests)."""

    item_state: str  # "shelf" | "hand" | "basket" | "hidden" ("gone" in WindowInfo: left the view)
    item_visible: bool
    item_box: tuple[int, int, int, int] | None  # output pixels (x0, y0, x1, y1)
    person_box: tuple[int, int, int, int] | None


@dataclass(frozen=True)
class _Stance:
    """The body at one moment (canonical pixels)."""

    cx: float  # body centre line
    fy: float  # feet line
    P: float  # person height
    side: int  # the acting side
    phase: float  # walk phase
    walking: bool
    top: float  # vertical offset of the upper body (walk bob and stoop)
    dip: float  # how far the body stoops (0 when upright)
    lx: float  # sideways lean of the upper body
    sh_y: float  # shoulder line
    hip_y: float


def interp_keys(keys: tuple[tuple[float, float], ...], t: float) -> float:
    """Smoothly interpolated value of (time, value) keys at ``t`` (held before the first / after the last)."""
    if t <= keys[0][0]:
        return keys[0][1]
    for (t0, v0), (t1, v1) in itertools.pairwise(keys):
        if t <= t1:
            return v0 + (v1 - v0) * smooth((t - t0) / max(1e-6, t1 - t0))
    return keys[-1][1]


def _stance(ep: Episode, t: float) -> _Stance:
    """Body position, walk phase, bob, stoop and lean at episode time ``t``."""
    b = body(ep)
    P, fy = b["P"], b["fy"]
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
    dip = interp_keys(ep.dip_keys, t) * P if ep.dip_keys else 0.0
    top = -bob + dip
    lx = interp_keys(ep.lean_keys, t) * P if ep.lean_keys else 0.0  # upper-body lean (look-around)
    return _Stance(
        cx=cx,
        fy=fy,
        P=P,
        side=ep.side,
        phase=phase,
        walking=walking,
        top=top,
        dip=dip,
        lx=lx,
        sh_y=b["shoulder_y"] + top,
        hip_y=b["hip_y"] + top,
    )


def _acting_hand(ep: Episode, t: float, st: _Stance) -> tuple[Point, str]:
    """(acting hand point, target item state) at episode time ``t``, from the hand keys."""
    rest = rest_hand(st.cx, st.fy, st.P, st.side, st.phase, st.walking)
    keys = ep.hand_keys
    state = "shelf"
    hand: Point | None = None
    if t >= keys[0][0]:
        pts = [(kt, s, pnt if pnt is not None else rest) for kt, s, pnt in keys]
        if t >= pts[-1][0]:
            state = pts[-1][1]
        else:
            for (t0, s0, p0), (t1, _s1, p1) in itertools.pairwise(pts):
                if t < t1:
                    hand = lerp(p0, p1, smooth((t - t0) / max(1e-6, t1 - t0)))
                    state = s0
                    break
    if hand is None:
        hand = rest
    elif st.dip:
        hand = (hand[0], hand[1] + st.dip)
    return hand, state


def _vanish_scale(ep: Episode, t: float, state: str) -> float:
    """Size of a concealed item while it vanishes into the jacket/pocket/bag (the last VANISH_S of the act)."""
    if ep.kind == "concealment" and state == "hand":
        span_start = ep.act_end - VANISH_S
        if t > span_start:
            return max(0.0, 1.0 - (t - span_start) / max(1e-6, ep.act_end - span_start))
    return 1.0


def _draw_legs(pt: Painter, ep: Episode, st: _Stance, shadow: Colour) -> None:
    """Shadow, legs and shoes."""
    cx, fy, P = st.cx, st.fy, st.P
    pt.ellipse((cx, fy + 0.01 * P), 0.2 * P, 0.035 * P, shadow)
    swing = math.sin(st.phase) * 0.11 * P if st.walking else 0.0
    leg_t = 0.1 * P
    for s, sw in ((-1, swing), (1, -swing)):
        foot = (cx + s * 0.06 * P + sw, fy - 0.02 * P)
        pt.line((cx + s * 0.065 * P, st.hip_y + 0.02 * P), foot, leg_t, ep.actor.trousers)
        pt.ellipse(
            (foot[0] + walk_dir(ep.x_start, ep.x_end) * 0.02 * P, fy - 0.01 * P),
            0.055 * P,
            0.025 * P,
            ep.actor.shoes,
        )


def _draw_torso(pt: Painter, a: Actor, st: _Stance) -> None:
    """Shirt, open jacket (if any) and belt."""
    cx, P, lx, sh_y, hip_y = st.cx, st.P, st.lx, st.sh_y, st.hip_y
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
        scale_colour(a.trousers, 0.6),
    )  # belt


def _draw_bag(pt: Painter, bag: Colour, st: _Stance) -> None:
    """A bag on the acting side, its strap from the far shoulder."""
    cx, P, side = st.cx, st.P, st.side
    bx0, by0, bx1, by1 = bag_geom(cx, st.fy + st.top, P, side)
    pt.line((cx - side * 0.1 * P + st.lx, st.sh_y), ((bx0 + bx1) / 2, by0), 0.025 * P, scale_colour(bag, 0.7))
    pt.rect(bx0, by0, bx1, by1, bag)
    pt.rect(bx0, by0, bx1, by0 + 0.04 * P, scale_colour(bag, 0.7))


def _draw_basket(pt: Painter, bcol: Colour, rim: Point, half: float, hand: Point, P: float) -> None:
    """The basket hanging from ``hand``: handles, body and weave."""
    pt.line(hand, (rim[0] - half * 0.8, rim[1]), 0.02 * P, scale_colour(bcol, 0.8))
    pt.line(hand, (rim[0] + half * 0.8, rim[1]), 0.02 * P, scale_colour(bcol, 0.8))
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
        pt.line((rim[0] - half * 0.95, yy), (rim[0] + half * 0.95, yy), 0.012 * P, scale_colour(bcol, 0.6))


def _draw_arm(
    pt: Painter, sh: Point, elbow: Point, hand: Point, P: float, sleeve: Colour, skin: Colour
) -> None:
    """Upper arm, forearm and hand."""
    pt.line(sh, elbow, 0.085 * P, sleeve)
    pt.line(elbow, hand, 0.075 * P, sleeve)
    pt.circle(hand, 0.04 * P, skin)


def _draw_basket_side(
    pt: Painter, ep: Episode, st: _Stance, slot: Slot, state: str, *, hide_item: bool
) -> Point | None:
    """The basket (with what is already in it), the target item if it rests on the shelf or in the basket,
    and the arm that carries the basket.  Returns where the resting target item is drawn."""
    a, P, side = ep.actor, st.P, st.side
    iw, ih = ep.item_size
    sleeve = a.jacket if a.jacket is not None else a.shirt
    other_hand = rest_hand(st.cx, st.fy, P, -side, st.phase, st.walking)
    other_sh = (st.cx - side * 0.15 * P + st.lx, st.sh_y + 0.03 * P)
    rim: Point | None = None
    half = 0.0
    if a.basket is not None:
        rim, half = basket_geom(st.cx, st.fy + st.top, P, side, st.phase, st.walking)
        n_prev = len(a.basket_items)
        for j, col in enumerate(a.basket_items):
            bx = rim[0] + (j - (n_prev - 1) / 2) * 0.12 * P - side * 0.03 * P
            draw_item(pt, bx, rim[1] - 0.1 * ih, iw * 0.9, ih * 0.9, col)
    item_centre: Point | None = None
    if state == "shelf":
        item_centre = slot.centre
    elif state == "basket" and rim is not None:
        item_centre = (rim[0] + side * 0.03 * P, rim[1] - 0.25 * ih)
    if item_centre is not None and not hide_item:
        draw_item(pt, *item_centre, iw, ih, ep.item_colour)
    if rim is not None and a.basket is not None:
        _draw_basket(pt, a.basket, rim, half, other_hand, P)
    _draw_arm(pt, other_sh, lerp(other_sh, other_hand, 0.5), other_hand, P, sleeve, a.skin)
    return item_centre


def _draw_head(pt: Painter, ep: Episode, st: _Stance, t: float) -> None:
    """Neck, hair cap, and face and eyes shifted by the head turn."""
    b = body(ep)
    a, P = ep.actor, st.P
    turn = interp_keys(ep.head_keys, t)
    hx, hy, r = st.cx + 1.4 * st.lx, b["head_y"] + st.top, b["head_r"]
    pt.line((hx, hy + r * 0.8), (st.cx + st.lx, st.sh_y + 0.01 * P), 0.06 * P, a.skin)  # neck
    pt.circle((hx, hy), r, a.hair)
    pt.ellipse((hx + turn * 0.38 * r, hy + 0.18 * r), r * (0.78 - 0.22 * abs(turn)), r * 0.8, a.skin)
    for e in (-1, 1):
        ex = hx + turn * 0.55 * r + e * 0.3 * r * (1 - 0.45 * abs(turn))
        pt.circle((ex, hy + 0.1 * r), max(0.6, 0.1 * r), (30, 30, 30))


def draw_person(
    pt: Painter, ep: Episode, t: float, slot: Slot, shadow: Colour, *, hide_item: bool = False
) -> PoseInfo:
    """Draw the episode's person at episode time ``t`` (no-op outside the episode)."""
    a = ep.actor
    st = _stance(ep, t)
    P = st.P
    hand, state = _acting_hand(ep, t, st)
    iw, ih = ep.item_size
    item_scale = _vanish_scale(ep, t, state)
    _draw_legs(pt, ep, st, shadow)
    _draw_torso(pt, a, st)
    if a.bag is not None:
        _draw_bag(pt, a.bag, st)
    item_centre = _draw_basket_side(pt, ep, st, slot, state, hide_item=hide_item)
    _draw_head(pt, ep, st, t)
    # acting arm (shoulder -> elbow -> hand) and the item in the hand
    sh = (st.cx + st.side * 0.15 * P + st.lx, st.sh_y + 0.03 * P)
    sleeve = a.jacket if a.jacket is not None else a.shirt
    _draw_arm(pt, sh, _elbow(sh, hand, 0.21 * P, st.side), hand, P, sleeve, a.skin)
    visible = state in ("shelf", "basket")
    if state == "hand" and item_scale > 0.2:
        item_centre = (hand[0], hand[1] - 0.2 * ih)
        visible = True
        if not hide_item:
            draw_item(pt, *item_centre, iw * item_scale, ih * item_scale, ep.item_colour)
    elif state == "hand":
        item_centre = None
    box = None
    if item_centre is not None and visible:
        box = pt.bbox(
            item_centre[0] - iw / 2, item_centre[1] - ih / 2, item_centre[0] + iw / 2, item_centre[1] + ih / 2
        )
    pbox = pt.bbox(st.cx - 0.35 * P, st.fy - P, st.cx + 0.35 * P, st.fy)
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
