"""Drawing primitives: colours, interpolation and a painter that draws through the camera homography.

Shapes are drawn with cv2 at sub-pixel precision (coordinates multiplied by ``2**SHIFT``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

SHIFT = 4  # cv2 sub-pixel drawing: coordinates are multiplied by 2**SHIFT
ONE = 1 << SHIFT

Colour = tuple[int, int, int]
Point = tuple[float, float]


def hsv_colour(h: float, s: float, v: float) -> Colour:
    """The BGR colour of an OpenCV HSV triple (hue in [0, 180))."""
    px = np.array([[[h % 180, s, v]]], dtype=np.uint8)
    b, g, r = cv2.cvtColor(px, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def scale_colour(c: Colour, k: float) -> Colour:
    """``c`` brightened (k > 1) or darkened (k < 1), clipped to [0, 255]."""
    return tuple(int(max(0, min(255, round(v * k)))) for v in c)  # type: ignore[return-value]


def smooth(x: float) -> float:
    """Smoothstep of ``x`` clipped to [0, 1]."""
    x = min(1.0, max(0.0, x))
    return x * x * (3.0 - 2.0 * x)


def lerp(a: Point, b: Point, k: float) -> Point:
    """The point a fraction ``k`` of the way from ``a`` to ``b``."""
    return a[0] + (b[0] - a[0]) * k, a[1] + (b[1] - a[1]) * k


class Painter:
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
        return (int((h[0] * x + h[1] * y + h[2]) / w * ONE), int((h[3] * x + h[4] * y + h[5]) / w * ONE))

    def circle(self, c: Point, r: float, col: Colour) -> None:
        cv2.circle(
            self.img, self.p(*c), max(ONE // 2, int(r * self.s * ONE)), self.c(col), -1, cv2.LINE_8, SHIFT
        )

    def ellipse(self, c: Point, ax: float, ay: float, col: Colour) -> None:
        axes = (max(1, int(ax * self.s * ONE)), max(1, int(ay * self.s * ONE)))
        cv2.ellipse(self.img, self.p(*c), axes, 0, 0, 360, self.c(col), -1, cv2.LINE_8, SHIFT)

    def line(self, a: Point, b: Point, thick: float, col: Colour) -> None:
        t = max(1, round(thick * self.s))
        cv2.line(self.img, self.p(*a), self.p(*b), self.c(col), t, cv2.LINE_8, SHIFT)

    def poly(self, pts: list[Point], col: Colour) -> None:
        arr = np.array([self.p(x, y) for x, y in pts], dtype=np.int32)
        cv2.fillConvexPoly(self.img, arr, self.c(col), cv2.LINE_8, SHIFT)

    def rect(self, x0: float, y0: float, x1: float, y1: float, col: Colour) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], col)

    def bbox(self, x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
        """Output-pixel bounding box (x0, y0, x1, y1), clipped to the image, of a canonical rectangle."""
        pts = [self.p(x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]
        hh, ww = self.img.shape[:2]
        xs = [q[0] / ONE for q in pts]
        ys = [q[1] / ONE for q in pts]
        return (
            max(0, math.floor(min(xs)) - 1),
            max(0, math.floor(min(ys)) - 1),
            min(ww, math.ceil(max(xs)) + 2),
            min(hh, math.ceil(max(ys)) + 2),
        )


def draw_item(pt: Painter, cx: float, cy: float, w: float, h: float, col: Colour) -> None:
    """A shop item centred on (cx, cy): a dark rim around a bright face."""
    pt.rect(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, scale_colour(col, 0.55))
    m = max(1.0, w * 0.1)
    pt.rect(cx - w / 2 + m, cy - h / 2 + m, cx + w / 2 - m, cy + h / 2 - m, col)
