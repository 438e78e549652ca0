"""Clip messages for the scale simulation: made by the real ingest path, replayed under other camera ids.

Nothing here builds a clip message by hand.  ``make_template`` renders a synthetic store stream with the
demo's generator (``inference.synth.write_stream``, the demo's camera view), runs the real camera worker
(``ingest.worker.CameraWorker``: capture, motion gate, clip cutter, ``_emit``) over it on an in-process bus,
and keeps the clips topic's bytes in publishing order: a *template sequence*.

A simulated camera replays a template sequence message by message with its identity rewritten by
``Rewriter``.  The rewrite knows only the framing every clip format of ours keeps (4-byte magic, 4-byte
big-endian header length, JSON header, binary body), not the header's fields, so it still holds when the
format changes (a header that names a capture session, earlier frames or the previous clip):

- the body bytes are kept as they are;
- in every string of the header (keys and values, at any depth) the template's camera id and store id
  become the simulated camera's and store's;
- every run of 16 or more lowercase hex digits (clip ids are 24, event ids 32; also inside a path or a
  field that references earlier clips) is mapped, per simulated camera, to another run of the same length
  (a hash of camera id and run), so references between a camera's messages still point at its own;
- every ISO timestamp is shifted by one offset, which puts the header's latest timestamp at the moment of
  publishing, and ``published_at`` (where the header has it) is that moment.

A camera replays its template from the first message on, in order, so every message it sends can refer to
what the same camera sent before it.  ``StandInScores`` tells the stand-in classifier which template clips
show a concealment (the template stream's ground truth), recognising a clip by a digest of its frames.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

TEMPLATE_STORE = "tmpl-store"
TEMPLATE_CAMERA = "tmpl-cam"
HEX_RUN = re.compile(r"(?<![0-9a-f])[0-9a-f]{16,}(?![0-9a-f])")
INCIDENT_PROBABILITY = 0.93  # what the stand-in says of a clip that overlaps a concealment
NORMAL_PROBABILITY = 0.04
INCIDENT_OVERLAP_S = 1.0  # a clip overlapping a concealment by at least this much shows it
DEMO_STORE_SEED = 7  # common.app.demo.DEMO_STORE_SEED: the view the bundled model was trained on


class TemplateError(ValueError):
    """A template sequence cannot serve the simulation (too short, or not in the clip framing)."""


# -- the framing -------------------------------------------------------------------------------------------


def split_message(data: bytes) -> tuple[bytes, dict[str, Any], bytes]:
    """(magic, JSON header, body) of a clip message in our framing; TemplateError when it is not one."""
    if len(data) < 8:
        raise TemplateError(f"a clip message is at least 8 bytes, got {len(data)}")
    (head_len,) = struct.unpack(">I", data[4:8])
    if 8 + head_len > len(data):
        raise TemplateError(f"header length {head_len} runs past the message's {len(data)} bytes")
    try:
        header = json.loads(data[8 : 8 + head_len])
    except ValueError as exc:
        raise TemplateError(f"the clip header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise TemplateError(f"the clip header is a JSON {type(header).__name__}, not an object")
    return data[:4], header, data[8 + head_len :]


def join_message(magic: bytes, header: dict[str, Any], body: bytes) -> bytes:
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return magic + struct.pack(">I", len(head)) + head + body


# -- the rewrite -------------------------------------------------------------------------------------------


def _parse_time(text: str) -> datetime | None:
    if len(text) < 19 or text[4] != "-" or text[10] != "T":
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _format_time(moment: datetime, like: str) -> str:
    text = moment.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z") if like.endswith("Z") else text


def _times(node: Any) -> Iterable[datetime]:
    if isinstance(node, str):
        moment = _parse_time(node)
        if moment is not None:
            yield moment
    elif isinstance(node, dict):
        for value in node.values():
            yield from _times(value)
    elif isinstance(node, list):
        for value in node:
            yield from _times(value)


@dataclass
class Rewriter:
    """Rewrites template messages into one simulated camera's (see the module docstring)."""

    camera_id: str
    store_id: str
    template_camera: str = TEMPLATE_CAMERA
    template_store: str = TEMPLATE_STORE
    _hex: dict[str, str] = field(default_factory=dict)

    def map_hex(self, run: str) -> str:
        mapped = self._hex.get(run)
        if mapped is None:
            digest = ""
            counter = 0
            while len(digest) < len(run):
                digest += hashlib.sha1(f"{self.camera_id}|{run}|{counter}".encode()).hexdigest()
                counter += 1
            mapped = self._hex[run] = digest[: len(run)]
        return mapped

    def _string(self, text: str, shift: timedelta) -> str:
        moment = _parse_time(text)
        if moment is not None:
            return _format_time(moment + shift, text)
        text = text.replace(self.template_camera, self.camera_id).replace(self.template_store, self.store_id)
        return HEX_RUN.sub(lambda m: self.map_hex(m.group(0)), text)

    def _node(self, node: Any, shift: timedelta) -> Any:
        if isinstance(node, str):
            return self._string(node, shift)
        if isinstance(node, dict):
            return {self._string(k, shift): self._node(v, shift) for k, v in node.items()}
        if isinstance(node, list):
            return [self._node(v, shift) for v in node]
        return node

    def rewrite(self, data: bytes, now: datetime) -> tuple[bytes, str]:
        """The message as this camera's, published at ``now``; and its (rewritten) clip id."""
        magic, header, body = split_message(data)
        times = list(_times(header))
        shift = now - max(times) if times else timedelta(0)
        out = self._node(header, shift)
        if "published_at" in out:
            out["published_at"] = _format_time(now, str(header.get("published_at") or "Z"))
        clip_id = str(out.get("clip_id", ""))
        return join_message(magic, out, body), clip_id


# -- making templates --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """One template sequence: the clips topic's bytes as ingest published them, and what they show."""

    name: str
    messages: tuple[bytes, ...]
    incident: tuple[bool, ...]  # per message: does the clip overlap a concealment of the stream
    stream: str

    @property
    def mean_bytes(self) -> float:
        return float(np.mean([len(m) for m in self.messages]))

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(self))
        return path

    @staticmethod
    def load(path: Path) -> Template:
        template = pickle.loads(path.read_bytes())
        if not isinstance(template, Template):
            raise TemplateError(f"{path} does not hold a template")
        return template


def seed_with_early_incident(duration_s: float, normal_shoppers: int, before_s: float, first_seed: int = 300) -> int:
    """The first stream seed whose single concealment starts within ``before_s`` (only planned, not
    rendered), so a camera replaying the stream reaches it within a short step."""
    from inference.synth.streams import plan_stream

    for seed in range(first_seed, first_seed + 500):
        truth = plan_stream(seed, duration_s=duration_s, incidents=1, normal_shoppers=normal_shoppers).truth
        if truth.incidents and truth.incidents[0].start_s <= before_s:
            return seed
    raise TemplateError(f"no seed in {first_seed}..{first_seed + 499} puts a concealment before {before_s} s")


def make_template(
    directory: Path, name: str, *, duration_s: float, seed: int, incidents: int, normal_shoppers: int
) -> Template:
    """Render a stream and cut it with the real camera worker on an in-process bus (see the docstring)."""
    from common.inprocess_bus import InProcessBus
    from common.schemas import Topic
    from common.settings import load_settings
    from inference.synth import camera_scene_seed, write_stream
    from ingest.worker import CameraWorker

    directory.mkdir(parents=True, exist_ok=True)
    stream = directory / f"{name}.mp4"
    truth = write_stream(stream, duration_s=duration_s, seed=seed, incidents=incidents,
                         normal_shoppers=normal_shoppers, scene_seed=camera_scene_seed(DEMO_STORE_SEED, 0))
    settings = load_settings(None, overrides={
        "stores": [{"id": TEMPLATE_STORE, "cameras": [
            {"id": TEMPLATE_CAMERA, "source": str(stream), "fps": 15, "realtime": False}]}],
        "bus": {"kind": "inprocess"},
        "service": {"metrics_port": 0, "evidence_dir": str(directory / "evidence")},
    })
    store = settings.stores[0]
    bus = InProcessBus()
    consumer = bus.consumer([Topic.CLIPS], "scale-template")
    worker = CameraWorker(store.id, store.cameras[0], bus.publisher(), settings.service.evidence_dir)
    worker.run()  # a file that is not realtime: read to its end, as fast as it decodes
    messages: list[bytes] = []
    while records := consumer.poll(0.0, max_records=1000):
        messages.extend(r.value for r in records)
    bus.close()
    if not messages:
        raise TemplateError(f"ingest cut no clip from {stream}")
    flags = []
    for message in messages:
        _, header, _ = split_message(message)
        if "source_start_s" not in header:  # a chain end: no clip
            flags.append(False)
            continue
        start, end = float(header["source_start_s"]), float(header["source_end_s"])
        flags.append(any(min(end, e.end_s) - max(start, e.start_s) >= INCIDENT_OVERLAP_S for e in truth.incidents))
    return Template(name, tuple(messages), tuple(flags), str(stream))


# -- what the stand-in classifier says ---------------------------------------------------------------------


def frames_digest(frames: np.ndarray) -> str:
    """A clip recognised by its frames (a sample of them: cheap beside decoding the clip)."""
    return hashlib.sha1(np.ascontiguousarray(frames[:, ::4, ::4, :]).tobytes()).hexdigest()


def decoded_frames(messages: Iterable[bytes]) -> list[tuple[int, np.ndarray]]:
    """The clips the inference worker gets from a camera's messages, in order, each with the index of the
    message that completed it: whole clips as they are, chained ones put together as the worker does
    (``inference.clip_chains``); chain ends complete none."""
    from datetime import UTC, datetime

    from common.bus import BusRecord
    from common.schemas import ClipMessage, Topic, read_clip_topic
    from inference.clip_chains import ClipChains

    chains = ClipChains(lambda ids: set())
    out: list[tuple[int, np.ndarray]] = []
    for index, value in enumerate(messages):
        record = BusRecord(Topic.CLIPS, None, value, 0, index, datetime.now(UTC))
        message = read_clip_topic(value)
        if isinstance(message, ClipMessage):
            out.append((index, message.frames))
            continue
        ready, dead = chains.accept(record, message)
        if dead:
            raise TemplateError(f"template messages do not chain: {dead[0].reason}")
        out.extend((r.offset, clip.frames) for r, clip in ready)
    return out


def standin_scores(templates: Iterable[Template]) -> dict[str, float]:
    """frames digest -> the probability the stand-in classifier gives that clip."""
    table: dict[str, float] = {}
    for template in templates:
        for index, frames in decoded_frames(template.messages):
            incident = template.incident[index]
            table[frames_digest(frames)] = INCIDENT_PROBABILITY if incident else NORMAL_PROBABILITY
    return table
