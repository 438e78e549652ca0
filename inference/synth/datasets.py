"""The training dataset: labelled windows (``inference.synth.windows``) written as video files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from inference.synth.realism import REALISM_VERSION, render_realistic_window
from inference.synth.seeds import camera_scene_seed, sub_seed
from inference.synth.video import write_video
from inference.synth.windows import (
    _LABELS,
    _PREFIXES,
    CONCEAL_AFTER_S,
    CONCEAL_BEFORE_S,
    WINDOW_MARGIN_S,
    Label,
    WindowInfo,
    _frame_count,
    concealment_core,
    plan_window,
    render_episode_window,
    render_window,
    window_shows_concealment,
)

__all__ = [
    "CONCEAL_AFTER_S", "CONCEAL_BEFORE_S", "WINDOW_MARGIN_S", "Label", "WindowInfo", "concealment_core",
    "plan_window", "render_episode_window", "render_window", "window_shows_concealment", "write_dataset",
]


@dataclass(frozen=True)
class _DatasetVideos:
    """How every video of one ``write_dataset`` call is made: its arguments but the folder and the count."""

    seed: int
    width: int
    height: int
    fps: float
    duration_s: float
    cameras: int | None
    store_seed: int
    realism: bool = False

    def write(self, out_dir: Path, index: int, code: int) -> dict[str, object]:
        """Render and write video ``index`` of label ``_LABELS[code]``; returns its manifest entry."""
        label = _LABELS[code]
        vseed = sub_seed(self.seed, code, index, 0xDA7A)
        # the view is drawn from the video's own seed, independent of its label
        view = None if not self.cameras else camera_scene_seed(self.store_seed, vseed % self.cameras)
        added: dict[str, object] = {}
        if self.realism:
            frames, info, added = render_realistic_window(
                cast(Label, label), vseed, width=self.width, height=self.height, fps=self.fps,
                duration_s=self.duration_s, scene_seed=view)
            # crowds in an open hall appear only as normal videos: trained on, not described (train.py)
            added = {"realism": added, **({"context_only": True} if added.get("crowd") == "hall" else {})}
        else:
            frames, info = render_window(cast(Label, label), vseed, width=self.width, height=self.height,
                                         fps=self.fps, duration_s=self.duration_s, scene_seed=view)
        rel = f"{label}/{_PREFIXES[label]}_{index:05d}.mp4"
        write_video(out_dir / rel, frames, self.fps, self.width, self.height)
        return {"path": rel, "label": label, "seed": vseed, **info.summary(), **added}


def write_dataset(out_dir: Path, per_class: int, seed: int = 0, *, width: int = 320, height: int = 180,
                  fps: float = 15.0, duration_s: float = 4.0, progress: bool = True,
                  cameras: int | None = None, store_seed: int = 0, realism: bool = False) -> Path:
    """With ``realism``, every video is made by ``inference.synth.realism.render_realistic_window``: a real
    camera's look (compression, blur, noise, exposure, white balance, perspective) and passers-by and
    crowds among the normal videos.  With ``cameras``, every video is filmed by one of that many fixed camera views of one store
    (``camera_scene_seed(store_seed, k)``), as a deployment's own footage is; without it, each video has
    a view of its own.

    Writes out_dir/shoplifting/*.mp4 and out_dir/normal/*.mp4 (cv2.VideoWriter fourcc 'mp4v'; H.264 is not
    available in opencv-python here) plus out_dir/manifest.json (seed, per-file label and params). Shows a tqdm
    progress bar when progress=True. Each video is one file; names like shoplifting/sl_00012.mp4."""
    from tqdm import tqdm

    if per_class < 0:
        raise ValueError("per_class must be >= 0")
    out_dir = Path(out_dir)
    for label in _LABELS:
        (out_dir / label).mkdir(parents=True, exist_ok=True)
    videos = _DatasetVideos(seed=seed, width=width, height=height, fps=fps, duration_s=duration_s,
                            cameras=cameras, store_seed=store_seed, realism=realism)
    files: list[dict[str, object]] = []
    with tqdm(total=2 * per_class, desc="scenes", unit="video", disable=not progress) as bar:
        for i in range(per_class):
            for code in range(len(_LABELS)):
                files.append(videos.write(out_dir, i, code))
                bar.update(1)
    manifest = {
        "generator": "inference.synth",
        "seed": seed,
        "per_class": per_class,
        "cameras": cameras,
        "store_seed": store_seed if cameras else None,
        "realism": REALISM_VERSION if realism else None,
        "width": width,
        "height": height,
        "fps": fps,
        "duration_s": duration_s,
        "frames_per_video": _frame_count(duration_s, fps),
        "labels": list(_LABELS),
        "files": files,
    }
    path = out_dir / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2))
    return path

