"""All settings, in one frozen object read from ``AUTOSTEER_*`` environment variables.

Environment variables are read here and nowhere else. Tests and embedders pass
their own values: ``Settings(kafka_bootstrap="127.0.0.1:19092")`` or
``Settings.from_env({"AUTOSTEER_KAFKA_BOOTSTRAP": "..."})``.

>>> s = Settings.from_env({"AUTOSTEER_TOPIC_PREFIX": "lab1", "AUTOSTEER_EDGE_RATIO": "0.25"})
>>> s.topic_prefix, s.edge_ratio
('lab1', 0.25)
>>> "hunter2" in repr(Settings(kafka_sasl_password="hunter2"))
False
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "AUTOSTEER_"


def _home() -> Path:
    return Path.home() / ".cache" / "autosteer"


class Settings(BaseSettings):
    """Typed, validated, immutable settings for every autosteer process."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    # --- Kafka (any Kafka-compatible broker; tansu locally) -------------------------
    broker: Literal["tansu", "kafka"] = Field(
        "tansu", description="what `autosteer infra up` starts and the cluster in use: the "
        "in-memory tansu broker or a local 3-node Apache Kafka cluster")
    kafka_bootstrap: str = Field("127.0.0.1:19092", description="host:port[,host:port...]")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    topic_prefix: str = Field("autosteer", pattern=r"^[A-Za-z0-9._-]+$")
    partitions: int = Field(4, ge=1, description="partitions of each topic created by autosteer")
    replication_factor: int | None = Field(
        None, ge=1, description="replicas of each topic autosteer creates; unset: the "
        "broker's default.replication.factor (3 on the local Kafka cluster, 1 on tansu)")
    max_message_bytes: int = Field(10 * 1024 * 1024, ge=1024 * 1024)

    # --- telemetry store ---------------------------------------------------------------
    store: Literal["server", "embedded"] = "server"
    clickhouse_url: str = "clickhouse://default:@127.0.0.1:19000/autosteer"
    chdb_path: Path = Field(default_factory=lambda: _home() / "chdb")

    # --- models -------------------------------------------------------------------------
    model_dir: Path = Field(default_factory=lambda: _home() / "models")
    edge_model: str = "ssd_mobilenet_v2_coco_int8"
    cloud_model: str = "ssd_mobilenet_v2_coco_fp32"
    providers: str = Field(
        "auto", description="'auto' (TensorRT > CUDA > CPU) or a comma list of ORT providers"
    )
    intra_op_threads: int = Field(0, ge=0, description="0 = number of cores")
    score_threshold: float = Field(0.3, ge=0.0, le=1.0)

    # --- pipeline -----------------------------------------------------------------------
    node: str = Field("node-1", description="name of this node in telemetry")
    roles: str = Field("router,edge,cloud,sink,ingest", description="agents this worker runs")
    offload_policy: Literal["controller", "fixed", "edge-only", "cloud-only", "deepdecision",
                            "fastva", "hill-climbing", "jsec"] = Field(
        "controller", description="how the router picks edge or cloud for each frame")
    edge_ratio: float | None = Field(
        None, ge=0.0, le=1.0, description="share of frames routed to edge: the 'fixed' "
        "policy's split (0.5 when unset); when set, also the controller's split until it has "
        "measured the link (a placement plan's, from `autosteer deploy`)")
    shadow_rate: float = Field(0.05, ge=0.0, le=1.0, description="share of edge frames also "
                               "sent to the cloud to measure edge/cloud agreement")
    drift_warmup: int = Field(30, ge=5, description="shadow pairs per camera before drift "
                              "detection starts")
    retrain_window_s: float = Field(10.0, gt=0, description="a retrain request learns from "
                                    "shadow frames from this long before it on")
    retrain_collect_s: float = Field(15.0, ge=0, description="the retrainer waits this long "
                                     "for teacher frames after a request")
    retrain_requantize: bool = Field(False, description="also re-calibrate the INT8 model's "
                                     "quantization on the teacher frames (slower)")
    retrain_shadow_rate: float = Field(1.0, ge=0.0, le=1.0, description="share of a camera's "
                                       "edge frames shadowed while a retrain request for it "
                                       "collects teacher frames")
    retrain_fp32_head: int = Field(2, ge=0, description="re-quantized candidates keep this "
                                   "many leading Conv layers (the stem) in FP32")
    canary_share: float = Field(0.25, gt=0.0, le=1.0, description="share of a camera's frames "
                                "a new version serves before it is judged")
    registry_dir: Path = Field(default_factory=lambda: _home() / "registry",
                               description="versioned models (a filesystem every worker mounts)")
    accuracy_floor: float = Field(0.0, ge=0.0, le=1.0,
                                  description="least expected agreement with the cloud model")
    slo_ms: float | None = Field(None, gt=0.0, description="per-frame SLO, capture -> "
                                 "result back, in ms, given to every offload policy (unset = none)")
    shed_budget: float = Field(0.0, ge=0.0, le=1.0, description="largest share of frames "
                               "the router may shed when no tier can meet the SLO (0 = never)")
    edge_frame_ms: float = Field(20.0, gt=0.0, description="profile: edge ms per frame")
    cloud_frame_ms: float = Field(25.0, gt=0.0, description="profile: cloud ms per frame")
    edge_accuracy: float = Field(0.90, ge=0.0, le=1.0,
                                 description="profile: edge model's agreement with the cloud")
    offload_levels: str = Field(
        "", description="quality levels a cloud frame may be re-encoded at, measured: "
        "'name:scale:jpeg_quality:bytes_ratio:accuracy:encode_ms,...' (empty = as captured)")
    link_mbps: float = Field(0.0, ge=0.0, description="emulated edge->cloud link, 0 = none")
    link_delay_ms: float = Field(0.0, ge=0.0, description="emulated link one-way delay")
    link_jitter_ms: float = Field(0.0, ge=0.0, description="emulated link jitter")
    max_frame_age_ms: int = Field(
        5000, ge=0, description="a detector sheds frames older than this (0 = never)")
    motion_gate: Literal["off", "on"] = Field(
        "off", description="on: the router detects a camera's frame only when it changed "
        "since the camera's last detected frame (or a refresh is due); the others get that "
        "detection carried forward (status 'reused')")
    gate_changed_fraction: float = Field(0.003, ge=0.0, le=1.0, description="motion gate: "
                                         "a frame with more changed pixels than this share "
                                         "is detected fresh")
    gate_pixel_threshold: int = Field(20, ge=0, le=255, description="motion gate: a pixel "
                                      "changed when its gray level moved more than this")
    gate_refresh_frames: int = Field(30, ge=1, description="motion gate: a fresh detection "
                                     "at least every this many frames of a camera")
    gate_refresh_s: float = Field(5.0, gt=0.0, description="motion gate: a fresh detection "
                                  "at least this often (capture time)")
    gate_check_rate: float = Field(0.05, ge=0.0, le=1.0, description="motion gate: share of "
                                   "reused frames also detected fresh, to measure agreement")
    fetch_wait_ms: int = Field(25, ge=1, le=5000,
                               description="longest wait of a worker's fetch on an empty topic")
    max_image_pixels: int = Field(8192 * 8192, ge=1, description="a frame whose image "
                                  "header declares more pixels is dead-lettered, not decoded")
    decode_budget_mb: int = Field(256, ge=1, description="most memory one image decode may "
                                  "take (from its header, checked before decoding)")
    agent_stall_s: float = Field(30.0, gt=0.0, description="/ready answers 503 when an agent "
                                 "made no progress this long while messages wait for it")
    agent_backoff_s: float = Field(0.5, gt=0.0, description="first wait before a crashed "
                                   "agent or thread restarts (doubles up to 30 s)")
    batch_size: int = Field(4, ge=1, le=64)
    batch_wait_s: float = Field(0.02, ge=0.0)
    jpeg_quality: int = Field(85, ge=10, le=100)
    ingest_max_fps: float = Field(0.0, ge=0.0, description="per-camera fps cap, 0 = none")
    ingest_max_width: int = Field(0, ge=0, description="downscale wider frames at ingest, 0 = keep")
    telemetry_sample_rate: float = Field(
        0.1, gt=0.0, le=1.0, description="share of per-frame telemetry rows kept (windows are exact)")
    window_s: int = Field(10, ge=1, le=3600, description="telemetry window length")
    heartbeat_s: float = Field(5.0, gt=0.0, description="node heartbeat period")
    sink_batch_rows: int = Field(10_000, ge=1)
    sink_flush_s: float = Field(1.0, gt=0.0)
    fault_injection: bool = Field(False, description="enable POST /fault (tests, benchmarks)")
    web_port: int = Field(6066, ge=1, le=65535)
    web_host: str = "127.0.0.1"

    # --- local infra (autosteer infra up) ------------------------------------------------
    state_dir: Path = Field(default_factory=lambda: _home() / "run")
    broker_port: int = 19092
    clickhouse_tcp_port: int = 19000
    clickhouse_http_port: int = 18123
    rtsp_port: int = 18554
    sample_video: Path = Field(default_factory=lambda: _home() / "data" / "vtest.avi")

    @field_validator("kafka_ssl_cafile", "kafka_sasl_mechanism", "kafka_sasl_username", mode="before")
    @classmethod
    def _empty_is_none(cls, v: Any) -> Any:
        return None if v == "" else v

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``env`` (default: the process environment) plus overrides."""
        if env is None:
            return cls(**overrides)
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            key = ENV_PREFIX + name.upper()
            if key in env:
                values[name] = env[key]
        values.update(overrides)
        return cls.model_validate(values)

    def to_env(self) -> dict[str, str]:
        """These settings as ``AUTOSTEER_*`` variables (secrets in clear: for a child
        process's environment, never for a log). ``from_env`` reads them back.

        >>> Settings(node="edge-7", kafka_sasl_password="pw").to_env()["AUTOSTEER_NODE"]
        'edge-7'
        """
        env = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"{ENV_PREFIX}{name.upper()}"] = str(value)
        return env

    def role_set(self) -> set[str]:
        return {r.strip() for r in self.roles.split(",") if r.strip()}

    # --- client configs: every Kafka client is built from these ---------------------------
    def confluent_config(self) -> dict[str, Any]:
        """librdkafka settings (confluent-kafka) including SASL/SSL passthrough."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.kafka_bootstrap,
            "security.protocol": self.kafka_security_protocol,
            "message.max.bytes": self.max_message_bytes,
        }
        if self.kafka_sasl_mechanism:
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_sasl_username:
            conf["sasl.username"] = self.kafka_sasl_username
        if self.kafka_sasl_password is not None:
            conf["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_cafile:
            conf["ssl.ca.location"] = str(self.kafka_ssl_cafile)
        return conf

    def producer_config(self) -> dict[str, Any]:
        conf = self.confluent_config()
        conf.update({"linger.ms": 2, "compression.type": "none", "acks": "all"})
        return conf

    def consumer_config(self, group: str, *, from_beginning: bool = True) -> dict[str, Any]:
        conf = self.confluent_config()
        conf.pop("message.max.bytes", None)
        conf.update(
            {
                "group.id": group,
                "auto.offset.reset": "earliest" if from_beginning else "latest",
                "enable.auto.commit": True,
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 1000,
                "max.poll.interval.ms": 30000,
                "fetch.max.bytes": max(self.max_message_bytes, 52428800),
                "max.partition.fetch.bytes": self.max_message_bytes,
            }
        )
        return conf
