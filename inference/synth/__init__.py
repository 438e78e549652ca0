"""Deterministic synthetic store-aisle CCTV footage (there is no real footage).

A fixed camera looks at a shelf unit, a checkout counter and an exit; cartoon shoppers take an item and
put it in their basket, put it back, or hide it in a jacket, pocket or bag.  Everything is seeded: the
same seed gives identical frames.  The bundled model was trained on these scenes, so any change to what
is drawn, or to the order of random draws, changes the training data.

Modules, in dependency order: ``truth`` (ground-truth events), ``seeds``, ``paint`` (drawing primitives),
``layout`` (the static store view), ``people`` (shoppers and their planned episodes), ``pose`` (drawing a
person at one moment), ``render`` (per-frame rendering), ``video`` (file output), then ``datasets``
(labelled training windows) and ``streams`` (long camera streams).
"""

from inference.synth.datasets import (
    CONCEAL_AFTER_S,
    CONCEAL_BEFORE_S,
    WINDOW_MARGIN_S,
    Label,
    WindowInfo,
    concealment_core,
    render_episode_window,
    render_window,
    window_shows_concealment,
    write_dataset,
)
from inference.synth.layout import Lighting, Scene, Slot, make_scene
from inference.synth.people import Actor, Episode, plan_episode
from inference.synth.pose import PoseInfo
from inference.synth.render import SceneRenderer
from inference.synth.seeds import camera_scene_seed
from inference.synth.streams import (
    STILL_GAP_S,
    StreamPlan,
    StreamSpec,
    iter_stream_frames,
    plan_stream,
    plan_stream_spec,
    render_stream,
    write_stream,
    write_stream_spec,
)
from inference.synth.truth import EVENT_KINDS, Event, EventKind, GroundTruth

__all__ = [
    "CONCEAL_AFTER_S",
    "CONCEAL_BEFORE_S",
    "EVENT_KINDS",
    "STILL_GAP_S",
    "WINDOW_MARGIN_S",
    "Actor",
    "Episode",
    "Event",
    "EventKind",
    "GroundTruth",
    "Label",
    "Lighting",
    "PoseInfo",
    "Scene",
    "SceneRenderer",
    "Slot",
    "StreamPlan",
    "StreamSpec",
    "WindowInfo",
    "camera_scene_seed",
    "concealment_core",
    "iter_stream_frames",
    "make_scene",
    "plan_episode",
    "plan_stream",
    "plan_stream_spec",
    "render_episode_window",
    "render_stream",
    "render_window",
    "window_shows_concealment",
    "write_dataset",
    "write_stream",
    "write_stream_spec",
]
