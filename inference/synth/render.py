"""Per-frame rendering of one store view.

Speed: a frame is a copy of the scene's cached background, a few cv2 primitives for the person, a
per-channel lighting LUT (applied to the cached background and to each drawn colour, not to the frame)
and sensor noise picked from precomputed tiles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from inference.synth.layout import NOISE_PAD, NOISE_TILES, Scene, noise_bank, render_background
from inference.synth.paint import Colour, Painter, scale_colour
from inference.synth.people import Episode
from inference.synth.pose import PoseInfo, draw_person


class SceneRenderer:
    """Renders frames of one scene: cached background + one person + lighting LUT + sensor noise."""

    def __init__(self, scene: Scene, noise_seed: int) -> None:
        self.scene = scene
        self.bg = render_background(scene, with_items=True)
        self.bg_empty = render_background(scene, with_items=False)
        self._pos, self._neg = noise_bank(scene.height, scene.width, max(1, min(4, round(scene.noise_sigma))))
        self._rng = np.random.default_rng(noise_seed)
        self._shadow = scale_colour(scene.floor, 0.72)
        self._probe = Painter(self.bg, scene.homography, scene.scale)
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

    def set_background(self, image: np.ndarray) -> None:
        """Film another place with this scene's camera and sensor (e.g. an open hall, ``inference.synth.crowd``):
        ``image`` (the scene's size, BGR uint8) replaces both backgrounds; call before the first frame."""
        if image.shape != self.bg.shape or image.dtype != np.uint8:
            raise ValueError(f"background must be uint8 {self.bg.shape}, got {image.dtype} {image.shape}")
        self.bg = image.copy()
        self.bg_empty = image.copy()
        self._lut_key = None
        self._lut = np.zeros((256, 1, 3), np.uint8)
        self._lit_bg = self.bg
        self._lit_empty = self.bg_empty

    def frame(
        self, t: float, episode: Episode | None = None, t_episode: float = 0.0, *, hide_item: bool = False,
        passers: Sequence[Episode] = (),
    ) -> tuple[np.ndarray, PoseInfo | None]:
        """One BGR frame at stream time ``t``; ``episode`` (if any) is drawn at its own time ``t_episode``.
        ``passers`` are other people posed for this frame (``inference.synth.crowd.Walker.at``: drawn at
        their arrival time, without a target item), all drawn far to near by their feet line."""
        sc = self.scene
        self._relight(t)
        img = self._lit_bg.copy()
        info = None
        people: list[tuple[Episode, float, bool]] = [(p, p.t_arrive, True) for p in passers]
        main = episode is not None and 0.0 <= t_episode <= episode.t_exit
        if episode is not None and main:
            x0, y0, x1, y1 = self.slot_box(episode.slot)
            img[y0:y1, x0:x1] = self._lit_empty[y0:y1, x0:x1]
            people.append((episode, t_episode, hide_item))
        if people:
            pt = Painter(img, sc.homography, sc.scale, self._light_colour)
            for ep, te, hide in sorted(people, key=lambda p: p[0].feet_y):  # stable: one person as before
                drawn = draw_person(pt, ep, te, sc.slots[ep.slot], self._shadow, hide_item=hide)
                if ep is episode:
                    info = drawn
        k = int(self._rng.integers(NOISE_TILES))
        oy, ox = (int(v) for v in self._rng.integers(NOISE_PAD, size=2))
        h, w = sc.height, sc.width
        cv2.add(img, self._pos[k, oy : oy + h, ox : ox + w], dst=img)
        cv2.subtract(img, self._neg[k, oy : oy + h, ox : ox + w], dst=img)
        return img, info
