"""The alert page's small chart: the probability of each clip of the camera around the alert, as inline SVG.

Drawn on the server (a few dozen points), so the page needs no charting script and works under a strict
Content-Security-Policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from alerts.desk.queries import ClipPoint

WIDTH, HEIGHT, PAD_X, PAD_Y = 560, 150, 34, 14


@dataclass(frozen=True)
class TimelineChart:
    width: int
    height: int
    line: str  # SVG polyline points
    dots: tuple[tuple[float, float, bool, str], ...]  # x, y, in the alert, tooltip
    threshold_y: float | None
    y_ticks: tuple[tuple[float, str], ...]
    x_labels: tuple[tuple[float, str], ...]
    empty: bool


def timeline_chart(points: Sequence[ClipPoint]) -> TimelineChart:
    if not points:
        return TimelineChart(WIDTH, HEIGHT, "", (), None, (), (), True)
    start, end = points[0].captured_at, points[-1].captured_at
    span = max((end - start).total_seconds(), 1.0)

    def x(point: ClipPoint) -> float:
        return PAD_X + (WIDTH - 2 * PAD_X) * (point.captured_at - start).total_seconds() / span

    def y(probability: float) -> float:
        return HEIGHT - PAD_Y - (HEIGHT - 2 * PAD_Y) * probability

    dots = tuple(
        (round(x(p), 1), round(y(p.probability), 1), p.in_alert,
         f"{p.captured_at:%H:%M:%S} p={p.probability:.2f}")
        for p in points
    )
    line = " ".join(f"{dx},{dy}" for dx, dy, _, _ in dots)
    ticks = tuple((round(y(v), 1), f"{v:.1f}") for v in (0.0, 0.5, 1.0))
    labels = ((PAD_X, f"{start:%H:%M:%S}"), (WIDTH - PAD_X, f"{end:%H:%M:%S}"))
    return TimelineChart(WIDTH, HEIGHT, line, dots, round(y(points[-1].threshold), 1), ticks, labels, False)
