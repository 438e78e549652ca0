"""What a real camera does to a picture, and training windows with the crowds real cameras see.

Drawn scenes are clean: flat colours, sharp edges, no compression, one person at a shelf.  A real camera
adds its own look and a real scene adds other people.  :class:`CameraLook` is one camera's look, drawn
per video from a seed and applied to the rendered frames *before* they are written and decoded, so the
training clips go through the same input path (``common.model_input``) as a camera's:

- scale and perspective: a homography (zoom 0.8-1.3, rotation, keystone), as a camera mounted elsewhere;
- exposure and gamma, and white balance (per-channel gains), and saturation (down to washed-out colour);
- optics and resolution: Gaussian blur, or a low-resolution sensor scaled up;
- sensor noise, fresh every frame;
- compression: every frame through JPEG at a random quality (blocking and ringing), before the video's
  own MPEG-4 encoding.

:func:`render_realistic_window` is ``render_window`` with that look and with passers-by: a share of the
normal windows are crowds (several to many people walking across the store view, or across an open hall
seen from above, at any size and speed, sometimes with an ordinary shopper at the shelf too), and any
window, theft or not, may have a few people walking past behind the shopper.  The look and the passers-by
are drawn the same way for both labels, so neither tells the classes apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from inference.synth.crowd import Walker, hall_background, plan_crowd
from inference.synth.people import Episode
from inference.synth.render import SceneRenderer
from inference.synth.seeds import sub_seed
from inference.synth.windows import Label, WindowInfo, _frame_count, _render_frames, plan_window

REALISM_VERSION = "camera-look-crowds-v1"  # recorded in a dataset's manifest
CROWD_SHARE = 0.45  # of the normal windows
PASSERS_SHARE = 0.3  # of the other windows: a few people walking past behind


@dataclass(frozen=True)
class CameraLook:
    """One camera's look; ``identity()`` changes nothing."""

    homography: np.ndarray | None
    lut: np.ndarray | None  # (256, 1, 3) uint8: exposure, gamma and white balance
    saturation: float
    blur_sigma: float
    downscale: float  # 1: full resolution
    noise_sigma: float
    jpeg_quality: int  # 0: no JPEG pass
    seed: int

    @staticmethod
    def identity() -> CameraLook:
        return CameraLook(None, None, 1.0, 0.0, 1.0, 0.0, 0, 0)

    @staticmethod
    def draw(rng: np.random.Generator, width: int, height: int) -> CameraLook:
        """A random camera's look (each effect present with its own probability)."""
        hom = None
        if rng.random() < 0.6:
            zoom = float(rng.uniform(0.8, 1.3))
            angle = float(rng.uniform(-10, 10))
            centre = (width / 2 + rng.uniform(-0.1, 0.1) * width, height / 2 + rng.uniform(-0.1, 0.1) * height)
            rot = np.vstack([cv2.getRotationMatrix2D(centre, angle, zoom), [0.0, 0.0, 1.0]])
            src = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
            jitter = rng.uniform(-0.08, 0.08, size=(4, 2)) * np.array([width, height], np.float64)
            keystone = cv2.getPerspectiveTransform(src, (src + jitter).astype(np.float32))
            hom = keystone @ rot
        gain = float(rng.uniform(0.65, 1.35))
        gamma = float(math.exp(rng.uniform(-0.4, 0.4)))
        wb = rng.uniform(0.85, 1.15, size=3)
        x = np.arange(256, dtype=np.float64) / 255.0
        lut = np.stack([np.clip(255.0 * gain * wb[c] * x**gamma, 0, 255) for c in range(3)], axis=-1)
        saturation = float(rng.uniform(0.35, 1.15)) if rng.random() < 0.5 else 1.0
        blur = float(rng.uniform(0.5, 1.8)) if rng.random() < 0.45 else 0.0
        down = float(rng.uniform(0.35, 0.7)) if rng.random() < 0.3 else 1.0
        noise = float(rng.uniform(1.5, 9.0)) if rng.random() < 0.7 else 0.0
        quality = int(rng.integers(12, 75)) if rng.random() < 0.7 else 0
        return CameraLook(hom, np.rint(lut).astype(np.uint8).reshape(256, 1, 3), saturation, blur, down,
                          noise, quality, int(rng.integers(2**31)))

    def apply(self, frames: np.ndarray) -> np.ndarray:
        """The frames (T, H, W, 3) uint8 BGR as this camera would record them (a new array)."""
        rng = np.random.default_rng(self.seed)
        out = np.empty_like(frames)
        h, w = frames.shape[1:3]
        for i, frame in enumerate(frames):
            f = frame
            if self.homography is not None:
                f = cv2.warpPerspective(f, self.homography, (w, h), flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_REFLECT)
            if self.lut is not None:
                f = cv2.LUT(f, self.lut)
            if self.saturation != 1.0:
                grey = cv2.cvtColor(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
                f = cv2.addWeighted(f, self.saturation, grey, 1.0 - self.saturation, 0.0)
            if self.blur_sigma > 0:
                f = cv2.GaussianBlur(f, (0, 0), self.blur_sigma)
            if self.downscale < 1.0:
                small = cv2.resize(f, (max(8, round(w * self.downscale)), max(8, round(h * self.downscale))),
                                   interpolation=cv2.INTER_AREA)
                f = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
            if self.noise_sigma > 0:
                noise = rng.normal(0.0, self.noise_sigma, size=f.shape)
                f = np.clip(f.astype(np.float32) + noise, 0, 255).astype(np.uint8)
            if self.jpeg_quality:
                ok, buf = cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
                if ok:
                    f = cv2.imdecode(buf, cv2.IMREAD_COLOR)
            out[i] = f
        return out

    def summary(self) -> dict[str, object]:
        """The manifest fields."""
        return {
            "perspective": self.homography is not None,
            "saturation": round(self.saturation, 3),
            "blur_sigma": round(self.blur_sigma, 3),
            "downscale": round(self.downscale, 3),
            "noise_sigma": round(self.noise_sigma, 3),
            "jpeg_quality": self.jpeg_quality,
        }


def _passers_frames(renderer: SceneRenderer, main: tuple[Episode, float] | None, walkers: list[Walker], n: int,
                    fps: float) -> np.ndarray:
    """Frames of walkers only, or of walkers and a main episode ``(episode, start)``."""
    sc = renderer.scene
    frames = np.empty((n, sc.height, sc.width, 3), np.uint8)
    for i in range(n):
        t = i / fps
        passers = [w.at(t) for w in walkers]
        if main is None:
            frames[i], _ = renderer.frame(t, passers=passers)
        else:
            ep, ep_start = main
            frames[i], _ = renderer.frame(t, ep, ep_start + t, passers=passers)
    return frames


def render_realistic_window(label: Label, seed: int, *, width: int = 320, height: int = 180, fps: float = 15.0,
                            duration_s: float = 4.0, scene_seed: int | None = None
                            ) -> tuple[np.ndarray, WindowInfo, dict[str, object]]:
    """A training window of ``label`` as ``render_window`` makes it, with passers-by or as a crowd (normal
    only), through a random :class:`CameraLook`; returns (frames, info, what was added)."""
    rng = np.random.default_rng(sub_seed(seed, 0x8EA1))
    scene, ep, start, plan = plan_window(label, seed, width=width, height=height, duration_s=duration_s,
                                         scene_seed=scene_seed)
    n = _frame_count(duration_s, fps)
    renderer = SceneRenderer(scene, noise_seed=sub_seed(seed, 0x0153, 1))
    extra: dict[str, object] = {"crowd": None, "passers": 0}
    crowd = label == "normal" and rng.random() < CROWD_SHARE
    if crowd:
        hall = rng.random() < 0.4
        if hall:  # an open floor from above: many small people, no shelf
            renderer.set_background(hall_background(scene, rng))
            walkers = plan_crowd(scene, rng, int(rng.integers(4, 16)), duration_s, size=(0.1, 0.32),
                                 feet=(0.15, 1.05), any_direction=0.6)
            with_shopper = False
        else:  # people crossing the store view, near and far, maybe with a shopper at the shelf
            walkers = plan_crowd(scene, rng, int(rng.integers(2, 8)), duration_s, size=(0.2, 0.85),
                                 feet=(0.45, 1.0), any_direction=0.2)
            with_shopper = rng.random() < 0.5
        main = (ep, start) if with_shopper else None
        frames = _passers_frames(renderer, main, walkers, n, fps)
        extra = {"crowd": "hall" if hall else "store", "passers": len(walkers), "shopper": with_shopper}
        info = replace(plan, mode=plan.mode if with_shopper else "crowd", item_state=("shelf",) * n,
                       item_visible=(True,) * n, item_boxes=(None,) * n)
    elif rng.random() < PASSERS_SHARE:  # a few people walking past behind the shopper (smaller: farther)
        walkers = [w for w in plan_crowd(scene, rng, int(rng.integers(1, 4)), duration_s, size=(0.15, 0.5),
                                         feet=(0.4, 0.8), any_direction=0.15)
                   if max(w.y0, w.at(duration_s).feet_y) < ep.feet_y - 2]  # behind the shopper throughout
        frames = np.empty((n, scene.height, scene.width, 3), np.uint8)
        states: list[str] = []
        visible: list[bool] = []
        boxes: list[tuple[int, int, int, int] | None] = []
        for i in range(n):
            t = i / fps
            frames[i], pinfo = renderer.frame(t, ep, start + t, passers=[w.at(t) for w in walkers])
            states.append(pinfo.item_state if pinfo else "shelf")
            visible.append(bool(pinfo.item_visible) if pinfo else True)
            boxes.append(pinfo.item_box if pinfo else None)
        extra = {"crowd": None, "passers": len(walkers)}
        info = replace(plan, item_state=tuple(states), item_visible=tuple(visible), item_boxes=tuple(boxes))
    else:
        frames, states, visible, boxes = _render_frames(renderer, ep, start, n, fps, hide_item=False)
        info = replace(plan, item_state=tuple(states), item_visible=tuple(visible), item_boxes=tuple(boxes))
    look = CameraLook.draw(rng, width, height) if rng.random() < 0.85 else CameraLook.identity()
    extra["camera"] = look.summary()
    return look.apply(frames), info, extra
