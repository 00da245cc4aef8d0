"""Record schemas of every public topic: the wire contract.

All values are UTF-8 JSON objects (no Faust metadata), so any Kafka client in any
language can produce and read them. Binary fields (JPEG bytes, dead-letter
payloads) are standard base64 strings. ``autosteer.topics.export`` writes the JSON
Schema of each record to ``topics/schemas/``.

Parsing never raises anything but :class:`~autosteer.errors.RecordError`, whose
message says which field was wrong and what arrived; the agents send such messages
to the dead-letter topic.

>>> f = FrameRecord(camera="cam1", seq=7, ts_ms=1_700_000_000_000, jpeg=b"\\xff\\xd8")
>>> FrameRecord.parse(f.dumps()).seq
7
>>> FrameRecord.parse(b'{"camera": "cam1"}')
Traceback (most recent call last):
...
autosteer.errors.RecordError: FrameRecord: seq: Field required; ts_ms: Field required; jpeg: Field required
"""

from __future__ import annotations

import base64
import time
from typing import Annotated, Literal, Self

from autosteer.errors import RecordError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
)

# Bytes travel as standard base64 text in JSON (RFC 4648 section 4; the URL-safe
# alphabet is accepted on input too).
B64 = Annotated[
    bytes,
    PlainSerializer(lambda b: base64.b64encode(b).decode("ascii"), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}, mode="serialization"),
]

CameraId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
Tier = Literal["edge", "cloud"]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Record(BaseModel):
    """Base of every topic record: strict JSON in, JSON out, clear errors."""

    model_config = ConfigDict(
        extra="ignore", frozen=True, val_json_bytes="base64"
    )

    @classmethod
    def parse(cls, data: bytes | str | None) -> Self:
        if data is None:
            raise RecordError(f"{cls.__name__}: empty message (no value)")
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
                for e in exc.errors(include_url=False)[:6]
            )
            raise RecordError(f"{cls.__name__}: {problems}") from exc

    def dumps(self) -> bytes:
        return self.model_dump_json().encode()


class FrameRecord(Record):
    """One video frame on the input topic. Kafka key: the camera id (UTF-8)."""

    camera: CameraId = Field(description="camera id; also the Kafka message key")
    seq: int = Field(ge=0, description="frame number within the camera's stream")
    ts_ms: int = Field(ge=0, description="capture time, milliseconds since the Unix epoch (UTC)")
    jpeg: B64 = Field(description="the frame, JPEG-encoded, as base64")
    width: int | None = Field(None, ge=1, description="pixels, if the producer knows")
    height: int | None = Field(None, ge=1, description="pixels, if the producer knows")


class CameraCommand(Record):
    """Start or stop ingest of an RTSP (or file) source. Kafka key: the camera id."""

    action: Literal["start", "stop"]
    camera: CameraId
    url: str | None = Field(None, description="rtsp://... or a local video path; needed for start")
    max_fps: float = Field(0.0, ge=0.0, description="cap on frames per second, 0 = source rate")


class Box(Record):
    """One detected object; coordinates normalised to [0, 1] of the frame."""

    label: str = Field(description="COCO label, e.g. 'person'")
    class_id: int = Field(description="COCO category id (1 = person, 3 = car)")
    score: float = Field(ge=0.0, le=1.0)
    x0: float
    y0: float
    x1: float
    y1: float


class Latency(Record):
    """Where the time went, in milliseconds."""

    ingest_ms: float = Field(description="capture -> message on the input topic")
    route_ms: float = Field(description="input topic -> forwarded to a tier by the router")
    queue_ms: float = Field(description="received by the detector's worker -> taken by the "
                            "detector (its backlog)")
    decode_ms: float = Field(description="JPEG decode")
    infer_ms: float = Field(description="model inference (per frame share of its batch)")
    total_ms: float = Field(description="capture -> detection published (end to end)")
    link_ms: float = Field(0.0, description="forwarded by the router -> received by the "
                           "detector's worker: the Kafka hop, and the emulated link if any")
    return_ms: float = Field(0.0, ge=0.0, description="the result's way back over the "
                             "emulated link (cloud results only; 0 without one); in total_ms")


class Detection(Record):
    """Detections for one frame. Kafka key: ``<camera>:<seq>`` (idempotent result key)."""

    camera: CameraId
    seq: int = Field(ge=0)
    ts_ms: int = Field(description="capture time of the frame (epoch ms)")
    tier: Tier
    node: str
    model_id: str
    model_version: str
    width: int
    height: int
    boxes: list[Box]
    latency: Latency
    status: Literal["ok", "shed", "reused"] = Field(
        "ok", description="'shed': the frame waited longer than AUTOSTEER_MAX_FRAME_AGE_MS, "
        "or the router saw no tier meet AUTOSTEER_SLO_MS (see reason), and was dropped on "
        "purpose (no boxes); 'reused': the router's motion gate (AUTOSTEER_MOTION_GATE) "
        "found the frame unchanged and carried forward the boxes of its camera's detected "
        "frame reused_from; every frame still gets one result")
    reused_from: int | None = Field(None, ge=0, description="for status 'reused': the seq "
                                    "of the camera's detected frame whose boxes these are")
    reason: str = Field("", description="why a frame was not detected as usual (empty for "
                        "'ok'), e.g. the router's 'hopeless: 310 ms at best > SLO 150 ms' "
                        "when no tier could meet AUTOSTEER_SLO_MS")

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for b in self.boxes:
            out[b.label] = out.get(b.label, 0) + 1
        return out


class TelemetryRecord(Record):
    """One per-frame telemetry row (the ``frames`` table in ClickHouse). Key: node."""

    kind: Literal["frame"] = "frame"
    ts_ms: int = Field(description="when the detection was published (epoch ms)")
    node: str
    camera: str
    seq: int
    tier: Tier
    model_id: str
    model_version: str
    batch_size: int
    queue_depth: int = Field(description="frames waiting in this detector when the batch was taken")
    ingest_ms: float
    route_ms: float
    queue_ms: float
    decode_ms: float
    infer_ms: float
    total_ms: float
    n_detections: int
    link_ms: float = Field(0.0, description="forwarded by the router -> received by the "
                           "detector's worker: the Kafka hop, and the emulated link if any")
    max_score: float
    mean_score: float
    sample_weight: float = Field(1.0, ge=1.0, description="1 / sampling rate: how many frames "
                                 "this sampled row stands for")


class QuantileSummary(Record):
    """A mergeable quantile sketch flattened for SQL: retained items and their weights.

    ``quantileExactWeighted(q)(v, w)`` over the ARRAY JOIN of any set of summaries is
    the quantile of their merge."""

    values: list[float] = Field(default_factory=list)
    weights: list[int] = Field(default_factory=list)


class WindowRecord(Record):
    """Exact counters and sketches of one window per (node, camera, tier, model).
    Key: node. Topic: ``<prefix>.telemetry.windows``; table ``telemetry_windows``."""

    ts_ms: int = Field(description="window start (epoch ms)")
    window_s: int = Field(description="window length in seconds")
    node: str
    camera: str
    tier: Tier
    model_id: str
    model_version: str
    frames: int = Field(ge=0, description="frames detected (exact, never sampled)")
    detections: int = Field(ge=0, description="boxes published (exact)")
    sum_total_ms: float = Field(description="sum of end-to-end latency (exact)")
    max_total_ms: float = Field(description="largest end-to-end latency (exact)")
    max_queue_depth: int = 0
    reused: int = Field(0, ge=0, description="frames answered with this model's "
                        "carried-forward detection (motion gate); not in frames")
    distinct_frames: float = Field(description="HLL estimate of distinct camera:seq; "
                                   "frames - distinct_frames = frames processed twice")
    total_ms: QuantileSummary = Field(description="end-to-end latency sketch (REQ, tail-accurate)")
    infer_ms: QuantileSummary = Field(description="model time per frame sketch (KLL)")
    queue_ms: QuantileSummary = Field(description="time waiting for the detector sketch (KLL)")
    score: QuantileSummary = Field(description="box confidence sketch (KLL)")
    labels: list[str] = Field(default_factory=list, description="frequent labels (frequent items)")
    label_counts: list[int] = Field(default_factory=list, description="their estimated counts")
    sketches: dict[str, str] = Field(default_factory=dict, description="serialized DataSketches "
                                     "(base64) for exact merges in Python")


class ShadowResult(Record):
    """The cloud model's answer on a frame that the edge also processed (shadow sample).
    Key: ``camera:seq``. Topic: ``<prefix>.shadow``. Carries the frame, so a retrainer
    can learn the edge from the cloud (teacher labels)."""

    camera: CameraId
    seq: int = Field(ge=0)
    ts_ms: int
    node: str
    model_id: str
    model_version: str
    boxes: list[Box]
    jpeg: B64 = Field(description="the frame, as the detectors saw it")
    latency: Latency | None = Field(None, description="the copy's timings (the offload "
                                    "policy measures the link and the cloud with them)")


class QualityRecord(Record):
    """Edge/cloud agreement on one shadow-sampled frame. Key: camera.
    Topic: ``<prefix>.quality``; table ``telemetry_quality``."""

    ts_ms: int
    node: str
    camera: str
    seq: int
    edge_model_id: str
    edge_model_version: str
    cloud_model_id: str
    cloud_model_version: str
    agreement: float = Field(ge=0.0, le=1.0, description="F1 of edge boxes against cloud "
                             "boxes (same label, IoU >= 0.5); 1 when both are empty")
    edge_boxes: int
    cloud_boxes: int
    edge_mean_score: float
    cloud_mean_score: float


class OffloadDecision(Record):
    """One control step of the router's offload policy. Key: node.
    Topic: ``<prefix>.offload.decisions``."""

    ts_ms: int
    node: str
    policy: str = Field(description="AUTOSTEER_OFFLOAD_POLICY")
    offload_ratio: float = Field(description="share of frames sent to the cloud")
    offload: dict[str, float] = Field(default_factory=dict, description="cloud share per camera")
    predicted_mean_ms: float | None = None
    predicted_p95_ms: float | None = None
    measured_mean_ms: float | None = Field(None, description="frames seen back since the "
                                           "previous step")
    measured_p95_ms: float | None = None
    edge_util: float | None = None
    link_util: float | None = None
    cloud_util: float | None = None
    reason: str = ""
    level: str = Field("full", description="quality level cloud frames are re-encoded at "
                       "(full = as captured)")
    predicted_accuracy: float | None = Field(None, description="expected agreement with the "
                                             "cloud model on the original frames")


class NodeRecord(Record):
    """A node's heartbeat: resources and cumulative counters. Key: node.
    Topic: ``<prefix>.telemetry.nodes``; table ``telemetry_nodes``."""

    ts_ms: int
    node: str
    roles: str
    cpu_percent: float = Field(description="this worker process, % of one core")
    host_cpu_percent: float = Field(description="whole machine, % of all cores")
    rss_bytes: int
    host_mem_percent: float
    threads: int
    gpu_util_percent: float = Field(-1.0, description="-1 when no GPU is visible")
    gpu_mem_bytes: int = -1
    routed_edge: int = 0
    routed_cloud: int = 0
    detected_edge: int = 0
    detected_cloud: int = 0
    dead_letters: int = 0
    send_failures: int = 0
    frames_dropped: int = Field(0, description="camera frames the producer could not take")
    frames_skipped: int = Field(0, description="camera frames skipped by the fps cap")
    frames_shed: int = Field(0, description="frames answered status shed: by the detectors for "
                             "being older than AUTOSTEER_MAX_FRAME_AGE_MS, by the router when "
                             "no tier could meet AUTOSTEER_SLO_MS")
    frames_reused: int = Field(0, description="frames the router's motion gate answered "
                               "with their camera's last detection (never detected)")
    telemetry_rows: int = 0
    store_retries: int = 0


class DeadLetter(Record):
    """A message that broke its topic's contract, kept with the reason."""

    ts_ms: int = Field(default_factory=now_ms)
    node: str
    source_topic: str
    partition: int
    offset: int
    key: B64 | None = None
    reason: str = Field(description="what was wrong, in words")
    error_type: str = Field(description="class name of the error, e.g. RecordError, DecodeError")
    payload: B64 = Field(description="the original message value, unchanged unless "
                         "payload_truncated (then its first bytes)")
    payload_bytes: int = Field(0, ge=0, description="size of the original message value")
    payload_truncated: bool = Field(False, description="payload was cut to fit the topic's "
                                    "message-size limit")

    @classmethod
    def of(cls, node: str, topic: str, partition: int, offset: int, key: bytes | None,
           value: bytes | None, error: Exception, max_message_bytes: int,
           where: str = "") -> DeadLetter:
        """The dead letter of one message, cut to fit ``max_message_bytes`` once encoded
        (base64 makes the payload 4/3 larger; 64 KiB is left for the other fields).

        >>> d = DeadLetter.of("n", "t", 0, 7, b"k", b"x" * 2_000_000, ValueError("bad"),
        ...                   1_048_576)
        >>> d.payload_bytes, len(d.payload), d.payload_truncated, d.error_type
        (2000000, 720896, True, 'ValueError')
        >>> DeadLetter.of("n", "t", 0, 7, None, b"", KeyError("x"), 1_048_576,
        ...               where="agent router").reason
        "agent router: KeyError: 'x'"
        """
        data = value or b""
        limit = max(1024, max_message_bytes * 3 // 4 - 65536)
        return cls(node=node, source_topic=topic, partition=partition, offset=offset,
                   key=(key or b"")[:1024] or None,
                   reason=(f"{where}: {type(error).__name__}: {error}" if where
                           else str(error))[:4096],
                   error_type=type(error).__name__, payload=data[:limit],
                   payload_bytes=len(data), payload_truncated=len(data) > limit)

