"""Topic names: the public contract of which data lives where.

Every name carries the deployment's prefix (``AUTOSTEER_TOPIC_PREFIX``), so several
deployments can share one Kafka cluster.

>>> t = TopicNames("lab")
>>> t.frames, t.detections, t.deadletter
('lab.frames', 'lab.detections', 'lab.deadletter')
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    description: str
    public: bool  # public topics are read or written by users; the others are internal


@dataclass(frozen=True)
class TopicNames:
    prefix: str = "autosteer"

    def _n(self, suffix: str) -> str:
        return f"{self.prefix}.{suffix}"

    @property
    def frames(self) -> str:
        """Input frames from cameras and producers. Key: camera id. Value: FrameRecord."""
        return self._n("frames")

    @property
    def cameras(self) -> str:
        """Camera registrations (start/stop RTSP ingest). Key: camera id. Value: CameraCommand."""
        return self._n("cameras")

    @property
    def frames_edge(self) -> str:
        """Internal: frames the router sent to the edge tier (same bytes as ``frames``)."""
        return self._n("frames.edge")

    @property
    def frames_cloud(self) -> str:
        """Internal: frames the router sent to the cloud tier (same bytes as ``frames``)."""
        return self._n("frames.cloud")

    @property
    def detections(self) -> str:
        """Results. Key: ``camera:seq``. Value: Detection."""
        return self._n("detections")

    @property
    def telemetry(self) -> str:
        """Per-frame telemetry rows. Key: node. Value: TelemetryRecord."""
        return self._n("telemetry")

    @property
    def telemetry_windows(self) -> str:
        """Per-window counters and sketches. Key: node. Value: WindowRecord."""
        return self._n("telemetry.windows")

    @property
    def telemetry_nodes(self) -> str:
        """Node heartbeats (resources, counters). Key: node. Value: NodeRecord."""
        return self._n("telemetry.nodes")

    @property
    def offload_decisions(self) -> str:
        """The router's control steps. Key: node. Value: OffloadDecision."""
        return self._n("offload.decisions")

    @property
    def shadow(self) -> str:
        """Cloud answers on shadow-sampled edge frames. Key: camera:seq. Value: ShadowResult."""
        return self._n("shadow")

    @property
    def quality(self) -> str:
        """Edge/cloud agreement per shadow frame. Key: camera. Value: QualityRecord."""
        return self._n("quality")

    @property
    def anomalies(self) -> str:
        """Anomalies on telemetry series. Key: node. Value: Anomaly (anomaly/records.py)."""
        return self._n("anomalies")

    @property
    def rootcauses(self) -> str:
        """Ranked root causes of each anomaly, with evidence and SQL. Key: node.
        Value: RootCause (rootcause/records.py)."""
        return self._n("rootcauses")

    @property
    def control_actions(self) -> str:
        """What the control plane did about each root cause (retrain, replan, alert).
        Key: node. Value: ControlAction (rootcause/actions.py)."""
        return self._n("control.actions")

    @property
    def retrain_requests(self) -> str:
        """Drift and RCA ask for a better model. Key: camera. Value: RetrainRequest."""
        return self._n("retrain.requests")

    @property
    def models_updates(self) -> str:
        """New model versions and their rollout. Key: model. Value: ModelUpdate."""
        return self._n("models.updates")

    @property
    def deadletter(self) -> str:
        """Messages that broke the contract, with the reason. Value: DeadLetter."""
        return self._n("deadletter")

    def tier_topic(self, tier: str) -> str:
        if tier == "edge":
            return self.frames_edge
        if tier == "cloud":
            return self.frames_cloud
        raise ValueError(f"unknown tier {tier!r}; expected 'edge' or 'cloud'")

    def specs(self, partitions: int) -> list[TopicSpec]:
        """Every topic autosteer creates, with its partition count."""
        return [
            TopicSpec(self.frames, partitions, "input frames", True),
            TopicSpec(self.cameras, 1, "camera registrations", True),
            TopicSpec(self.frames_edge, partitions, "frames routed to edge", False),
            TopicSpec(self.frames_cloud, partitions, "frames routed to cloud", False),
            TopicSpec(self.detections, partitions, "detections", True),
            TopicSpec(self.telemetry, partitions, "telemetry", True),
            TopicSpec(self.telemetry_windows, partitions, "telemetry windows", True),
            TopicSpec(self.telemetry_nodes, 1, "node heartbeats", True),
            TopicSpec(self.offload_decisions, 1, "offload decisions", True),
            TopicSpec(self.shadow, partitions, "shadow results", True),
            TopicSpec(self.quality, partitions, "edge/cloud agreement", True),
            TopicSpec(self.anomalies, 1, "anomalies", True),
            TopicSpec(self.rootcauses, 1, "root causes", True),
            TopicSpec(self.control_actions, 1, "control actions", True),
            TopicSpec(self.retrain_requests, 1, "retrain requests", True),
            TopicSpec(self.models_updates, 1, "model updates", True),
            TopicSpec(self.deadletter, 1, "dead letters", True),
        ]
