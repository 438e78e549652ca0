"""All AisleWatch settings in one typed model.

Read from a YAML file, then overridden by environment variables (``AISLEWATCH__SECTION__FIELD``).
Secrets (database password, SMTP password, webhook signing secret, camera credentials) belong in the
environment or in ``*_file`` secret files, never in the YAML checked into a repository.

Every section forbids unknown keys so a typo fails at start instead of being silently ignored.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from common.config_paths import resolve_relative_paths
from common.config_rules import CronExpression, EmailAddress, HostName, HttpUrl, TimeZoneName
from common.redaction import redact, register_secret

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent.parent / "inference" / "bundled" / "convlstm.keras"


class ConfigError(Exception):
    """A configuration file or environment that cannot be used, with where and why."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"invalid configuration in {source}:\n" + "\n".join(f"  - {p}" for p in problems))


class Section(BaseModel):
    """Base of every settings section: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CropMode(StrEnum):
    FULL = "full"
    MOTION = "motion"


class MotionSettings(Section):
    method: Literal["mog2", "diff"] = Field(
        "diff", description="Frame differencing against a running average (cheap), or MOG2 (copes with flicker)"
    )
    downscale_width: int = Field(
        160, ge=0, le=1920,
        description="Width of the grey frame motion is computed on; 0: the 64x64 model frame ingest makes of "
        "every frame anyway (cheaper, but less sensitive to slow movement: see README, Ingest speed)",
    )
    sensitivity: int = Field(25, ge=1, le=255, description="Per-pixel change threshold (lower is more sensitive)")
    min_area: float = Field(
        0.004, gt=0, le=1, description="Smallest moving area, as a fraction of the frame, that counts as motion"
    )
    hold_s: float = Field(1.0, ge=0, le=60, description="Keep cutting clips this long after motion stops")
    warmup_frames: int = Field(10, ge=0, le=1000, description="Frames used to learn the background before gating")
    gate_fps: float = Field(
        5.0, ge=0, le=240,
        description="Frames per second the motion gate examines (0: every frame); the frames between take "
        "the verdict of the examined ones, or are examined too where motion starts or stops (see ingest.motion)",
    )
    masks: list[list[tuple[float, float]]] = Field(
        default_factory=list,
        description="Polygons to ignore, vertices as (x, y) fractions of the frame (0..1)",
    )

    @field_validator("downscale_width")
    @classmethod
    def _check_downscale_width(cls, width: int) -> int:
        if 0 < width < 32:
            raise ValueError(f"must be 0 (the model frame) or at least 32 pixels, got {width}")
        return width

    @field_validator("masks")
    @classmethod
    def _check_masks(cls, masks: list[list[tuple[float, float]]]) -> list[list[tuple[float, float]]]:
        for polygon in masks:
            if len(polygon) < 3:
                raise ValueError(f"a mask polygon needs at least 3 vertices, got {len(polygon)}")
            for x, y in polygon:
                if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                    raise ValueError(f"mask vertex ({x}, {y}) is outside the frame; use fractions 0..1")
        return masks


class ClipSettings(Section):
    frames: int = Field(20, ge=2, le=200, description="Frames per clip (the model's time steps)")
    size: int = Field(64, ge=16, le=512, description="Clip frames are resized to size x size")
    window_s: float = Field(4.0, gt=0, le=60, description="Seconds of video one clip covers")
    overlap: float = Field(
        0.75, ge=0, lt=1,
        description="Fraction of a window shared with the next clip (0.75: a clip a second, as evaluated)",
    )
    crop: CropMode = Field(CropMode.FULL, description="Whole frame, or the motion region with a margin")
    crop_margin: float = Field(0.25, ge=0, le=2, description="Margin around the motion region, as a fraction")
    snapshot_quality: int = Field(85, ge=10, le=100, description="JPEG quality of the evidence snapshot")
    bits: int = Field(
        5, ge=1, le=8,
        description="Bits a value of the clip frames keep (each at its bin's centre); at least the model's "
        "input_bits (config check says so), fewer bytes on the bus",
    )


_ENV_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class CameraSettings(Section):
    id: str = Field(description="Unique camera id, used as the Kafka key", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str = Field("", description="Human-readable camera name")
    source: str = Field(
        description="RTSP URL or video file path; ${VAR} placeholders are filled from the environment, so "
        "credentials stay out of the file, e.g. rtsp://${CAM_USER}:${CAM_PASSWORD}@10.0.0.5/stream1"
    )
    fps: float = Field(15.0, gt=0, le=120, description="Expected frame rate of the source")
    realtime: bool = Field(False, description="For files: pace reading at the video's frame rate")
    loop: bool = Field(False, description="For files: start again at the end")
    enabled: bool = True
    offline_after_s: float = Field(10.0, gt=0, le=3600, description="Silence after which the camera is offline")
    motion: MotionSettings = Field(default_factory=MotionSettings)
    clip: ClipSettings = Field(default_factory=ClipSettings)

    @model_validator(mode="after")
    def _default_name(self) -> CameraSettings:
        if not self.name:
            object.__setattr__(self, "name", self.id)
        return self

    def missing_variables(self) -> list[str]:
        """The ${VAR} placeholders of the source that the environment does not set."""
        return [name for name in _ENV_PLACEHOLDER.findall(self.source) if name not in os.environ]

    def resolved_source(self) -> str:
        """The source with ${VAR} placeholders filled from the environment (never log the result).

        Only processes that open cameras call this; the values filled in are registered with
        ``common.redaction`` so they are masked wherever they would be shown."""
        missing = self.missing_variables()
        if missing:
            raise ValueError(
                f"camera {self.id}: environment variable(s) {', '.join(missing)} used in the source are not set"
            )
        for name in _ENV_PLACEHOLDER.findall(self.source):
            register_secret(os.environ[name])
        return _ENV_PLACEHOLDER.sub(lambda m: os.environ[m.group(1)], self.source)


class StoreSettings(Section):
    id: str = Field(description="Unique store id", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str = Field("", description="Store name shown in reports")
    timezone: TimeZoneName = Field("UTC", description="IANA time zone for reports, e.g. Europe/London")
    manager_emails: list[EmailAddress] = Field(default_factory=list, description="Who receives this store's reports")
    cameras: list[CameraSettings] = Field(default_factory=list)

    @model_validator(mode="after")
    def _default_name(self) -> StoreSettings:
        if not self.name:
            object.__setattr__(self, "name", self.id)
        return self


class ModelSettings(Section):
    path: Path = Field(DEFAULT_MODEL_PATH, description="Keras model file (.keras or legacy .h5)")
    threshold: float | None = Field(
        None, ge=0, le=1, description="Alert threshold; default is the one calibrated in the model's metadata"
    )
    device: Literal["auto", "cpu", "gpu"] = Field("auto", description="Where inference runs")
    xla: bool = Field(
        False, description="Compile the fallback graphs (models the fused path cannot run) whole with XLA; the "
        "fused path compiles its LSTM cells with XLA either way",
    )
    shadow_path: Path | None = Field(
        None, description="A candidate model scored on every clip beside the active one, raising nothing "
        "(its score is stored as clip_results.shadow_probability for `aislewatch model compare` and reports)",
    )
    shadow_budget_ms: int = Field(
        500, ge=1, le=600_000, description="Longest the active results wait for the candidate's scores of a batch "
        "(at least twice the active model's time on it); past that the batch's shadow scores are stored empty",
    )
    out_of_distribution: Literal["mark", "hold", "ignore"] = Field(
        "mark", description="Alerts of a camera whose clips are unlike the model's training inputs (its sidecar's "
        "input_description): mark them as from an unvalidated model, hold them back (not raised, counted), or "
        "raise them as usual; the camera is flagged (health, metric, report) in every case",
    )
    ood_window_clips: int = Field(
        20, ge=2, le=1000, description="A camera is flagged when half of its last this many clips are beyond the "
        "model's input description, and cleared when fewer than a quarter are",
    )
    ood_margin: float = Field(
        2.0, ge=1.0, le=100.0, description="A clip is beyond the description when its distance exceeds this "
        "many times the 99.5th percentile of the training clips' distances",
    )


@dataclass(frozen=True)
class DeviceBatching:
    """The batching of one inference device (``InferenceSettings.batching``)."""

    max_batch_size: int
    max_wait_ms: int
    consumers: int
    precision: str


class InferenceSettings(Section):
    max_batch_size: int = Field(32, ge=1, le=1024, description="Largest batch sent to the model on a CPU")
    max_wait_ms: int = Field(200, ge=0, le=60000, description="Longest a clip waits for its batch to fill on a CPU")
    group_id: str = Field("aislewatch-inference", description="Kafka consumer group of inference workers")
    gpu_max_batch_size: int = Field(256, ge=1, le=4096, description="Largest batch sent to the model on a GPU")
    gpu_max_wait_ms: int = Field(100, ge=0, le=60000, description="Longest a clip waits for its batch on a GPU")
    gpu_consumers: int = Field(
        2, ge=1, le=16, description="Threads polling, decoding and writing batches for the one model on a GPU "
        "(on a CPU one; `aislewatch infer --workers N` sets both)",
    )
    gpu_precision: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="Arithmetic of the model on a GPU (never on a CPU): a reduced one is used only "
        "if its outputs stay within inference.torch_path.PRECISION_TOLERANCE of float32 on probe clips at load",
    )

    def batching(self, device: str) -> DeviceBatching:
        """The batch size, wait, consumer threads and precision for ``device`` ("cpu" or "gpu")."""
        if device == "gpu":
            return DeviceBatching(self.gpu_max_batch_size, self.gpu_max_wait_ms, self.gpu_consumers,
                                  self.gpu_precision)
        return DeviceBatching(self.max_batch_size, self.max_wait_ms, 1, "float32")


class AlertRuleSettings(Section):
    threshold: float | None = Field(None, ge=0, le=1, description="Overrides the model's calibrated threshold")
    n_of_m: tuple[int, int] = Field(
        (2, 4), description="Raise when N of the last M clips are suspicious (2 of 4 is what was evaluated)"
    )
    cooldown_s: float = Field(60.0, ge=0, le=86400, description="No second alert for a camera within this time")
    offline_alert_after_s: float = Field(
        30.0, ge=0, le=86400, description="Raise 'camera offline' when a camera stays offline this long"
    )

    @field_validator("n_of_m")
    @classmethod
    def _check_n_of_m(cls, value: tuple[int, int]) -> tuple[int, int]:
        n, m = value
        if not (1 <= n <= m <= 100):
            raise ValueError(f"need 1 <= N <= M <= 100, got N={n}, M={m}")
        return value


class DatabaseSettings(Section):
    url: str = Field("sqlite:///build/aislewatch.db", description="SQLAlchemy URL (SQLite file or PostgreSQL)")
    password: SecretStr | None = Field(None, description="Password, merged into the URL; set from the environment")
    pool_size: int = Field(5, ge=1, le=100)
    write_batch_size: int = Field(500, ge=1, le=100000, description="Rows per batched insert")
    retry_max_s: float = Field(30.0, gt=0, le=3600, description="Longest wait between reconnect attempts")


class BusKind(StrEnum):
    INPROCESS = "inprocess"
    KAFKA = "kafka"


class BusSettings(Section):
    kind: BusKind = Field(BusKind.INPROCESS, description="In-process queues (one machine) or Apache Kafka")
    bootstrap_servers: list[str] = Field(default_factory=lambda: ["127.0.0.1:9092"])
    topic_prefix: str = Field("aislewatch.", description="Prefix of every topic name")
    partitions: int = Field(12, ge=1, le=10000, description="Partitions of topics created if missing")
    replication_factor: int = Field(1, ge=1, le=10)
    max_message_bytes: int = Field(1_000_000, ge=100_000, description="Broker message size limit to stay under")
    delivery_timeout_s: float = Field(
        30.0, ge=12, le=3600,
        description="How long the producer tries to deliver a message before it counts as failed and is sent again",
    )
    clip_format: Literal["chained", "full"] = Field(
        "chained", description="How ingest sends clips: chained (each frame once, read by inference workers of "
        "this release on) or full (every clip whole, as before: for an upgrade while older inference workers run)",
    )


class EmailSettings(Section):
    enabled: bool = False
    host: HostName = "127.0.0.1"
    port: int = Field(25, ge=1, le=65535)
    starttls: bool = False
    username: str | None = None
    password: SecretStr | None = None
    sender: EmailAddress = "aislewatch@localhost"
    recipients: list[EmailAddress] = Field(default_factory=list)


class WebhookSettings(Section):
    url: HttpUrl | None = Field(None, description="POST every alert as JSON to this URL")
    timeout_s: float = Field(5.0, gt=0, le=120, description="Time limit of one POST")
    secret: SecretStr | None = Field(
        None,
        description="Signing key of the Standard Webhooks signature (webhook-signature header): any text, or "
        "whsec_ followed by base64 bytes; set from the environment or a secret file, never in the YAML",
    )

    @field_validator("secret")
    @classmethod
    def _check_secret(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is None:
            return None
        value = secret.get_secret_value()
        if not value:
            raise ValueError("the webhook secret is empty")
        if value.startswith(WEBHOOK_SECRET_PREFIX):
            try:
                key = base64.b64decode(value[len(WEBHOOK_SECRET_PREFIX) :], validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("a whsec_ webhook secret must be base64 after the prefix") from None
            if not key:
                raise ValueError("the webhook secret is empty")
        return secret

    def signing_key(self) -> bytes | None:
        """The HMAC key: the decoded bytes of a ``whsec_`` secret, else the secret's UTF-8 bytes."""
        if self.secret is None:
            return None
        value = self.secret.get_secret_value()
        if value.startswith(WEBHOOK_SECRET_PREFIX):
            return base64.b64decode(value[len(WEBHOOK_SECRET_PREFIX) :])
        return value.encode("utf-8")


WEBHOOK_SECRET_PREFIX = "whsec_"


class NotificationSettings(Section):
    log: bool = Field(True, description="Write every alert to the log (at once; not through the outbox)")
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    email: EmailSettings = Field(default_factory=EmailSettings)
    give_up_after: timedelta = Field(
        timedelta(hours=24),
        ge=timedelta(minutes=1),
        le=timedelta(days=30),
        description="Retry a webhook or e-mail delivery until it succeeds or is this old, then mark it expired: "
        "seconds, HH:MM:SS or ISO 8601 (PT24H)",
    )
    retry_initial_s: float = Field(
        2.0, gt=0, le=3600, description="Wait before the first retry of a failed delivery; doubled per attempt"
    )
    retry_max_s: float = Field(300.0, gt=0, le=86400, description="Longest wait between two delivery attempts")

    @model_validator(mode="after")
    def _check_backoff(self) -> NotificationSettings:
        if self.retry_initial_s > self.retry_max_s:
            raise ValueError(
                f"retry_initial_s ({self.retry_initial_s}) must not exceed retry_max_s ({self.retry_max_s})"
            )
        return self


class IngestSettings(Section):
    """How camera workers hand clips to the bus without losing them (see README, "Nothing lost")."""

    spool_dir: Path = Field(
        Path("build/spool"), description="Where clips wait on disk while the bus is down (one folder per camera)"
    )
    spool_max_mb: int = Field(
        512, ge=0, le=1_000_000,
        description="Disk budget per camera for spooled clips (0: no spool, drop beyond the memory queue); "
        "a clip a second is about 360 MB per camera-hour",
    )
    memory_queue: int = Field(
        32, ge=1, le=10_000, description="Messages a camera keeps in memory while the bus cannot take them"
    )
    max_in_flight: int = Field(
        32, ge=1, le=10_000, description="Messages a camera has sent that the bus has not acknowledged yet"
    )


class ReportingSettings(Section):
    output_dir: Path = Field(Path("build/reports"), description="Where PDF reports and charts are written")
    period_days: int = Field(7, ge=1, le=366, description="Days covered by a scheduled report")
    schedule_cron: CronExpression = Field("0 6 * * 1", description="When the scheduled report runs (cron syntax)")
    chain_recipients: list[EmailAddress] = Field(
        default_factory=list, description="Who receives the chain-wide summary ranking every store (admins)"
    )


class EvidenceSettings(Section):
    """Evidence video (ingest writes it while a camera has motion) and how long evidence is kept."""

    video: bool = Field(True, description="Record H.264 video while a camera has motion, for alert videos")
    video_width: int = Field(640, ge=160, le=3840, description="Width the evidence video is scaled to (height keeps the aspect)")
    video_fps: float = Field(15.0, gt=0, le=60, description="Most frames per second written to the evidence video")
    crf: int = Field(28, ge=12, le=45, description="x264 quality (lower is better and larger; 23 is x264's default)")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"] = Field(
        "veryfast", description="x264 speed/size trade-off"
    )
    segment_s: float = Field(4.0, ge=1, le=60, description="Length of each video segment on disk (a keyframe starts each)")
    margin_before_s: float = Field(3.0, ge=0, le=60, description="Video kept before an alert's first clip")
    margin_after_s: float = Field(3.0, ge=0, le=60, description="Video kept after an alert's last clip")
    keep_unflagged: int = Field(
        30, ge=1, le=7 * 24 * 60, description="Minutes evidence of clips that raised no alert is kept"
    )
    keep_false_alarm_days: float = Field(7, ge=0, le=3650, description="Days a false alarm's evidence is kept")
    keep_theft_days: float = Field(
        365, ge=0, le=3650, description="Days evidence of a confirmed or prevented theft is kept"
    )
    keep_unreviewed_days: float = Field(
        30, ge=0, le=3650, description="Days evidence of an alert with no verdict (or 'unsure') is kept"
    )
    max_gb: float = Field(50.0, gt=0, le=100_000, description="Disk budget: past it the oldest unheld evidence goes first")
    janitor_interval_s: float = Field(60.0, ge=1, le=86400, description="How often the janitor enforces the above")
    janitor: Literal["on", "dry_run", "off"] = Field(
        "on", description="The evidence janitor: on deletes; dry_run logs and counts what it would delete; off never runs"
    )
    email_attach_max_mb: float = Field(
        8.0, ge=0, le=50, description="Attach an alert's video to its e-mail while the attachment, as it stands in "
        "the message (base64: about 1.37 x the file), is at most this size (MiB); larger ones are linked"
    )
    video_wait_s: float = Field(
        15.0, ge=0, le=600,
        description="How long an alert's e-mail waits for its video (the margin after the clips has to be filmed)",
    )


class DeskSettings(Section):
    """The security desk: the web page guards work from (``aislewatch desk``; ``aislewatch run`` starts it too)."""

    enabled: bool = Field(True, description="Whether `aislewatch run` serves the desk alongside the workers")
    host: str = Field("127.0.0.1", description="Address the desk listens on (0.0.0.0 in a container)")
    port: int = Field(8080, ge=0, le=65535, description="Port the desk listens on; 0 picks a free one")
    public_url: HttpUrl | None = Field(
        None, description="The URL people open (behind a proxy or TLS terminator); shown in logs and e-mails"
    )
    secure_cookies: Literal["auto", "always", "never"] = Field(
        "auto", description="Mark the session cookie Secure: auto = when the request arrived over HTTPS"
    )
    trust_forwarded: bool = Field(
        False, description="Believe X-Forwarded-For/-Proto from a reverse proxy (only behind one you run)"
    )
    session_idle_minutes: int = Field(30, ge=1, le=7 * 24 * 60, description="Sign out after this long without a request")
    session_max_hours: int = Field(12, ge=1, le=24 * 90, description="Sign out this long after signing in, however busy")
    login_max_failures: int = Field(
        5, ge=1, le=1000, description="Failed sign-ins per user, and per address, before further tries get 429"
    )
    login_window_minutes: int = Field(15, ge=1, le=24 * 60, description="The window those failures count in")
    feed_poll_s: float = Field(
        0.25, gt=0, le=10, description="How often each desk replica reads new alert events from the database"
    )
    sound: bool = Field(True, description="Play a chime on the live feed when a new alert arrives")


class ServiceSettings(Section):
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus/health port; 0 disables the endpoint")
    evidence_dir: Path = Field(Path("build/evidence"), description="Where evidence snapshots are written")
    stall_after_s: float = Field(
        120.0, ge=5, le=86400,
        description="/healthz answers 503 when a worker with work waiting has made no progress for this long",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False


class _YamlSource(PydanticBaseSettingsSource):
    """Feeds an already-parsed YAML mapping into pydantic-settings below the environment."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


# The parsed YAML for the Settings() call in progress (pydantic-settings builds sources per class, not per call).
_YAML_DATA: ContextVar[dict[str, Any] | None] = ContextVar("aislewatch_yaml_data", default=None)


class Settings(BaseSettings):
    """The whole AisleWatch configuration."""

    model_config = SettingsConfigDict(
        env_prefix="AISLEWATCH__",
        env_nested_delimiter="__",
        secrets_nested_delimiter="__",  # type: ignore[typeddict-unknown-key]
        extra="forbid",
        validate_assignment=True,
    )

    stores: list[StoreSettings] = Field(default_factory=list)
    model: ModelSettings = Field(default_factory=ModelSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    alerts: AlertRuleSettings = Field(default_factory=AlertRuleSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    bus: BusSettings = Field(default_factory=BusSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    reporting: ReportingSettings = Field(default_factory=ReportingSettings)
    desk: DeskSettings = Field(default_factory=DeskSettings)
    evidence: EvidenceSettings = Field(default_factory=EvidenceSettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_source = _YamlSource(settings_cls, _YAML_DATA.get() or {})
        # Secret files (Docker/Kubernetes secrets) named like the variables, e.g. aislewatch__database__password,
        # in the directory AISLEWATCH_SECRETS_DIR names.
        secrets = NestedSecretsSettingsSource(file_secret_settings)
        return (init_settings, env_settings, secrets, yaml_source)

    @model_validator(mode="after")
    def _unique_ids(self) -> Settings:
        seen_stores: set[str] = set()
        seen_cameras: set[str] = set()
        for store in self.stores:
            if store.id in seen_stores:
                raise ValueError(f"store id {store.id!r} is used twice")
            seen_stores.add(store.id)
            for camera in store.cameras:
                if camera.id in seen_cameras:
                    raise ValueError(f"camera id {camera.id!r} is used twice")
                seen_cameras.add(camera.id)
        return self

    def cameras(self) -> list[tuple[StoreSettings, CameraSettings]]:
        """Every enabled camera with its store."""
        return [(s, c) for s in self.stores for c in s.cameras if c.enabled]

    def camera(self, camera_id: str) -> tuple[StoreSettings, CameraSettings]:
        for store, camera in self.cameras():
            if camera.id == camera_id:
                return store, camera
        raise KeyError(camera_id)

    def alert_threshold(self, calibrated: float) -> float:
        """The score at which a clip counts as suspicious, for the results and the alert rules alike:
        ``alerts.threshold``, else ``model.threshold``, else ``calibrated`` (the one in the model's metadata).
        An explicit 0 is a setting, not "unset"."""
        for configured in (self.alerts.threshold, self.model.threshold):
            if configured is not None:
                return float(configured)
        return float(calibrated)

    def database_url(self) -> str:
        """The database URL with the secret password merged in (never log the result)."""
        from sqlalchemy.engine import make_url

        url = make_url(self.database.url)
        if self.database.password is not None:
            register_secret(self.database.password.get_secret_value())
            url = url.set(password=self.database.password.get_secret_value())
        return url.render_as_string(hide_password=False)


def _yaml_line_index(text: str) -> dict[tuple[str | int, ...], int]:
    """Map each key path of a YAML document to the line it starts on (1-based), for error messages."""
    lines: dict[tuple[str | int, ...], int] = {}
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines

    def walk(node: yaml.Node | None, path: tuple[str | int, ...]) -> None:
        if node is None:
            return
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = key_node.value
                lines[(*path, key)] = key_node.start_mark.line + 1
                walk(value_node, (*path, key))
                lines[(*path, key)] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, index))

    walk(root, ())
    return lines


def _overrides(environment: Mapping[str, str]) -> dict[str, str]:
    """The ``AISLEWATCH__…`` variables, by their upper-case names (pydantic-settings reads them in any case)."""
    return {name.upper(): name for name in environment if name.upper().startswith("AISLEWATCH__")}


def _environment_source(loc: tuple[str | int, ...], names: Mapping[str, str]) -> str | None:
    """The variable of ``names`` (``_overrides``) that set the value at ``loc`` or a section above it, if any."""
    for cut in range(len(loc), 0, -1):
        parts = loc[:cut]
        if all(isinstance(p, str) for p in parts):
            name = names.get("AISLEWATCH__" + "__".join(str(p).upper() for p in parts))
            if name is not None:
                return name
    return None


def _describe(
    error: Any, lines: dict[tuple[str | int, ...], int], overrides: Mapping[str, str] | None = None
) -> str:
    loc = tuple(part for part in error["loc"] if not (isinstance(part, str) and part.startswith("function-")))
    path = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc).replace(".[", "[") or "(top level)"
    line = None
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            line = lines[loc[:cut]]
            break
    variable = _environment_source(loc, overrides or {})
    # the environment wins over the file: a value it set is its fault, not the file's line's
    where = f"environment variable {variable}: " if variable else f"line {line}: " if line else ""
    value = error.get("input")
    shown = "" if isinstance(value, dict | list) else f" (value: {value!r})"
    reason = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        reason = "unknown key (check its spelling)"
    elif error["type"] == "model_type":  # "a valid dictionary or instance of AlertRuleSettings": our class name
        reason = "must be a section of keys, not a single value"
    return f"{where}{path}{shown}: {reason}"


def load_settings(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None, *, camera_credentials: bool = False
) -> Settings:
    """Load settings from a YAML file (or defaults when ``path`` is None) plus the environment.

    With ``camera_credentials`` (processes that open cameras: ingest, run) every ${VAR} a camera source
    uses must be set; the other roles never resolve them.  Raises ConfigError naming the file, the key
    path, the value and the reason.
    """
    source = str(path) if path is not None else "(defaults and environment)"
    data: dict[str, Any] = {}
    text = ""
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(source, [f"file not found: {file}"])
        text = file.read_text(encoding="utf-8")
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(source, [f"not valid YAML: {exc}"]) from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(source, ["the top level must be a mapping of sections"])
        # Relative paths in the file mean "next to the file" (see common.config_paths).
        data = resolve_relative_paths(loaded, Settings, file.resolve().parent)
    if overrides:
        data = _deep_merge(data, overrides)
    token = _YAML_DATA.set(data)
    secrets_dir = os.environ.get("AISLEWATCH_SECRETS_DIR")
    if secrets_dir and not Path(secrets_dir).is_dir():
        raise ConfigError(source, [f"AISLEWATCH_SECRETS_DIR={secrets_dir} is not a directory"])
    try:
        settings = Settings(_secrets_dir=secrets_dir) if secrets_dir else Settings()
    except ValidationError as exc:
        lines = _yaml_line_index(text) if text else {}
        overrides = _overrides(os.environ)  # once, not per error
        problems = [_describe(err, lines, overrides) for err in exc.errors()]
        env_keys = [k for k in os.environ if k.startswith("AISLEWATCH__")]
        if env_keys:
            problems.append("environment overrides in effect: " + ", ".join(sorted(env_keys)))
        raise ConfigError(source, [redact(p) for p in problems]) from None
    finally:
        _YAML_DATA.reset(token)
    if camera_credentials:
        problems = _missing_camera_variables(settings, _yaml_line_index(text) if text else {})
        if problems:
            raise ConfigError(source, problems)
    return settings


def _missing_camera_variables(settings: Settings, lines: dict[tuple[str | int, ...], int]) -> list[str]:
    problems = []
    for i, store in enumerate(settings.stores):
        for j, camera in enumerate(store.cameras):
            missing = camera.missing_variables() if camera.enabled else []
            if missing:
                line = lines.get(("stores", i, "cameras", j, "source"))
                where = f"line {line}: " if line else ""
                problems.append(
                    f"{where}stores[{i}].cameras[{j}].source: environment variable(s) {', '.join(missing)} "
                    "used in the source are not set (this process opens the camera)"
                )
    return problems


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
