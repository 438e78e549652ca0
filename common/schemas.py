"""Versioned messages that travel on the bus, and the names of the topics they travel on.

Every message is a frozen pydantic model with ``schema_version`` and timezone-aware timestamps.
Clips carry their frames as a compact binary payload after a JSON header, so a clip stays far below
Kafka's 1 MB message limit; everything else is plain JSON.

The clips topic holds three kinds, told apart by their first four bytes:

- :class:`ClipMessage` (``AWC1``, schema 1): a whole clip, its frames zlib-compressed.  What ingest sent
  before chained clips, and still sends with ``bus.clip_format: full``; always read.
- :class:`ChainedClip` (``AWC2``, schema 2): a clip as the frames its consumer has not got yet.  A camera's
  clips overlap (at the defaults a clip a second, each 4 s long), so each frame travels once: the header
  lists the clip's frames by id (``FrameRefs``), the body holds only the new ones (``common.frame_codec``),
  and the inference worker, which reads a camera's messages in order from one partition, assembles the
  clip from frames of the camera's earlier messages (``inference.clip_chains``).
- :class:`ChainEnd` (``AWE2``, header only): no later clip of a chain reuses frames below ``keep_from``, sent when a
  camera's motion ends or its capture session does, so the consumer can let go of what it kept.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import numpy as np
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA_VERSION = 1
CHAINED_CLIP_SCHEMA_VERSION = 2  # clip headers with frame references (ChainedClip); whole clips stay 1


class Topic(StrEnum):
    """Logical topic names; the bus adds the configured prefix."""

    CLIPS = "clips"
    RESULTS = "results"
    ALERTS = "alerts"
    CAMERA_HEALTH = "camera-health"
    DEAD_LETTER = "dead-letter"


class MessageError(ValueError):
    """A message that cannot be decoded or fails validation; it belongs in the dead-letter topic."""


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_version: int = SCHEMA_VERSION
    kind: ClassVar[str]
    max_schema_version: ClassVar[int] = SCHEMA_VERSION  # the newest version of this kind that is understood

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode("utf-8")

    @classmethod
    def from_bytes(cls: type[M], data: bytes) -> M:
        try:
            message = cls.model_validate_json(data)
        except ValidationError as exc:
            raise MessageError(f"invalid {cls.kind} message: {exc.errors(include_url=False)}") from None
        if message.schema_version > cls.max_schema_version:
            raise MessageError(
                f"{cls.kind} schema_version {message.schema_version} is newer than {cls.max_schema_version}"
            )
        return message


M = TypeVar("M", bound=Message)

UtcDatetime = Annotated[AwareDatetime, Field(description="timezone-aware timestamp")]


def utc_now() -> datetime:
    return datetime.now(UTC)


def clip_id_for(camera_id: str, window_index: int, session: str) -> str:
    """A clip id that is the same each time the same window of the same capture session is cut.

    Keyed by the window's place on the clip grid, not by its first frame's time: when frames come
    sparsely (a stalled capture), two neighbouring windows can start with the same frame."""
    raw = f"{camera_id}|{session}|w{window_index}".encode()
    return hashlib.sha1(raw).hexdigest()[:24]


class FrameRefs(BaseModel):
    """Which frames make a chained clip, and which of them its message carries (see the module docstring).

    Frame ids number the frames of one chain, in time order; a frame's id always means the same pixels, so a
    consumer may keep a frame from one message for the clips of later ones."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    chain_id: str = Field(min_length=1, max_length=64, description="The chain the ids belong to: a new one each "
                          "time a camera starts cutting afresh (ingest starts, a capture session begins)")
    seq: int = Field(ge=0, description="The message's number in its chain (chain ends count too)")
    ids: tuple[int, ...] = Field(min_length=1, description="The clip's frames, in order")
    new: tuple[int, ...] = Field(description="The frames the message carries, in order (the others came before)")
    reference: int | None = Field(None, description="The frame the first new frame is coded against")
    keep_from: int = Field(ge=0, description="Later clips of the chain reuse no frame with a lower id")
    bits: int = Field(ge=1, le=8, description="Bits a value (the model's input precision)")
    codec: Literal["delta-lzma2"] = "delta-lzma2"

    @model_validator(mode="after")
    def _consistent(self) -> FrameRefs:
        ids = set(self.ids)
        if any(b <= a for a, b in zip(self.new, self.new[1:], strict=False)):
            raise ValueError("new frame ids must increase")
        if not set(self.new) <= ids:
            raise ValueError("the message carries frames that are not the clip's")
        if self.reference is not None and (self.reference not in ids or self.reference in self.new):
            raise ValueError("the reference frame must be one of the clip's earlier frames")
        if min(self.ids) < 0:
            raise ValueError("frame ids must not be negative")
        return self

    @property
    def reused(self) -> frozenset[int]:
        """The clip's frames that came with earlier messages (with the reference frame among them)."""
        return frozenset(self.ids) - frozenset(self.new)


class ClipHeader(Message):
    """Everything about a clip except its frames."""

    kind: ClassVar[str] = "clip"
    max_schema_version: ClassVar[int] = CHAINED_CLIP_SCHEMA_VERSION
    clip_id: str = Field(min_length=1, max_length=64)
    store_id: str
    camera_id: str
    captured_at: UtcDatetime = Field(description="Wall-clock time of the clip's last frame")
    start_at: UtcDatetime = Field(description="Wall-clock time of the clip's first frame")
    source_start_s: float = Field(ge=0, description="Position of the first frame in the source, seconds")
    source_end_s: float = Field(ge=0, description="Position of the last frame in the source, seconds")
    shape: tuple[int, int, int, int] = Field(description="frames, height, width, channels")
    dtype: Literal["uint8"] = "uint8"
    color_order: Literal["BGR"] = "BGR"
    motion_area: float = Field(0.0, ge=0, le=1, description="Largest moving fraction of the frame in the clip")
    snapshot_path: str | None = Field(None, description="Full-resolution JPEG evidence of the moment")
    published_at: UtcDatetime | None = None
    chain: FrameRefs | None = Field(None, description="A chained clip's frames (schema 2); None: a whole clip")

    @model_validator(mode="after")
    def _chain_fits(self) -> ClipHeader:
        if self.chain is not None:
            if self.schema_version < CHAINED_CLIP_SCHEMA_VERSION:
                raise ValueError(f"a chained clip's header has schema_version {CHAINED_CLIP_SCHEMA_VERSION}")
            if len(self.chain.ids) != self.shape[0]:
                raise ValueError(f"the clip lists {len(self.chain.ids)} frames, its shape {self.shape[0]}")
        return self

    def to_bytes(self) -> bytes:
        """A whole clip's header without ``chain``: the same bytes as before chained clips existed."""
        if self.chain is None:
            return self.model_dump_json(exclude={"chain"}).encode("utf-8")
        return super().to_bytes()


class ClipMessage:
    """A clip: header plus frames (T, H, W, 3) uint8 BGR.  Encoded as ``MAGIC | len | header | zlib(frames)``."""

    MAGIC: ClassVar[bytes] = b"AWC1"

    __slots__ = ("frames", "header")

    def __init__(self, header: ClipHeader, frames: np.ndarray) -> None:
        if frames.dtype != np.uint8:
            raise MessageError(f"clip frames must be uint8, got {frames.dtype}")
        if tuple(frames.shape) != tuple(header.shape):
            raise MessageError(f"clip frames have shape {frames.shape}, header says {header.shape}")
        self.header = header
        self.frames = frames

    def to_bytes(self) -> bytes:
        head = self.header.to_bytes()
        body = zlib.compress(np.ascontiguousarray(self.frames).tobytes(), level=1)
        return self.MAGIC + struct.pack(">I", len(head)) + head + body

    @classmethod
    def from_bytes(cls, data: bytes) -> ClipMessage:
        if len(data) < 8 or data[:4] != cls.MAGIC:
            raise MessageError("not a clip message (bad magic bytes)")
        (head_len,) = struct.unpack(">I", data[4:8])
        if 8 + head_len > len(data):
            raise MessageError("clip message is truncated (header longer than message)")
        header = ClipHeader.from_bytes(data[8 : 8 + head_len])
        try:
            raw = zlib.decompress(data[8 + head_len :])
        except zlib.error as exc:
            raise MessageError(f"clip frames cannot be decompressed: {exc}") from None
        expected = int(np.prod(header.shape))
        if len(raw) != expected:
            raise MessageError(f"clip frames hold {len(raw)} bytes, shape {header.shape} needs {expected}")
        frames = np.frombuffer(raw, dtype=np.uint8).reshape(header.shape)
        return cls(header, frames)


def _split(data: bytes, magic: bytes, what: str) -> tuple[bytes, bytes]:
    """``magic | len | head | body`` → head, body."""
    if len(data) < 8 or data[:4] != magic:
        raise MessageError(f"not a {what} message (bad magic bytes)")
    (head_len,) = struct.unpack(">I", data[4:8])
    if 8 + head_len > len(data):
        raise MessageError(f"{what} message is truncated (header longer than message)")
    return data[8 : 8 + head_len], data[8 + head_len :]


class ChainedClip:
    """A clip as the frames its consumer has not got yet: ``MAGIC | len | header | coded frames``.

    ``body`` codes the levels of the frames ``header.chain.new`` (``common.frame_codec``); decoding it needs
    the reference frame, which the consumer holds from an earlier message, so it is left to the consumer."""

    MAGIC: ClassVar[bytes] = b"AWC2"

    __slots__ = ("body", "header")

    def __init__(self, header: ClipHeader, body: bytes) -> None:
        if header.chain is None:
            raise MessageError(f"clip {header.clip_id}: a chained clip needs frame references")
        self.header = header
        self.body = body

    @property
    def chain(self) -> FrameRefs:
        assert self.header.chain is not None
        return self.header.chain

    def to_bytes(self) -> bytes:
        head = self.header.to_bytes()
        return self.MAGIC + struct.pack(">I", len(head)) + head + self.body

    @classmethod
    def from_bytes(cls, data: bytes) -> ChainedClip:
        head, body = _split(data, cls.MAGIC, "chained clip")
        header = ClipHeader.from_bytes(head)
        if header.chain is None:
            raise MessageError(f"chained clip {header.clip_id} has no frame references")
        return cls(header, body)


class ChainEnd(Message):
    """No later clip of the chain reuses a frame below ``keep_from``: the consumer may let go of them."""

    kind: ClassVar[str] = "chain_end"
    MAGIC: ClassVar[bytes] = b"AWE2"
    schema_version: int = CHAINED_CLIP_SCHEMA_VERSION
    max_schema_version: ClassVar[int] = CHAINED_CLIP_SCHEMA_VERSION
    store_id: str
    camera_id: str
    chain_id: str = Field(min_length=1, max_length=64)
    seq: int = Field(ge=0, description="Its number in the chain")
    keep_from: int = Field(ge=0)
    at: UtcDatetime

    def to_bytes(self) -> bytes:
        """In the clips topic's framing, ``MAGIC | len | header``, with no body."""
        head = super().to_bytes()
        return self.MAGIC + struct.pack(">I", len(head)) + head

    @classmethod
    def from_bytes(cls, data: bytes) -> ChainEnd:
        head, body = _split(data, cls.MAGIC, "chain-end")
        if body:
            raise MessageError(f"a chain-end message has no body, this one has {len(body)} bytes")
        return super().from_bytes(head)


ClipTopicMessage = ClipMessage | ChainedClip | ChainEnd


def read_clip_topic(data: bytes) -> ClipTopicMessage:
    """A clips-topic message of any kind, by its magic bytes; MessageError when it is none of them."""
    magic = data[:4]
    if magic == ClipMessage.MAGIC:
        return ClipMessage.from_bytes(data)
    if magic == ChainedClip.MAGIC:
        return ChainedClip.from_bytes(data)
    if magic == ChainEnd.MAGIC:
        return ChainEnd.from_bytes(data)
    raise MessageError("not a clip message (bad magic bytes)")


class ResultMessage(Message):
    kind: ClassVar[str] = "result"
    clip_id: str
    store_id: str
    camera_id: str
    captured_at: UtcDatetime
    start_at: UtcDatetime
    source_start_s: float
    source_end_s: float
    probability: float = Field(ge=0, le=1)
    threshold: float = Field(ge=0, le=1)
    model_version: str
    snapshot_path: str | None = None
    inferred_at: UtcDatetime
    # Shadow mode (``model.shadow_path``): the candidate model's score of the same clip, stored beside the
    # active one and never ruled on; None when no candidate runs, or when it failed on this clip's batch.
    shadow_probability: float | None = Field(None, ge=0, le=1)
    shadow_model_version: str | None = None
    # True while the clip's camera is flagged as showing scenes unlike the model's training inputs
    # (inference.ood); None when the model carries no description of them (nothing was checked).
    out_of_distribution: bool | None = None

    def to_bytes(self) -> bytes:
        """Without the optional fields that are unset (no candidate scored the clip, nothing checked its
        camera), so that such a result is the same bytes as before they existed (an alert worker of the
        previous release still reads it)."""
        exclude = {name for name in ("shadow_probability", "shadow_model_version", "out_of_distribution")
                   if getattr(self, name) is None}
        if exclude:
            return self.model_dump_json(exclude=exclude).encode("utf-8")
        return super().to_bytes()


class AlertKind(StrEnum):
    SUSPICIOUS_ACTIVITY = "suspicious_activity"
    CAMERA_OFFLINE = "camera_offline"

    @property
    def label(self) -> str:
        """How people read the kind: in e-mails, pages and reports."""
        return _ALERT_KIND_LABELS[self]

    @classmethod
    def label_of(cls, kind: str) -> str:
        """The label of a kind stored as text (a database row); an unknown kind is shown as its words."""
        try:
            return cls(kind).label
        except ValueError:
            return kind.replace("_", " ").capitalize()


_ALERT_KIND_LABELS: dict[AlertKind, str] = {
    AlertKind.SUSPICIOUS_ACTIVITY: "Suspicious activity",
    AlertKind.CAMERA_OFFLINE: "Camera offline",
}


class AlertStatus(StrEnum):
    """Where an alert stands with the security desk: ``open`` until a guard acknowledges it with a verdict,
    ``resolved`` once a manager closes it; a manager can reopen an acknowledged or resolved one."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class DeliveryStatus(StrEnum):
    """Where one alert stands with one notification channel (a row of the outbox)."""

    PENDING = "pending"  # not delivered yet; sent when ``next_attempt_at`` is due
    DELIVERED = "delivered"
    FAILED = "failed"  # the receiver refused it in a way that asking again cannot change
    EXPIRED = "expired"  # still undelivered after ``notifications.give_up_after``


class Verdict(StrEnum):
    """What the person who acknowledged an alert says happened."""

    THEFT_CONFIRMED = "theft_confirmed"
    THEFT_PREVENTED = "theft_prevented"  # staff stepped in: a real attempt, nothing lost
    FALSE_ALARM = "false_alarm"
    UNSURE = "unsure"

    @property
    def label(self) -> str:
        return _VERDICT_LABELS[self]

    @property
    def is_theft(self) -> bool:
        """A real attempt (confirmed or prevented): what a retrained model should call shoplifting."""
        return self in (Verdict.THEFT_CONFIRMED, Verdict.THEFT_PREVENTED)

    @classmethod
    def label_of(cls, verdict: str | None) -> str:
        if verdict is None:
            return "Not yet reviewed"
        try:
            return cls(verdict).label
        except ValueError:
            return verdict.replace("_", " ").capitalize()


_VERDICT_LABELS: dict[Verdict, str] = {
    Verdict.THEFT_CONFIRMED: "Theft confirmed",
    Verdict.THEFT_PREVENTED: "Theft prevented",
    Verdict.FALSE_ALARM: "False alarm",
    Verdict.UNSURE: "Unsure",
}


class AlertEventKind(StrEnum):
    """What happened to an alert: one row each in ``alert_events``, the live feed's replayable history."""

    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    REOPENED = "reopened"
    RESOLVED = "resolved"
    EVIDENCE_READY = "evidence_ready"  # the alert's evidence video was made (alerts.evidence_video)
    EVIDENCE_HELD = "evidence_held"  # a manager's hold: the evidence is never deleted
    EVIDENCE_RELEASED = "evidence_released"


class AlertMessage(Message):
    kind: ClassVar[str] = "alert"
    alert_id: str
    alert_kind: AlertKind
    store_id: str
    camera_id: str
    raised_at: UtcDatetime
    probability: float | None = Field(None, ge=0, le=1)
    clip_ids: tuple[str, ...] = ()
    source_start_s: float | None = None
    source_end_s: float | None = None
    snapshot_path: str | None = None
    message: str = ""


class CameraState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    ENDED = "ended"
    ERROR = "error"
    # Published by inference, not ingest: whether the camera's clips look like the model's training inputs
    # (inference.ood).  They say nothing about the camera being up: outage and uptime logic skips them.
    OUT_OF_DISTRIBUTION = "out_of_distribution"
    IN_DISTRIBUTION = "in_distribution"


MODEL_FIT_STATES = frozenset({CameraState.OUT_OF_DISTRIBUTION, CameraState.IN_DISTRIBUTION})
"""Camera states about the model's fit to the camera's scenes, not about the camera's connection."""

OUT_OF_DISTRIBUTION_NOTE = (
    "this model was not trained on scenes like this camera's; retrain with `aislewatch train` on this "
    "camera's footage"
)
"""What the desk, the report, alerts and the log say about a camera flagged out of distribution."""


class CameraHealthMessage(Message):
    kind: ClassVar[str] = "camera_health"
    event_id: str
    store_id: str
    camera_id: str
    state: CameraState
    at: UtcDatetime
    detail: str = ""
    reconnects: int = 0


class DeadLetter(Message):
    kind: ClassVar[str] = "dead_letter"
    source_topic: str
    key: str | None
    reason: str
    payload_hex: str = Field(description="The first bytes of the rejected payload, hex")
    payload_len: int
    at: UtcDatetime

    @classmethod
    def for_payload(cls, source_topic: str, key: str | None, payload: bytes, reason: str) -> DeadLetter:
        return cls(
            source_topic=source_topic,
            key=key,
            reason=reason[:2000],
            payload_hex=payload[:512].hex(),
            payload_len=len(payload),
            at=utc_now(),
        )


def dumps_jsonable(data: Any) -> bytes:
    return json.dumps(data, default=str).encode("utf-8")
