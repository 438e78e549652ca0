"""Ground truth of rendered footage: the acts people perform and the JSON sidecar of a stream."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

EventKind = Literal["concealment", "normal_pickup", "put_back"]
EVENT_KINDS: tuple[str, ...] = ("concealment", "normal_pickup", "put_back")


@dataclass(frozen=True)
class Event:
    """One person episode's act; times in seconds from the start of the video/stream."""

    kind: str  # "concealment" | "normal_pickup" | "put_back"
    start_s: float  # start of the act (hand reaches item)
    end_s: float  # end of the act (item hidden / in basket / back on shelf)
    person_enter_s: float
    person_exit_s: float

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}; expected one of {EVENT_KINDS}")
        if not self.person_enter_s <= self.start_s <= self.end_s <= self.person_exit_s:
            raise ValueError(f"event times out of order: {self}")


@dataclass(frozen=True)
class GroundTruth:
    """What happens in a rendered stream: concealments (incidents) and normal acts."""

    fps: float
    width: int
    height: int
    duration_s: float
    seed: int
    incidents: tuple[Event, ...]  # concealments only
    normal_events: tuple[Event, ...]

    def to_json(self) -> str:
        """Serialise to JSON (the stream's sidecar ``.truth.json``)."""
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> GroundTruth:
        """Parse what ``to_json`` wrote."""
        data = json.loads(text)
        return cls(
            fps=float(data["fps"]),
            width=int(data["width"]),
            height=int(data["height"]),
            duration_s=float(data["duration_s"]),
            seed=int(data["seed"]),
            incidents=tuple(Event(**e) for e in data["incidents"]),
            normal_events=tuple(Event(**e) for e in data["normal_events"]),
        )

    @property
    def all_events(self) -> tuple[Event, ...]:
        """Every episode's event, in time order."""
        return tuple(sorted(self.incidents + self.normal_events, key=lambda e: e.person_enter_s))
