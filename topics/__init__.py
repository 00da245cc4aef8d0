"""The public contract: topic names and record schemas."""

from autosteer.topics.names import TopicNames, TopicSpec
from autosteer.topics.records import (
    Box,
    CameraCommand,
    DeadLetter,
    Detection,
    FrameRecord,
    Latency,
    NodeRecord,
    QuantileSummary,
    Record,
    TelemetryRecord,
    WindowRecord,
)

__all__ = [
    "Box",
    "CameraCommand",
    "DeadLetter",
    "Detection",
    "FrameRecord",
    "Latency",
    "NodeRecord",
    "QuantileSummary",
    "Record",
    "TelemetryRecord",
    "TopicNames",
    "TopicSpec",
    "WindowRecord",
]
