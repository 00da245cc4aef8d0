"""The topic catalog: every topic autosteer uses, in one list.

Each :class:`Topic` says what it holds (its record type), what its key is, how many
partitions it gets (``None``: ``AUTOSTEER_PARTITIONS``) and whether users read or write
it (public). Everything else is derived from :data:`CATALOG`: the names
(:class:`~autosteer.topics.names.TopicNames`), the topics ``autosteer topics create``
makes, the topics a worker subscribes to, :data:`PUBLIC_RECORDS` and the JSON Schemas in
``topics/schemas/``.

>>> [t.suffix for t in CATALOG if not t.public]
['frames.edge', 'frames.cloud']
>>> by_suffix("models.updates").record.__name__
'ModelUpdate'
>>> dict(by_suffix("frames.edge").config)["retention.ms"], by_suffix("detections").config
('3600000', ())
"""

from __future__ import annotations

from dataclasses import dataclass

from autosteer.anomaly.records import Anomaly
from autosteer.retrain.records import ModelUpdate, RetrainRequest
from autosteer.rootcause.actions import ControlAction
from autosteer.rootcause.records import RootCause
from autosteer.topics.records import (
    CameraCommand,
    DeadLetter,
    Detection,
    FrameRecord,
    NodeRecord,
    OffloadDecision,
    QualityRecord,
    Record,
    ShadowResult,
    TelemetryRecord,
    WindowRecord,
)


@dataclass(frozen=True)
class Topic:
    """One topic of the contract (its name is ``<prefix>.<suffix>``)."""

    suffix: str
    record: type[Record]
    key: str  # what the message key is, in words
    description: str
    partitions: int | None = None  # None: AUTOSTEER_PARTITIONS
    public: bool = True  # read or written by users; the others are internal
    config: tuple[tuple[str, str], ...] = ()  # topic configs set at creation (Kafka)

    @property
    def attr(self) -> str:
        """The attribute of :class:`~autosteer.topics.names.TopicNames` that names it."""
        return self.suffix.replace(".", "_")


# Frames are the bulk of the data (about 120 KB each) and are shed after
# AUTOSTEER_MAX_FRAME_AGE_MS anyway: an hour's retention, in 10-minute segments (retention
# deletes closed segments only). Every other topic keeps the broker's default. tansu
# applies no retention at all.
FRAME_RETENTION: tuple[tuple[str, str], ...] = (("retention.ms", "3600000"),
                                                ("segment.ms", "600000"))

CATALOG: tuple[Topic, ...] = (
    Topic("frames", FrameRecord, "camera id", "input frames from cameras and producers",
          config=FRAME_RETENTION),
    Topic("cameras", CameraCommand, "camera id", "camera registrations (start/stop RTSP "
          "ingest)", partitions=1),
    Topic("frames.edge", FrameRecord, "camera id", "frames the router sent to the edge "
          "tier (the bytes of frames)", public=False, config=FRAME_RETENTION),
    Topic("frames.cloud", FrameRecord, "camera id", "frames the router sent to the cloud "
          "tier (re-encoded at the policy's quality level)", public=False,
          config=FRAME_RETENTION),
    Topic("detections", Detection, "camera:seq", "results: one per frame (ok, or shed)"),
    Topic("telemetry", TelemetryRecord, "node", "sampled per-frame telemetry rows"),
    Topic("telemetry.windows", WindowRecord, "node", "per-window counters and sketches"),
    Topic("telemetry.nodes", NodeRecord, "node", "node heartbeats (resources, counters)",
          partitions=1),
    Topic("offload.decisions", OffloadDecision, "node", "the router's control steps",
          partitions=1),
    Topic("shadow", ShadowResult, "camera:seq", "cloud answers on shadowed edge frames"),
    Topic("quality", QualityRecord, "camera", "edge/cloud agreement per shadow frame"),
    Topic("anomalies", Anomaly, "node", "anomalies on telemetry series", partitions=1),
    Topic("rootcauses", RootCause, "node", "ranked root causes of each anomaly, with "
          "evidence and SQL", partitions=1),
    Topic("control.actions", ControlAction, "node", "what the control plane did about each "
          "root cause (retrain, replan, alert)", partitions=1),
    Topic("retrain.requests", RetrainRequest, "camera", "drift and RCA ask for a better "
          "model", partitions=1),
    Topic("models.updates", ModelUpdate, "model", "new model versions and their rollout "
          "(canary share: 1 promote, 0 roll back)", partitions=1),
    Topic("deadletter", DeadLetter, "the original key", "messages that broke the contract "
          "or failed, with the reason and the original bytes", partitions=1),
)

PUBLIC_RECORDS: dict[str, type[Record]] = {t.suffix: t.record for t in CATALOG if t.public}


def by_suffix(suffix: str) -> Topic:
    """The catalog entry of ``suffix``, or ValueError naming the known ones."""
    for t in CATALOG:
        if t.suffix == suffix:
            return t
    raise ValueError(f"no topic {suffix!r}; topics: {', '.join(t.suffix for t in CATALOG)}")
